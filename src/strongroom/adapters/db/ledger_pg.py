"""The ledger store's PostgreSQL statements, sent in pipelines: a group costs 3 round trips.

A group commit used to pay a round trip, and SQLAlchemy's per-statement bookkeeping, for
each of its ~12 statements; on a busy 2-core host that was most of the store's CPU and
most of a group's wall time. Here each phase of the lock-compute-write cycle is one
psycopg pipeline (the statements go out together and run in order on the server, each
with its own READ COMMITTED snapshot, so a read queued after a lock still sees what the
lock holder committed):

1. advisory locks, then every row the engine needs (transfers, journal entries, system
   accounts, accounts including those of the transfers being resolved, and the shard
   rows of hot accounts, read without a lock);
2. the balance rows, locked in one fixed order, then the accounts again (status and
   limit, now that nobody can change them under us);
3. every write of the group.

Statements use the raw psycopg connection of the SQLAlchemy transaction, which still
owns BEGIN, COMMIT and ROLLBACK. Their text is constant per shape, so psycopg prepares
each once per connection. Rows come back as named tuples (attribute access, like
SQLAlchemy rows). All SQL text is built from schema constants only.
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from psycopg import pq
from psycopg.rows import namedtuple_row
from sqlalchemy.engine import Connection

from strongroom import json_codec
from strongroom.ledger.model import COUNTERS

Key = tuple[str, str]
# Rows of one table from which a group inserts them by COPY.
COPY_ROWS_MIN = 128
Statement = tuple[str, dict[str, Any]]


class Pipeline:
    """Statements queued for one round trip; ``run`` returns each one's rows, in order."""

    def __init__(self, connection: Connection) -> None:
        self._raw: Any = connection.connection.driver_connection
        self._statements: list[Statement] = []
        self._copies: list[tuple[str, list[dict[str, Any]]]] = []

    def add(self, statement: Statement) -> int:
        self._statements.append(statement)
        return len(self._statements) - 1

    def insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        """Queue ``rows`` for ``table``: many go by ``COPY`` ahead of the pipeline (a
        round trip each, but ~45% less server time a row than a JSON insert, and a big
        group's inserts are most of the time its balance rows stay locked), few as one
        statement of the pipeline."""
        if len(rows) >= COPY_ROWS_MIN:
            self._copies.append((table, rows))
        else:
            self.add(bulk_insert(table, rows))

    def run(self, *, merge: bool = False, commit: bool = False) -> list[list[Any]]:
        """Each statement's rows; ``merge``: the statements go as one (:func:`merged`)
        and the answer is that statement's rows; ``commit``: COMMIT follows them in the
        same round trip (psycopg's commit is pipeline-aware; the SQLAlchemy transaction's
        own commit then finds nothing left to do)."""
        statements, self._statements = self._statements, []
        copies, self._copies = self._copies, []
        if copies:
            with self._raw.cursor() as cursor:
                for table, rows in copies:
                    names = list(rows[0])
                    with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
                        for row in rows:
                            copy.write_row([row[name] for name in names])
        if not statements:
            if commit:
                self._raw.commit()
            return []
        if merge:
            statements = [merged(statements)]
        cursors = []
        with self._raw.pipeline():
            for sql, params in statements:
                cursor = self._raw.cursor(row_factory=namedtuple_row)
                cursor.execute(sql, params)
                cursors.append(cursor)
            if commit:
                self._raw.commit()
        # pgresult, not description: description builds a Column object per column per
        # call (a tenth of a group's client CPU once).
        return [c.fetchall() if _has_rows(c) else [] for c in cursors]


def _has_rows(cursor: Any) -> bool:
    result = cursor.pgresult
    return result is not None and result.status == pq.ExecStatus.TUPLES_OK


def _json(value: Any) -> str:
    return json_codec.dumps(value)


def _pairs(keys: Iterable[Key]) -> str:
    """Keys as one JSON parameter: the C encoder writes it far faster than psycopg's
    array dumper, which walks lists in Python."""
    return _json(sorted(set(keys)))


def _keys(param: str, *columns: str) -> str:
    """The rows of a JSON array of arrays, as a relation with ``columns`` (text)."""
    picks = ", ".join(f"k->>{i}" for i in range(len(columns)))
    names = ", ".join(columns)
    return f"(SELECT {picks} FROM json_array_elements(%({param})s::json) AS k) AS k({names})"


def _match(alias: str, pairs: Sequence[tuple[str, str]]) -> str:
    return " AND ".join(f"{alias}.{column} = {value}" for column, value in pairs)


def _each(
    table: str,
    pairs: Sequence[tuple[str, str]],
    *,
    one: bool = True,
    where: str = "",
    lock: bool = False,
) -> str:
    """``table``'s rows matching ``pairs`` (column, outer expression), looked up once per
    outer row: a ``LATERAL`` subquery that PostgreSQL cannot flatten (``LIMIT 1`` for a
    primary key, ``OFFSET 0`` otherwise), so every key is an index lookup. A plain join
    on a JSON relation is planned for 100 keys whatever it holds, and on a table not yet
    analyzed (a young ledger) that meant a hash join over a sequential scan of every
    transfer, once per group: most of the server's CPU at a few thousand transfers/s."""
    limit = " LIMIT 1" if one else " OFFSET 0"
    locking = " FOR UPDATE" if lock else ""
    found = f"SELECT * FROM {table} AS y WHERE {_match('y', pairs)}{where}{limit}{locking}"
    return f"CROSS JOIN LATERAL ({found}) AS x"


_BY_KEY = (("tenant_id", "k->>0"), ("id", "k->>1"))


def advisory_locks(keys: Iterable[int]) -> Statement:
    # Sorted in a subquery so the locks are taken in that order (no deadlock).
    return (
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT k::text::bigint AS k"
        " FROM json_array_elements(%(keys)s::json) AS k ORDER BY 1) AS sorted",
        {"keys": _json(sorted(set(keys)))},
    )


def rows_by_key(table: str, keys: Iterable[Key]) -> Statement:
    """Rows of ``table`` by (tenant_id, id), one primary-key lookup per key."""
    return (
        f"SELECT x.* FROM json_array_elements(%(k)s::json) AS k {_each(table, _BY_KEY)}",
        {"k": _pairs(keys)},
    )


# The accounts a group names, and both accounts of each transfer it resolves or reverses.
_ACCOUNT_KEYS = (
    f"(SELECT tenant_id, id FROM {_keys('a', 'tenant_id', 'id')}"
    " UNION SELECT x.tenant_id, a.id FROM json_array_elements(%(t)s::json) AS k"
    f" {_each('ledger_transfers', _BY_KEY)}"
    " CROSS JOIN LATERAL (VALUES (x.debit_account_id), (x.credit_account_id)) AS a(id))"
    " AS a(tenant_id, id)"
)
_ACCOUNT = (("tenant_id", "a.tenant_id"), ("id", "a.id"))


def _account_key_params(accounts: Iterable[Key], transfers: Iterable[Key]) -> dict[str, Any]:
    return {"a": _pairs(accounts), "t": _pairs(transfers)}


def accounts(accounts: Iterable[Key], transfers: Iterable[Key]) -> Statement:
    return (
        f"SELECT x.* FROM {_ACCOUNT_KEYS} {_each('ledger_accounts', _ACCOUNT)}",
        _account_key_params(accounts, transfers),
    )


def hot_shards(accounts: Iterable[Key], transfers: Iterable[Key]) -> Statement:
    """Every shard row of the sharded (system) accounts among those, without a lock."""
    sharded = (
        " AND EXISTS (SELECT 1 FROM ledger_accounts AS s"
        " WHERE s.tenant_id = a.tenant_id AND s.id = a.id AND s.shards > 1)"
    )
    balances = (("tenant_id", "a.tenant_id"), ("account_id", "a.id"))
    return (
        f"SELECT x.* FROM {_ACCOUNT_KEYS}"
        f" {_each('ledger_balances', balances, one=False, where=sharded)}",
        _account_key_params(accounts, transfers),
    )


def system_accounts(pairs: Iterable[tuple[str, str]]) -> Statement:
    """The system accounts (clearing, fees, …) of each (tenant, currency)."""
    wanted = (("tenant_id", "k->>0"), ("currency", "k->>1"))
    return (
        "SELECT x.tenant_id, x.currency, x.id, x.code FROM json_array_elements(%(k)s::json) AS k"
        f" {_each('ledger_accounts', wanted, one=False, where=' AND y.code IS NOT NULL')}",
        {"k": _pairs(pairs)},
    )


def together(named: dict[str, Statement]) -> Statement:
    """Read-only statements as one, each one's rows as a JSON array in a column of its
    name (read back by :func:`rows_of`): one parse, bind and result for a group's reads
    instead of one per table. They share one snapshot, so only reads that need not see
    each other's effects may go together."""
    columns: list[str] = []
    params: dict[str, Any] = {}
    for index, (name, (sql, values)) in enumerate(named.items()):
        renamed = _suffixed(sql, values, index, params)
        # As text: orjson decodes it several times faster than psycopg's json loader.
        aggregate = "coalesce(json_agg(r), '[]')::text"
        columns.append(f"(SELECT {aggregate} FROM ({renamed}) AS r) AS {name}")
    return "SELECT " + ", ".join(columns), params


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def rows_of(encoded: str) -> list[Any]:
    """A :func:`together` column's rows, with attribute access like psycopg's named
    tuples."""
    decoded = orjson.loads(encoded)
    if not decoded:
        return []
    fields = tuple(decoded[0])
    row_type = _ROW_TYPES.get(fields)
    if row_type is None:
        row_type = _ROW_TYPES[fields] = namedtuple("Row", fields)
    return [row_type(*row.values()) for row in decoded]


def locked_by_key(table: str, columns: Sequence[str], keys: Sequence[Sequence[Any]]) -> Statement:
    """Rows of ``table`` by the values of ``columns``, locked in the order of ``keys``
    (callers sort them): every transaction locks in one fixed order, so none deadlocks.
    The lookups run as a nested loop over the keys in that order, each row locked as it
    is found. A column written ``name::type`` casts its key value."""
    pairs = []
    for i, column in enumerate(columns):
        name, _, cast = column.partition("::")
        pairs.append((name, f"(k->>{i})::{cast}" if cast else f"k->>{i}"))
    return (
        "SELECT x.* FROM (SELECT k FROM json_array_elements(%(k)s::json) WITH ORDINALITY"
        " AS e(k, n) ORDER BY n) AS w"
        f" {_each(table, pairs, lock=True)}",
        {"k": _json([list(key) for key in keys])},
    )


def lock_balances(wanted: Sequence[tuple[str, str, int]]) -> Statement:
    return locked_by_key("ledger_balances", ("tenant_id", "account_id", "shard::smallint"), wanted)


def _by_row_id(table: str, keys: Sequence[str]) -> str:
    """``FROM`` and ``WHERE`` of an ``UPDATE {table} AS t`` from the JSON rows ``v``: each
    row found by primary key, then updated by its physical id (a TID scan). A plain
    ``UPDATE … FROM json_populate_recordset`` is planned as a hash join over the whole
    table."""
    match = _match("y", [(k, f"v.{k}") for k in keys])
    return (
        f" FROM json_populate_recordset(NULL::{table}, %(rows)s::json) AS v"
        f" CROSS JOIN LATERAL (SELECT ctid AS row_id FROM {table} AS y WHERE {match} LIMIT 1)"
        " AS r WHERE t.ctid = r.row_id"
    )


_ADD_TO_BALANCES = (
    "UPDATE ledger_balances AS t SET "
    + ", ".join(f"{c} = t.{c} + v.{c}" for c in COUNTERS)
    + _by_row_id("ledger_balances", ("tenant_id", "account_id", "shard"))
)


def add_to_balances(rows: list[dict[str, Any]]) -> Statement:
    """One statement for the whole group: rows of (tenant_id, account_id, shard) and the
    amount to add to each counter."""
    return _ADD_TO_BALANCES, {"rows": _json(rows)}


def bulk_insert(table: str, rows: list[dict[str, Any]]) -> Statement:
    """One ``INSERT … SELECT … FROM json_populate_recordset`` for any number of rows:
    one JSON parameter that the C encoder writes fast, much cheaper per row than a
    statement per row or arrays the driver escapes element by element."""
    names = ", ".join(rows[0])
    return (
        f"INSERT INTO {table} ({names}) SELECT {names}"
        f" FROM json_populate_recordset(NULL::{table}, %(rows)s::json)",
        {"rows": _json(rows)},
    )


def bulk_update(table: str, keys: Sequence[str], rows: list[dict[str, Any]]) -> Statement:
    """Set the non-key members of each row on the row with its ``keys``; bytes values go
    as PostgreSQL's hex ``bytea`` text."""
    columns = [c for c in rows[0] if c not in keys]
    encoded = [
        {c: "\\x" + v.hex() if isinstance(v, bytes) else v for c, v in row.items()} for row in rows
    ]
    return (
        f"UPDATE {table} AS t SET "
        + ", ".join(f"{c} = v.{c}" for c in columns)
        + _by_row_id(table, keys),
        {"rows": _json(encoded)},
    )


_PARAMETER = re.compile(r"%\((\w+)\)s")


def _suffixed(sql: str, values: dict[str, Any], index: int, into: dict[str, Any]) -> str:
    """``sql`` with each ``%(name)s`` renamed ``%(name_<index>)s``, its values added to
    ``into``: statements joined into one keep their parameters apart."""
    into.update({f"{name}_{index}": value for name, value in values.items()})
    return _PARAMETER.sub(r"%(\1" + f"_{index})s", sql)


def merged(statements: Sequence[Statement]) -> Statement:
    """Data-modifying statements as one: each a ``WITH`` member, run to completion by
    PostgreSQL whatever the main query reads. One statement instead of one per table cuts
    a group's client and server overhead (parse, bind, result) per statement; the text is
    constant per set of tables, so it is prepared once. The members share one snapshot and
    must not touch the same row twice (callers merge only groups whose members don't)."""
    if len(statements) == 1:
        return statements[0]
    members: list[str] = []
    params: dict[str, Any] = {}
    for index, (sql, values) in enumerate(statements):
        members.append(f"w{index} AS ({_suffixed(sql, values, index, params)})")
    return "WITH " + ", ".join(members) + " SELECT 1", params
