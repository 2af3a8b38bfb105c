"""``edge.blocklist_ports`` over the ``edge_blocks`` table: the store operators and the
SIEM write, and the feed every edge worker polls.

Change order: every add or removal stamps its row with ``max(version) + 1``. Writers
serialise on the table — SQLite's ``BEGIN IMMEDIATE`` (one writer at a time anyway), and
on PostgreSQL ``LOCK TABLE ... IN EXCLUSIVE MODE``, which still lets readers (the edge
workers' polls) read — and commit before the next writer reads the maximum, so version
order is commit order: a worker that has applied everything up to version N can never
later miss a change numbered below N.

Every change writes its audit entry (``edge_block.added`` / ``edge_block.removed``) in
the same transaction. Rows are never deleted, so the maximum version never goes back.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from strongroom.adapters.db.audit_events import epoch_us, record_actor_event
from strongroom.adapters.db.engine import write_transaction
from strongroom.adapters.db.schema import edge_blocks
from strongroom.edge.blocklist_ports import (
    REASON_CHARS_MAX,
    BlockAction,
    BlockEntry,
    BlockKind,
    BlocklistFull,
    BlockNotFound,
    actor_label,
    validate_entry,
)

if TYPE_CHECKING:
    from strongroom.ledger.ports import Actor

Clock = Callable[[], float]

# Changes per feed read: a worker that was down for a long time catches up in bounded
# steps instead of one unbounded result set held in memory.
FEED_BATCH_MAX = 1000
# Entries in force the store accepts (``edge.blocklist.entries_max`` by default).
ENTRIES_MAX_DEFAULT = 100_000

_COLUMNS: tuple[sa.Column[Any], ...] = (
    edge_blocks.c.id,
    edge_blocks.c.kind,
    edge_blocks.c.value,
    edge_blocks.c.action,
    edge_blocks.c.reason,
    edge_blocks.c.created_by,
    edge_blocks.c.created_at,
    edge_blocks.c.expires_at,
    edge_blocks.c.removed_at,
    edge_blocks.c.version,
)


def _entry(row: Row[Any]) -> BlockEntry:
    return BlockEntry(
        id=int(row.id),
        kind=cast(BlockKind, row.kind),
        value=row.value,
        action=cast(BlockAction, row.action),
        reason=row.reason,
        created_by=row.created_by,
        created_at=float(row.created_at),
        expires_at=None if row.expires_at is None else float(row.expires_at),
        removed_at=None if row.removed_at is None else float(row.removed_at),
        version=int(row.version),
    )


def _in_force(now: float) -> sa.ColumnElement[bool]:
    return sa.and_(
        edge_blocks.c.removed_at.is_(None),
        sa.or_(edge_blocks.c.expires_at.is_(None), edge_blocks.c.expires_at > now),
    )


def _lock(connection: Connection) -> None:
    """Serialise writers on PostgreSQL so version order is commit order (module doc)."""
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("LOCK TABLE edge_blocks IN EXCLUSIVE MODE"))


def _next_version(connection: Connection) -> int:
    head = connection.execute(sa.select(sa.func.max(edge_blocks.c.version))).scalar()
    return int(head or 0) + 1


def _audit_data(entry: BlockEntry) -> dict[str, object]:
    return {
        "entry_id": entry.id,
        "kind": entry.kind,
        "value": entry.value,
        "action": entry.action,
        "reason": entry.reason,
        "expires_at_us": None if entry.expires_at is None else epoch_us(entry.expires_at),
    }


def _subjects(entry: BlockEntry) -> list[str]:
    # The entry and what it names: searching the audit log for an address or a client
    # id finds its blocks too.
    return [f"edge-block-{entry.id}", entry.value]


class SqlBlocklistStore:
    """``BlocklistStore`` and ``BlocklistFeed`` on SQLite or PostgreSQL."""

    def __init__(
        self,
        engine: Engine,
        *,
        entries_max: int = ENTRIES_MAX_DEFAULT,
        batch_max: int = FEED_BATCH_MAX,
        clock: Clock = time.time,
    ) -> None:
        if entries_max < 1 or batch_max < 1:
            raise ValueError("entries_max and batch_max must be at least 1")
        self._engine = engine
        self._entries_max = entries_max
        self._batch_max = batch_max
        self._clock = clock

    # --- BlocklistStore ----------------------------------------------------------------
    def add(
        self,
        kind: BlockKind,
        value: str,
        action: BlockAction,
        *,
        reason: str,
        ttl_s: float | None,
        actor: Actor,
        request_id: str | None = None,
    ) -> BlockEntry:
        kind, value, action = validate_entry(kind, value, action, reason, ttl_s)
        with write_transaction(self._engine) as connection:
            _lock(connection)
            now = self._clock()
            expires_at = None if ttl_s is None else now + ttl_s
            covering = self._covering(
                connection, kind=kind, value=value, action=action, expires_at=expires_at, now=now
            )
            if covering is not None:
                return covering
            in_force = connection.execute(
                sa.select(sa.func.count()).select_from(edge_blocks).where(_in_force(now))
            ).scalar_one()
            if in_force >= self._entries_max:
                raise BlocklistFull(
                    f"{in_force} entries are in force, the store's maximum: remove some first"
                )
            version = _next_version(connection)
            row = connection.execute(
                edge_blocks.insert()
                .values(
                    kind=kind,
                    value=value,
                    action=action,
                    reason=reason[:REASON_CHARS_MAX],
                    created_by=actor_label(actor),
                    created_at=now,
                    expires_at=expires_at,
                    version=version,
                )
                .returning(*_COLUMNS)
            ).one()
            entry = _entry(row)
            record_actor_event(
                connection,
                event_type="edge_block.added",
                tenant_id=None,
                actor=actor,
                request_id=request_id,
                subject_ids=_subjects(entry),
                data=_audit_data(entry),
                occurred_at_us=epoch_us(now),
            )
        return entry

    def _covering(
        self,
        connection: Connection,
        *,
        kind: str,
        value: str,
        action: str,
        expires_at: float | None,
        now: float,
    ) -> BlockEntry | None:
        """The longest-lasting entry in force for the same target and action, if it lasts
        at least as long: a repeated add (a SIEM rule firing again) then changes nothing."""
        rows = connection.execute(
            sa.select(*_COLUMNS).where(
                edge_blocks.c.kind == kind,
                edge_blocks.c.value == value,
                edge_blocks.c.action == action,
                _in_force(now),
            )
        ).all()
        entries = [_entry(row) for row in rows]
        if not entries:
            return None
        longest = max(entries, key=lambda e: (e.expires_at is None, e.expires_at or 0.0, -e.id))
        if longest.expires_at is None or (
            expires_at is not None and longest.expires_at >= expires_at
        ):
            return longest
        return None

    def remove(self, entry_id: int, actor: Actor, *, request_id: str | None = None) -> BlockEntry:
        with write_transaction(self._engine) as connection:
            _lock(connection)
            now = self._clock()
            version = _next_version(connection)
            row = connection.execute(
                edge_blocks.update()
                .where(edge_blocks.c.id == entry_id, _in_force(now))
                .values(removed_at=now, removed_by=actor_label(actor), version=version)
                .returning(*_COLUMNS)
            ).first()
            if row is None:
                raise BlockNotFound(f"no block entry {entry_id} is in force")
            entry = _entry(row)
            record_actor_event(
                connection,
                event_type="edge_block.removed",
                tenant_id=None,
                actor=actor,
                request_id=request_id,
                subject_ids=_subjects(entry),
                data=_audit_data(entry),
                occurred_at_us=epoch_us(now),
            )
        return entry

    def get(self, entry_id: int) -> BlockEntry | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(*_COLUMNS).where(edge_blocks.c.id == entry_id)
            ).first()
        return None if row is None else _entry(row)

    def list(self, include_expired: bool = False) -> builtins.list[BlockEntry]:
        query = sa.select(*_COLUMNS).order_by(edge_blocks.c.id)
        if not include_expired:
            query = query.where(_in_force(self._clock()))
        with self._engine.connect() as connection:
            return [_entry(row) for row in connection.execute(query)]

    # --- BlocklistFeed -----------------------------------------------------------------
    def snapshot(self) -> tuple[int, builtins.list[BlockEntry]]:
        with self._engine.connect() as connection:
            head = int(
                connection.execute(sa.select(sa.func.max(edge_blocks.c.version))).scalar() or 0
            )
            # Only rows at or below `head`: a row changed after the first statement is
            # left to changes_since(head), whatever the isolation level.
            rows = connection.execute(
                sa.select(*_COLUMNS)
                .where(_in_force(self._clock()), edge_blocks.c.version <= head)
                .order_by(edge_blocks.c.version)
            ).all()
        return head, [_entry(row) for row in rows]

    def changes_since(self, version: int) -> tuple[int, builtins.list[BlockEntry]]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(*_COLUMNS)
                .where(edge_blocks.c.version > version)
                .order_by(edge_blocks.c.version)
                .limit(self._batch_max)
            ).all()
        if not rows:
            return version, []
        entries = [_entry(row) for row in rows]
        return entries[-1].version, entries
