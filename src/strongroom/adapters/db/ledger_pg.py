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

from collections.abc import Iterable, Sequence
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy.engine import Connection

from strongroom import json_codec
from strongroom.ledger.model import COUNTERS

Key = tuple[str, str]
Statement = tuple[str, dict[str, Any]]


class Pipeline:
    """Statements queued for one round trip; ``run`` returns each one's rows, in order."""

    def __init__(self, connection: Connection) -> None:
        self._raw: Any = connection.connection.driver_connection
        self._statements: list[Statement] = []

    def add(self, statement: Statement) -> int:
        self._statements.append(statement)
        return len(self._statements) - 1

    def run(self) -> list[list[Any]]:
        statements, self._statements = self._statements, []
        if not statements:
            return []
        cursors = []
        with self._raw.pipeline():
            for sql, params in statements:
                cursor = self._raw.cursor(row_factory=namedtuple_row)
                cursor.execute(sql, params)
                cursors.append(cursor)
        return [c.fetchall() if c.description is not None else [] for c in cursors]


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


def advisory_locks(keys: Iterable[int]) -> Statement:
    # Sorted in a subquery so the locks are taken in that order (no deadlock).
    return (
        "SELECT pg_advisory_xact_lock(k) FROM (SELECT k::text::bigint AS k"
        " FROM json_array_elements(%(keys)s::json) AS k ORDER BY 1) AS sorted",
        {"keys": _json(sorted(set(keys)))},
    )


def rows_by_key(table: str, keys: Iterable[Key]) -> Statement:
    """Rows of ``table`` by (tenant_id, id). A join on unnested key arrays walks the
    primary key once per key; a row-value IN list of hundreds of pairs makes PostgreSQL
    scan instead."""
    return (
        f"SELECT x.* FROM {table} AS x JOIN {_keys('k', 'tenant_id', 'id')}"
        " ON x.tenant_id = k.tenant_id AND x.id = k.id",
        {"k": _pairs(keys)},
    )


# The accounts a group names, and both accounts of each transfer it resolves or reverses.
_ACCOUNT_KEYS = (
    f"(SELECT tenant_id, id FROM {_keys('a', 'tenant_id', 'id')}"
    " UNION SELECT t.tenant_id, a.id FROM ledger_transfers AS t"
    f" JOIN {_keys('t', 'tenant_id', 'id')} ON t.tenant_id = k.tenant_id AND t.id = k.id"
    " CROSS JOIN LATERAL (VALUES (t.debit_account_id), (t.credit_account_id)) AS a(id))"
)


def _account_key_params(accounts: Iterable[Key], transfers: Iterable[Key]) -> dict[str, Any]:
    return {"a": _pairs(accounts), "t": _pairs(transfers)}


def accounts(accounts: Iterable[Key], transfers: Iterable[Key]) -> Statement:
    return (
        f"SELECT x.* FROM ledger_accounts AS x JOIN {_ACCOUNT_KEYS} AS k(tenant_id, id)"
        " ON x.tenant_id = k.tenant_id AND x.id = k.id",
        _account_key_params(accounts, transfers),
    )


def hot_shards(accounts: Iterable[Key], transfers: Iterable[Key]) -> Statement:
    """Every shard row of the sharded (system) accounts among those, without a lock."""
    return (
        "SELECT b.* FROM ledger_balances AS b"
        f" JOIN {_ACCOUNT_KEYS} AS k(tenant_id, id)"
        " ON b.tenant_id = k.tenant_id AND b.account_id = k.id"
        " JOIN ledger_accounts AS x ON x.tenant_id = b.tenant_id AND x.id = b.account_id"
        " WHERE x.shards > 1",
        _account_key_params(accounts, transfers),
    )


def system_accounts(pairs: Iterable[tuple[str, str]]) -> Statement:
    """The system accounts (clearing, fees, …) of each (tenant, currency)."""
    return (
        "SELECT x.tenant_id, x.currency, x.id, x.code FROM ledger_accounts AS x"
        f" JOIN {_keys('k', 'tenant_id', 'currency')}"
        " ON x.tenant_id = k.tenant_id AND x.currency = k.currency"
        " WHERE x.code IS NOT NULL",
        {"k": _pairs(pairs)},
    )


def lock_balances(wanted: Sequence[tuple[str, str, int]]) -> Statement:
    """Balance rows locked in (tenant, account, shard) order by every group: no deadlock."""
    return (
        "SELECT b.* FROM ledger_balances AS b"
        f" JOIN {_keys('k', 'tenant_id', 'account_id', 'shard')}"
        " ON b.tenant_id = k.tenant_id AND b.account_id = k.account_id"
        " AND b.shard = k.shard::smallint"
        " ORDER BY b.tenant_id, b.account_id, b.shard FOR UPDATE OF b",
        {"k": _json(list(wanted))},
    )


_ADD_TO_BALANCES = (
    "UPDATE ledger_balances AS b SET "
    + ", ".join(f"{c} = b.{c} + v.{c}" for c in COUNTERS)
    + " FROM json_populate_recordset(NULL::ledger_balances, %(rows)s::json) AS v"
    + " WHERE b.tenant_id = v.tenant_id AND b.account_id = v.account_id AND b.shard = v.shard"
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
        f"UPDATE {table} AS x SET "
        + ", ".join(f"{c} = v.{c}" for c in columns)
        + f" FROM json_populate_recordset(NULL::{table}, %(rows)s::json) AS v WHERE "
        + " AND ".join(f"x.{k} = v.{k}" for k in keys),
        {"rows": _json(encoded)},
    )
