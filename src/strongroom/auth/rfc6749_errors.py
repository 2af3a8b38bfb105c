"""OAuth 2.0 error responses of the token endpoint (RFC 6749 §5.2).

An ``OAuthError`` carries everything the HTTP layer needs: the ``error`` code, a
human-readable ``description``, the status code (400, or 401 for ``invalid_client``) and,
for 401, the ``WWW-Authenticate`` challenge. ``api/`` renders it as
``{"error": ..., "error_description": ...}`` with ``Cache-Control: no-store``.

Descriptions never say which part of a credential was wrong (RFC 6819 §5.1.4.2.2 hints at
why: it would help an attacker enumerate clients).
"""

from __future__ import annotations

import re
from typing import Any

# RFC 6749 §5.2: error_description is restricted to %x20-21 / %x23-5B / %x5D-7E.
_NOT_DESCRIPTION_CHAR = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")
_DEFAULT_REALM = "strongroom"


class OAuthError(Exception):
    """An error response of the authorization server (RFC 6749 §5.2)."""

    __slots__ = ("description", "error", "status", "www_authenticate")

    def __init__(
        self,
        error: str,
        description: str = "",
        *,
        status: int = 400,
        www_authenticate: str | None = None,
    ) -> None:
        self.error = error
        # Unsafe characters are replaced rather than rejected: the response must still go out.
        self.description = _NOT_DESCRIPTION_CHAR.sub("?", description)
        self.status = status
        self.www_authenticate = www_authenticate
        super().__init__(f"{error}: {self.description}" if self.description else error)

    def as_dict(self) -> dict[str, Any]:
        """The JSON body (RFC 6749 §5.2); ``error_description`` only when there is one."""
        body: dict[str, Any] = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def headers(self) -> dict[str, str]:
        """Response headers: no caching (RFC 6749 §5.1) and, for 401, the challenge."""
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        if self.www_authenticate is not None:
            headers["WWW-Authenticate"] = self.www_authenticate
        return headers


def invalid_request(
    description: str = "the request is missing or repeats a parameter",
) -> OAuthError:
    """Missing, repeated or malformed parameter; unsupported parameter value."""
    return OAuthError("invalid_request", description)


def invalid_client(
    description: str = "client authentication failed",
    *,
    basic: bool = True,
    realm: str = _DEFAULT_REALM,
) -> OAuthError:
    """Client authentication failed (unknown client, wrong secret, suspended, no credentials).

    Always 401 with a ``Basic`` challenge, whichever method the client used (``basic``
    says which; it does not change the response): RFC 6749 §5.2 requires this when the
    client used the Authorization header and allows it otherwise, RFC 9110 §15.5.2
    requires a challenge on every 401, and one shape for all failures leaks nothing.
    """
    del basic  # accepted so call sites can state the method; the response is the same
    return OAuthError(
        "invalid_client",
        description,
        status=401,
        www_authenticate=f'Basic realm="{realm}", charset="UTF-8"',
    )


def invalid_grant(description: str = "the grant is invalid, expired or revoked") -> OAuthError:
    return OAuthError("invalid_grant", description)


def unauthorized_client(
    description: str = "the client may not use this grant type",
) -> OAuthError:
    return OAuthError("unauthorized_client", description)


def unsupported_grant_type(
    description: str = "the grant type is not supported",
) -> OAuthError:
    return OAuthError("unsupported_grant_type", description)


def invalid_scope(
    description: str = "the requested scope is invalid, unknown or exceeds the client's scope",
) -> OAuthError:
    return OAuthError("invalid_scope", description)
