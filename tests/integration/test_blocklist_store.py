"""The edge blocklist's store and feed on SQLite and a real PostgreSQL server: add, list,
remove, changes in commit order, audit entries in the same transaction, and an edge
worker's sync against it. Without a reachable PostgreSQL the PostgreSQL half skips,
except under ``CI=true``, where it fails."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from strongroom.adapters.db.blocklist_store import SqlBlocklistStore
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import audit_entries
from strongroom.config import Settings
from strongroom.edge.blocklist import Blocklist
from strongroom.edge.blocklist_ports import BlocklistFull, BlockNotFound, InvalidBlockEntry
from strongroom.edge.blocklist_sync import BlocklistSync, build_blocklist
from strongroom.edge.security_events import SecurityEvents
from strongroom.ledger.ports import Actor

OPERATOR = Actor("operator", "alice@ops")
SIEM = Actor("system", "siem")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.at = time.time()

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(engine: Engine, clock: Clock) -> SqlBlocklistStore:
    return SqlBlocklistStore(engine, clock=clock)


def audit_rows(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(audit_entries).where(audit_entries.c.event_type.like("edge_block.%"))
        ).all()
    return [dict(row._mapping) for row in rows]


# --- add, list, remove --------------------------------------------------------------------


def test_an_added_entry_is_stored_canonically_and_audited(store, engine) -> None:
    entry = store.add(
        "ip",
        "::ffff:203.0.113.7",
        "block",
        reason="scanner",
        ttl_s=3600,
        actor=OPERATOR,
        request_id="req-1",
    )
    assert (entry.kind, entry.value, entry.action) == ("ip", "203.0.113.7", "block")
    assert entry.created_by == "operator:alice@ops"
    assert entry.expires_at == pytest.approx(entry.created_at + 3600)
    assert store.get(entry.id) == entry
    [row] = audit_rows(engine)
    assert row["event_type"] == "edge_block.added"
    assert (row["actor_kind"], row["actor_id"], row["request_id"]) == (
        "operator",
        "alice@ops",
        "req-1",
    )
    assert row["tenant_id"] is None
    assert json.loads(str(row["subject_ids"])) == [f"edge-block-{entry.id}", "203.0.113.7"]
    data = json.loads(str(row["data"]))
    assert data["value"] == "203.0.113.7"
    assert data["reason"] == "scanner"
    assert data["expires_at_us"] == int(entry.expires_at * 1_000_000)


def test_an_invalid_entry_stores_nothing(store, engine) -> None:
    with pytest.raises(InvalidBlockEntry):
        store.add("cidr", "0.0.0.0/0", "block", reason="", ttl_s=None, actor=OPERATOR)
    assert store.list(include_expired=True) == []
    assert audit_rows(engine) == []


def test_a_repeated_add_that_lasts_no_longer_returns_the_entry_in_force(store, engine) -> None:
    first = store.add("client", "mallory", "block", reason="a", ttl_s=600, actor=SIEM)
    again = store.add("client", "mallory", "block", reason="b", ttl_s=60, actor=SIEM)
    assert again == first
    longer = store.add("client", "mallory", "block", reason="c", ttl_s=6000, actor=SIEM)
    assert longer.id != first.id
    forever = store.add("client", "mallory", "block", reason="d", ttl_s=None, actor=SIEM)
    assert store.add("client", "mallory", "block", reason="e", ttl_s=9, actor=SIEM) == forever
    allow = store.add("client", "mallory", "allow", reason="f", ttl_s=None, actor=SIEM)
    assert allow.id != forever.id
    assert len(audit_rows(engine)) == 4


def test_list_shows_entries_in_force_and_all_of_them_on_request(store, clock) -> None:
    expiring = store.add("ip", "192.0.2.1", "block", reason="", ttl_s=10, actor=OPERATOR)
    removed = store.add("ip", "192.0.2.2", "block", reason="", ttl_s=None, actor=OPERATOR)
    kept = store.add("cidr", "10.0.0.0/8", "allow", reason="office", ttl_s=None, actor=OPERATOR)
    store.remove(removed.id, OPERATOR)
    clock.at += 10
    assert [e.id for e in store.list()] == [kept.id]
    assert [e.id for e in store.list(include_expired=True)] == [expiring.id, removed.id, kept.id]


def test_removal_is_soft_audited_and_only_once(store, engine) -> None:
    entry = store.add("cidr", "2001:db8::/32", "block", reason="", ttl_s=None, actor=OPERATOR)
    removed = store.remove(entry.id, SIEM, request_id="req-2")
    assert removed.removed_at is not None
    assert removed.version > entry.version
    assert store.get(entry.id) == removed
    with pytest.raises(BlockNotFound):
        store.remove(entry.id, SIEM)
    with pytest.raises(BlockNotFound):
        store.remove(987_654, SIEM)
    events = [(r["event_type"], r["actor_id"]) for r in audit_rows(engine)]
    assert events == [("edge_block.added", "alice@ops"), ("edge_block.removed", "siem")]


def test_an_expired_entry_cannot_be_removed(store, clock) -> None:
    entry = store.add("ip", "192.0.2.1", "block", reason="", ttl_s=5, actor=OPERATOR)
    clock.at += 5
    with pytest.raises(BlockNotFound):
        store.remove(entry.id, OPERATOR)


def test_the_store_refuses_entries_beyond_its_maximum_in_force(engine, clock) -> None:
    store = SqlBlocklistStore(engine, entries_max=2, clock=clock)
    store.add("ip", "192.0.2.1", "block", reason="", ttl_s=5, actor=SIEM)
    store.add("ip", "192.0.2.2", "block", reason="", ttl_s=None, actor=SIEM)
    with pytest.raises(BlocklistFull):
        store.add("ip", "192.0.2.3", "block", reason="", ttl_s=None, actor=SIEM)
    clock.at += 5  # the first one expired: room again
    store.add("ip", "192.0.2.3", "block", reason="", ttl_s=None, actor=SIEM)


# --- the feed -----------------------------------------------------------------------------


def test_changes_come_in_version_order_in_bounded_batches(engine, clock) -> None:
    store = SqlBlocklistStore(engine, batch_max=2, clock=clock)
    a = store.add("ip", "192.0.2.1", "block", reason="", ttl_s=None, actor=SIEM)
    b = store.add("ip", "192.0.2.2", "block", reason="", ttl_s=None, actor=SIEM)
    c = store.add("ip", "192.0.2.3", "block", reason="", ttl_s=None, actor=SIEM)
    store.remove(a.id, SIEM)
    # a's removal is its latest change: it comes after c, not before b.
    version, batch = store.changes_since(0)
    assert [e.id for e in batch] == [b.id, c.id] and version == c.version
    version, batch = store.changes_since(version)
    assert [e.id for e in batch] == [a.id]
    assert batch[0].removed_at is not None
    assert store.changes_since(version) == (version, [])


def test_a_snapshot_holds_the_entries_in_force_at_the_latest_version(store, clock) -> None:
    assert store.snapshot() == (0, [])
    a = store.add("ip", "192.0.2.1", "block", reason="", ttl_s=None, actor=SIEM)
    b = store.add("ip", "192.0.2.2", "block", reason="", ttl_s=1, actor=SIEM)
    store.add("ip", "192.0.2.3", "allow", reason="", ttl_s=None, actor=SIEM)
    store.remove(store.list()[-1].id, SIEM)
    clock.at += 1
    version, entries = store.snapshot()
    assert [e.id for e in entries] == [a.id]
    assert version == 4
    assert b.version < version


def test_concurrent_writers_never_hide_a_change_from_a_reader(store) -> None:
    """Version order is commit order: a reader tailing by version misses nothing."""
    writers, per_writer = 4, 10
    seen: dict[int, int] = {}
    done = threading.Event()

    def read() -> None:
        version = 0
        while True:
            finished = done.is_set()
            version, batch = store.changes_since(version)
            for entry in batch:
                seen[entry.id] = entry.version
            if finished and not batch:
                return

    def write(n: int) -> None:
        for i in range(per_writer):
            store.add("ip", f"198.51.{n}.{i}", "block", reason="", ttl_s=None, actor=SIEM)

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    reader.join(10)
    stored = {e.id: e.version for e in store.list()}
    assert seen == stored
    assert sorted(stored.values()) == list(range(1, writers * per_writer + 1))


# --- an edge worker's sync ----------------------------------------------------------------


@pytest.mark.anyio
async def test_a_worker_applies_adds_and_removals_on_its_next_poll(store) -> None:
    entry = store.add("cidr", "10.0.0.0/8", "block", reason="", ttl_s=None, actor=SIEM)
    blocklist = Blocklist()
    sync = BlocklistSync(store, blocklist, poll_s=3600)
    assert sync.load()
    assert blocklist.decide("10.1.1.1") == entry
    allow = store.add("ip", "10.1.1.1", "allow", reason="", ttl_s=None, actor=SIEM)
    await sync.poll_once()
    assert blocklist.decide("10.1.1.1") is None
    assert sync.last_change_lag_s is not None and 0 <= sync.last_change_lag_s < 5
    store.remove(allow.id, SIEM)
    store.remove(entry.id, SIEM)
    await sync.poll_once()
    assert len(blocklist) == 0
    assert sync.version == store.snapshot()[0]


@pytest.mark.anyio
async def test_a_failed_poll_keeps_the_last_good_set_and_the_next_one_recovers(
    store, engine
) -> None:
    store.add("ip", "192.0.2.1", "block", reason="", ttl_s=None, actor=SIEM)
    blocklist = Blocklist()
    sync = BlocklistSync(store, blocklist, poll_s=0.01)
    sync.load()
    with engine.begin() as connection:
        connection.execute(sa.text("ALTER TABLE edge_blocks RENAME TO edge_blocks_away"))
    task = asyncio.create_task(sync.run())
    try:
        for _ in range(200):
            await asyncio.sleep(0.01)
            if sync.consecutive_failures >= 2:
                break
        assert sync.consecutive_failures >= 2
        assert blocklist.decide("192.0.2.1") is not None  # still enforced
        with engine.begin() as connection:
            connection.execute(sa.text("ALTER TABLE edge_blocks_away RENAME TO edge_blocks"))
        store.add("ip", "192.0.2.2", "block", reason="", ttl_s=None, actor=SIEM)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if blocklist.decide("192.0.2.2") is not None:
                break
        assert blocklist.decide("192.0.2.2") is not None
        assert sync.consecutive_failures == 0
        assert sync.snapshot()["failures"] >= 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_an_edge_worker_is_protected_before_it_returns_from_the_factory(settings, store) -> None:
    store.add("ip", "192.0.2.1", "block", reason="", ttl_s=None, actor=SIEM)
    protection = build_blocklist(settings, 0, SecurityEvents(None, 0))
    try:
        assert protection.snapshot()["sync"]["loaded"] is True  # type: ignore[index]
        assert protection.connection_gate.admit_connection("192.0.2.1") is not None
    finally:
        assert protection.engine is not None
        protection.engine.dispose()


def test_an_embedded_edge_without_a_database_waits_for_one_and_never_creates_it(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    protection = build_blocklist(settings, 0, SecurityEvents(None, 0))
    assert protection.sync.loaded and len(protection.blocklist) == 0
    assert not (tmp_path / "data" / "strongroom.db").exists()
    upgrade(settings)
    engine = make_engine(settings)
    SqlBlocklistStore(engine).add("ip", "192.0.2.1", "block", reason="", ttl_s=None, actor=SIEM)
    asyncio.run(protection.sync.poll_once())
    assert protection.blocklist.decide("192.0.2.1") is not None
    engine.dispose()
    assert protection.engine is not None
    protection.engine.dispose()
