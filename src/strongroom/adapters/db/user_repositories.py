"""SQL storage for the user-facing grants: users, app clients, codes, refresh families.

SQLAlchemy Core on SQLite and PostgreSQL, like ``auth_repositories``. Every state change
that must happen once is one conditional statement (``UPDATE … WHERE used_at IS NULL …
RETURNING``), never a read followed by a write: two pods presenting the same code or
refresh token at the same instant see exactly one winner. Writers take SQLite's write
lock up front (``BEGIN IMMEDIATE``); on PostgreSQL the row locks of those UPDATEs order
concurrent writers.

Ordering against revocation (PostgreSQL, READ COMMITTED): a rotation first writes its
family row (``rotated_at``), a revocation writes the same row (``revoked_at``), so one
waits for the other. A rotation that waited sees the family revoked and stops; a
revocation that waited reads, in its next statement, the token the rotation added, and
revokes its access token too.

Creating a user or an app client, and changing a user's status, write their audit entry
(``audit_events``) in the same transaction; writers take an optional ``actor`` (default:
``SYSTEM_ACTOR``) and ``request_id`` for it. A user's entries name the user by id only:
the audit log is append-only, so no username (personal data) is written into it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from strongroom.adapters.db.audit_events import (
    AuditActor,
    client_event_data,
    record_actor_event,
)
from strongroom.adapters.db.engine import write_transaction
from strongroom.adapters.db.schema import (
    oauth_authorization_codes,
    oauth_client_redirects,
    oauth_clients,
    oauth_refresh_families,
    oauth_refresh_tokens,
    tenants,
    users,
)
from strongroom.auth.app_clients import AppClient, ClientType
from strongroom.auth.ports import ClientRecord, ClientStatus
from strongroom.auth.refresh_tokens import (
    IssuedAccess,
    RefreshFamily,
    RefreshTokenRecord,
    Refused,
    Replayed,
    ReuseDetected,
    Rotated,
    RotationOutcome,
    decide_reuse,
)
from strongroom.auth.users import UserRecord, UserStatus

Clock = Callable[[], float]

# Free text bounded like the column.
REASON_CHARS_MAX = 200
# A family holds one token per rotation; only those whose access token is still alive
# are revoked, and at most this many per call (5-minute tokens: far more than enough).
FAMILY_LIVE_ACCESS_MAX = 1000


class UserStorageError(Exception):
    """Base class of this module's errors."""


class Conflict(UserStorageError):
    """A row with this identity exists (username in the tenant, client id)."""


class Missing(UserStorageError, LookupError):
    """A referenced tenant, client or user does not exist."""


def _scope_text(scopes: frozenset[str]) -> str:
    return " ".join(sorted(scopes))


def _scope_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- users ------------------------------------------------------------------------------


def _user_from_row(row: Row[Any]) -> UserRecord:
    return UserRecord(
        user_id=row.id,
        tenant_id=row.tenant_id,
        username=row.username,
        password_hash=row.password_hash,
        is_operator=bool(row.is_operator),
        status=cast(UserStatus, row.status),
        created_at=float(row.created_at),
    )


class SqlUserRepository:
    """``auth.users.UserRepository`` over ``users``; every lookup is tenant-scoped."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        record: UserRecord,
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        try:
            with write_transaction(self._engine) as connection:
                if not connection.execute(
                    sa.select(tenants.c.id).where(tenants.c.id == record.tenant_id)
                ).first():
                    raise Missing(f"tenant {record.tenant_id!r} does not exist")
                connection.execute(
                    users.insert().values(
                        id=record.user_id,
                        tenant_id=record.tenant_id,
                        username=record.username,
                        password_hash=record.password_hash,
                        is_operator=record.is_operator,
                        status=record.status,
                        created_at=record.created_at,
                    )
                )
                record_actor_event(
                    connection,
                    event_type="user.created",
                    tenant_id=record.tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[record.user_id],
                    data={"is_operator": record.is_operator, "status": record.status},
                )
        except IntegrityError as exc:
            raise Conflict(f"user {record.username!r} exists in tenant {record.tenant_id}") from exc

    def get(self, tenant_id: str, user_id: str) -> UserRecord | None:
        return self._one(users.c.tenant_id == tenant_id, users.c.id == user_id)

    def find(self, tenant_id: str, username: str) -> UserRecord | None:
        return self._one(users.c.tenant_id == tenant_id, users.c.username == username)

    def set_status(
        self,
        tenant_id: str,
        user_id: str,
        status: UserStatus,
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> bool:
        """``True`` when the user exists in the tenant and now has ``status``.

        Only an actual change is written and audited (the row is locked first).
        """
        where = (users.c.tenant_id == tenant_id, users.c.id == user_id)
        with write_transaction(self._engine) as connection:
            current = connection.execute(
                sa.select(users.c.status).where(*where).with_for_update(key_share=True)
            ).scalar_one_or_none()
            if current is None:
                return False
            if current != status:
                connection.execute(users.update().where(*where).values(status=status))
                record_actor_event(
                    connection,
                    event_type="user.disabled" if status == "disabled" else "user.reactivated",
                    tenant_id=tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[user_id],
                    data={"status": status, "previous_status": current},
                )
        return True

    def _one(self, *where: sa.ColumnElement[bool]) -> UserRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(users).where(*where)).first()
        return None if row is None else _user_from_row(row)


# --- app clients ------------------------------------------------------------------------


class SqlAppClientRepository:
    """``auth.app_clients.AppClientRepository``: clients with a type and redirect URIs."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        record: ClientRecord,
        client_type: ClientType,
        redirect_uris: tuple[str, ...],
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        try:
            with write_transaction(self._engine) as connection:
                if not connection.execute(
                    sa.select(tenants.c.id).where(tenants.c.id == record.tenant_id)
                ).first():
                    raise Missing(f"tenant {record.tenant_id!r} does not exist")
                connection.execute(
                    oauth_clients.insert().values(
                        client_id=record.client_id,
                        tenant_id=record.tenant_id,
                        name=record.name,
                        secret_hash=record.secret_hash,
                        scopes=_scope_text(record.scopes),
                        status=record.status,
                        dpop_required=record.dpop_required,
                        is_operator=record.is_operator,
                        created_at=record.created_at,
                        client_type=client_type,
                        jwks=record.jwks,
                    )
                )
                if redirect_uris:
                    connection.execute(
                        oauth_client_redirects.insert(),
                        [{"client_id": record.client_id, "redirect_uri": u} for u in redirect_uris],
                    )
                record_actor_event(
                    connection,
                    event_type="oauth_client.created",
                    tenant_id=record.tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[record.client_id],
                    data=client_event_data(
                        record, client_type=client_type, redirect_uris=sorted(redirect_uris)
                    ),
                )
        except IntegrityError as exc:
            raise Conflict(f"client {record.client_id!r} could not be stored") from exc

    def get(self, client_id: str) -> AppClient | None:
        """Global lookup by id (the authorization endpoint learns the tenant from it)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(oauth_clients).where(oauth_clients.c.client_id == client_id)
            ).first()
            if row is None:
                return None
            uris = connection.execute(
                sa.select(oauth_client_redirects.c.redirect_uri)
                .where(oauth_client_redirects.c.client_id == client_id)
                .order_by(oauth_client_redirects.c.redirect_uri)
            ).scalars()
            redirect_uris = tuple(uris)
        record = ClientRecord(
            client_id=row.client_id,
            tenant_id=row.tenant_id,
            name=row.name,
            secret_hash=row.secret_hash,
            scopes=_scope_set(row.scopes),
            status=cast(ClientStatus, row.status),
            dpop_required=bool(row.dpop_required),
            is_operator=bool(row.is_operator),
            created_at=float(row.created_at),
            jwks=row.jwks,
        )
        return AppClient(record, cast(ClientType, row.client_type), redirect_uris)


# --- authorization codes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthorizationCodeRecord:
    """An authorization code's grant (RFC 6749 §4.1.2), stored under ``code_hash``."""

    code_hash: str
    tenant_id: str
    client_id: str
    user_id: str
    redirect_uri: str | None
    scope: frozenset[str]
    code_challenge: str
    auth_time: float
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class CodeRedeemed:
    """First presentation of a live code: it is used now; issue tokens for ``grant``."""

    grant: AuthorizationCodeRecord


@dataclass(frozen=True, slots=True)
class CodeReused:
    """A code presented again: the family issued from it is now revoked, and ``revoked``
    are the live access tokens it had issued, for the caller to deny. Empty when the
    first redemption has not recorded its tokens yet: it sees ``reused_at`` and revokes
    them itself (``attach_tokens``)."""

    grant: AuthorizationCodeRecord
    revoked: tuple[IssuedAccess, ...]


def _code_from_row(row: Row[Any]) -> AuthorizationCodeRecord:
    return AuthorizationCodeRecord(
        code_hash=row.code_hash,
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        redirect_uri=row.redirect_uri,
        scope=_scope_set(row.scope),
        code_challenge=row.code_challenge,
        auth_time=float(row.auth_time),
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
    )


def _family_from_row(row: Row[Any]) -> RefreshFamily:
    return RefreshFamily(
        family_id=row.family_id,
        tenant_id=row.tenant_id,
        client_id=row.client_id,
        user_id=row.user_id,
        scope=_scope_set(row.scope),
        auth_time=float(row.auth_time),
        created_at=float(row.created_at),
        expires_at=float(row.expires_at),
        dpop_jkt=row.dpop_jkt,
        revoked_at=None if row.revoked_at is None else float(row.revoked_at),
    )


def _token_from_row(row: Row[Any]) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        token_hash=row.token_hash,
        family_id=row.family_id,
        issued_at=float(row.issued_at),
        expires_at=float(row.expires_at),
        access=IssuedAccess(
            jti=row.access_jti,
            iat=int(row.access_iat),
            exp=int(row.access_exp),
            scope=_scope_set(row.access_scope),
        ),
        used_at=None if row.used_at is None else float(row.used_at),
        replaced_by=row.replaced_by,
    )


def _insert_family(connection: Connection, family: RefreshFamily) -> None:
    connection.execute(
        oauth_refresh_families.insert().values(
            family_id=family.family_id,
            tenant_id=family.tenant_id,
            client_id=family.client_id,
            user_id=family.user_id,
            scope=_scope_text(family.scope),
            auth_time=family.auth_time,
            created_at=family.created_at,
            expires_at=family.expires_at,
            dpop_jkt=family.dpop_jkt,
        )
    )


def _insert_token(connection: Connection, token: RefreshTokenRecord) -> None:
    connection.execute(
        oauth_refresh_tokens.insert().values(
            token_hash=token.token_hash,
            family_id=token.family_id,
            issued_at=token.issued_at,
            expires_at=token.expires_at,
            access_jti=token.access.jti,
            access_iat=token.access.iat,
            access_exp=token.access.exp,
            access_scope=_scope_text(token.access.scope),
        )
    )


def _revoke_family(
    connection: Connection, family_id: str, *, reason: str, now: float
) -> tuple[IssuedAccess, ...]:
    """Mark the family revoked (first reason wins) and list its live access tokens."""
    connection.execute(
        oauth_refresh_families.update()
        .where(
            oauth_refresh_families.c.family_id == family_id,
            oauth_refresh_families.c.revoked_at.is_(None),
        )
        .values(revoked_at=now, revoked_reason=reason[:REASON_CHARS_MAX])
    )
    rows = connection.execute(
        sa.select(oauth_refresh_tokens)
        .where(
            oauth_refresh_tokens.c.family_id == family_id,
            oauth_refresh_tokens.c.access_exp > now,
        )
        .order_by(oauth_refresh_tokens.c.issued_at)
        .limit(FAMILY_LIVE_ACCESS_MAX)
    ).all()
    return tuple(_token_from_row(row).access for row in rows)


class SqlAuthorizationCodeStore:
    """Single-use authorization codes, stored by hash."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def create(self, grant: AuthorizationCodeRecord) -> None:
        with write_transaction(self._engine) as connection:
            connection.execute(
                oauth_authorization_codes.insert().values(
                    code_hash=grant.code_hash,
                    tenant_id=grant.tenant_id,
                    client_id=grant.client_id,
                    user_id=grant.user_id,
                    redirect_uri=grant.redirect_uri,
                    scope=_scope_text(grant.scope),
                    code_challenge=grant.code_challenge,
                    auth_time=grant.auth_time,
                    created_at=grant.created_at,
                    expires_at=grant.expires_at,
                )
            )

    def consume(self, code_hash: str) -> CodeRedeemed | CodeReused | None:
        """Claim a code once (RFC 6749 §4.1.2: "MUST NOT use the authorization code more
        than once"). ``None``: unknown or expired (and unused) — plain ``invalid_grant``."""
        now = self._clock()
        codes = oauth_authorization_codes
        with write_transaction(self._engine) as connection:
            row = connection.execute(
                codes.update()
                .where(
                    codes.c.code_hash == code_hash,
                    codes.c.used_at.is_(None),
                    codes.c.expires_at > now,
                )
                .values(used_at=now)
                .returning(*codes.c)
            ).first()
            if row is not None:
                return CodeRedeemed(_code_from_row(row))
            reused = connection.execute(
                codes.update()
                .where(codes.c.code_hash == code_hash, codes.c.used_at.is_not(None))
                .values(reused_at=sa.func.coalesce(codes.c.reused_at, now))
                .returning(*codes.c)
            ).first()
            if reused is None:
                return None
            revoked: tuple[IssuedAccess, ...] = ()
            if reused.family_id is not None:
                revoked = _revoke_family(
                    connection, reused.family_id, reason="authorization code reused", now=now
                )
        return CodeReused(grant=_code_from_row(reused), revoked=revoked)

    def attach_tokens(
        self, code_hash: str, family: RefreshFamily, first: RefreshTokenRecord
    ) -> bool:
        """Store the family and first token issued from a redeemed code, and record them on
        the code, in one transaction.

        ``False`` when the code was presented again meanwhile: the family is then stored
        already revoked, and the caller must revoke ``first.access`` and answer
        ``invalid_grant`` rather than hand the tokens out.
        """
        now = self._clock()
        codes = oauth_authorization_codes
        with write_transaction(self._engine) as connection:
            _insert_family(connection, family)
            _insert_token(connection, first)
            row = connection.execute(
                codes.update()
                .where(codes.c.code_hash == code_hash)
                .values(
                    access_jti=first.access.jti,
                    access_exp=first.access.exp,
                    family_id=family.family_id,
                )
                .returning(codes.c.reused_at)
            ).first()
            if row is None or row.reused_at is not None:
                _revoke_family(
                    connection, family.family_id, reason="authorization code reused", now=now
                )
                return False
        return True

    def prune_expired(self, *, older_than_s: float = 0.0) -> int:
        """Delete codes that expired ``older_than_s`` ago (long enough to still detect a
        late reuse: keep a code for at least an access token's lifetime)."""
        cutoff = self._clock() - older_than_s
        with write_transaction(self._engine) as connection:
            deleted = connection.execute(
                oauth_authorization_codes.delete().where(
                    oauth_authorization_codes.c.expires_at < cutoff
                )
            ).rowcount
        return int(deleted)


# --- refresh-token families -------------------------------------------------------------


def new_family_id() -> str:
    return secrets.token_urlsafe(24)


class SqlRefreshTokenStore:
    """Refresh-token families with rotation and reuse detection (module docstring)."""

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def start_family(self, family: RefreshFamily, first: RefreshTokenRecord) -> None:
        with write_transaction(self._engine) as connection:
            _insert_family(connection, family)
            _insert_token(connection, first)

    def rotate(
        self,
        token_hash: str,
        *,
        client_id: str,
        successor: RefreshTokenRecord,
        grace_s: float,
    ) -> RotationOutcome:
        """Use ``token_hash`` once, making ``successor`` the family's head.

        ``successor`` is prepared by the caller (hash of ``successor_token``, a fresh access
        token's claims); its ``family_id`` is ignored and set to the presented token's.
        """
        now = self._clock()
        families, tokens = oauth_refresh_families, oauth_refresh_tokens
        with write_transaction(self._engine) as connection:
            # 1. Lock the live family (orders us against revocation, module docstring).
            family_row = connection.execute(
                families.update()
                .where(
                    families.c.family_id
                    == sa.select(tokens.c.family_id)
                    .where(tokens.c.token_hash == token_hash)
                    .scalar_subquery(),
                    families.c.client_id == client_id,
                    families.c.revoked_at.is_(None),
                    families.c.expires_at > now,
                )
                .values(rotated_at=now)
                .returning(*families.c)
            ).first()
            if family_row is None:
                return self._refused(connection, token_hash, client_id)
            family = _family_from_row(family_row)
            # 2. Use the token, if it is current.
            used = connection.execute(
                tokens.update()
                .where(
                    tokens.c.token_hash == token_hash,
                    tokens.c.used_at.is_(None),
                    tokens.c.expires_at > now,
                )
                .values(used_at=now, replaced_by=successor.token_hash)
                .returning(tokens.c.token_hash)
            ).first()
            if used is not None:
                head = RefreshTokenRecord(
                    token_hash=successor.token_hash,
                    family_id=family.family_id,
                    issued_at=successor.issued_at,
                    expires_at=min(successor.expires_at, family.expires_at),
                    access=successor.access,
                )
                _insert_token(connection, head)
                return Rotated(family, head)
            # 3. Not current: expired, or used before (grace replay or reuse).
            presented = connection.execute(
                sa.select(tokens).where(tokens.c.token_hash == token_hash)
            ).one()
            if presented.used_at is None:
                return Refused("expired")
            successor_row = None
            if presented.replaced_by is not None:
                successor_row = connection.execute(
                    sa.select(tokens).where(tokens.c.token_hash == presented.replaced_by)
                ).first()
            successor_unused = (
                successor_row is not None
                and successor_row.used_at is None
                and successor_row.expires_at > now
            )
            decision = decide_reuse(
                used_at=float(presented.used_at),
                now=now,
                grace_s=grace_s,
                successor_unused=successor_unused,
            )
            if decision == "replay" and successor_row is not None:
                return Replayed(family, _token_from_row(successor_row))
            revoked = _revoke_family(
                connection, family.family_id, reason="refresh token reused", now=now
            )
            return ReuseDetected(family, revoked)

    def _refused(self, connection: Connection, token_hash: str, client_id: str) -> Refused:
        row = connection.execute(
            sa.select(oauth_refresh_families.c.client_id, oauth_refresh_families.c.revoked_at)
            .select_from(
                oauth_refresh_tokens.join(
                    oauth_refresh_families,
                    oauth_refresh_tokens.c.family_id == oauth_refresh_families.c.family_id,
                )
            )
            .where(oauth_refresh_tokens.c.token_hash == token_hash)
        ).first()
        if row is None:
            return Refused("unknown")
        if row.client_id != client_id:
            return Refused("wrong_client")
        if row.revoked_at is not None:
            return Refused("revoked")
        return Refused("expired")

    def revoke_family(self, family_id: str, *, reason: str) -> tuple[IssuedAccess, ...]:
        """Revoke a family (idempotent); returns its live access tokens to deny."""
        with write_transaction(self._engine) as connection:
            return _revoke_family(connection, family_id, reason=reason, now=self._clock())

    def family_of(self, token_hash: str) -> RefreshFamily | None:
        """The family a refresh token belongs to (whatever the token's state)."""
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(oauth_refresh_families).where(
                    oauth_refresh_families.c.family_id
                    == sa.select(oauth_refresh_tokens.c.family_id)
                    .where(oauth_refresh_tokens.c.token_hash == token_hash)
                    .scalar_subquery()
                )
            ).first()
        return None if row is None else _family_from_row(row)

    def family(self, family_id: str) -> RefreshFamily | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(oauth_refresh_families).where(
                    oauth_refresh_families.c.family_id == family_id
                )
            ).first()
        return None if row is None else _family_from_row(row)


@dataclass(frozen=True)
class UserStores:
    """Everything the user-facing grants need, over one engine."""

    users: SqlUserRepository
    app_clients: SqlAppClientRepository
    codes: SqlAuthorizationCodeStore
    refresh_tokens: SqlRefreshTokenStore

    @classmethod
    def for_engine(cls, engine: Engine, *, clock: Clock = time.time) -> UserStores:
        return cls(
            users=SqlUserRepository(engine),
            app_clients=SqlAppClientRepository(engine),
            codes=SqlAuthorizationCodeStore(engine, clock=clock),
            refresh_tokens=SqlRefreshTokenStore(engine, clock=clock),
        )
