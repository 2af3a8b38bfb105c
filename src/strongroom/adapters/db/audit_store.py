"""The audit log on SQL (SQLite and PostgreSQL): the sequencer's store and the readers' view.

Tables (migration 0007, all append-only by trigger): ``audit_leaves`` (leaf index → entry
``seq``), ``audit_tree_nodes`` (complete perfect subtrees, level 0 = leaf hashes),
``audit_checkpoints`` (signed notes), ``audit_horizons`` (the sequencer's commit horizon,
see ``audit.commit_horizon``), ``audit_keys`` (the log's verifier keys) and
``audit_subjects`` (subject → entry, for search).

Leaf bytes are never stored: they are ``canonical.leaf_bytes`` of the ``audit_entries`` row,
computed when sequencing and again when serving :meth:`SqlAuditStore.leaves` (the encoding
is deterministic), so a rewritten row changes the served leaf and no longer matches the
stored level-0 hash or any signed root. Rows are read back without re-validation
(``AuditRecord.trusted``: they were validated when written), so a row rewritten into an
invalid record is served as its encoding, which the verifier's leaf check refuses; a row that
no longer decodes at all is served as bytes no canonical leaf can be. Either way a verifier
names exactly its index.

An append is one transaction: the tree's size is checked under the write lock (SQLite
``BEGIN IMMEDIATE``; PostgreSQL a transaction-scoped advisory lock) and a mismatch raises
:class:`~strongroom.audit.ports.AppendConflictError`; the leaves, nodes, subjects and horizon
go in as bulk inserts (executemany on SQLite, ``COPY`` on PostgreSQL, after one pipelined
round trip for the lock and the checks). Only one sequencer should run at all:
:class:`SequencerLock` is the worker's session-level advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
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
_COPY_LEAVES = "COPY audit_leaves (leaf_index, entry_seq, sequenced_at_us) FROM STDIN"
_COPY_NODES = "COPY audit_tree_nodes (level, idx, hash) FROM STDIN"
_COPY_SUBJECTS = "COPY audit_subjects (subject_id, entry_seq) FROM STDIN"
_PG_HORIZONS = "INSERT INTO audit_horizons (horizon_seq, tree_size) VALUES (%s, %s)"
# Entry columns in the order _record_of_columns takes them (after e.seq).
_ENTRY_COLUMNS = (
    "e.seq, e.tenant_id, e.event_type, e.actor_kind, e.actor_id, e.request_id,"
    " e.subject_ids, e.data, e.occurred_at_us"
)
# One index probe per candidate row. Without the OFFSET, PostgreSQL turns NOT EXISTS into
# an anti-join, which on young (not yet analyzed) tables it plans as a hash over every leaf:
# each sequencer pass read the whole log. (LIMIT 1 OFFSET 0: valid on SQLite too.)
_NOT_SEQUENCED = (
    "NOT EXISTS (SELECT 1 FROM audit_leaves AS l WHERE l.entry_seq = e.seq LIMIT 1 OFFSET 0)"
)
_UNSEQUENCED_ABOVE = (
    f"SELECT {_ENTRY_COLUMNS} FROM audit_entries AS e"  # noqa: S608 - constants only
    f" WHERE e.seq > :after AND {_NOT_SEQUENCED} ORDER BY e.seq LIMIT :n"
)
_GAPS_SQLITE = "SELECT value FROM json_each(:gaps)"
_GAPS_PG = "SELECT CAST(value AS bigint) FROM json_array_elements_text(CAST(:gaps AS json))"


def _unsequenced_with_gaps(listed_gaps: str) -> str:
    """Rows above the top or in the open gaps (``listed_gaps`` reads them from one JSON
    array parameter: one statement text whatever their number)."""
    return (
        f"SELECT * FROM (SELECT * FROM ({_UNSEQUENCED_ABOVE}) AS a"  # noqa: S608 - constants only
        f" UNION ALL SELECT {_ENTRY_COLUMNS} FROM audit_entries AS e"
        f" WHERE e.seq IN ({listed_gaps}) AND {_NOT_SEQUENCED}) AS u ORDER BY seq LIMIT :n"
    )


_LEAVES = (
    f"SELECT l.leaf_index, {_ENTRY_COLUMNS} FROM audit_leaves AS l"  # noqa: S608 - constants only
    " LEFT JOIN audit_entries AS e ON e.seq = l.entry_seq"
    " WHERE l.leaf_index >= :start AND l.leaf_index < :end ORDER BY l.leaf_index"
)
# Proof nodes: the wanted coordinates as one JSON array of [level, idx], joined to the primary
# key. A row-value IN list is not served from the key on SQLite (a full scan: ~45 ms a proof
# on a 10^5-leaf tree); the join looks each coordinate up (CROSS JOIN fixes SQLite's order).
_NODES_SQLITE = (
    "SELECT n.level, n.idx, n.hash FROM json_each(:wanted) AS w"
    " CROSS JOIN audit_tree_nodes AS n"
    " ON n.level = json_extract(w.value, '$[0]') AND n.idx = json_extract(w.value, '$[1]')"
)
_NODES_PG = (
    "SELECT n.level, n.idx, n.hash FROM json_array_elements(CAST(:wanted AS json)) AS w(c)"
    " JOIN audit_tree_nodes AS n"
    " ON n.level = CAST(w.c ->> 0 AS smallint) AND n.idx = CAST(w.c ->> 1 AS bigint)"
)
_TREE_SIZE = "SELECT COALESCE(MAX(leaf_index) + 1, 0) FROM audit_leaves"
_HORIZON = "SELECT COALESCE(MAX(horizon_seq), 0) FROM audit_horizons"
_NAMED_PARAMETER = re.compile(r"(?<![:\w]):([a-z_]+)")


def _driver_sql(sql: str, *, sqlite: bool) -> str:
    """``sql`` with ``:name`` parameters in the driver's own style: sqlite3 reads ``:name``
    itself, psycopg wants ``%(name)s``. Statements below go to the raw driver cursor: the
    sequencer reads and writes thousands of rows a batch, and SQLAlchemy's per-row work
    (result rows, parameter processing) cost more than the database did."""
    return sql if sqlite else _NAMED_PARAMETER.sub(r"%(\1)s", sql)


def _exact_json(text: str) -> Any:
    """JSON with exact integers: orjson (several times faster) unless a run of 20 digits
    could be an integer beyond 64 bits, which orjson would silently turn into a float."""
    if _LONG_DIGITS.search(text) is None:
        return orjson.loads(text)
    return json.loads(text)


def _record_of_columns(columns: Sequence[Any]) -> AuditRecord:
    """The record of an ``audit_entries`` row's columns, in ``_ENTRY_COLUMNS`` order after
    ``seq``."""
    tenant_id, event_type, actor_kind, actor_id, request_id, subject_ids, data, at = columns
    subjects = _exact_json(subject_ids)
    if not isinstance(subjects, list):
        raise AuditRecordError("invalid-record", "subject_ids is not a JSON array")
    # Validated when written (audit_events, ledger_store); a rewritten row's leaf is
    # whatever it now says, which the verifier refuses (see AuditRecord.trusted).
    return AuditRecord.trusted(
        event_type=event_type,
        tenant_id=tenant_id,
        actor_kind=actor_kind,
        actor_id=actor_id,
        request_id=request_id,
        subject_ids=tuple(subjects),
        data=_exact_json(data),
        occurred_at_us=at,
    )


def record_of(row: Any) -> AuditRecord:
    """The record an ``audit_entries`` row holds, integers exact (see :func:`_exact_json`)."""
    return _record_of_columns(
        (
            row.tenant_id,
            row.event_type,
            row.actor_kind,
            row.actor_id,
            row.request_id,
            row.subject_ids,
            row.data,
            row.occurred_at_us,
        )
    )


def served_leaf(seq: int, columns: Sequence[Any]) -> bytes:
    """The leaf bytes of the entry ``seq`` with ``columns`` (``_ENTRY_COLUMNS`` after seq);
    for a row that no longer decodes, bytes that are not a canonical leaf (an object without
    the leaf fields), so it cannot verify."""
    try:
        return leaf_bytes(_record_of_columns(columns))
    except (AuditRecordError, ValueError, TypeError):
        return canonical_json({"undecodable_audit_entry": seq})


class SqlAuditStore:
    """:class:`~strongroom.audit.ports.AuditReader` and ``SequencerStore`` on SQL."""

    def __init__(self, engine: Engine, *, now_us: Callable[[], int] = ledger_now_us) -> None:
        self._engine = engine
        self._sqlite = sqlite = is_sqlite(engine)
        self._now_us = now_us
        gaps = _unsequenced_with_gaps(_GAPS_SQLITE if sqlite else _GAPS_PG)
        self._sql_above = _driver_sql(_UNSEQUENCED_ABOVE, sqlite=sqlite)
        self._sql_with_gaps = _driver_sql(gaps, sqlite=sqlite)
        self._sql_leaves = _driver_sql(_LEAVES, sqlite=sqlite)
        self._sql_nodes = _driver_sql(_NODES_SQLITE if sqlite else _NODES_PG, sqlite=sqlite)

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
        params: dict[str, Any] = {"after": after_seq, "n": limit}
        sql = self._sql_above
        if gaps:
            sql = self._sql_with_gaps
            params["gaps"] = orjson.dumps(list(gaps)).decode()
        with self._engine.connect() as connection:
            rows = _fetch(connection, sql, params)
        record = _record_of_columns
        return [SequencedEntry(r[0], None, record(r[1:])) for r in rows]

    def append(
        self,
        first_index: int,
        entries: Sequence[SequencedEntry],
        nodes: Sequence[NodeHash],
        *,
        horizon_seq: int,
    ) -> None:
        at = self._now_us()
        leaves = [(first_index + i, e.seq, at) for i, e in enumerate(entries)]
        subjects = [
            (s, e.seq)
            for e in entries
            for s in dict.fromkeys(
                s
                for s in e.record.subject_ids
                if isinstance(s, str) and len(s) <= SUBJECT_ID_CHARS_MAX
            )
        ]
        rows = _AppendRows(first_index, leaves, nodes, subjects, horizon_seq)
        with write_transaction(self._engine) as connection:
            raw: Any = connection.connection.driver_connection
            if self._sqlite:
                _append_sqlite(raw, rows)
            else:
                _append_postgres(connection, raw, rows)

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
        with self._engine.connect() as connection:
            rows = _fetch(connection, self._sql_leaves, {"start": start, "end": end})
        served: list[bytes] = []
        for expected, row in enumerate(rows, start):
            if row[0] != expected or row[1] is None:
                break
            served.append(served_leaf(row[1], row[2:]))
        return served

    def nodes(self, coordinates: Sequence[NodeCoordinate]) -> Mapping[NodeCoordinate, bytes]:
        wanted = sorted(set(coordinates))
        if not wanted:
            return {}
        params = {"wanted": orjson.dumps(wanted).decode()}
        with self._engine.connect() as connection:
            rows = _fetch(connection, self._sql_nodes, params)
        return {(level, idx): bytes(hash_) for level, idx, hash_ in rows}

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


def _fetch(connection: Connection, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Every row of ``sql`` (in the driver's parameter style) as plain tuples, through the
    raw driver cursor of ``connection``."""
    cursor: Any = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql, params)
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return rows


@dataclass(frozen=True, slots=True)
class _AppendRows:
    first_index: int
    leaves: list[tuple[int, int, int]]  # (leaf_index, entry_seq, sequenced_at_us)
    nodes: Sequence[NodeHash]
    subjects: list[tuple[str, int]]  # (subject_id, entry_seq)
    horizon_seq: int

    def check(self, size: int) -> None:
        if size != self.first_index:
            raise AppendConflictError(
                f"the tree has {size} leaves, the append starts at {self.first_index}"
            )

    def horizon_row(self, current: int) -> tuple[int, int] | None:
        """The new horizon row, if the horizon moved past the stored one."""
        if self.horizon_seq <= current:
            return None
        return self.horizon_seq, self.first_index + len(self.leaves)


def _append_sqlite(raw: Any, rows: _AppendRows) -> None:
    """Inside ``BEGIN IMMEDIATE`` (the write lock): plain tuples through the driver's
    executemany, as SQLAlchemy's per-row parameter processing cost more than the inserts."""
    cursor = raw.cursor()
    try:
        rows.check(cursor.execute(_TREE_SIZE).fetchone()[0])
        horizon = rows.horizon_row(cursor.execute(_HORIZON).fetchone()[0])
        cursor.executemany(_SQLITE_LEAVES, rows.leaves)
        cursor.executemany(_SQLITE_NODES, rows.nodes)
        cursor.executemany(_SQLITE_SUBJECTS, rows.subjects)
        if horizon is not None:
            cursor.execute(_SQLITE_HORIZONS, horizon)
    finally:
        cursor.close()


def _append_postgres(connection: Connection, raw: Any, rows: _AppendRows) -> None:
    """The append lock and both checks in one pipelined round trip, then a ``COPY`` per
    table: ~40% less server time than ``json_populate_recordset`` inserts of the ~5 rows
    an entry writes, which were most of a batch's wall time on PostgreSQL."""
    pipeline = ledger_pg.Pipeline(connection)
    pipeline.add(("SELECT pg_advisory_xact_lock(%(k)s)", {"k": APPEND_LOCK_KEY}))
    pipeline.add((_TREE_SIZE, {}))
    pipeline.add((_HORIZON, {}))
    _, ((size,),), ((current,),) = pipeline.run()
    rows.check(size)
    horizon = rows.horizon_row(current)
    cursor = raw.cursor()
    try:
        for sql, table_rows in (
            (_COPY_LEAVES, rows.leaves),
            (_COPY_NODES, rows.nodes),
            (_COPY_SUBJECTS, rows.subjects),
        ):
            if table_rows:
                with cursor.copy(sql) as copy:
                    for row in table_rows:
                        copy.write_row(row)
        if horizon is not None:
            cursor.execute(_PG_HORIZONS, horizon)
    finally:
        cursor.close()


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
