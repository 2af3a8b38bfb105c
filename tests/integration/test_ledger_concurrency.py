"""`SqlLedgerStore` under concurrency on PostgreSQL: two stores (two pods), many threads.

Each thread submits groups of 1..50 units to one store's `execute`, as a pod's group
commit does. Afterwards the database must show exactly the acknowledged transfers, once
each, with counters equal to what they moved, books that balance and one audit entry and
outbox event per change; no deadlock or other infrastructure error may reach a caller.

A database in READ COMMITTED hands each statement a fresh snapshot, so these tests also
look for decisions taken on values read before a lock was granted: a transfer that commits
after its account was frozen, or that draws past a limit cut in the meantime.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter as Multiset
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from strongroom.adapters.db.auth_repositories import SqlTenantRepository
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.ledger_store import SqlLedgerStore
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import (
    audit_entries,
    ledger_balances,
    ledger_entries,
    ledger_journal_entries,
    ledger_transfers,
    outbox_events,
)
from strongroom.config import Settings
from strongroom.ledger.commands import (
    ChangeAccount,
    Command,
    CreateAccount,
    CreateJournalEntry,
    CreateTransfer,
    PostTransfer,
    ReverseTransfer,
    VoidTransfer,
)
from strongroom.ledger.model import AMOUNT_MAX, COUNTERS, Account, Balances, Leg, Transfer
from strongroom.ledger.ports import Actor, Outcome, Unit

ACTOR = Actor("client", "concurrency")
WALLETS = 20
THREADS = 8
RUN_S = 5.0
GROUP_UNITS_MAX = 50
FUNDS = 1_000_000
HOT_SHARDS = 8


def _id() -> str:
    return str(uuid.uuid4())


def _now_us() -> int:
    return time.time_ns() // 1000


@pytest.fixture(scope="module")
def pg_settings(postgres_url: str) -> Settings:
    settings = Settings(database={"url": postgres_url, "pool_size": THREADS})
    upgrade(settings)
    return settings


@pytest.fixture
def pods(pg_settings: Settings) -> Iterator[tuple[Engine, Engine]]:
    """Two engines with their own pools: two pods sharing one database."""
    engines = (make_engine(pg_settings), make_engine(pg_settings))
    yield engines
    for engine in engines:
        engine.dispose()


def _tenant(engine: Engine) -> str:
    tenant = _id()
    SqlTenantRepository(engine).create(tenant, "concurrency")
    return tenant


def _open(store: SqlLedgerStore, tenant: str, count: int, funds: int, **kw: int) -> list[str]:
    """``count`` EUR wallets, each funded from clearing with ``funds``."""
    ids = [_id() for _ in range(count)]
    created = store.execute(
        [Unit(tenant, tuple(CreateAccount(i, "wallet", "EUR", **kw) for i in ids), ACTOR)],
        _now_us(),
    )
    assert all(o.ok for o in created[0])
    if funds:
        clearing = _system(store, tenant, "clearing")
        funding = tuple(CreateTransfer(_id(), clearing, i, funds, "EUR") for i in ids)
        assert all(o.ok for o in store.execute([Unit(tenant, funding, ACTOR)], _now_us())[0])
    return ids


def _system(store: SqlLedgerStore, tenant: str, code: str) -> str:
    found = store.accounts(tenant, after=None, limit=10, kind="system", currency="EUR")
    return next(a.id for a in found if a.code == code)


def _all_accounts(store: SqlLedgerStore, tenant: str) -> list[Account]:
    found: list[Account] = []
    after: str | None = None
    while page := store.accounts(tenant, after=after, limit=500):
        found += page
        after = page[-1].id
    return found


@dataclass
class Move:
    """What one acknowledged unit did: ids it created and counter deltas per account."""

    transfer_ids: tuple[str, ...] = ()
    journal_ids: tuple[str, ...] = ()
    debits: dict[str, int] = field(default_factory=dict)
    credits: dict[str, int] = field(default_factory=dict)
    fee: int = 0


@dataclass
class Run:
    acked: list[Move] = field(default_factory=list)
    refused: Multiset[str] = field(default_factory=Multiset)
    errors: list[BaseException] = field(default_factory=list)
    groups: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


MakeUnit = Callable[[random.Random], tuple[Unit, Move]]


def _hammer(
    stores: list[SqlLedgerStore], make_unit: MakeUnit, seconds: float = RUN_S
) -> tuple[Run, float]:
    """THREADS threads, alternating between the stores, each sending groups of 1..50 units."""
    run = Run()
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        rng = random.Random(n)
        store = stores[n % len(stores)]
        while time.monotonic() < deadline:
            group = [make_unit(rng) for _ in range(rng.randint(1, GROUP_UNITS_MAX))]
            try:
                results = store.execute([unit for unit, _ in group], _now_us())
            except BaseException as exc:
                with run.lock:
                    run.errors.append(exc)
                return
            with run.lock:
                run.groups += 1
                for (unit, move), outcomes in zip(group, results, strict=True):
                    assert len(outcomes) == len(unit.commands)
                    if all(o.ok for o in outcomes):
                        assert not any(o.replayed for o in outcomes)
                        run.acked.append(move)
                    else:
                        assert not any(o.ok for o in outcomes)  # atomic units
                        run.refused.update(o.error.code for o in outcomes if o.error is not None)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    assert not any(t.is_alive() for t in threads), "a worker is stuck (lock wait?)"
    return run, time.monotonic() - started


def _check_books(
    engine: Engine,
    store: SqlLedgerStore,
    tenant: str,
    wallets: list[str],
    run: Run,
    *,
    funds: int,
    fees: str | None = None,
) -> None:
    assert run.errors == [], f"infrastructure errors reached callers: {run.errors[:3]!r}"
    accounts = {a.id: a for a in _all_accounts(store, tenant)}

    # Each wallet's counters are exactly what the acknowledged units moved.
    debits: Multiset[str] = Multiset()
    credits: Multiset[str] = Multiset()
    for move in run.acked:
        debits.update(move.debits)
        credits.update(move.credits)
    for wallet in wallets:
        b = accounts[wallet].balances
        assert b == Balances(debits[wallet], funds + credits[wallet], 0, 0), wallet
        assert b.debits_posted <= b.credits_posted  # no overdraft was granted
    if fees is not None:
        assert accounts[fees].balances == Balances(0, sum(m.fee for m in run.acked), 0, 0)

    # Books balance; counters are the sums of entries.
    for counter in ("posted", "pending"):
        assert sum(getattr(a.balances, f"debits_{counter}") for a in accounts.values()) == sum(
            getattr(a.balances, f"credits_{counter}") for a in accounts.values()
        )
    e = ledger_entries.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.account_id, e.counter, sa.func.sum(e.delta).label("total"))
            .where(e.tenant_id == tenant)
            .group_by(e.account_id, e.counter)
        ).all()
        per_transfer = connection.execute(
            sa.select(e.transfer_id, sa.func.count().label("n"))
            .where(e.tenant_id == tenant, e.transfer_id.is_not(None))
            .group_by(e.transfer_id)
        ).all()
        transfer_ids = (
            connection.execute(
                sa.select(ledger_transfers.c.id).where(ledger_transfers.c.tenant_id == tenant)
            )
            .scalars()
            .all()
        )
        journal_ids = (
            connection.execute(
                sa.select(ledger_journal_entries.c.id).where(
                    ledger_journal_entries.c.tenant_id == tenant
                )
            )
            .scalars()
            .all()
        )
        audit = connection.execute(
            sa.select(audit_entries.c.event_type, audit_entries.c.subject_ids).where(
                audit_entries.c.tenant_id == tenant
            )
        ).all()
        outbox = (
            connection.execute(
                sa.select(outbox_events.c.payload).where(outbox_events.c.tenant_id == tenant)
            )
            .scalars()
            .all()
        )
    sums: dict[str, Balances] = {}
    for row in rows:
        sums[row.account_id] = sums.get(row.account_id, Balances()).plus(
            row.counter, int(row.total)
        )
    for account in accounts.values():
        assert sums.get(account.id, Balances()) == account.balances, account
        for counter in COUNTERS:
            assert getattr(account.balances, counter) >= 0

    # Every acknowledged transfer exists exactly once; nothing else does (but the funding).
    acked_transfers = [i for m in run.acked for i in m.transfer_ids]
    acked_journals = [i for m in run.acked for i in m.journal_ids]
    assert len(acked_transfers) == len(set(acked_transfers))
    assert set(acked_transfers) <= set(transfer_ids)
    assert len(transfer_ids) == len(acked_transfers) + (len(wallets) if funds else 0)
    assert sorted(journal_ids) == sorted(acked_journals)
    assert all(row.n == 2 for row in per_transfer)  # a posted transfer: two entries

    # One audit entry and one outbox event per change, naming it first.
    created = Multiset(
        json.loads(s)[0] for t, s in audit if t in ("transfer.created", "journal_entry.created")
    )
    assert created == Multiset(transfer_ids) + Multiset(journal_ids)
    published = Multiset(
        p["subject_ids"][0]
        for p in map(json.loads, outbox)
        if p["type"] in ("transfer.created", "journal_entry.created")
    )
    assert published == created


def test_concurrent_transfers_from_two_pods_keep_the_books(pods: tuple[Engine, Engine]) -> None:
    stores = [SqlLedgerStore(engine, hot_account_shards=HOT_SHARDS) for engine in pods]
    tenant = _tenant(pods[0])
    wallets = _open(stores[0], tenant, WALLETS, FUNDS)

    def make_unit(rng: random.Random) -> tuple[Unit, Move]:
        a, b = rng.sample(wallets, 2)
        # Mostly affordable, sometimes not: refusals must leave no trace either.
        amount = rng.randint(1, 20_000) if rng.random() < 0.95 else FUNDS * 3
        transfer = CreateTransfer(_id(), a, b, amount, "EUR")
        return Unit(tenant, (transfer,), ACTOR), Move((transfer.id,), (), {a: amount}, {b: amount})

    run, elapsed = _hammer(stores, make_unit)
    print(
        f"\n{len(run.acked)} transfers acknowledged in {run.groups} groups: {len(run.acked) / elapsed:.0f}/s"
    )
    assert len(run.acked) > 100, "the test moved too little to mean anything"
    assert set(run.refused) <= {"insufficient-funds"}, run.refused
    assert run.refused["insufficient-funds"] > 0
    _check_books(pods[0], stores[1], tenant, wallets, run, funds=FUNDS)


def test_a_hot_fees_account_credited_by_every_transfer(pods: tuple[Engine, Engine]) -> None:
    stores = [SqlLedgerStore(engine, hot_account_shards=HOT_SHARDS) for engine in pods]
    tenant = _tenant(pods[0])
    wallets = _open(stores[0], tenant, WALLETS, FUNDS)
    fees = _system(stores[0], tenant, "fees")

    def make_unit(rng: random.Random) -> tuple[Unit, Move]:
        a, b = rng.sample(wallets, 2)
        amount = rng.randint(1, 20_000)
        fee = rng.randint(1, 100)
        if rng.random() < 0.5:
            # A payment and its fee as two transfers of one atomic unit...
            pay, charge = (
                CreateTransfer(_id(), a, b, amount, "EUR"),
                CreateTransfer(_id(), a, fees, fee, "EUR"),
            )
            return Unit(tenant, (pay, charge), ACTOR), Move(
                (pay.id, charge.id), (), {a: amount + fee}, {b: amount}, fee
            )
        # ...or as one three-leg journal entry.
        legs = (
            Leg(a, "debit", amount + fee, "EUR"),
            Leg(b, "credit", amount, "EUR"),
            Leg(fees, "credit", fee, "EUR"),
        )
        entry = CreateJournalEntry(_id(), legs)
        return Unit(tenant, (entry,), ACTOR), Move(
            (), (entry.id,), {a: amount + fee}, {b: amount}, fee
        )

    run, elapsed = _hammer(stores, make_unit)
    print(
        f"\n{len(run.acked)} payments with a fee in {run.groups} groups: {len(run.acked) / elapsed:.0f}/s"
    )
    assert len(run.acked) > 100
    assert set(run.refused) <= {"insufficient-funds", "batch-aborted"}, run.refused
    _check_books(pods[0], stores[1], tenant, wallets, run, funds=FUNDS, fees=fees)
    # The hot account's credits really were spread over its balance rows.
    b = ledger_balances.c
    with pods[0].connect() as connection:
        shards = connection.execute(
            sa.select(b.shard, b.credits_posted).where(b.tenant_id == tenant, b.account_id == fees)
        ).all()
    assert len(shards) == HOT_SHARDS
    assert sum(1 for row in shards if row.credits_posted > 0) > 1


def _check_invariants(engine: Engine, store: SqlLedgerStore, tenant: str) -> None:
    """What must hold whatever happened: balanced books, counters = entries, bounds, and
    one audit entry and outbox event per change, of the matching type."""
    accounts = _all_accounts(store, tenant)
    for counter in ("posted", "pending"):
        assert sum(getattr(a.balances, f"debits_{counter}") for a in accounts) == sum(
            getattr(a.balances, f"credits_{counter}") for a in accounts
        )
    e, t = ledger_entries.c, ledger_transfers.c
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(e.account_id, e.counter, sa.func.sum(e.delta).label("total"))
            .where(e.tenant_id == tenant)
            .group_by(e.account_id, e.counter)
        ).all()
        transfers = connection.execute(
            sa.select(ledger_transfers).where(t.tenant_id == tenant)
        ).all()
        journals = (
            connection.execute(
                sa.select(ledger_journal_entries.c.id).where(
                    ledger_journal_entries.c.tenant_id == tenant
                )
            )
            .scalars()
            .all()
        )
        audit = connection.execute(
            sa.select(audit_entries.c.event_type, audit_entries.c.subject_ids).where(
                audit_entries.c.tenant_id == tenant
            )
        ).all()
        outbox = (
            connection.execute(
                sa.select(outbox_events.c.payload).where(outbox_events.c.tenant_id == tenant)
            )
            .scalars()
            .all()
        )
    sums: dict[str, Balances] = {}
    for row in rows:
        sums[row.account_id] = sums.get(row.account_id, Balances()).plus(
            row.counter, int(row.total)
        )
    for account in accounts:
        b = account.balances
        assert sums.get(account.id, Balances()) == b, account
        assert min(getattr(b, c) for c in COUNTERS) >= 0, account
        if account.bounded and account.normal == "credit":
            assert (
                b.debits_posted + b.debits_pending <= b.credits_posted + account.overdraft_limit
            ), account
        if account.status == "closed":
            assert b.balance(account.normal) == 0 and not b.debits_pending and not b.credits_pending

    # Audit entries: one per change, naming what changed first.
    expected: Multiset[tuple[str, str]] = Multiset()
    for x in transfers:
        expected[("transfer.pending" if x.pending else "transfer.created", x.id)] += 1
        if x.status != "pending" and x.pending:
            expected[(f"transfer.{x.status}", x.id)] += 1
        if x.reverses_id is not None:
            expected[("transfer.reversed", x.reverses_id)] += 1
    expected.update(("journal_entry.created", j) for j in journals)
    audited = Multiset(
        (kind, json.loads(subjects)[0])
        for kind, subjects in audit
        # Account events are checked elsewhere; tenant.created is the tenant's own entry.
        if not kind.startswith(("account.", "tenant."))
    )
    assert audited == expected
    published = Multiset(
        (p["type"], p["subject_ids"][0])
        for p in map(json.loads, outbox)
        if not p["type"].startswith("account.")
    )
    assert published == expected


def test_mixed_operations_from_two_pods_never_deadlock(pods: tuple[Engine, Engine]) -> None:
    """Holds, posts, voids, reversals, journal entries, fees, freezes and limit changes on
    the same few accounts from both pods: no infrastructure error, every invariant after."""
    stores = [SqlLedgerStore(engine, hot_account_shards=HOT_SHARDS) for engine in pods]
    tenant = _tenant(pods[0])
    wallets = _open(stores[0], tenant, 6, FUNDS, overdraft_limit=5_000)
    fees = _system(stores[0], tenant, "fees")
    settlement = _system(stores[0], tenant, "settlement")
    made: list[str] = []  # transfer ids some unit created (maybe not committed: fine)

    def make_unit(rng: random.Random) -> tuple[Unit, Move]:
        a, b = rng.sample(wallets, 2)
        amount = rng.randint(1, 3_000)
        roll = rng.random()
        known = made[-200:]
        commands: list[Command]
        if roll < 0.3:
            transfer = CreateTransfer(_id(), a, b, amount, "EUR", pending=rng.random() < 0.5)
            made.append(transfer.id)
            commands = [transfer, CreateTransfer(_id(), a, fees, 1 + amount // 100, "EUR")]
        elif roll < 0.45 and known:
            target = rng.choice(known)
            commands = [
                rng.choice(
                    [
                        PostTransfer(target),
                        PostTransfer(target, amount=1),
                        ReverseTransfer(target, _id()),
                    ]
                )
            ]
        elif roll < 0.55 and known:
            commands = [VoidTransfer(rng.choice(known))]
        elif roll < 0.7:
            legs = (
                (
                    Leg(a, "debit", amount, "EUR"),
                    Leg(b, "credit", amount - amount // 2, "EUR"),
                    Leg(settlement, "credit", amount // 2, "EUR"),
                )
                if amount > 1
                else (Leg(a, "debit", 1, "EUR"), Leg(b, "credit", 1, "EUR"))
            )
            commands = [CreateJournalEntry(_id(), legs)]
        elif roll < 0.75:
            commands = [CreateTransfer(_id(), settlement, a, amount, "EUR")]  # bounded: may fail
        elif roll < 0.8:
            commands = [ChangeAccount(a, rng.choice(["freeze", "unfreeze", "unfreeze"]))]
        elif roll < 0.85:
            commands = [
                ChangeAccount(
                    a, "set_overdraft_limit", overdraft_limit=rng.choice([0, 5_000, 50_000])
                )
            ]
        else:
            transfer = CreateTransfer(_id(), b, a, amount, "EUR")
            commands = [transfer, ReverseTransfer(transfer.id, _id(), amount=1)]
        return Unit(tenant, tuple(commands), ACTOR, atomic=rng.random() < 0.8), Move()

    run = Run()
    tally: Multiset[tuple[str, str]] = Multiset()
    deadline = time.monotonic() + RUN_S

    def worker(n: int) -> None:
        rng = random.Random(100 + n)
        store = stores[n % 2]
        while time.monotonic() < deadline:
            group = [make_unit(rng)[0] for _ in range(rng.randint(1, GROUP_UNITS_MAX))]
            try:
                results = store.execute(group, _now_us())
            except BaseException as exc:
                with run.lock:
                    run.errors.append(exc)
                return
            with run.lock:
                run.groups += 1
                for unit, outcomes in zip(group, results, strict=True):
                    for command, outcome in zip(unit.commands, outcomes, strict=True):
                        code = outcome.error.code if outcome.error else "ok"
                        tally[(type(command).__name__, code)] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=RUN_S + 60)
    assert not any(t.is_alive() for t in threads)
    assert run.errors == [], f"infrastructure errors reached callers: {run.errors[:3]!r}"
    assert run.groups > 20
    # It did what it says: each kind of change succeeded many times.
    for kind in (
        "CreateTransfer",
        "PostTransfer",
        "VoidTransfer",
        "ReverseTransfer",
        "CreateJournalEntry",
        "ChangeAccount",
    ):
        assert tally[(kind, "ok")] >= 10, (kind, tally)
    _check_invariants(pods[0], stores[1], tenant)


def test_two_pods_opening_a_tenants_first_account_in_a_currency(
    pods: tuple[Engine, Engine],
) -> None:
    stores = [SqlLedgerStore(engine) for engine in pods]
    for _ in range(10):
        tenant = _tenant(pods[0])
        outcomes = _race(
            stores,
            [CreateAccount(_id(), "wallet", "EUR"), CreateAccount(_id(), "merchant", "EUR")],
            tenant,
        )
        assert all(o.ok for o in outcomes), outcomes
        system = stores[0].accounts(tenant, after=None, limit=10, kind="system")
        assert sorted(a.code or "" for a in system) == ["clearing", "fees", "settlement"]


def _race(stores: list[SqlLedgerStore], commands: list[Command], tenant: str) -> list[Outcome]:
    """Each store executes its command at the same instant; their outcomes."""
    barrier = threading.Barrier(len(commands))
    outcomes: list[Outcome | BaseException | None] = [None] * len(commands)

    def go(n: int) -> None:
        barrier.wait()
        try:
            outcomes[n] = stores[n].execute([Unit(tenant, (commands[n],), ACTOR)], _now_us())[0][0]
        except BaseException as exc:
            outcomes[n] = exc

    threads = [threading.Thread(target=go, args=(n,)) for n in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for outcome in outcomes:
        assert isinstance(outcome, Outcome), f"infrastructure error reached a caller: {outcome!r}"
    return outcomes  # type: ignore[return-value]


ROUNDS = 25


def test_the_same_transfer_id_from_two_pods_is_applied_once(pods: tuple[Engine, Engine]) -> None:
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    a, b = _open(stores[0], tenant, 2, FUNDS)
    for _ in range(ROUNDS):
        transfer = CreateTransfer(_id(), a, b, 10, "EUR")
        outcomes = _race(stores, [transfer, transfer], tenant)
        new = [o for o in outcomes if o.ok and not o.replayed]
        assert len(new) == 1, outcomes
        other = next(o for o in outcomes if o is not new[0])
        assert other.replayed or (
            other.error is not None and other.error.code == "idempotency-conflict"
        )
        if other.replayed:
            assert other.value == new[0].value
    account = stores[0].account(tenant, a)
    assert account is not None and account.balances.debits_posted == ROUNDS * 10


def test_the_same_id_with_different_bodies_applies_one_of_them(pods: tuple[Engine, Engine]) -> None:
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    a, b = _open(stores[0], tenant, 2, FUNDS)
    moved = 0
    for _ in range(ROUNDS):
        transfer_id = _id()
        bodies: list[Command] = [
            CreateTransfer(transfer_id, a, b, 10, "EUR"),
            CreateTransfer(transfer_id, a, b, 11, "EUR"),
        ]
        outcomes = _race(stores, bodies, tenant)
        assert sorted(o.ok for o in outcomes) == [False, True], outcomes
        winner = next(o for o in outcomes if o.ok)
        loser = next(o for o in outcomes if not o.ok)
        assert loser.error is not None and loser.error.code == "idempotency-conflict"
        assert isinstance(winner.value, Transfer)
        moved += winner.value.amount
    account = stores[0].account(tenant, a)
    assert account is not None and account.balances.debits_posted == moved


def test_a_hold_posted_from_two_pods_resolves_once(pods: tuple[Engine, Engine]) -> None:
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    a, b = _open(stores[0], tenant, 2, FUNDS)
    for n in range(ROUNDS):
        hold = CreateTransfer(_id(), a, b, 100, "EUR", pending=True)
        assert stores[0].execute([Unit(tenant, (hold,), ACTOR)], _now_us())[0][0].ok
        # Both post (one fully, one partially), or one posts while the other reverses it.
        rivals: list[Command] = [PostTransfer(hold.id), PostTransfer(hold.id, amount=40)]
        outcomes = _race(stores if n % 2 else stores[::-1], rivals, tenant)
        assert sorted(o.ok for o in outcomes) == [False, True], outcomes
        loser = next(o for o in outcomes if not o.ok)
        assert loser.error is not None and loser.error.code == "transfer-not-pending"
    account = stores[0].account(tenant, a)
    assert account is not None
    assert account.balances.debits_pending == 0
    assert 40 * ROUNDS <= account.balances.debits_posted <= 100 * ROUNDS


def test_a_transfer_reversed_from_two_pods_is_reversed_at_most_in_full(
    pods: tuple[Engine, Engine],
) -> None:
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    a, b = _open(stores[0], tenant, 2, FUNDS)
    for _ in range(ROUNDS):
        original = CreateTransfer(_id(), a, b, 100, "EUR")
        assert stores[0].execute([Unit(tenant, (original,), ACTOR)], _now_us())[0][0].ok
        rivals: list[Command] = [
            ReverseTransfer(original.id, _id()),
            ReverseTransfer(original.id, _id(), amount=60),
        ]
        outcomes = _race(stores, rivals, tenant)
        reversed_amount = sum(o.value.amount for o in outcomes if isinstance(o.value, Transfer))
        assert reversed_amount <= 100, outcomes
        for outcome in outcomes:
            assert outcome.ok or (
                outcome.error is not None and outcome.error.code == "exceeds-reversible"
            )
        stored = stores[1].transfer(tenant, original.id)
        assert stored is not None and stored.reversed_amount == reversed_amount
    a_account, b_account = stores[0].account(tenant, a), stores[0].account(tenant, b)
    assert a_account is not None and b_account is not None
    assert a_account.balances.credits_posted - FUNDS == b_account.balances.debits_posted


def test_concurrent_credits_cannot_push_a_hot_account_past_amount_max(
    pods: tuple[Engine, Engine],
) -> None:
    """Two pods credit the fees account at once, each with 60% of the integer range (paid
    from overdraft lines): one must be refused with overflow, whichever shard each used."""
    stores = [SqlLedgerStore(engine, hot_account_shards=HOT_SHARDS) for engine in pods]
    amount = AMOUNT_MAX // 10 * 6
    passed = []
    for _ in range(10):
        tenant = _tenant(pods[0])
        payers = _open(stores[0], tenant, 2, 0, overdraft_limit=amount)
        fees = _system(stores[0], tenant, "fees")
        payments: list[Command] = [
            CreateTransfer(_id(), payer, fees, amount, "EUR") for payer in payers
        ]
        outcomes = _race(stores, payments, tenant)
        account = stores[0].account(tenant, fees)
        assert account is not None
        if account.balances.credits_posted > AMOUNT_MAX:
            passed.append(account.balances.credits_posted)
        else:
            assert sorted(o.error.code if o.error else "" for o in outcomes) == ["", "overflow"]
    assert passed == [], f"{len(passed)} of 10 fees accounts passed AMOUNT_MAX: {passed[:2]}"


def test_more_concurrent_credits_than_shards_cannot_push_a_hot_account_past_amount_max(
    pods: tuple[Engine, Engine],
) -> None:
    """As above with 16 groups at once (twice the shards), each credit small enough to go to
    one shard: a cap per group on the stale total holds only while at most `shards` groups
    act on it at once; nothing bounds how many do."""
    racers = 2 * THREADS
    stores = [SqlLedgerStore(engine, hot_account_shards=HOT_SHARDS) for engine in pods]
    share = AMOUNT_MAX // racers - 1
    over = []
    for _ in range(5):
        tenant = _tenant(pods[0])
        payers = _open(stores[0], tenant, racers + 1, 0, overdraft_limit=AMOUNT_MAX // 2)
        fees = _system(stores[0], tenant, "fees")
        # The account already holds 43%: one more share is still well below half of it.
        start = CreateTransfer(_id(), payers[-1], fees, AMOUNT_MAX // 100 * 43, "EUR")
        assert stores[0].execute([Unit(tenant, (start,), ACTOR)], _now_us())[0][0].ok
        payments: list[Command] = [
            CreateTransfer(_id(), payer, fees, share, "EUR") for payer in payers[:-1]
        ]
        _race([stores[n % 2] for n in range(racers)], payments, tenant)
        account = stores[0].account(tenant, fees)
        assert account is not None
        if account.balances.credits_posted > AMOUNT_MAX:
            over.append(round(account.balances.credits_posted / AMOUNT_MAX, 2))
    assert over == [], f"fees totals past AMOUNT_MAX (as multiples of it): {over}"


def _spend_until(
    store: SqlLedgerStore,
    tenant: str,
    payer: str,
    payee: str,
    amount: int,
    stop: threading.Event,
    errors: list[BaseException],
) -> None:
    rng = random.Random()
    while not stop.is_set():
        units = [
            Unit(tenant, (CreateTransfer(_id(), payer, payee, amount, "EUR"),), ACTOR)
            for _ in range(rng.randint(1, 10))
        ]
        try:
            store.execute(units, _now_us())
        except BaseException as exc:
            errors.append(exc)
            return


TRIALS = 10


def test_no_transfer_commits_after_its_account_was_frozen(pods: tuple[Engine, Engine]) -> None:
    """A freeze that committed is seen by every later transfer of that account.

    The audit sequence orders the two: a transfer that waited for the freeze's locks
    writes its audit entry after the freeze's, and must then have been refused.
    """
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    late: list[str] = []
    for _ in range(TRIALS):
        payer, payee = _open(stores[0], tenant, 2, FUNDS)
        stop = threading.Event()
        errors: list[BaseException] = []
        spenders = [
            threading.Thread(
                target=_spend_until, args=(store, tenant, payer, payee, 1, stop, errors)
            )
            for store in (stores[0], stores[0], stores[1])
        ]
        for thread in spenders:
            thread.start()
        time.sleep(random.uniform(0.005, 0.03))
        freeze = Unit(tenant, (ChangeAccount(payer, "freeze"),), ACTOR)
        assert stores[1].execute([freeze], _now_us())[0][0].ok
        time.sleep(0.03)
        stop.set()
        for thread in spenders:
            thread.join(timeout=30)
        assert errors == []
        a = audit_entries.c
        with pods[0].connect() as connection:
            rows = connection.execute(
                sa.select(a.seq, a.event_type, a.subject_ids)
                .where(a.tenant_id == tenant)
                .order_by(a.seq)
            ).all()
        frozen_at = next(
            r.seq
            for r in rows
            if r.event_type == "account.frozen" and payer in json.loads(r.subject_ids)
        )
        late += [
            json.loads(r.subject_ids)[0]
            for r in rows
            if r.seq > frozen_at
            and r.event_type == "transfer.created"
            and payer in json.loads(r.subject_ids)
        ]
    assert late == [], f"{len(late)} transfers from a frozen account committed after the freeze"


def _waiting_on_locks(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
        )


def _until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


_EVENT = {"freeze": "frozen", "set_overdraft_limit": "limit_changed", "close": "closed"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (ChangeAccount("", "freeze"), "account-frozen"),
        (ChangeAccount("", "set_overdraft_limit", overdraft_limit=0), "insufficient-funds"),
        (ChangeAccount("", "close"), "account-closed"),
    ],
    ids=["freeze", "limit-cut", "close"],
)
def test_a_transfer_queued_behind_an_account_change_sees_the_change(
    pods: tuple[Engine, Engine], change: ChangeAccount, expected: str
) -> None:
    """Deterministic: a third transaction holds the account's balance row; the change
    queues for it first, the transfer second. When the row is released the change
    commits, and the transfer must be judged on the account as changed."""
    stores = [SqlLedgerStore(engine) for engine in pods]
    tenant = _tenant(pods[0])
    (account,) = _open(stores[0], tenant, 1, 0, overdraft_limit=10_000)
    (other,) = _open(stores[0], tenant, 1, FUNDS)
    change = ChangeAccount(account, change.action, change.overdraft_limit)
    # Spend on the overdraft (frozen, cut) or pay in (closed: an account must stay empty).
    transfer = (
        CreateTransfer(_id(), other, account, 5_000, "EUR")
        if change.action == "close"
        else CreateTransfer(_id(), account, other, 5_000, "EUR")
    )
    results: dict[str, Outcome | BaseException] = {}

    def run(name: str, store: SqlLedgerStore, command: Command) -> None:
        try:
            results[name] = store.execute([Unit(tenant, (command,), ACTOR)], _now_us())[0][0]
        except BaseException as exc:
            results[name] = exc

    b = ledger_balances.c
    with pods[0].connect() as blocker:
        blocker.execute(
            sa.select(ledger_balances)
            .where(b.tenant_id == tenant, b.account_id == account)
            .with_for_update()
        )
        changer = threading.Thread(target=run, args=("change", stores[1], change))
        changer.start()
        _until(lambda: _waiting_on_locks(pods[0]) >= 1)
        spender = threading.Thread(target=run, args=("transfer", stores[0], transfer))
        spender.start()
        _until(lambda: _waiting_on_locks(pods[0]) >= 2)
        blocker.rollback()
    changer.join(timeout=30)
    spender.join(timeout=30)
    changed, moved = results["change"], results["transfer"]
    assert isinstance(changed, Outcome) and changed.ok, changed
    assert isinstance(moved, Outcome), moved
    if moved.ok:
        # Show it is not the queue order: the transfer committed after the change.
        a = audit_entries.c
        with pods[0].connect() as connection:
            seqs = dict(
                connection.execute(
                    sa.select(a.event_type, a.seq).where(
                        a.tenant_id == tenant, a.event_type != "account.created"
                    )
                ).all()
            )
        assert seqs["transfer.created"] < seqs[f"account.{_EVENT[change.action]}"], (
            f"{transfer.id} committed after the {change.action} yet was judged on the"
            f" account as it was before it (stale read): {moved}"
        )
    assert moved.error is not None and moved.error.code == expected, moved
    final = stores[0].account(tenant, account)
    assert final is not None and final.balances == Balances()
