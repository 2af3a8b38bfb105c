"""Ports of the authorization server: what ``auth/`` needs from storage, as Protocols.

``adapters/`` implements them (SQLAlchemy Core on SQLite and PostgreSQL); ``api/`` wires
an implementation in. Nothing here does I/O. Records are immutable values: a repository
returns a fresh record after a change rather than mutating one it handed out.

Times are epoch seconds (``float``) throughout, like the JWT claims they end up in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from strongroom.auth.keys import SigningKey

ClientStatus = Literal["active", "suspended"]
TenantStatus = Literal["active", "suspended", "closed"]
DenyKind = Literal["token", "client"]

CLIENT_STATUSES: tuple[ClientStatus, ...] = ("active", "suspended")
DENY_KINDS: tuple[DenyKind, ...] = ("token", "client")


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """An OAuth 2.0 client (RFC 6749 §2): a confidential client of one tenant.

    ``secret_hash`` is an argon2id PHC string (``auth.secrets.SecretHasher``), ``None``
    for a client that authenticates otherwise (``private_key_jwt``, or a public client).
    ``scopes`` is the most the client may ever be granted (``auth.scopes.SCOPES``).
    ``is_operator`` marks the platform's own clients, the only ones that may hold
    ``auth.scopes.OPERATOR_SCOPES``. ``jwks`` is the client's registered JWK set (public
    keys, ``auth.rfc7523_client_assertion.canonical_jwks``): a client with one
    authenticates with ``private_key_jwt`` (RFC 7523 §2.2) only, never with a secret.
    It comes last, with a default, so records built before it existed still construct.
    """

    client_id: str
    tenant_id: str
    name: str
    secret_hash: str | None
    scopes: frozenset[str]
    status: ClientStatus
    dpop_required: bool
    is_operator: bool
    created_at: float
    jwks: str | None = None


@dataclass(frozen=True, slots=True)
class TenantRecord:
    """A tenant: the unit of isolation (table ``tenants``, migration 0001)."""

    tenant_id: str
    name: str
    status: TenantStatus
    created_at: float


@dataclass(frozen=True, slots=True)
class DenyEntry:
    """One revocation as pods consume it (RFC 7009 §2.1: "revoked ... immediately").

    ``kind == "token"``: ``subject`` is an access token's ``jti``; ``expires_at`` is the
    token's ``exp``, after which the entry is useless and may be dropped.
    ``kind == "client"``: ``subject`` is a suspended ``client_id``; every token of the
    client is refused. ``expires_at`` is ``None`` (never expires) or when the entry
    stops mattering (e.g. the last token the client could hold has expired).
    """

    kind: DenyKind
    subject: str
    expires_at: float | None


class ClientRepository(Protocol):
    def create(self, record: ClientRecord) -> None:
        """Store a new client; raises if ``client_id`` exists or the tenant does not."""
        ...

    def get(self, client_id: str) -> ClientRecord | None:
        """Global lookup by id (the token endpoint does not know the tenant yet)."""
        ...

    def list_for_tenant(self, tenant_id: str) -> list[ClientRecord]: ...

    def set_status(self, client_id: str, status: str) -> bool:
        """``True`` when the client exists (and now has ``status``)."""
        ...


class TenantRepository(Protocol):
    def create(self, tenant_id: str, name: str) -> None: ...

    def get(self, tenant_id: str) -> TenantRecord | None: ...


class KeyRepository(Protocol):
    def load(self) -> list[SigningKey]:
        """Every stored signing key, private keys decrypted (``keys.decrypt_private_key``)."""
        ...

    def replace(self, keys: Sequence[SigningKey]) -> None:
        """Upsert all of ``keys`` and delete any stored key not among them; one transaction.

        The argument is the output of ``keys.plan_rotation``.
        """
        ...


class RevocationStore(Protocol):
    def revoke_token(
        self, jti: str, *, tenant_id: str, client_id: str, expires_at: float, reason: str
    ) -> None:
        """Record a revoked token and its ``DenyEntry("token", jti, expires_at)``; idempotent."""
        ...

    def suspend_client(self, client_id: str, *, reason: str) -> None:
        """Flip the client to ``suspended`` and emit ``DenyEntry("client", client_id, ...)``."""
        ...


class DenyListFeed(Protocol):
    """What pods consume: revocations since a cursor (an increasing sequence number)."""

    def since(self, cursor: int) -> tuple[int, list[DenyEntry]]:
        """Entries after ``cursor`` in order, and the cursor to pass next time.

        ``since(0)`` returns everything still stored; the new cursor equals ``cursor``
        when nothing is new.
        """
        ...
