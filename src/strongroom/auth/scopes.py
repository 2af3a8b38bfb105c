"""Access token scopes (RFC 6749 §3.3): the fixed vocabulary and its syntax.

Scopes match exactly; there are no wildcards or hierarchies (``accounts:write`` does not
imply ``accounts:read``). ``OPERATOR_SCOPES`` may only be granted to operator clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from strongroom.auth.rfc6749_errors import OAuthError

SCOPES: frozenset[str] = frozenset(
    {
        "accounts:read",
        "accounts:write",
        "transfers:read",
        "transfers:write",
        "payments:write",
        "payments:refund",
        "settlements:read",
        "settlements:run",
        "audit:read",
        "clients:read",
        "clients:write",
        "admin",
        "tenants:admin",
    }
)
OPERATOR_SCOPES: frozenset[str] = frozenset({"admin", "tenants:admin"})
TENANT_SCOPES: frozenset[str] = SCOPES - OPERATOR_SCOPES

# RFC 6749 §3.3: scope = scope-token *( SP scope-token )
#                scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_SYNTAX = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+(?: [\x21\x23-\x5b\x5d-\x7e]+)*")


class InvalidScope(OAuthError):
    """A scope value that is malformed or names an unknown scope (``invalid_scope``)."""

    def __init__(self, description: str) -> None:
        super().__init__("invalid_scope", description)

    def __str__(self) -> str:  # the description alone, ready to reuse as one
        return self.description


def parse_scope(value: str) -> frozenset[str]:
    """The scopes of a ``scope`` parameter or claim; raises ``InvalidScope``.

    Strict RFC 6749 §3.3 syntax (one space between tokens, no leading/trailing space, no
    empty value); order and repetitions are irrelevant; every token must be in ``SCOPES``.
    """
    if _SCOPE_SYNTAX.fullmatch(value) is None:
        raise InvalidScope("scope must be space-separated scope tokens (RFC 6749 §3.3)")
    scopes = frozenset(value.split(" "))
    unknown = scopes - SCOPES
    if unknown:
        # Name at most a few: the value is attacker-controlled and may be long.
        shown = " ".join(sorted(unknown)[:3])[:100]
        raise InvalidScope(f"unknown scope: {shown}")
    return scopes


def format_scope(scopes: Iterable[str]) -> str:
    """Sorted and space-separated: the canonical form of a scope set."""
    return " ".join(sorted(set(scopes)))


def grant_scope(
    requested: str | None, *, allowed: frozenset[str], is_operator: bool
) -> frozenset[str]:
    """The scopes to grant a client for a token request (RFC 6749 §3.3).

    ``requested`` is the request's ``scope`` parameter; absent (``None``) means the
    client's whole ``allowed`` set. Refuses (``InvalidScope``) anything outside
    ``allowed``, operator scopes to non-operator clients, and an empty result.
    """
    scopes = allowed if requested is None else parse_scope(requested)
    if not is_operator and scopes & OPERATOR_SCOPES:
        raise InvalidScope("operator scopes are not available to this client")
    if not scopes <= allowed:
        raise InvalidScope("requested scope exceeds the client's scope")
    if not scopes:
        raise InvalidScope("no scope to grant")
    return scopes
