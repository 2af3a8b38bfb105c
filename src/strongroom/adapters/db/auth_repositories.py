"""SQL implementations of the authorization server's ports (``strongroom.auth.ports``).

SQLAlchemy Core on SQLite and PostgreSQL. Tenant isolation: every query on tenant-owned
rows is filtered by tenant, except the global client lookup by ``client_id`` the token
endpoint needs before it knows the tenant. The operator calls the ports define without a
tenant (``set_status``, ``suspend_client``, ``is_revoked``) take an optional keyword
``tenant_id``; callers acting for a tenant pass it and the query is scoped by it.

Writers take the write lock up front (SQLite ``BEGIN IMMEDIATE``: no lock upgrade
deadlock mid-transaction). Every revocation or suspension writes its
``deny_list_events`` row in the same transaction as the state change, and on PostgreSQL
those writers serialise on the events table (``LOCK TABLE ... IN EXCLUSIVE MODE``, which
still lets readers read): a sequence value is handed out inside the lock and committed
before the next writer gets one, so ``seq`` order is commit order and a pod that has
read up to ``seq`` N can never later miss a smaller one. SQLite has a single writer, so
the same holds there for free.

Every administrative change (a tenant or client created, a client suspended or
reactivated, the signing key set changed) writes its audit entry (``audit_events``) in
the same transaction. Writers take an optional ``actor`` (default: ``SYSTEM_ACTOR``) and
``request_id`` for it; only an actual change is recorded, so a repeated suspension adds
no entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import IntegrityError

from strongroom.adapters.db.audit_events import (
    AuditActor,
    client_event_data,
    epoch_us,
    record_actor_event,
)
from strongroom.adapters.db.engine import write_transaction
from strongroom.adapters.db.schema import (
    deny_list_events,
    oauth_clients,
    signing_keys,
    tenants,
    token_revocations,
)
from strongroom.auth.keys import SigningKey, decrypt_private_key, encrypt_private_key
from strongroom.auth.ports import (
    CLIENT_STATUSES,
    ClientRecord,
    ClientStatus,
    DenyEntry,
    DenyKind,
    TenantRecord,
    TenantStatus,
)

Clock = Callable[[], float]

# One poll returns at most this many events: a pod that was down for a week catches up
# in bounded steps instead of one unbounded result set held in memory.
DENY_FEED_BATCH_MAX = 1000
# Reasons are free text from operators and clients: bounded like the column.
REASON_CHARS_MAX = 200


class AuthStorageError(Exception):
    """Base class of this module's errors."""


class AlreadyExists(AuthStorageError):
    """A row with this identifier exists (client id, tenant id)."""


class NotFound(AuthStorageError, LookupError):
    """The referenced tenant or client does not exist (or not within the given tenant)."""


def _lock_deny_events(connection: Connection) -> None:
    """Serialise event writers on PostgreSQL so ``seq`` order is commit order (module doc)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("LOCK TABLE deny_list_events IN EXCLUSIVE MODE"))


def _insert_ignoring_duplicates(connection: Connection, table: sa.Table, **values: Any) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on either backend; ``True`` if a row was added."""
    statement: postgresql.Insert | sqlite.Insert
    if connection.dialect.name == "postgresql":
        statement = postgresql.insert(table).values(**values).on_conflict_do_nothing()
    else:
        statement = sqlite.insert(table).values(**values).on_conflict_do_nothing()
    # RETURNING, not rowcount: psycopg reports -1 for this statement through SQLAlchemy.
    primary_key = next(iter(table.primary_key.columns))
    return connection.execute(statement.returning(primary_key)).first() is not None


def _emit_deny_event(
    connection: Connection,
    *,
    kind: DenyKind,
    subject: str,
    expires_at: float | None,
    reason: str,
    now: float,
) -> None:
    _lock_deny_events(connection)
    connection.execute(
        deny_list_events.insert().values(
            kind=kind,
            subject=subject,
            expires_at=expires_at,
            reason=reason[:REASON_CHARS_MAX],
            created_at=now,
        )
    )


def _format_scopes(scopes: frozenset[str]) -> str:
    """RFC 6749 §3.3 scope string, sorted so equal sets are stored identically."""
    for scope in scopes:
        if not scope or any(ch.isspace() for ch in scope):
            raise ValueError(f"scope token {scope!r} is empty or contains whitespace")
    return " ".join(sorted(scopes))


def _client_from_row(row: Row[Any]) -> ClientRecord:
    return ClientRecord(
        client_id=row.client_id,
        tenant_id=row.tenant_id,
        name=row.name,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scopes.split()),
        status=cast(ClientStatus, row.status),
        dpop_required=bool(row.dpop_required),
        is_operator=bool(row.is_operator),
        created_at=float(row.created_at),
        jwks=row.jwks,
    )


def _epoch(value: datetime) -> float:
    # SQLite returns the stored UTC text as a naive datetime; PostgreSQL an aware one.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _check_client_status(status: str) -> ClientStatus:
    if status not in CLIENT_STATUSES:
        raise ValueError(f"client status must be one of {CLIENT_STATUSES}, not {status!r}")
    return status


def _set_client_status(
    connection: Connection,
    client_id: str,
    status: ClientStatus,
    *,
    tenant_id: str | None,
    reason: str,
    client_deny_ttl_s: float | None,
    now: float,
    actor: AuditActor | None,
    request_id: str | None,
) -> bool:
    """Flip a client's status; a suspension is announced to pods in the same transaction.

    Returns ``True`` when the client exists. Only an actual change is announced and
    audited, so repeating a suspension grows neither the stream nor the audit log.
    """
    # Events lock first, client row second: the order every writer here takes them in
    # (a revocation's foreign-key check share-locks the client row), so none deadlock.
    _lock_deny_events(connection)
    where = [oauth_clients.c.client_id == client_id]
    if tenant_id is not None:
        where.append(oauth_clients.c.tenant_id == tenant_id)
    current = connection.execute(
        sa.select(oauth_clients.c.status, oauth_clients.c.tenant_id)
        .where(*where)
        .with_for_update(key_share=True)
    ).first()
    if current is None:
        return False
    if current.status == status:
        return True
    connection.execute(oauth_clients.update().where(*where).values(status=status))
    record_actor_event(
        connection,
        event_type="oauth_client.suspended"
        if status == "suspended"
        else "oauth_client.reactivated",
        tenant_id=current.tenant_id,
        actor=actor,
        request_id=request_id,
        subject_ids=[client_id],
        data={"reason": reason[:REASON_CHARS_MAX]},
        occurred_at_us=epoch_us(now),
    )
    if status == "suspended":
        expires_at = None if client_deny_ttl_s is None else now + client_deny_ttl_s
        _emit_deny_event(
            connection,
            kind="client",
            subject=client_id,
            expires_at=expires_at,
            reason=reason,
            now=now,
        )
    else:
        # A pod that loads from scratch must not see the old suspension. Running pods
        # keep theirs until it expires: hence the ttl (see SqlRevocationStore).
        connection.execute(
            deny_list_events.delete().where(
                deny_list_events.c.kind == "client", deny_list_events.c.subject == client_id
            )
        )
    return True


class SqlTenantRepository:
    """``auth.ports.TenantRepository`` over the ``tenants`` table."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def create(
        self,
        tenant_id: str,
        name: str,
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        """Raises ``AlreadyExists`` for a taken id, ``IntegrityError`` for an empty name."""
        try:
            with write_transaction(self._engine) as connection:
                if connection.execute(
                    sa.select(tenants.c.id).where(tenants.c.id == tenant_id)
                ).first():
                    raise AlreadyExists(f"tenant {tenant_id!r} exists")
                connection.execute(tenants.insert().values(id=tenant_id, name=name))
                record_actor_event(
                    connection,
                    event_type="tenant.created",
                    tenant_id=tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[tenant_id],
                    data={"name": name},
                )
        except IntegrityError as exc:
            # A concurrent create won the race between our check and our insert.
            if self.get(tenant_id) is not None:
                raise AlreadyExists(f"tenant {tenant_id!r} exists") from exc
            raise

    def get(self, tenant_id: str) -> TenantRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(sa.select(tenants).where(tenants.c.id == tenant_id)).first()
        if row is None:
            return None
        return TenantRecord(
            tenant_id=row.id,
            name=row.name,
            status=cast(TenantStatus, row.status),
            created_at=_epoch(row.created_at),
        )


class SqlClientRepository:
    """``auth.ports.ClientRepository`` over ``oauth_clients``.

    ``client_deny_ttl_s``: how long a suspension made through ``set_status`` stays on the
    pods' deny lists (``None``: until the client is reactivated and pods restart); see
    ``SqlRevocationStore``.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        client_deny_ttl_s: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._engine = engine
        self._client_deny_ttl_s = client_deny_ttl_s
        self._clock = clock

    def create(
        self,
        record: ClientRecord,
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        """Raises ``AlreadyExists`` for a taken ``client_id``, ``NotFound`` for no tenant."""
        _check_client_status(record.status)
        if record.jwks is not None and record.secret_hash is not None:
            # RFC 7523 §2.2 clients prove a key, not a secret: one method per client.
            raise ValueError("a client with a JWK set must not also have a secret")
        values = {
            "client_id": record.client_id,
            "tenant_id": record.tenant_id,
            "name": record.name,
            "secret_hash": record.secret_hash,
            "scopes": _format_scopes(record.scopes),
            "status": record.status,
            "dpop_required": record.dpop_required,
            "is_operator": record.is_operator,
            "created_at": record.created_at,
            "jwks": record.jwks,
        }
        try:
            with write_transaction(self._engine) as connection:
                if not connection.execute(
                    sa.select(tenants.c.id).where(tenants.c.id == record.tenant_id)
                ).first():
                    raise NotFound(f"tenant {record.tenant_id!r} does not exist")
                if not _insert_ignoring_duplicates(connection, oauth_clients, **values):
                    raise AlreadyExists(f"client {record.client_id!r} exists")
                record_actor_event(
                    connection,
                    event_type="oauth_client.created",
                    tenant_id=record.tenant_id,
                    actor=actor,
                    request_id=request_id,
                    subject_ids=[record.client_id],
                    data=client_event_data(record),
                    occurred_at_us=epoch_us(self._clock()),
                )
        except IntegrityError as exc:
            # Either a check constraint, or the tenant vanished between check and insert.
            if SqlTenantRepository(self._engine).get(record.tenant_id) is None:
                raise NotFound(f"tenant {record.tenant_id!r} does not exist") from exc
            raise

    def get(self, client_id: str) -> ClientRecord | None:
        """Global lookup by id: the token endpoint does not know the tenant yet."""
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(oauth_clients).where(oauth_clients.c.client_id == client_id)
            ).first()
        return None if row is None else _client_from_row(row)

    def list_for_tenant(self, tenant_id: str) -> list[ClientRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(oauth_clients)
                .where(oauth_clients.c.tenant_id == tenant_id)
                .order_by(oauth_clients.c.created_at, oauth_clients.c.client_id)
            ).all()
        return [_client_from_row(row) for row in rows]

    def set_status(
        self,
        client_id: str,
        status: str,
        *,
        tenant_id: str | None = None,
        reason: str = "status set by operator",
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> bool:
        """``True`` when the client exists (in ``tenant_id``, when given) and now has ``status``.

        Suspending here is the same as ``SqlRevocationStore.suspend_client``: pods learn
        of it, because a suspension they did not hear of would leave its tokens working.
        """
        checked = _check_client_status(status)
        with write_transaction(self._engine) as connection:
            return _set_client_status(
                connection,
                client_id,
                checked,
                tenant_id=tenant_id,
                reason=reason,
                client_deny_ttl_s=self._client_deny_ttl_s,
                now=self._clock(),
                actor=actor,
                request_id=request_id,
            )


class SqlKeyRepository:
    """``auth.ports.KeyRepository`` over ``signing_keys``; private keys sealed under ``kek``."""

    def __init__(self, engine: Engine, kek: str) -> None:
        if not kek:
            raise ValueError("key-encryption key must not be empty")
        self._engine = engine
        self._kek = kek

    def load(self) -> list[SigningKey]:
        """Every stored key, decrypted; raises ``KeyDecryptionError`` under the wrong KEK."""
        with self._engine.connect() as connection:
            return self._load(connection)

    def replace(
        self,
        keys: Sequence[SigningKey],
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        with self._locked() as connection:
            self._replace(connection, keys, actor=actor, request_id=request_id)

    def rotate(
        self,
        plan: Callable[[list[SigningKey]], Sequence[SigningKey]],
        *,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> list[SigningKey]:
        """Load, ``plan`` (e.g. ``keys.plan_rotation``) and store in one locked transaction.

        Two processes rotating at once (two pods booting on an empty database) otherwise
        each plan from the same snapshot and the later ``replace`` deletes the key the
        earlier one may already sign with.
        """
        with self._locked() as connection:
            planned = list(plan(self._load(connection)))
            self._replace(connection, planned, actor=actor, request_id=request_id)
        return planned

    @contextmanager
    def _locked(self) -> Iterator[Connection]:
        with write_transaction(self._engine) as connection:
            if connection.dialect.name == "postgresql":
                # Readers (load, JWKS) still read; other rotations wait their turn.
                connection.execute(sa.text("LOCK TABLE signing_keys IN EXCLUSIVE MODE"))
            yield connection

    def _load(self, connection: Connection) -> list[SigningKey]:
        rows = connection.execute(
            sa.select(signing_keys).order_by(signing_keys.c.created_at, signing_keys.c.kid)
        ).all()
        return [
            SigningKey(
                kid=row.kid,
                alg=row.alg,
                private_pem=decrypt_private_key(row.private_key_enc, self._kek),
                state=row.state,
                created_at=float(row.created_at),
                activated_at=None if row.activated_at is None else float(row.activated_at),
                retired_at=None if row.retired_at is None else float(row.retired_at),
            )
            for row in rows
        ]

    def _replace(
        self,
        connection: Connection,
        keys: Sequence[SigningKey],
        *,
        actor: AuditActor | None,
        request_id: str | None,
    ) -> None:
        """Store exactly ``keys``; a change to the set or to a key's state is audited.

        The ``signing_key.rotated`` entry names keys by kid (their RFC 7638 thumbprint)
        and state, never by key material.
        """
        kids = [key.kid for key in keys]
        if len(set(kids)) != len(kids):
            raise ValueError("duplicate kid in key set")
        before: dict[str, str] = {
            row.kid: row.state
            for row in connection.execute(sa.select(signing_keys.c.kid, signing_keys.c.state))
        }
        connection.execute(signing_keys.delete().where(signing_keys.c.kid.not_in(kids)))
        stored = before.keys() & set(kids)
        # At most one active row at any moment (unique index): retire before promoting.
        for key in sorted(keys, key=lambda k: k.state == "active"):
            lifecycle = {
                "state": key.state,
                "activated_at": key.activated_at,
                "retired_at": key.retired_at,
            }
            if key.kid in stored:
                # The kid is the key's thumbprint: same kid, same key; only its life changes.
                connection.execute(
                    signing_keys.update().where(signing_keys.c.kid == key.kid).values(**lifecycle)
                )
            else:
                connection.execute(
                    signing_keys.insert().values(
                        kid=key.kid,
                        alg=key.alg,
                        private_key_enc=encrypt_private_key(key.private_pem, self._kek),
                        created_at=key.created_at,
                        **lifecycle,
                    )
                )
        after = {key.kid: key.state for key in keys}
        if after != before:
            record_actor_event(
                connection,
                event_type="signing_key.rotated",
                tenant_id=None,
                actor=actor,
                request_id=request_id,
                subject_ids=sorted(
                    kid for kid in after.keys() | before.keys() if after.get(kid) != before.get(kid)
                ),
                data={
                    "added": sorted(after.keys() - before.keys()),
                    "removed": sorted(before.keys() - after.keys()),
                    "keys": [
                        {"kid": key.kid, "alg": key.alg, "state": key.state}
                        for key in sorted(keys, key=lambda k: k.kid)
                    ],
                },
            )


class SqlRevocationStore:
    """``auth.ports.RevocationStore``: token revocations and client suspensions.

    ``client_deny_ttl_s``: how long a client suspension stays on pods' deny lists. Give it
    the access-token lifetime plus leeway: after that every token the client held has
    expired, and the token endpoint refuses new ones from the stored status, so the entry
    is no longer needed, and a reactivated client works again on every pod. ``None``
    keeps the entry until reactivation, and running pods keep it until they restart.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        client_deny_ttl_s: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._engine = engine
        self._client_deny_ttl_s = client_deny_ttl_s
        self._clock = clock

    def revoke_token(
        self, jti: str, *, tenant_id: str, client_id: str, expires_at: float, reason: str
    ) -> None:
        """RFC 7009 §2.1; idempotent (a second revocation of ``jti`` changes nothing).

        Raises ``NotFound`` unless ``client_id`` belongs to ``tenant_id``.
        """
        now = self._clock()
        with write_transaction(self._engine) as connection:
            # Before anything else, in the same order as _set_client_status (no deadlock).
            _lock_deny_events(connection)
            owner = connection.execute(
                sa.select(oauth_clients.c.client_id).where(
                    oauth_clients.c.client_id == client_id, oauth_clients.c.tenant_id == tenant_id
                )
            ).first()
            if owner is None:
                raise NotFound(f"client {client_id!r} not found in tenant {tenant_id!r}")
            added = _insert_ignoring_duplicates(
                connection,
                token_revocations,
                jti=jti,
                tenant_id=tenant_id,
                client_id=client_id,
                expires_at=expires_at,
                revoked_at=now,
                reason=reason[:REASON_CHARS_MAX],
            )
            if added:
                _emit_deny_event(
                    connection,
                    kind="token",
                    subject=jti,
                    expires_at=expires_at,
                    reason=reason,
                    now=now,
                )

    def suspend_client(
        self,
        client_id: str,
        *,
        reason: str,
        tenant_id: str | None = None,
        actor: AuditActor | None = None,
        request_id: str | None = None,
    ) -> None:
        """Suspend the client (in ``tenant_id``, when given); raises ``NotFound`` if absent."""
        with write_transaction(self._engine) as connection:
            found = _set_client_status(
                connection,
                client_id,
                "suspended",
                tenant_id=tenant_id,
                reason=reason,
                client_deny_ttl_s=self._client_deny_ttl_s,
                now=self._clock(),
                actor=actor,
                request_id=request_id,
            )
        if not found:
            raise NotFound(f"client {client_id!r} not found")

    def is_revoked(self, jti: str, *, tenant_id: str | None = None) -> bool:
        where = [token_revocations.c.jti == jti]
        if tenant_id is not None:
            where.append(token_revocations.c.tenant_id == tenant_id)
        with self._engine.connect() as connection:
            return connection.execute(sa.select(sa.literal(1)).where(*where)).first() is not None

    def prune_expired(self, *, older_than_s: float = 0.0) -> int:
        """Delete revocations and events whose ``expires_at`` passed ``older_than_s`` ago.

        The token is dead by then, so neither introspection nor pods need the row. Returns
        the number of rows deleted. Client suspensions without an expiry stay.
        """
        cutoff = self._clock() - older_than_s
        with write_transaction(self._engine) as connection:
            events = connection.execute(
                deny_list_events.delete().where(deny_list_events.c.expires_at < cutoff)
            ).rowcount
            revocations = connection.execute(
                token_revocations.delete().where(token_revocations.c.expires_at < cutoff)
            ).rowcount
        return int(events) + int(revocations)


class SqlDenyListFeed:
    """``auth.ports.DenyListFeed`` over ``deny_list_events``.

    Entries already expired at read time are skipped (the cursor still moves past them):
    they could deny nothing.
    """

    def __init__(
        self, engine: Engine, *, batch_max: int = DENY_FEED_BATCH_MAX, clock: Clock = time.time
    ) -> None:
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        self._engine = engine
        self._batch_max = batch_max
        self._clock = clock

    def since(self, cursor: int) -> tuple[int, list[DenyEntry]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    deny_list_events.c.seq,
                    deny_list_events.c.kind,
                    deny_list_events.c.subject,
                    deny_list_events.c.expires_at,
                )
                .where(deny_list_events.c.seq > cursor)
                .order_by(deny_list_events.c.seq)
                .limit(self._batch_max)
            ).all()
        if not rows:
            return cursor, []
        now = self._clock()
        entries = [
            DenyEntry(
                kind=cast(DenyKind, row.kind),
                subject=row.subject,
                expires_at=None if row.expires_at is None else float(row.expires_at),
            )
            for row in rows
            if row.expires_at is None or row.expires_at > now
        ]
        return int(rows[-1].seq), entries
