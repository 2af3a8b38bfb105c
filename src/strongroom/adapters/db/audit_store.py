"""The audit log on SQL (SQLite and PostgreSQL): the sequencer's store and the readers' view.

Tables (migration 0007, all append-only by trigger): ``audit_leaves`` (leaf index → entry
``seq``), ``audit_tree_nodes`` (complete perfect subtrees, level 0 = leaf hashes),
``audit_checkpoints`` (signed notes), ``audit_horizons`` (the sequencer's commit horizon,
see ``audit.commit_horizon``), ``audit_keys`` (the log's verifier keys) and
``audit_subjects`` (subject → entry, for search).

Leaf bytes are never stored: they are ``canonical.leaf_bytes`` of the ``audit_entries`` row,
computed when sequencing and again when serving :meth:`SqlAuditStore.leaves` (the encoding
is deterministic), so a rewritten row changes the served leaf and no longer matches the
stored level-0 hash or any signed root. A row that no longer decodes at all is served as
bytes no canonical leaf can be, so a verifier names exactly its index.

An append is one transaction: the tree's size is checked under the write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock) and a mismatch raises
:class:`~strongroom.audit.ports.AppendConflictError`; the leaves, nodes, subjects and horizon
go in as bulk inserts (executemany on SQLite, one ``json_populate_recordset`` statement per
table in one pipeline on PostgreSQL). Only one sequencer should run at all:
:class:`SequencerLock` is the worker's session-level advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from strongroom.adapters.db import ledger_pg
from strongroom.adapters.db.engine import is_sqlite, write_transaction
from strongroom.adapters.db.schema import (
    audit_checkpoints,
    audit_entries,
    audit_horizons,
    audit_keys,
    audit_leaves,
    audit_subjects,
    audit_tree_nodes,
)
from strongroom.audit.canonical import AuditRecord, AuditRecordError, canonical_json, leaf_bytes
from strongroom.audit.ports import (
    AppendConflictError,
    EntryQuery,
    SequencedEntry,
    SequencerState,
    StoredCheckpoint,
)
from strongroom.audit.rfc9162_merkle import NodeCoordinate, NodeHash
from strongroom.ledger.model import now_us as ledger_now_us

# Subject ids longer than the column cannot be searched for; they are skipped (the entry's
# leaf still holds them).
SUBJECT_ID_CHARS_MAX = 200
# Advisory-lock keys (signed 64-bit): ASCII "sr-audit" (one sequencer) and "sr-audap" (one
# append at a time, whoever runs it).
SEQUENCER_LOCK_KEY = int.from_bytes(b"sr-audit", "big", signed=True)
APPEND_LOCK_KEY = int.from_bytes(b"sr-audap", "big", signed=True)

# orjson reads integers of up to 19 digits exactly (all of i64 and u64 up to 10^19 - 1).
_LONG_DIGITS = re.compile(r"[0-9]{20}")
_SQLITE_LEAVES = (
    "INSERT INTO audit_leaves (leaf_index, entry_seq, sequenced_at_us) VALUES (?, ?, ?)"
)
_SQLITE_NODES = "INSERT INTO audit_tree_nodes (level, idx, hash) VALUES (?, ?, ?)"
_SQLITE_SUBJECTS = "INSERT INTO audit_subjects (subject_id, entry_seq) VALUES (?, ?)"
_SQLITE_HORIZONS = "INSERT INTO audit_horizons (horizon_seq, tree_size) VALUES (?, ?)"
_ENTRY_COLUMNS = (
    "e.seq, e.tenant_id, e.event_type, e.actor_kind, e.actor_id, e.request_id,"
    " e.subject_ids, e.data, e.occurred_at_us"
)
_NOT_SEQUENCED = "NOT EXISTS (SELECT 1 FROM audit_leaves AS l WHERE l.entry_seq = e.seq)"


def _exact_json(text: str) -> Any:
    """JSON with exact integers: orjson (several times faster) unless a run of 20 digits
    could be an integer beyond 64 bits, which orjson would silently turn into a float."""
    if _LONG_DIGITS.search(text) is None:
        return orjson.loads(text)
    return json.loads(text)


def record_of(row: Any) -> AuditRecord:
    """The record an ``audit_entries`` row holds, integers exact (see :func:`_exact_json`)."""
    subjects = _exact_json(row.subject_ids)
    if not isinstance(subjects, list):
        raise AuditRecordError("invalid-record", "subject_ids is not a JSON array")
    return AuditRecord(
        event_type=row.event_type,
        tenant_id=row.tenant_id,
        actor_kind=row.actor_kind,
        actor_id=row.actor_id,
        request_id=row.request_id,
        subject_ids=tuple(subjects),
        data=_exact_json(row.data),
        occurred_at_us=row.occurred_at_us,
    )


def served_leaf(row: Any) -> bytes:
    """The leaf bytes of a row; for a row that no longer decodes, bytes that are not a
    canonical leaf (an object without the leaf fields), so it cannot verify."""
    try:
        return leaf_bytes(record_of(row))
    except (AuditRecordError, ValueError, TypeError):
        return canonical_json({"undecodable_audit_entry": row.seq})


class SqlAuditStore:
    """:class:`~strongroom.audit.ports.AuditReader` and ``SequencerStore`` on SQL."""

    def __init__(self, engine: Engine, *, now_us: Callable[[], int] = ledger_now_us) -> None:
        self._engine = engine
        self._sqlite = is_sqlite(engine)
        self._now_us = now_us

    # -- sequencer -------------------------------------------------------------------------
    def state(self) -> SequencerState:
        with self._engine.connect() as connection:
            size = _tree_size(connection)
            horizon = connection.execute(
                sa.select(sa.func.coalesce(sa.func.max(audit_horizons.c.horizon_seq), 0))
            ).scalar_one()
            above = connection.execute(
                sa.select(audit_leaves.c.entry_seq).where(audit_leaves.c.entry_seq > horizon)
            ).scalars()
            return SequencerState(size, int(horizon), frozenset(int(s) for s in above))

    def tree_size(self) -> int:
        with self._engine.connect() as connection:
            return _tree_size(connection)

    def node(self, level: int, index: int) -> bytes:
        found = self.nodes([(level, index)]).get((level, index))
        if found is None:
            raise LookupError(f"no stored node ({level}, {index})")
        return found

    def unsequenced(
        self, *, after_seq: int, gaps: Sequence[int], limit: int
    ) -> list[SequencedEntry]:
        above = (
            f"SELECT * FROM (SELECT {_ENTRY_COLUMNS} FROM audit_entries AS e"  # noqa: S608 - constants only
            f" WHERE e.seq > :after AND {_NOT_SEQUENCED} ORDER BY e.seq LIMIT :n) AS a"
        )
        params: dict[str, Any] = {"after": after_seq, "n": limit}
        if gaps:
            listed = (
                "SELECT value FROM json_each(:gaps)"
                if self._sqlite
                else "SELECT value::bigint FROM json_array_elements_text(CAST(:gaps AS json))"
            )
            gap_rows = (
                f" UNION ALL SELECT * FROM (SELECT {_ENTRY_COLUMNS} FROM audit_entries AS e"  # noqa: S608 - constants only
                f" WHERE e.seq IN ({listed}) AND {_NOT_SEQUENCED}) AS g"
            )
            above += gap_rows
            params["gaps"] = json.dumps(list(gaps))
        sql = f"SELECT * FROM ({above}) AS u ORDER BY seq LIMIT :n"  # noqa: S608 - constants only
        with self._engine.connect() as connection:
            rows = connection.execute(sa.text(sql), params).all()
        return [SequencedEntry(int(r.seq), None, record_of(r)) for r in rows]

    def append(
        self,
        first_index: int,
        entries: Sequence[SequencedEntry],
        nodes: Sequence[NodeHash],
        *,
        horizon_seq: int,
    ) -> None:
        at = self._now_us()
        leaves = [
            {"leaf_index": first_index + i, "entry_seq": e.seq, "sequenced_at_us": at}
            for i, e in enumerate(entries)
        ]
        subjects = [
            {"subject_id": s, "entry_seq": e.seq}
            for e in entries
            for s in dict.fromkeys(e.record.subject_ids)
            if len(s) <= SUBJECT_ID_CHARS_MAX
        ]
        with write_transaction(self._engine) as connection:
            if not self._sqlite:
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPEND_LOCK_KEY}
                )
            size = _tree_size(connection)
            if size != first_index:
                raise AppendConflictError(
                    f"the tree has {size} leaves, the append starts at {first_index}"
                )
            current = connection.execute(
                sa.select(sa.func.coalesce(sa.func.max(audit_horizons.c.horizon_seq), 0))
            ).scalar_one()
            horizon = (
                [{"horizon_seq": horizon_seq, "tree_size": first_index + len(entries)}]
                if horizon_seq > current
                else []
            )
            if self._sqlite:
                # Plain tuples through the driver's executemany: SQLAlchemy's per-row
                # parameter processing cost more than SQLite's insert itself.
                batches: list[tuple[str, Sequence[tuple[Any, ...]]]] = [
                    (_SQLITE_LEAVES, [(r["leaf_index"], r["entry_seq"], at) for r in leaves]),
                    (_SQLITE_NODES, nodes),
                    (_SQLITE_SUBJECTS, [(r["subject_id"], r["entry_seq"]) for r in subjects]),
                    (_SQLITE_HORIZONS, [(h["horizon_seq"], h["tree_size"]) for h in horizon]),
                ]
                cursor: Any = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
                for sql, tuples in batches:
                    if tuples:
                        cursor.executemany(sql, tuples)
                cursor.close()
            else:
                node_rows = [
                    {"level": lv, "idx": ix, "hash": "\\x" + h.hex()} for lv, ix, h in nodes
                ]
                pipeline = ledger_pg.Pipeline(connection)
                for name, rows in (
                    ("audit_leaves", leaves),
                    ("audit_tree_nodes", node_rows),
                    ("audit_subjects", subjects),
                    ("audit_horizons", horizon),
                ):
                    if rows:
                        pipeline.add(ledger_pg.bulk_insert(name, rows))
                pipeline.run()

    def publish(self, checkpoint: StoredCheckpoint) -> None:
        with write_transaction(self._engine) as connection:
            connection.execute(
                sa.insert(audit_checkpoints).values(
                    size=checkpoint.size,
                    root_hash=checkpoint.root_hash,
                    note=checkpoint.note,
                    published_at_us=checkpoint.published_at_us,
                )
            )

    def register_key(self, verifier_key: str) -> None:
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(audit_keys)
        with write_transaction(self._engine) as connection:
            connection.execute(
                insert.values(
                    verifier_key=verifier_key, registered_at_us=self._now_us()
                ).on_conflict_do_nothing()
            )

    # -- readers ---------------------------------------------------------------------------
    def latest_checkpoint(self) -> StoredCheckpoint | None:
        found = self.checkpoints(after_size=-1, limit=1, newest=True)
        return found[0] if found else None

    def checkpoints(
        self, *, after_size: int, limit: int, newest: bool = False
    ) -> list[StoredCheckpoint]:
        c = audit_checkpoints.c
        query = sa.select(audit_checkpoints).where(c.size > after_size).limit(limit)
        query = query.order_by(c.size.desc() if newest else c.size)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            StoredCheckpoint(int(r.size), bytes(r.root_hash), r.note, int(r.published_at_us))
            for r in rows
        ]

    def public_key(self) -> str | None:
        k = audit_keys.c
        with self._engine.connect() as connection:
            return connection.execute(
                sa.select(k.verifier_key)
                .order_by(k.registered_at_us.desc(), k.verifier_key)
                .limit(1)
            ).scalar_one_or_none()

    def leaves(self, start: int, end: int) -> list[bytes]:
        """Leaf bytes of ``start`` ≤ i < ``end``: a contiguous run from ``start``, ending early
        at the log's end or at the first index whose leaf or entry row is missing."""
        if end <= start:
            return []
        sql = (
            f"SELECT l.leaf_index, {_ENTRY_COLUMNS} FROM audit_leaves AS l"  # noqa: S608 - constants only
            " LEFT JOIN audit_entries AS e ON e.seq = l.entry_seq"
            " WHERE l.leaf_index >= :start AND l.leaf_index < :end ORDER BY l.leaf_index"
        )
        with self._engine.connect() as connection:
            rows = connection.execute(sa.text(sql), {"start": start, "end": end}).all()
        served: list[bytes] = []
        for expected, row in enumerate(rows, start):
            if row.leaf_index != expected or row.seq is None:
                break
            served.append(served_leaf(row))
        return served

    def nodes(self, coordinates: Sequence[NodeCoordinate]) -> Mapping[NodeCoordinate, bytes]:
        wanted = sorted(set(coordinates))
        if not wanted:
            return {}
        n = audit_tree_nodes.c
        query = sa.select(n.level, n.idx, n.hash).where(sa.tuple_(n.level, n.idx).in_(wanted))
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return {(int(r.level), int(r.idx)): bytes(r.hash) for r in rows}

    def search(self, query: EntryQuery) -> list[SequencedEntry]:
        """Entries matching ``query``, by ``seq``; ``index`` is None until sequenced. The
        subject filter reads ``audit_subjects``, which the sequencer writes: it finds
        sequenced entries only."""
        e, leaf = audit_entries.c, audit_leaves.c
        stmt = (
            sa.select(audit_entries, leaf.leaf_index)
            .select_from(audit_entries.outerjoin(audit_leaves, audit_leaves.c.entry_seq == e.seq))
            .where(e.seq > query.after_seq)
        )
        if query.tenant_id is not None:
            stmt = stmt.where(e.tenant_id == query.tenant_id)
        if query.subject_id is not None:
            s = audit_subjects.c
            stmt = stmt.where(
                e.seq.in_(sa.select(s.entry_seq).where(s.subject_id == query.subject_id))
            )
        if query.event_type is not None:
            stmt = stmt.where(e.event_type == query.event_type)
        if query.from_us is not None:
            stmt = stmt.where(e.occurred_at_us >= query.from_us)
        if query.to_us is not None:
            stmt = stmt.where(e.occurred_at_us < query.to_us)
        stmt = stmt.order_by(e.seq).limit(query.limit)
        with self._engine.connect() as connection:
            rows = connection.execute(stmt).all()
        return [_searched(r) for r in rows]


def _searched(row: Row[Any]) -> SequencedEntry:
    index = row.leaf_index
    return SequencedEntry(int(row.seq), None if index is None else int(index), record_of(row))


def _tree_size(connection: Connection) -> int:
    size = connection.execute(
        sa.select(sa.func.coalesce(sa.func.max(audit_leaves.c.leaf_index) + 1, 0))
    ).scalar_one()
    return int(size)


class SequencerLock:
    """The one-sequencer lock: a second sequencer waits for it instead of forking the log.

    PostgreSQL: a session-level advisory lock on a connection held while the lock is
    (the lock ends with the session, so a crashed sequencer frees it at once). SQLite: the
    embedded profile runs the sequencer on worker 0 only and every append takes the write
    lock, so there is nothing to take. Blocking calls: run them in a thread.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def try_acquire(self) -> bool:
        if is_sqlite(self._engine):
            return True
        if self._connection is None:
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        taken = self._connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": SEQUENCER_LOCK_KEY}
        ).scalar_one()
        return bool(taken)

    def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            with contextlib.suppress(sa.exc.DBAPIError):
                connection.execute(
                    sa.text("SELECT pg_advisory_unlock(:k)"), {"k": SEQUENCER_LOCK_KEY}
                )
            connection.close()
