"""The ledger on SQL (SQLite and PostgreSQL): lock, compute, write — one transaction a group.

``execute`` runs a whole group of units (group commit) in one transaction:

1. Idempotency-Key claims of the units are checked (a unit whose claim was taken over
   after its lease ran out is refused: its retry owns the key now).
2. PostgreSQL: transaction-scoped advisory locks on every id the group creates or
   resolves (transfer, account and journal ids, a tenant's system accounts per currency),
   taken in sorted order in one statement. Two pods creating the same transfer id, or
   posting the same hold, are thereby serialized, and the later one sees the earlier's
   row. SQLite has one writer at a time (``BEGIN IMMEDIATE``), which serializes all this.
3. The balance rows the group moves are locked in one ``SELECT … ORDER BY … FOR UPDATE``
   (a fixed order, so two groups never deadlock). An account whose balance must be
   checked has all its shard rows locked; a hot account that only receives money (a
   fees account credited by every transfer) has one shard row locked, picked at random,
   so concurrent groups credit different rows and do not queue behind each other.
4. ``ledger.engine.apply`` computes outcomes and effects on the locked values; the
   effects (rows, counters, entries, outbox events, audit entries, stored responses) are
   written with ``executemany`` and committed together. No lock is held across a round
   trip to the client: the transaction starts and ends inside this call.
"""

from __future__ import annotations

import hashlib
import random
import secrets
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import psycopg
import psycopg.errors
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from strongroom import json_codec
from strongroom.adapters.db import ledger_pg
from strongroom.adapters.db.engine import is_sqlite, write_transaction
from strongroom.adapters.db.schema import (
    audit_entries,
    idempotency_keys,
    ledger_accounts,
    ledger_balances,
    ledger_entries,
    ledger_journal_entries,
    ledger_transfers,
    outbox_events,
)
from strongroom.ledger import engine as ledger_engine
from strongroom.ledger.commands import (
    ChangeAccount,
    Command,
    CreateAccount,
    CreateJournalEntry,
    CreateTransfer,
    ExpireTransfer,
    PostTransfer,
    ReverseTransfer,
    VoidTransfer,
)
from strongroom.ledger.engine import Effects, Key, Snapshot, side_shrinks_headroom
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.model import (
    AMOUNT_MAX,
    COUNTERS,
    Account,
    AccountKind,
    AccountStatus,
    Balances,
    Counter,
    Entry,
    JournalEntry,
    Leg,
    NormalSide,
    Side,
    Transfer,
    TransferStatus,
)
from strongroom.ledger.ports import (
    ClaimResult,
    EntryFilter,
    Outcome,
    StoredResponse,
    Unit,
)

ENTRY_PAGE_MAX = 1000
# Keys per row-value IN list on SQLite: 500 triples stay far below its 32,766 bound
# variables per statement.
SQLITE_KEYS_PER_QUERY = 500
ACCOUNT_PAGE_MAX = 500
_SUMS = [sa.func.coalesce(sa.func.sum(ledger_balances.c[c]), 0).label(c) for c in COUNTERS]


def _json(value: Any) -> str:
    return json_codec.dumps(value, sort_keys=True)


def _event_payload(type_: str, subjects: str, data: str, occurred_at_us: int) -> str:
    """``_json({"type", "subject_ids", "data", "occurred_at_us"})`` from parts already
    encoded: the same compact, key-sorted text (a test holds the two equal)."""
    return (
        f'{{"data":{data},"occurred_at_us":{occurred_at_us},'
        f'"subject_ids":{subjects},"type":{_json(type_)}}}'
    )


def _lock_key(*parts: str) -> int:
    """A signed 64-bit advisory-lock key for an id (collisions only serialize more)."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class _StaleConnection(Exception):
    """A group's connection turned out dead before its writes were sent."""


def _is_deadlock(exc: Exception) -> bool:
    cause = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    return isinstance(cause, psycopg.errors.DeadlockDetected)


def _connection_lost(connection: Connection, exc: Exception) -> bool:
    if isinstance(exc, sa.exc.DBAPIError):
        return exc.connection_invalidated
    raw = connection.connection.driver_connection
    return bool(getattr(raw, "broken", False) or getattr(raw, "closed", False))


class SqlLedgerStore:
    """``engine`` serves reads and Idempotency-Key claims; ``writer`` (default: the same)
    runs groups and may skip the pool's pre-ping: a group whose pooled connection is dead
    is retried once on a fresh one, as nothing of it can have been committed."""

    def __init__(
        self,
        engine: Engine,
        *,
        hot_account_shards: int = 8,
        writer: Engine | None = None,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        rng: random.Random | None = None,
    ) -> None:
        self._engine = engine
        self._writer = writer or engine
        self._shards = hot_account_shards
        self._new_id = new_id
        self._rng = rng or random.Random()
        self._sqlite = is_sqlite(engine)

    # -- writes ----------------------------------------------------------------------------
    def execute(self, units: Sequence[Unit], now_us: int) -> list[list[Outcome]]:
        try:
            lost, results = self._execute(units, now_us)
        except _StaleConnection:
            # The pooled connection was dead (a database restart) before anything was
            # sent for commit; the pool has been invalidated, so this runs on a new one.
            lost, results = self._execute(units, now_us)
        except (sa.exc.DBAPIError, psycopg.errors.DeadlockDetected) as exc:
            # PostgreSQL broke a lock cycle by rolling this group back (locks are taken in
            # one order, so only pods of two releases locking differently can meet so).
            if not _is_deadlock(exc):
                raise
            lost, results = self._execute(units, now_us)
        merged: list[list[Outcome]] = []
        answers = iter(results)
        for index, unit in enumerate(units):
            if index in lost:
                error = LedgerError(
                    "idempotency-conflict", "Another request took over this Idempotency-Key."
                )
                merged.append([Outcome(error=error) for _ in unit.commands])
            else:
                merged.append(next(answers))
        return merged

    def _execute(self, units: Sequence[Unit], now_us: int) -> tuple[set[int], list[list[Outcome]]]:
        with write_transaction(self._writer) as connection:
            try:
                lost = self._lost_claims(connection, units)
                live = [u for i, u in enumerate(units) if i not in lost]
                snapshot, plan = self._load(connection, live)
            except (sa.exc.DBAPIError, psycopg.OperationalError) as exc:
                if not _connection_lost(connection, exc):
                    raise
                # Nothing was written. This connection and its pooled siblings are from
                # before the outage: drop them all, then let the caller retry.
                connection.invalidate()
                self._writer.dispose()
                raise _StaleConnection from exc
            results, effects = ledger_engine.apply(snapshot, live, now_us, new_id=self._new_id)
            writes = _Writes(connection, self._sqlite)
            self._write(writes, live, effects, plan, now_us)
            self._finish_claims(writes, live, results)
            # A new account's balance rows are inserted, then moved: two statements.
            # On PostgreSQL the COMMIT goes in the same round trip as the writes.
            writes.flush(merge=not effects.new_accounts)
        return lost, results

    def _lost_claims(self, connection: Connection, units: Sequence[Unit]) -> set[int]:
        """Units whose Idempotency-Key another request took over (one query, rows locked in
        key order so two groups never wait on each other's keys in opposite orders)."""
        claimed = {i: u for i, u in enumerate(units) if u.claim is not None}
        if not claimed:
            return set()
        k = idempotency_keys.c
        wanted = sorted({(u.tenant_id, u.claim.key) for u in claimed.values() if u.claim})
        rows: Iterable[Any]
        if self._sqlite:
            rows = connection.execute(
                sa.select(k.tenant_id, k.key, k.token).where(
                    sa.tuple_(k.tenant_id, k.key).in_(wanted)
                )
            )
        else:
            pipeline = ledger_pg.Pipeline(connection)
            pipeline.add(ledger_pg.locked_by_key("idempotency_keys", ("tenant_id", "key"), wanted))
            rows = pipeline.run()[0]
        tokens = {(r.tenant_id, r.key): r.token for r in rows}
        return {
            i
            for i, u in claimed.items()
            if u.claim is None or tokens.get((u.tenant_id, u.claim.key)) != u.claim.token
        }

    def _fetch(self, connection: Connection, units: Sequence[Unit], wanted: _Wanted) -> _Fetched:
        """Every row the engine may need, before any balance row is locked."""
        if self._sqlite:
            fetched = _Fetched(
                transfers=self._rows_by_key(connection, ledger_transfers, wanted.transfers),
                journal_entries=self._rows_by_key(
                    connection, ledger_journal_entries, wanted.journal_entries
                ),
            )
            account_keys = set(wanted.accounts)
            for row in fetched.transfers:
                account_keys.add((row.tenant_id, row.debit_account_id))
                account_keys.add((row.tenant_id, row.credit_account_id))
            for tenant, currency in sorted(wanted.currencies):
                fetched.system.extend(
                    connection.execute(
                        sa.select(
                            ledger_accounts.c.tenant_id,
                            ledger_accounts.c.currency,
                            ledger_accounts.c.id,
                            ledger_accounts.c.code,
                        ).where(
                            ledger_accounts.c.tenant_id == tenant,
                            ledger_accounts.c.currency == currency,
                            ledger_accounts.c.code.is_not(None),
                        )
                    ).all()
                )
            fetched.accounts = self._rows_by_key(connection, ledger_accounts, account_keys)
            return fetched
        pipeline = ledger_pg.Pipeline(connection)
        lock_keys = {
            _lock_key(unit.tenant_id, ident)
            for unit in units
            for command in unit.commands
            for ident in _ids_to_serialize(command)
        }
        if lock_keys:
            pipeline.add(ledger_pg.advisory_locks(lock_keys))
        reads: dict[str, ledger_pg.Statement] = {}
        if wanted.transfers:
            reads["transfers"] = ledger_pg.rows_by_key("ledger_transfers", wanted.transfers)
        if wanted.journal_entries:
            reads["journal_entries"] = ledger_pg.rows_by_key(
                "ledger_journal_entries", wanted.journal_entries
            )
        if wanted.currencies:
            reads["system"] = ledger_pg.system_accounts(wanted.currencies)
        reads["accounts"] = ledger_pg.accounts(wanted.accounts, wanted.transfers)
        reads["shards"] = ledger_pg.hot_shards(wanted.accounts, wanted.transfers)
        # After the advisory locks, in a statement of its own: its snapshot then shows
        # what a lock holder we waited for committed.
        at = pipeline.add(ledger_pg.together(reads))
        (row,) = pipeline.run()[at]
        return _Fetched(**{name: ledger_pg.rows_of(row[i]) for i, name in enumerate(reads)})

    def _load(self, connection: Connection, units: Sequence[Unit]) -> tuple[Snapshot, _Plan]:
        snapshot = Snapshot()
        fetched = self._fetch(connection, units, _Wanted.of(units))
        for row in fetched.transfers:
            transfer = _transfer(row)
            snapshot.transfers[(transfer.tenant_id, transfer.id)] = transfer
        for row in fetched.journal_entries:
            entry = _journal_entry(row)
            snapshot.journal_entries[(entry.tenant_id, entry.id)] = entry
        for row in fetched.system:
            snapshot.system[(row.tenant_id, row.currency, row.code)] = row.id
        accounts = {(row.tenant_id, row.id): row for row in fetched.accounts}
        exact = self._exact_accounts(units, snapshot, accounts)
        # The other shards of a hot account, read without a lock: its total to within what
        # concurrent groups add meanwhile, for the overflow check (the balance check never
        # needs it: an account that can be overdrawn is always locked whole). Near the
        # integer limit the account is locked whole too, so that check is exact there.
        unlocked: dict[Key, dict[int, Balances]] = {}
        for row in fetched.shards:
            key = (row.tenant_id, row.account_id)
            if key not in exact:
                unlocked.setdefault(key, {})[row.shard] = _balances(row)
        moved = _amounts_moved(units, snapshot)
        shard_for: dict[Key, int] = {}
        for key, row in accounts.items():
            shard_for[key] = self._rng.randrange(row.shards)
        for key, shard_rows in unlocked.items():
            # Each shard may hold at most its share of the integer range (the sum then never
            # passes it, however many groups run at once). If the picked shard looks too
            # full for what the group may move, lock the account whole and spread the
            # movement over shards instead.
            picked = shard_rows.get(shard_for[key], Balances())
            if _budget(accounts[key].shards) - picked.most() < moved.get(key, 0):
                exact.add(key)
        wanted: list[tuple[str, str, int]] = []
        for key, row in accounts.items():
            shard = shard_for[key]
            if row.shards == 1 or key in exact:
                wanted.extend((key[0], key[1], s) for s in range(row.shards))
            else:
                wanted.append((key[0], key[1], shard))
        locked, reread = self._lock_balances(connection, wanted, accounts)
        if reread is not None:
            # Status and limit again, now that the balance rows are ours: a freeze or a
            # limit change locks them too, so one committed before we got them is seen
            # here, and one after waits for this group (the first read may predate both).
            accounts = {(row.tenant_id, row.id): row for row in reread}
        for key, row in accounts.items():
            shards = dict(unlocked.get(key, {})) if key not in exact else {}
            shards.update(locked.get(key, {}))
            account = _account(row, _total(shards.values()))
            if row.shards > 1:
                mine = locked.get(key, {})
                account = replace(account, room=_room(row.shards, mine.values()))
            snapshot.accounts[key] = account
        snapshot.new_system_room = _budget(self._shards) * self._shards
        return snapshot, _Plan(shard_for, locked)

    def _exact_accounts(
        self, units: Sequence[Unit], snapshot: Snapshot, rows: dict[Key, Row[Any]]
    ) -> set[Key]:
        """Accounts some command may check against their whole balance (all shards locked).

        SQLite has one writer at a time: every account is read whole there, for free.
        """
        if self._sqlite:
            return set(rows)
        exact = {
            (unit.tenant_id, command.account_id)
            for unit in units
            for command in unit.commands
            if isinstance(command, ChangeAccount)
        }
        for key, side, _ in _movements(units, snapshot):
            row = rows.get(key)
            if (
                side is not None
                and row is not None
                and side_shrinks_headroom(bool(row.bounded), row.normal, side)
            ):
                exact.add(key)
        return exact

    def _rows_by_key(
        self, connection: Connection, table: sa.Table, keys: Iterable[Key]
    ) -> list[Row[Any]]:
        ordered = sorted(keys)
        rows: list[Row[Any]] = []
        if not ordered:
            return rows
        if not self._sqlite:
            pipeline = ledger_pg.Pipeline(connection)
            pipeline.add(ledger_pg.rows_by_key(table.name, ordered))
            return pipeline.run()[0]
        for start in range(0, len(ordered), SQLITE_KEYS_PER_QUERY):
            chunk = ordered[start : start + SQLITE_KEYS_PER_QUERY]
            rows.extend(
                connection.execute(
                    sa.select(table).where(sa.tuple_(table.c.tenant_id, table.c.id).in_(chunk))
                ).all()
            )
        return rows

    def _lock_balances(
        self, connection: Connection, wanted: list[tuple[str, str, int]], accounts: Iterable[Key]
    ) -> tuple[dict[Key, dict[int, Balances]], list[Any] | None]:
        """The rows ``wanted`` (tenant, account, shard), locked in one fixed order; on
        PostgreSQL also the ``accounts`` rows read again once those locks are held."""
        totals: dict[Key, dict[int, Balances]] = {}
        ordered = sorted(set(wanted))
        reread: list[Any] | None = None
        rows: list[Any] = []
        if not self._sqlite:
            pipeline = ledger_pg.Pipeline(connection)
            if ordered:
                pipeline.add(ledger_pg.lock_balances(ordered))
            pipeline.add(ledger_pg.rows_by_key("ledger_accounts", accounts))
            *locked, reread = pipeline.run()
            rows = locked[0] if locked else []
        else:
            b = ledger_balances.c
            for start in range(0, len(ordered), SQLITE_KEYS_PER_QUERY):
                chunk = ordered[start : start + SQLITE_KEYS_PER_QUERY]
                query = (
                    sa.select(ledger_balances)
                    .where(sa.tuple_(b.tenant_id, b.account_id, b.shard).in_(chunk))
                    .order_by(b.tenant_id, b.account_id, b.shard)
                )
                rows.extend(connection.execute(query).all())
        for row in rows:
            totals.setdefault((row.tenant_id, row.account_id), {})[row.shard] = _balances(row)
        return totals, reread

    def _write(
        self,
        writes: _Writes,
        units: Sequence[Unit],
        effects: Effects,
        plan: _Plan,
        now_us: int,
    ) -> None:
        if effects.new_accounts:
            writes.insert(
                ledger_accounts,
                [
                    {
                        "tenant_id": a.tenant_id,
                        "id": a.id,
                        "currency": a.currency,
                        "kind": a.kind,
                        "code": a.code,
                        "normal": a.normal,
                        "bounded": a.bounded,
                        "overdraft_limit": a.overdraft_limit,
                        "initial_overdraft_limit": a.initial_overdraft_limit,
                        "status": a.status,
                        "metadata": _json(a.metadata),
                        "shards": self._shards if a.kind == "system" else 1,
                        "created_at_us": a.created_at_us,
                    }
                    for a in effects.new_accounts
                ],
            )
            writes.insert(
                ledger_balances,
                [
                    {
                        "tenant_id": a.tenant_id,
                        "account_id": a.id,
                        "shard": shard,
                        **dict.fromkeys(COUNTERS, 0),
                    }
                    for a in effects.new_accounts
                    for shard in range(self._shards if a.kind == "system" else 1)
                ],
            )
            for a in effects.new_accounts:
                shards = self._shards if a.kind == "system" else 1
                plan.shard_for[(a.tenant_id, a.id)] = 0
                plan.locked[(a.tenant_id, a.id)] = {s: Balances() for s in range(shards)}
        if effects.changed_accounts:
            writes.update(
                ledger_accounts,
                ("tenant_id", "id"),
                [
                    {
                        "tenant_id": a.tenant_id,
                        "id": a.id,
                        "status": a.status,
                        "overdraft_limit": a.overdraft_limit,
                    }
                    for a in effects.changed_accounts
                ],
            )
        if effects.balance_deltas:
            deltas = sorted(
                ((key, shard), delta)
                for key, total in effects.balance_deltas.items()
                for shard, delta in _spread(total, plan.shard_for[key], plan.locked.get(key, {}))
            )
            writes.add_to_balances(deltas)
        if effects.new_transfers:
            writes.insert(ledger_transfers, [_transfer_row(t) for t in effects.new_transfers])
        if effects.changed_transfers:
            writes.update(
                ledger_transfers,
                ("tenant_id", "id"),
                [
                    {
                        "tenant_id": x.tenant_id,
                        "id": x.id,
                        "status": x.status,
                        "posted_amount": x.posted_amount,
                        "resolved_at_us": x.resolved_at_us,
                        "reversed_amount": x.reversed_amount,
                    }
                    for x in effects.changed_transfers
                ],
            )
        if effects.new_journal_entries:
            writes.insert(
                ledger_journal_entries,
                [
                    {
                        "tenant_id": j.tenant_id,
                        "id": j.id,
                        "legs": _json([_leg_json(leg) for leg in j.legs]),
                        "metadata": _json(j.metadata),
                        "created_at_us": j.created_at_us,
                    }
                    for j in effects.new_journal_entries
                ],
            )
        if effects.entries:
            writes.insert(
                ledger_entries,
                [
                    {
                        "tenant_id": tenant,
                        "account_id": e.account_id,
                        "counter": e.counter,
                        "delta": e.delta,
                        "transfer_id": e.transfer_id,
                        "journal_entry_id": e.journal_entry_id,
                        "created_at_us": e.created_at_us,
                    }
                    for tenant, e in zip(effects.entry_tenants, effects.entries, strict=True)
                ],
            )
        if effects.events:
            outbox: list[dict[str, Any]] = []
            audit: list[dict[str, Any]] = []
            for index, event in effects.events:
                # Each part encoded once, for the audit entry and the outbox payload alike.
                subjects, data = _json(list(event.subject_ids)), _json(event.data)
                outbox.append(
                    {
                        "tenant_id": event.tenant_id,
                        "type": event.type,
                        "payload": _event_payload(event.type, subjects, data, event.occurred_at_us),
                        "created_at_us": now_us,
                    }
                )
                unit = units[index]
                audit.append(
                    {
                        "tenant_id": event.tenant_id,
                        "event_type": event.type,
                        "actor_kind": unit.actor.kind,
                        "actor_id": unit.actor.id,
                        "request_id": unit.request_id,
                        "subject_ids": subjects,
                        "data": data,
                        "occurred_at_us": event.occurred_at_us,
                    }
                )
            writes.insert(outbox_events, outbox)
            writes.insert(audit_entries, audit)

    def _finish_claims(
        self, writes: _Writes, units: Sequence[Unit], results: list[list[Outcome]]
    ) -> None:
        """Store each claimed unit's response with its key, in the money transaction."""
        done = []
        for unit, outcomes in zip(units, results, strict=True):
            if unit.claim is None:
                continue
            response = unit.claim.respond(outcomes)
            done.append(
                {
                    "tenant_id": unit.tenant_id,
                    "key": unit.claim.key,
                    "token": unit.claim.token,
                    "state": "done",
                    "response_status": response.status,
                    "response_body": response.body,
                }
            )
        if done:
            writes.update(idempotency_keys, ("tenant_id", "key", "token"), done)

    # -- Idempotency-Key claims --------------------------------------------------------------
    def claim_key(
        self,
        tenant_id: str,
        key: str,
        request_hash: str,
        now_us: int,
        *,
        lease_us: int,
        ttl_us: int,
    ) -> ClaimResult:
        token = secrets.token_hex(16)
        fresh = {
            "request_hash": request_hash,
            "token": token,
            "state": "started",
            "lease_until_us": now_us + lease_us,
            "expires_at_us": now_us + ttl_us,
            "response_status": None,
            "response_body": None,
        }
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(idempotency_keys)
        k = idempotency_keys.c
        with write_transaction(self._engine) as connection:
            connection.execute(
                insert.values(tenant_id=tenant_id, key=key, **fresh).on_conflict_do_nothing()
            )
            query = sa.select(idempotency_keys).where(k.tenant_id == tenant_id, k.key == key)
            if not self._sqlite:
                query = query.with_for_update()
            row = connection.execute(query).one()
            if row.token == token:
                return ClaimResult("claimed", token=token)
            take_over = row.expires_at_us <= now_us or (
                row.state == "started"
                and row.lease_until_us <= now_us
                and row.request_hash == request_hash
            )
            if take_over:
                connection.execute(
                    idempotency_keys.update()
                    .where(k.tenant_id == tenant_id, k.key == key)
                    .values(**fresh)
                )
                return ClaimResult("claimed", token=token)
            if row.request_hash != request_hash:
                return ClaimResult("mismatch")
            if row.state == "done":
                return ClaimResult(
                    "replay", response=StoredResponse(row.response_status, bytes(row.response_body))
                )
            return ClaimResult("in_flight")

    def release_key(self, tenant_id: str, key: str, token: str) -> None:
        k = idempotency_keys.c
        with write_transaction(self._engine) as connection:
            connection.execute(
                idempotency_keys.delete().where(
                    k.tenant_id == tenant_id, k.key == key, k.token == token, k.state == "started"
                )
            )

    def purge_keys(self, now_us: int) -> int:
        with write_transaction(self._engine) as connection:
            result = connection.execute(
                idempotency_keys.delete().where(idempotency_keys.c.expires_at_us <= now_us)
            )
        return int(result.rowcount)

    # -- reads -----------------------------------------------------------------------------
    def account(
        self, tenant_id: str, account_id: str, *, as_of_us: int | None = None
    ) -> Account | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                sa.select(ledger_accounts).where(
                    ledger_accounts.c.tenant_id == tenant_id, ledger_accounts.c.id == account_id
                )
            ).first()
            if row is None or (as_of_us is not None and row.created_at_us > as_of_us):
                return None
            if as_of_us is None:
                sums = connection.execute(
                    sa.select(*_SUMS).where(
                        ledger_balances.c.tenant_id == tenant_id,
                        ledger_balances.c.account_id == account_id,
                    )
                ).one()
                balances = Balances(*(int(sums[i]) for i in range(4)))
            else:
                e = ledger_entries.c
                sums_by_counter = connection.execute(
                    sa.select(e.counter, sa.func.sum(e.delta).label("total"))
                    .where(
                        e.tenant_id == tenant_id,
                        e.account_id == account_id,
                        e.created_at_us <= as_of_us,
                    )
                    .group_by(e.counter)
                ).all()
                by_counter = {r.counter: r.total for r in sums_by_counter}
                balances = Balances(*(int(by_counter.get(c) or 0) for c in COUNTERS))
        return _account(row, balances)

    def accounts(
        self,
        tenant_id: str,
        *,
        after: str | None,
        limit: int,
        kind: AccountKind | None = None,
        currency: str | None = None,
    ) -> list[Account]:
        a = ledger_accounts.c
        sums = (
            sa.select(ledger_balances.c.account_id, *_SUMS)
            .where(ledger_balances.c.tenant_id == tenant_id)
            .group_by(ledger_balances.c.account_id)
            .subquery()
        )
        query = (
            sa.select(ledger_accounts, *(sums.c[c] for c in COUNTERS))
            .join(sums, sums.c.account_id == a.id)
            .where(a.tenant_id == tenant_id)
            .order_by(a.id)
            .limit(max(1, min(limit, ACCOUNT_PAGE_MAX)))
        )
        if after is not None:
            query = query.where(a.id > after)
        if kind is not None:
            query = query.where(a.kind == kind)
        if currency is not None:
            query = query.where(a.currency == currency)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [_account(r, Balances(*(int(getattr(r, c)) for c in COUNTERS))) for r in rows]

    def transfer(self, tenant_id: str, transfer_id: str) -> Transfer | None:
        with self._engine.connect() as connection:
            rows = self._rows_by_key(connection, ledger_transfers, [(tenant_id, transfer_id)])
        return _transfer(rows[0]) if rows else None

    def journal_entry(self, tenant_id: str, entry_id: str) -> JournalEntry | None:
        with self._engine.connect() as connection:
            rows = self._rows_by_key(connection, ledger_journal_entries, [(tenant_id, entry_id)])
        return _journal_entry(rows[0]) if rows else None

    def entries(
        self, tenant_id: str, account_id: str, *, after_seq: int, limit: int, where: EntryFilter
    ) -> list[Entry]:
        e = ledger_entries.c
        query = (
            sa.select(ledger_entries)
            .where(e.tenant_id == tenant_id, e.account_id == account_id, e.seq > after_seq)
            .order_by(e.seq)
            .limit(max(1, min(limit, ENTRY_PAGE_MAX)))
        )
        if where.counters:
            query = query.where(e.counter.in_(sorted(where.counters)))
        if where.from_us is not None:
            query = query.where(e.created_at_us >= where.from_us)
        if where.to_us is not None:
            query = query.where(e.created_at_us < where.to_us)
        if where.transfer_id is not None:
            query = query.where(e.transfer_id == where.transfer_id)
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            Entry(
                account_id=r.account_id,
                counter=cast(Counter, r.counter),
                delta=int(r.delta),
                created_at_us=int(r.created_at_us),
                transfer_id=r.transfer_id,
                journal_entry_id=r.journal_entry_id,
                seq=int(r.seq),
            )
            for r in rows
        ]

    def due_holds(self, now_us: int, limit: int) -> list[tuple[str, str]]:
        t = ledger_transfers.c
        with self._engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.tenant_id, t.id)
                .where(
                    t.status == "pending", t.expires_at_us.is_not(None), t.expires_at_us <= now_us
                )
                .order_by(t.expires_at_us)
                .limit(limit)
            ).all()
        return [(r.tenant_id, r.id) for r in rows]


class _Writes:
    """A group's writes: run at once on SQLite (in-process: ``executemany`` costs no round
    trips), queued into one pipeline on PostgreSQL and sent by ``flush``."""

    def __init__(self, connection: Connection, sqlite: bool) -> None:
        self._connection = connection
        self._pipeline = None if sqlite else ledger_pg.Pipeline(connection)

    def insert(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._pipeline is None:
            self._connection.execute(table.insert(), rows)
        else:
            self._pipeline.insert(table.name, rows)

    def update(self, table: sa.Table, keys: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
        """Set each row's other members on the row with its ``keys``."""
        if not rows:
            return
        if self._pipeline is not None:
            self._pipeline.add(ledger_pg.bulk_update(table.name, keys, rows))
            return
        # Parameter names apart from column names: SQLAlchemy reserves those in UPDATE.
        columns = [c for c in rows[0] if c not in keys]
        self._connection.execute(
            table.update()
            .where(*(table.c[k] == sa.bindparam(f"k_{k}") for k in keys))
            .values({c: sa.bindparam(f"v_{c}") for c in columns}),
            [{(f"k_{c}" if c in keys else f"v_{c}"): v for c, v in row.items()} for row in rows],
        )

    def add_to_balances(self, deltas: list[tuple[tuple[Key, int], Balances]]) -> None:
        if self._pipeline is not None:  # one statement for the whole group
            self._pipeline.add(
                ledger_pg.add_to_balances(
                    [
                        {
                            "tenant_id": key[0],
                            "account_id": key[1],
                            "shard": shard,
                            **{c: getattr(d, c) for c in COUNTERS},
                        }
                        for (key, shard), d in deltas
                    ]
                )
            )
            return
        b = ledger_balances.c
        self._connection.execute(
            ledger_balances.update()
            .where(
                b.tenant_id == sa.bindparam("k_tenant"),
                b.account_id == sa.bindparam("k_account"),
                b.shard == sa.bindparam("k_shard"),
            )
            .values({c: b[c] + sa.bindparam(f"d_{c}") for c in COUNTERS}),
            [
                {
                    "k_tenant": key[0],
                    "k_account": key[1],
                    "k_shard": shard,
                    **{f"d_{c}": getattr(delta, c) for c in COUNTERS},
                }
                for (key, shard), delta in deltas
            ],
        )

    def flush(self, *, merge: bool) -> None:
        """Send the queued writes; ``merge``: as one statement (no row written twice).
        On PostgreSQL this commits, in the same round trip."""
        if self._pipeline is not None:
            self._pipeline.run(merge=merge, commit=True)


@dataclass
class _Wanted:
    """The keys a group names, before anything is read."""

    transfers: set[Key] = field(default_factory=set)
    journal_entries: set[Key] = field(default_factory=set)
    accounts: set[Key] = field(default_factory=set)
    currencies: set[tuple[str, str]] = field(default_factory=set)

    @classmethod
    def of(cls, units: Sequence[Unit]) -> _Wanted:
        wanted = cls()
        for unit in units:
            t = unit.tenant_id
            for command in unit.commands:
                match command:
                    case CreateAccount():
                        wanted.accounts.add((t, command.id))
                        wanted.currencies.add((t, command.currency))
                    case ChangeAccount():
                        wanted.accounts.add((t, command.account_id))
                    case CreateTransfer():
                        wanted.transfers.add((t, command.id))
                        wanted.accounts.add((t, command.debit_account_id))
                        wanted.accounts.add((t, command.credit_account_id))
                    case PostTransfer() | VoidTransfer() | ExpireTransfer():
                        wanted.transfers.add((t, command.transfer_id))
                    case ReverseTransfer():
                        wanted.transfers.update({(t, command.transfer_id), (t, command.id)})
                    case CreateJournalEntry():
                        wanted.journal_entries.add((t, command.id))
                        wanted.accounts.update((t, leg.account_id) for leg in command.legs)
        return wanted


@dataclass
class _Fetched:
    """What a group read before locking: rows of each table (shards: hot accounts' shard
    rows, read without a lock; PostgreSQL only, as SQLite locks every account whole)."""

    transfers: list[Any] = field(default_factory=list)
    journal_entries: list[Any] = field(default_factory=list)
    system: list[Any] = field(default_factory=list)
    accounts: list[Any] = field(default_factory=list)
    shards: list[Any] = field(default_factory=list)


def _movements(units: Sequence[Unit], snapshot: Snapshot) -> Iterator[tuple[Key, Side | None, int]]:
    """Every account a group may move money on: the side, and an upper bound of the amount.

    The side is None for posting or releasing a hold: that never shrinks an account's
    headroom (the amount was held already), so it needs no balance check.
    """
    for unit in units:
        t = unit.tenant_id
        for command in unit.commands:
            match command:
                case CreateTransfer():
                    yield (t, command.debit_account_id), "debit", command.amount
                    yield (t, command.credit_account_id), "credit", command.amount
                case CreateJournalEntry():
                    for leg in command.legs:
                        yield (t, leg.account_id), leg.side, leg.amount
                case ReverseTransfer():
                    original = snapshot.transfers.get((t, command.transfer_id))
                    if original is not None:  # money flows back: credit side is debited
                        yield (t, original.credit_account_id), "debit", original.amount
                        yield (t, original.debit_account_id), "credit", original.amount
                case PostTransfer() | VoidTransfer() | ExpireTransfer():
                    original = snapshot.transfers.get((t, command.transfer_id))
                    if original is not None:
                        yield (t, original.debit_account_id), None, original.amount
                        yield (t, original.credit_account_id), None, original.amount
                case _:
                    pass


def _amounts_moved(units: Sequence[Unit], snapshot: Snapshot) -> dict[Key, int]:
    """An upper bound of what the group may add to each account's counters."""
    moved: dict[Key, int] = {}
    for key, _, amount in _movements(units, snapshot):
        moved[key] = moved.get(key, 0) + amount
    return moved


def _ids_to_serialize(command: Command) -> tuple[str, ...]:
    match command:
        case CreateAccount():
            return (command.id, f"system:{command.currency}")
        case ChangeAccount():
            return (command.account_id,)
        case CreateTransfer():
            return (command.id,)
        case PostTransfer() | VoidTransfer() | ExpireTransfer():
            return (command.transfer_id,)
        case ReverseTransfer():
            return (command.transfer_id, command.id)
        case CreateJournalEntry():
            return (command.id,)
    return ()


@dataclass
class _Plan:
    """Which shard row each account's movement goes to, and the shard rows locked."""

    shard_for: dict[Key, int]
    locked: dict[Key, dict[int, Balances]]


def _budget(shards: int) -> int:
    """What one shard row of an account with ``shards`` rows may hold, per counter."""
    return AMOUNT_MAX // shards


def _room(shards: int, locked: Iterable[Balances]) -> Balances:
    """How much each counter may grow, given the locked shard rows' values."""
    budget = _budget(shards)
    room = [0, 0, 0, 0]
    for shard in locked:
        for i, counter in enumerate(COUNTERS):
            room[i] += max(0, budget - getattr(shard, counter))
    return Balances(*room)


def _spread(delta: Balances, shard: int, locked: dict[int, Balances]) -> list[tuple[int, Balances]]:
    """Per-shard deltas: all on ``shard`` unless a counter's increase exceeds that row's
    budget, in which case it is spread over the locked rows with room (the engine checked,
    against ``_room``, that the locked rows can take it)."""
    if len(locked) <= 1:
        return [(shard, delta)]
    budget = _budget(len(locked)) if len(locked) > 1 else AMOUNT_MAX
    out: dict[int, Balances] = {}
    for counter in COUNTERS:
        amount = getattr(delta, counter)
        if amount <= 0 or budget - getattr(locked[shard], counter) >= amount:
            out[shard] = out.get(shard, Balances()).plus(counter, amount)
            continue
        for s in sorted(locked, key=lambda s: getattr(locked[s], counter)):
            take = min(amount, max(0, budget - getattr(locked[s], counter)))
            if take:
                out[s] = out.get(s, Balances()).plus(counter, take)
                amount -= take
            if not amount:
                break
        if amount:  # the engine's room check makes this unreachable
            raise AssertionError(f"no shard room for {counter} {amount}")
    return sorted(out.items())


def _balances(row: Row[Any]) -> Balances:
    return Balances(
        int(row.debits_posted),
        int(row.credits_posted),
        int(row.debits_pending),
        int(row.credits_pending),
    )


def _total(shards: Iterable[Balances]) -> Balances:
    total = Balances()
    for shard in shards:
        total = total.merged(shard)
    return total


def _account(row: Row[Any], balances: Balances) -> Account:
    return Account(
        id=row.id,
        tenant_id=row.tenant_id,
        currency=row.currency,
        kind=cast(AccountKind, row.kind),
        normal=cast(NormalSide, row.normal),
        bounded=bool(row.bounded),
        overdraft_limit=int(row.overdraft_limit),
        status=cast(AccountStatus, row.status),
        metadata=json_codec.loads(row.metadata),
        created_at_us=int(row.created_at_us),
        code=row.code,
        balances=balances,
        initial_overdraft_limit=int(row.initial_overdraft_limit),
    )


def _transfer(row: Row[Any]) -> Transfer:
    return Transfer(
        id=row.id,
        tenant_id=row.tenant_id,
        debit_account_id=row.debit_account_id,
        credit_account_id=row.credit_account_id,
        amount=int(row.amount),
        currency=row.currency,
        status=cast(TransferStatus, row.status),
        pending=bool(row.pending),
        metadata=json_codec.loads(row.metadata),
        created_at_us=int(row.created_at_us),
        expires_at_us=row.expires_at_us,
        posted_amount=row.posted_amount,
        resolved_at_us=row.resolved_at_us,
        reversed_amount=int(row.reversed_amount),
        reverses_id=row.reverses_id,
    )


def _transfer_row(t: Transfer) -> dict[str, Any]:
    return {
        "tenant_id": t.tenant_id,
        "id": t.id,
        "debit_account_id": t.debit_account_id,
        "credit_account_id": t.credit_account_id,
        "amount": t.amount,
        "currency": t.currency,
        "status": t.status,
        "pending": t.pending,
        "expires_at_us": t.expires_at_us,
        "posted_amount": t.posted_amount,
        "resolved_at_us": t.resolved_at_us,
        "reversed_amount": t.reversed_amount,
        "reverses_id": t.reverses_id,
        "metadata": _json(t.metadata),
        "created_at_us": t.created_at_us,
    }


def _journal_entry(row: Row[Any]) -> JournalEntry:
    legs = tuple(
        Leg(leg["account_id"], leg["side"], int(leg["amount"]), leg["currency"])
        for leg in json_codec.loads(row.legs)
    )
    return JournalEntry(
        row.id, row.tenant_id, legs, json_codec.loads(row.metadata), int(row.created_at_us)
    )


def _leg_json(leg: Leg) -> dict[str, Any]:
    return {
        "account_id": leg.account_id,
        "side": leg.side,
        "amount": leg.amount,
        "currency": leg.currency,
    }
