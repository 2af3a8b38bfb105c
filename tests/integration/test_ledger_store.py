"""SqlLedgerStore on SQLite and PostgreSQL: expiry, Idempotency-Key claims, hot accounts,
point-in-time balances and the append-only audit table."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.ledger_store import SqlLedgerStore
from strongroom.adapters.db.migrate import upgrade
from strongroom.config import Settings
from strongroom.ledger.commands import CreateAccount, CreateTransfer, PostTransfer
from strongroom.ledger.maintenance import expire_due_holds
from strongroom.ledger.model import Account
from strongroom.ledger.ports import Actor, Claim, Outcome, StoredResponse, Unit

T0 = 1_800_000_000_000_000  # µs
SECOND = 1_000_000
ACTOR = Actor("client", "c-test")
TENANT = "tenant-a"  # replaced per test: the PostgreSQL database is shared by the module


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        settings = Settings(data_dir=tmp_path)
    else:
        url = request.getfixturevalue("postgres_url")
        settings = Settings(data_dir=tmp_path, database={"url": url})
    upgrade(settings)
    engine = make_engine(settings)
    global TENANT  # noqa: PLW0603 - one fresh tenant per test keeps tests independent
    TENANT = new_id()
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO tenants (id, name) VALUES (:id, 'a')"), {"id": TENANT}
        )
    yield engine
    engine.dispose()


def new_id() -> str:
    return str(uuid.uuid4())


def unit(*commands: object, atomic: bool = True, claim: Claim | None = None) -> Unit:
    return Unit(TENANT, tuple(commands), ACTOR, "req-1", atomic, claim)  # type: ignore[arg-type]


def one(store: SqlLedgerStore, command: object, now: int = T0) -> Outcome:
    return store.execute([unit(command)], now)[0][0]


def funded_wallet(store: SqlLedgerStore, amount: int, now: int = T0) -> tuple[Account, Account]:
    wallet = one(store, CreateAccount(new_id(), "wallet", "EUR"), now).value
    assert isinstance(wallet, Account)
    clearing = system(store, "clearing")
    assert one(store, CreateTransfer(new_id(), clearing.id, wallet.id, amount, "EUR"), now).ok
    return wallet, clearing


def system(store: SqlLedgerStore, code: str) -> Account:
    found = [
        a for a in store.accounts(TENANT, after=None, limit=50, kind="system") if a.code == code
    ]
    assert len(found) == 1
    return found[0]


def test_expired_holds_are_voided_by_maintenance_once(engine: Engine) -> None:
    store = SqlLedgerStore(engine)
    wallet, _ = funded_wallet(store, 1_000)
    merchant = one(store, CreateAccount(new_id(), "merchant", "EUR")).value
    assert isinstance(merchant, Account)
    hold_id = new_id()
    hold = CreateTransfer(
        hold_id, wallet.id, merchant.id, 700, "EUR", pending=True, expires_at_us=T0 + SECOND
    )
    assert one(store, hold).ok
    assert expire_due_holds(store, T0 + SECOND // 2) == 0
    assert expire_due_holds(store, T0 + 2 * SECOND) == 1
    assert expire_due_holds(store, T0 + 3 * SECOND) == 0
    transfer = store.transfer(TENANT, hold_id)
    assert transfer is not None and transfer.status == "expired" and transfer.posted_amount == 0
    account = store.account(TENANT, wallet.id)
    assert account is not None and account.balances.available(account.normal) == 1_000
    late = one(store, PostTransfer(hold_id), T0 + 4 * SECOND)
    assert late.error is not None and late.error.code == "transfer-not-pending"


def test_a_hold_past_expiry_cannot_be_posted_even_before_the_sweep(engine: Engine) -> None:
    store = SqlLedgerStore(engine)
    wallet, clearing = funded_wallet(store, 100)
    hold_id = new_id()
    hold = CreateTransfer(
        hold_id, wallet.id, clearing.id, 50, "EUR", pending=True, expires_at_us=T0 + 1
    )
    assert one(store, hold).ok
    late = one(store, PostTransfer(hold_id), T0 + 2)
    assert late.error is not None and late.error.code == "hold-expired"


def respond(outcomes: list[Outcome]) -> StoredResponse:
    return StoredResponse(201 if outcomes[0].ok else 422, b'{"n": %d}' % len(outcomes))


def test_idempotency_key_claims_follow_stripe(engine: Engine) -> None:
    store = SqlLedgerStore(engine)
    lease, ttl = 30 * SECOND, 86_400 * SECOND
    first = store.claim_key(TENANT, "k1", "h1", T0, lease_us=lease, ttl_us=ttl)
    assert first.state == "claimed" and first.token
    assert (
        store.claim_key(TENANT, "k1", "h1", T0 + 1, lease_us=lease, ttl_us=ttl).state == "in_flight"
    )
    assert (
        store.claim_key(TENANT, "k1", "h2", T0 + 1, lease_us=lease, ttl_us=ttl).state == "mismatch"
    )
    wallet = CreateAccount(new_id(), "wallet", "EUR")
    claim = Claim("k1", first.token, respond)
    assert store.execute([unit(wallet, claim=claim)], T0 + 2)[0][0].ok
    replay = store.claim_key(TENANT, "k1", "h1", T0 + 3, lease_us=lease, ttl_us=ttl)
    assert replay.state == "replay" and replay.response == StoredResponse(201, b'{"n": 1}')
    # Another tenant's identical key is a different key.
    other_tenant = new_id()
    with engine.begin() as connection:
        connection.execute(
            sa.text("INSERT INTO tenants (id, name) VALUES (:id, 'b')"), {"id": other_tenant}
        )
    other = store.claim_key(other_tenant, "k1", "h1", T0 + 3, lease_us=lease, ttl_us=ttl)
    assert other.state == "claimed"
    # Expired keys are purged and can be used afresh.
    assert store.purge_keys(T0 + ttl + 10) >= 2
    assert (
        store.claim_key(TENANT, "k1", "h9", T0 + ttl + 11, lease_us=lease, ttl_us=ttl).state
        == "claimed"
    )


def test_a_dead_holders_key_is_taken_over_and_its_late_commit_refused(engine: Engine) -> None:
    store = SqlLedgerStore(engine)
    lease, ttl = 30 * SECOND, 86_400 * SECOND
    dead = store.claim_key(TENANT, "k2", "h", T0, lease_us=lease, ttl_us=ttl)
    retry = store.claim_key(TENANT, "k2", "h", T0 + lease + 1, lease_us=lease, ttl_us=ttl)
    assert retry.state == "claimed" and retry.token != dead.token
    assert dead.token is not None and retry.token is not None
    account_id = new_id()
    late = store.execute(
        [unit(CreateAccount(account_id, "wallet", "EUR"), claim=Claim("k2", dead.token, respond))],
        T0 + lease + 2,
    )
    assert late[0][0].error is not None and late[0][0].error.code == "idempotency-conflict"
    assert store.account(TENANT, account_id) is None
    won = store.execute(
        [unit(CreateAccount(account_id, "wallet", "EUR"), claim=Claim("k2", retry.token, respond))],
        T0 + lease + 3,
    )
    assert won[0][0].ok


def test_credits_to_a_hot_account_spread_over_its_shards(engine: Engine) -> None:
    store = SqlLedgerStore(engine, hot_account_shards=4)
    wallet, _ = funded_wallet(store, 10_000)
    fees = system(store, "fees")
    units = [unit(CreateTransfer(new_id(), wallet.id, fees.id, 1, "EUR")) for _ in range(60)]
    for start in range(0, 60, 3):
        assert all(o.ok for r in store.execute(units[start : start + 3], T0 + 1) for o in r)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT shard, credits_posted FROM ledger_balances WHERE account_id = :a"),
            {"a": fees.id},
        ).all()
    assert len(rows) == 4
    assert sum(r.credits_posted for r in rows) == 60
    assert sum(1 for r in rows if r.credits_posted > 0) >= 2
    account = store.account(TENANT, fees.id)
    assert account is not None and account.balances.credits_posted == 60


def test_point_in_time_balance_sums_entries_up_to_then(engine: Engine) -> None:
    store = SqlLedgerStore(engine)
    wallet, clearing = funded_wallet(store, 500, now=T0)
    assert one(store, CreateTransfer(new_id(), clearing.id, wallet.id, 250, "EUR"), T0 + 10).ok
    then = store.account(TENANT, wallet.id, as_of_us=T0 + 5)
    now = store.account(TENANT, wallet.id)
    assert then is not None and then.balances.credits_posted == 500
    assert now is not None and now.balances.credits_posted == 750
    assert store.account(TENANT, wallet.id, as_of_us=T0 - 1) is None


def test_every_change_has_its_audit_entry_and_outbox_event_and_audit_is_append_only(
    engine: Engine,
) -> None:
    store = SqlLedgerStore(engine)
    funded_wallet(store, 100)
    with engine.connect() as connection:
        audit = connection.execute(
            sa.text(
                "SELECT event_type, actor_id, request_id FROM audit_entries"
                " WHERE tenant_id = :t ORDER BY seq"
            ),
            {"t": TENANT},
        ).all()
        outbox = connection.execute(
            sa.text("SELECT type FROM outbox_events WHERE tenant_id = :t ORDER BY seq"),
            {"t": TENANT},
        ).all()
    # three system accounts, the wallet, the funding transfer
    assert [r.event_type for r in audit] == ["account.created"] * 4 + ["transfer.created"]
    assert [r.type for r in outbox] == [r.event_type for r in audit]
    assert {(r.actor_id, r.request_id) for r in audit} == {("c-test", "req-1")}
    for statement in ("UPDATE audit_entries SET actor_id = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(sa.exc.DatabaseError), engine.begin() as connection:
            connection.execute(sa.text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(sa.exc.DatabaseError), engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE audit_entries"))
    with engine.connect() as connection:
        count = sa.text("SELECT count(*) FROM audit_entries WHERE tenant_id = :t")
        assert connection.execute(count, {"t": TENANT}).scalar() == 5


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_group_on_a_connection_killed_while_pooled_is_retried_once_and_applied_once(
    engine: Engine, tmp_path: Path
) -> None:
    """The writer pool skips pre-ping: a group whose pooled connection died (a database
    restart) runs again on a fresh connection, and its transfer is applied exactly once."""
    settings = Settings(data_dir=tmp_path, database={"url": str(engine.url)})
    writer = make_engine(
        settings, url=engine.url.render_as_string(hide_password=False), pre_ping=False
    )
    try:
        store = SqlLedgerStore(engine, writer=writer)
        wallet, clearing = funded_wallet(store, 1_000)
        with engine.connect() as connection:
            killed = connection.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert killed >= 1  # the writer's pooled connection among them
        transfer_id = new_id()
        outcome = one(store, CreateTransfer(transfer_id, wallet.id, clearing.id, 300, "EUR"))
        assert outcome.ok
        account = store.account(TENANT, wallet.id)
        assert account is not None and account.balances.credits_posted == 1_000
        assert account.balances.debits_posted == 300
        with engine.connect() as connection:
            count = connection.execute(
                sa.text("SELECT count(*) FROM ledger_transfers WHERE id = :id"), {"id": transfer_id}
            ).scalar_one()
        assert count == 1
    finally:
        writer.dispose()


def test_a_big_group_writes_every_row_once_whatever_the_insert_path(engine: Engine) -> None:
    """Big groups insert by COPY on PostgreSQL, small ones by statement: both write each
    transfer's row, two entries, an outbox event and an audit entry, with new accounts
    and their first movements in the same group, and the books balance."""
    store = SqlLedgerStore(engine)
    assert one(store, CreateAccount(new_id(), "wallet", "EUR")).ok  # the system accounts
    clearing = system(store, "clearing")
    wallets = [new_id() for _ in range(150)]
    created = [CreateAccount(w, "wallet", "EUR") for w in wallets]
    funded = [CreateTransfer(new_id(), clearing.id, w, 1_000, "EUR") for w in wallets]
    moved = [
        CreateTransfer(new_id(), wallets[i], wallets[(i + 1) % 150], 7, "EUR") for i in range(150)
    ]
    results = store.execute([unit(*created), unit(*funded, atomic=False), unit(*moved)], T0)
    assert all(o.ok for outcomes in results for o in outcomes)
    with engine.connect() as connection:

        def count(sql: str) -> int:
            return int(connection.execute(sa.text(sql), {"t": TENANT}).scalar_one())

        assert count("SELECT count(*) FROM ledger_transfers WHERE tenant_id = :t") == 300
        assert count("SELECT count(*) FROM ledger_entries WHERE tenant_id = :t") == 600
        transfer_events = "event_type = 'transfer.created' AND tenant_id = :t"
        assert count(f"SELECT count(*) FROM audit_entries WHERE {transfer_events}") == 300
        assert count("SELECT count(*) FROM outbox_events WHERE tenant_id = :t") == count(
            "SELECT count(*) FROM audit_entries WHERE tenant_id = :t"
        )
    for wallet in wallets:
        account = store.account(TENANT, wallet)
        assert account is not None
        assert (account.balances.credits_posted, account.balances.debits_posted) == (1_007, 7)
    assert store.account(TENANT, clearing.id).balances.debits_posted == 150_000  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_group_rolled_back_to_break_a_deadlock_is_retried_and_applied_once(
    engine: Engine,
) -> None:
    """Another transaction locks the two balance rows in the opposite order; PostgreSQL
    aborts the group (it waited first), which runs again and commits exactly once."""
    store = SqlLedgerStore(engine)
    wallet, _ = funded_wallet(store, 1_000)
    other = one(store, CreateAccount(new_id(), "wallet", "EUR")).value
    assert isinstance(other, Account)
    first, second = sorted([wallet.id, other.id])  # the order the store locks them in
    lock = sa.text(
        "SELECT 1 FROM ledger_balances WHERE tenant_id = :t AND account_id = :a FOR UPDATE"
    )
    transfer_id = new_id()
    outcome: list[Outcome] = []
    with engine.connect() as blocker:
        blocker.execute(lock, {"t": TENANT, "a": second})
        worker = threading.Thread(
            target=lambda: outcome.append(
                one(store, CreateTransfer(transfer_id, wallet.id, other.id, 250, "EUR"))
            )
        )
        worker.start()
        time.sleep(0.3)  # the group holds `first` and waits for `second`
        # Closes the cycle; had PostgreSQL aborted this side, the group would just go on.
        with contextlib.suppress(sa.exc.DBAPIError):
            blocker.execute(lock, {"t": TENANT, "a": first})
        blocker.rollback()
        worker.join(30)
    assert outcome and outcome[0].ok
    assert store.account(TENANT, other.id).balances.credits_posted == 250  # type: ignore[union-attr]
    with engine.connect() as connection:
        count = connection.execute(
            sa.text("SELECT count(*) FROM ledger_transfers WHERE id = :id"), {"id": transfer_id}
        ).scalar_one()
    assert count == 1
