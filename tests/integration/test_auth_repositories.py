"""OAuth storage adapters on both backends: SQLite in a temp dir, real PostgreSQL.

PostgreSQL tests create a throwaway database per module and empty it after each test.
Without a reachable server they skip, except under CI (``CI=true``), where a missing
database is a broken environment and must fail loudly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from strongroom.adapters.db.auth_repositories import (
    AlreadyExists,
    NotFound,
    SqlClientRepository,
    SqlDenyListFeed,
    SqlKeyRepository,
    SqlRevocationStore,
    SqlTenantRepository,
)
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from strongroom.adapters.db.schema import deny_list_events, oauth_clients, signing_keys
from strongroom.adapters.deny_list_sync import DenyListSync
from strongroom.auth.deny_list import DenyList
from strongroom.auth.keys import KeyDecryptionError, SigningKey, plan_rotation
from strongroom.auth.ports import ClientRecord, DenyEntry, DenyListFeed
from strongroom.config import AuthSettings, Settings

KEK = "test-key-encryption-key"
CHILD = Path(__file__).with_name("deny_list_sync_child.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


# --- backends -------------------------------------------------------------------------


@pytest.fixture
def fresh_postgres_url(postgres_url: str) -> Iterator[str]:
    """The module's database with every table dropped, so each test starts unmigrated."""
    yield postgres_url
    engine = make_engine(Settings(database={"url": postgres_url}))
    with engine.begin() as connection:
        connection.execute(sa.text("DROP SCHEMA public CASCADE"))
        connection.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "sqlite":
        return Settings(data_dir=tmp_path / "data")
    url: str = request.getfixturevalue("fresh_postgres_url")
    return Settings(data_dir=tmp_path / "data", database={"url": url})


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    upgrade(settings)
    engine = make_engine(settings)
    yield engine
    engine.dispose()


# --- helpers --------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _client(client_id: str, tenant_id: str, **changes: object) -> ClientRecord:
    record = ClientRecord(
        client_id=client_id,
        tenant_id=tenant_id,
        name=f"client {client_id}",
        secret_hash="$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        scopes=frozenset({"accounts:read", "transfers:write"}),
        status="active",
        dpop_required=False,
        is_operator=False,
        created_at=1_700_000_000.25,
    )
    return dataclasses.replace(record, **changes)  # type: ignore[arg-type]


@pytest.fixture
def tenant_ids(engine: Engine) -> tuple[str, str]:
    """Two tenants, each with one client named c-<tenant>."""
    tenants = SqlTenantRepository(engine)
    clients = SqlClientRepository(engine)
    ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    for tenant_id in ids:
        tenants.create(tenant_id, f"tenant {tenant_id[:8]}")
        clients.create(_client(f"c-{tenant_id}", tenant_id))
    return ids


def _all_entries(feed: DenyListFeed) -> list[DenyEntry]:
    return feed.since(0)[1]


def _event_count(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(sa.select(sa.func.count()).select_from(deny_list_events)).scalar()
            or 0
        )


# --- migration ------------------------------------------------------------------------


def test_oauth_migration_downgrades_to_tenants_and_upgrades_again(
    settings: Settings, engine: Engine
) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001_tenants")
    assert current_revision(engine) == "0001_tenants"
    with engine.connect() as connection:
        assert not sa.inspect(connection).has_table("oauth_clients")
    upgrade(settings)
    assert current_revision(engine) == head_revision()


# --- tenants --------------------------------------------------------------------------


def test_tenant_round_trips_with_its_creation_time(engine: Engine) -> None:
    tenants = SqlTenantRepository(engine)
    before = time.time()
    tenants.create("t-1", "acme")
    record = tenants.get("t-1")
    assert record is not None
    assert (record.tenant_id, record.name, record.status) == ("t-1", "acme", "active")
    # SQLite's CURRENT_TIMESTAMP has whole seconds.
    assert before - 1 <= record.created_at <= time.time() + 1


def test_unknown_tenant_is_none(engine: Engine) -> None:
    assert SqlTenantRepository(engine).get("nope") is None


def test_creating_a_tenant_twice_is_refused(engine: Engine) -> None:
    tenants = SqlTenantRepository(engine)
    tenants.create("t-1", "acme")
    with pytest.raises(AlreadyExists):
        tenants.create("t-1", "other")
    record = tenants.get("t-1")
    assert record is not None and record.name == "acme"


# --- clients --------------------------------------------------------------------------


def test_client_round_trips_every_field(engine: Engine, tenant_ids: tuple[str, str]) -> None:
    clients = SqlClientRepository(engine)
    record = _client(
        "ops",
        tenant_ids[0],
        secret_hash=None,
        scopes=frozenset({"admin", "tenants:admin"}),
        dpop_required=True,
        is_operator=True,
    )
    clients.create(record)
    assert clients.get("ops") == record


def test_unknown_client_is_none(engine: Engine) -> None:
    assert SqlClientRepository(engine).get("nope") is None


def test_client_ids_are_global(engine: Engine, tenant_ids: tuple[str, str]) -> None:
    clients = SqlClientRepository(engine)
    clients.create(_client("shared", tenant_ids[0]))
    with pytest.raises(AlreadyExists):
        clients.create(_client("shared", tenant_ids[1]))
    stored = clients.get("shared")
    assert stored is not None and stored.tenant_id == tenant_ids[0]


def test_client_of_unknown_tenant_is_refused(engine: Engine) -> None:
    with pytest.raises(NotFound):
        SqlClientRepository(engine).create(_client("orphan", "no-such-tenant"))


def test_client_with_an_invalid_status_is_refused(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match="status"):
        SqlClientRepository(engine).create(_client("x", tenant_ids[0], status="deleted"))


def test_clients_are_listed_only_for_their_tenant(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clients = SqlClientRepository(engine)
    clients.create(_client("second", tenant_ids[0], created_at=1_800_000_000.0))
    listed = clients.list_for_tenant(tenant_ids[0])
    assert [c.client_id for c in listed] == [f"c-{tenant_ids[0]}", "second"]
    assert {c.tenant_id for c in listed} == {tenant_ids[0]}
    assert clients.list_for_tenant("no-such-tenant") == []


def test_set_status_of_unknown_client_is_false(engine: Engine) -> None:
    assert SqlClientRepository(engine).set_status("nope", "suspended") is False


def test_set_status_scoped_to_another_tenant_changes_nothing(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clients = SqlClientRepository(engine)
    victim = f"c-{tenant_ids[0]}"
    assert clients.set_status(victim, "suspended", tenant_id=tenant_ids[1]) is False
    stored = clients.get(victim)
    assert stored is not None and stored.status == "active"
    assert _event_count(engine) == 0


def test_set_status_refuses_unknown_statuses(engine: Engine, tenant_ids: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="status"):
        SqlClientRepository(engine).set_status(f"c-{tenant_ids[0]}", "deleted")


def test_suspending_through_set_status_reaches_the_deny_feed(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clock = Clock()
    clients = SqlClientRepository(engine, client_deny_ttl_s=330.0, clock=clock)
    client_id = f"c-{tenant_ids[0]}"
    assert clients.set_status(client_id, "suspended") is True
    stored = clients.get(client_id)
    assert stored is not None and stored.status == "suspended"
    feed = SqlDenyListFeed(engine, clock=clock)
    assert _all_entries(feed) == [DenyEntry("client", client_id, clock.now + 330.0)]


def test_reactivated_client_is_gone_from_a_fresh_load(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clients = SqlClientRepository(engine)
    client_id = f"c-{tenant_ids[0]}"
    clients.set_status(client_id, "suspended")
    assert clients.set_status(client_id, "active") is True
    assert _all_entries(SqlDenyListFeed(engine)) == []


@hyp_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    scopes=st.frozensets(
        st.text(
            alphabet=st.characters(
                min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'
            ),
            min_size=1,
            max_size=20,
        ),
        max_size=8,
    )
)
def test_any_scope_set_round_trips(
    engine: Engine, tenant_ids: tuple[str, str], scopes: frozenset[str]
) -> None:
    # RFC 6749 §3.3 scope-token characters: whatever the domain accepts, storage keeps.
    clients = SqlClientRepository(engine)
    client_id = uuid.uuid4().hex
    clients.create(_client(client_id, tenant_ids[0], scopes=scopes))
    stored = clients.get(client_id)
    assert stored is not None and stored.scopes == scopes


# --- signing keys ---------------------------------------------------------------------


def _rotate(keys: list[SigningKey], now: float) -> list[SigningKey]:
    return plan_rotation(
        keys, now, publish_ahead_s=600, token_lifetime_s=300, alg="Ed25519", leeway_s=30
    )


def test_keys_round_trip_decrypted(engine: Engine) -> None:
    repo = SqlKeyRepository(engine, KEK)
    keys = _rotate([], 1000.0)
    repo.replace(keys)
    assert sorted(repo.load(), key=lambda k: k.kid) == sorted(keys, key=lambda k: k.kid)


def test_private_keys_are_encrypted_at_rest(engine: Engine) -> None:
    keys = _rotate([], 1000.0)
    SqlKeyRepository(engine, KEK).replace(keys)
    with engine.connect() as connection:
        blobs = connection.execute(sa.select(signing_keys.c.private_key_enc)).scalars().all()
    assert len(blobs) == len(keys)
    for blob in blobs:
        assert b"PRIVATE KEY" not in bytes(blob)
        assert all(key.private_pem[30:60] not in bytes(blob) for key in keys)


def test_keys_do_not_load_under_another_kek(engine: Engine) -> None:
    SqlKeyRepository(engine, KEK).replace(_rotate([], 1000.0))
    with pytest.raises(KeyDecryptionError):
        SqlKeyRepository(engine, "another-kek").load()


def test_replace_follows_rotations_and_drops_expired_keys(engine: Engine) -> None:
    repo = SqlKeyRepository(engine, KEK)
    now = 1000.0
    keys = _rotate([], now)
    repo.replace(keys)
    for _ in range(4):
        now += 700.0  # past publish-ahead and past a retired key's lifetime
        keys = _rotate(repo.load(), now)
        repo.replace(keys)
        loaded = repo.load()
        assert sorted(loaded, key=lambda k: k.kid) == sorted(keys, key=lambda k: k.kid)
        assert [k.state for k in loaded].count("active") == 1


def test_two_active_keys_are_refused_and_nothing_changes(engine: Engine) -> None:
    repo = SqlKeyRepository(engine, KEK)
    keys = _rotate([], 1000.0)
    repo.replace(keys)
    both_active = [dataclasses.replace(k, state="active", activated_at=1000.0) for k in keys]
    with pytest.raises(IntegrityError):
        repo.replace(both_active)
    assert sorted(repo.load(), key=lambda k: k.kid) == sorted(keys, key=lambda k: k.kid)


def test_concurrent_first_boot_rotations_agree_on_one_key_set(engine: Engine) -> None:
    repo = SqlKeyRepository(engine, KEK)
    results: list[list[SigningKey]] = []
    errors: list[BaseException] = []

    def boot() -> None:
        try:
            results.append(repo.rotate(lambda keys: keys or _rotate(keys, 1000.0)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=boot) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    stored = sorted(repo.load(), key=lambda k: k.kid)
    # Every booter ended up with the one key set the first of them created.
    assert all(sorted(r, key=lambda k: k.kid) == stored for r in results)
    assert [k.state for k in stored].count("active") == 1


# --- revocations and the deny-list feed -----------------------------------------------


def test_revoked_token_is_revoked_and_fed_to_pods(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clock = Clock()
    store = SqlRevocationStore(engine, clock=clock)
    assert store.is_revoked("jti-1") is False
    store.revoke_token(
        "jti-1",
        tenant_id=tenant_ids[0],
        client_id=f"c-{tenant_ids[0]}",
        expires_at=clock.now + 300,
        reason="client asked",
    )
    assert store.is_revoked("jti-1") is True
    feed = SqlDenyListFeed(engine, clock=clock)
    assert _all_entries(feed) == [DenyEntry("token", "jti-1", clock.now + 300)]


def test_revoking_twice_writes_one_event(engine: Engine, tenant_ids: tuple[str, str]) -> None:
    store = SqlRevocationStore(engine)
    for _ in range(2):
        store.revoke_token(
            "jti-1",
            tenant_id=tenant_ids[0],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=time.time() + 300,
            reason="again",
        )
    assert _event_count(engine) == 1


def test_revoking_under_another_tenant_is_refused_and_writes_nothing(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    store = SqlRevocationStore(engine)
    with pytest.raises(NotFound):
        store.revoke_token(
            "jti-1",
            tenant_id=tenant_ids[1],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=time.time() + 300,
            reason="cross-tenant",
        )
    assert store.is_revoked("jti-1") is False
    assert _event_count(engine) == 0


def test_is_revoked_scoped_to_a_tenant_sees_only_that_tenant(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    store = SqlRevocationStore(engine)
    store.revoke_token(
        "jti-1",
        tenant_id=tenant_ids[0],
        client_id=f"c-{tenant_ids[0]}",
        expires_at=time.time() + 300,
        reason="r",
    )
    assert store.is_revoked("jti-1", tenant_id=tenant_ids[0]) is True
    assert store.is_revoked("jti-1", tenant_id=tenant_ids[1]) is False


def test_suspending_a_client_flips_its_status_and_feeds_pods_once(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clock = Clock()
    store = SqlRevocationStore(engine, client_deny_ttl_s=None, clock=clock)
    client_id = f"c-{tenant_ids[0]}"
    store.suspend_client(client_id, reason="fraud")
    store.suspend_client(client_id, reason="fraud, again")
    stored = SqlClientRepository(engine).get(client_id)
    assert stored is not None and stored.status == "suspended"
    assert _all_entries(SqlDenyListFeed(engine, clock=clock)) == [
        DenyEntry("client", client_id, None)
    ]
    with engine.connect() as connection:
        assert connection.execute(sa.select(deny_list_events.c.reason)).scalar() == "fraud"


def test_suspending_an_unknown_client_raises(engine: Engine) -> None:
    with pytest.raises(NotFound):
        SqlRevocationStore(engine).suspend_client("nope", reason="r")


def test_suspending_scoped_to_another_tenant_raises_and_changes_nothing(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    client_id = f"c-{tenant_ids[0]}"
    with pytest.raises(NotFound):
        SqlRevocationStore(engine).suspend_client(client_id, reason="r", tenant_id=tenant_ids[1])
    stored = SqlClientRepository(engine).get(client_id)
    assert stored is not None and stored.status == "active"


def test_feed_pages_in_order_and_stops_when_caught_up(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    store = SqlRevocationStore(engine)
    jtis = [f"jti-{i}" for i in range(5)]
    for jti in jtis:
        store.revoke_token(
            jti,
            tenant_id=tenant_ids[0],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=time.time() + 300,
            reason="r",
        )
    feed = SqlDenyListFeed(engine, batch_max=2)
    cursor = 0
    seen: list[str] = []
    for _ in range(10):
        new_cursor, entries = feed.since(cursor)
        if new_cursor == cursor:
            assert entries == []
            break
        assert new_cursor > cursor
        seen.extend(e.subject for e in entries)
        cursor = new_cursor
    assert seen == jtis
    assert feed.since(cursor) == (cursor, [])


def test_feed_skips_expired_entries_but_moves_past_them(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    clock = Clock()
    store = SqlRevocationStore(engine, clock=clock)
    for jti, ttl in (("old", 10.0), ("new", 1000.0)):
        store.revoke_token(
            jti,
            tenant_id=tenant_ids[0],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=clock.now + ttl,
            reason="r",
        )
    clock.now += 100
    cursor, entries = SqlDenyListFeed(engine, clock=clock).since(0)
    assert [e.subject for e in entries] == ["new"]
    assert SqlDenyListFeed(engine, clock=clock).since(cursor) == (cursor, [])


def test_pruning_removes_only_expired_rows(engine: Engine, tenant_ids: tuple[str, str]) -> None:
    clock = Clock()
    store = SqlRevocationStore(engine, clock=clock)
    for jti, ttl in (("old", 10.0), ("new", 1000.0)):
        store.revoke_token(
            jti,
            tenant_id=tenant_ids[0],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=clock.now + ttl,
            reason="r",
        )
    store.suspend_client(f"c-{tenant_ids[1]}", reason="forever")
    clock.now += 100
    assert store.prune_expired() == 2  # "old": its revocation and its event
    assert (store.is_revoked("old"), store.is_revoked("new")) == (False, True)
    assert {e.subject for e in _all_entries(SqlDenyListFeed(engine, clock=clock))} == {
        "new",
        f"c-{tenant_ids[1]}",
    }


def test_concurrent_revocations_reach_an_incremental_reader_without_gaps(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    # The cursor is only safe if seq order is commit order: a reader that polls while
    # writers race must still end up with every entry.
    writers, per_writer = 4, 15
    store = SqlRevocationStore(engine)
    feed = SqlDenyListFeed(engine)
    done = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                tenant_id = tenant_ids[(w + i) % 2]
                store.revoke_token(
                    f"jti-{w}-{i}",
                    tenant_id=tenant_id,
                    client_id=f"c-{tenant_id}",
                    expires_at=time.time() + 300,
                    reason="r",
                )
                if i % 5 == 0:
                    store.suspend_client(f"c-{tenant_id}", reason="r")
                    SqlClientRepository(engine).set_status(f"c-{tenant_id}", "active")
        except BaseException as exc:
            errors.append(exc)

    def read() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            cursor, entries = feed.since(cursor)
            seen.extend(e.subject for e in entries if e.kind == "token")
            if finished and not entries:
                return

    reader = threading.Thread(target=read)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    done.set()
    reader.join(timeout=60)
    assert errors == []
    expected = {f"jti-{w}-{i}" for w in range(writers) for i in range(per_writer)}
    assert sorted(seen) == sorted(expected)


# --- deny-list sync -------------------------------------------------------------------


def test_sync_loads_existing_revocations_before_ready_then_follows_new_ones(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    store = SqlRevocationStore(engine)
    client_id = f"c-{tenant_ids[0]}"

    def revoke(jti: str) -> None:
        store.revoke_token(
            jti,
            tenant_id=tenant_ids[0],
            client_id=client_id,
            expires_at=time.time() + 300,
            reason="r",
        )

    revoke("before")

    async def scenario() -> None:
        deny_list = DenyList()
        sync = DenyListSync(SqlDenyListFeed(engine), deny_list, poll_s=0.02)
        task = asyncio.create_task(sync.run())
        try:
            await asyncio.wait_for(sync.ready.wait(), timeout=10)
            assert deny_list.token_revoked("before")
            await asyncio.to_thread(revoke, "after")
            await asyncio.to_thread(store.suspend_client, f"c-{tenant_ids[1]}", reason="r")
            async with asyncio.timeout(10):
                while not (
                    deny_list.token_revoked("after")
                    and deny_list.client_suspended(f"c-{tenant_ids[1]}")
                ):
                    await asyncio.sleep(0.01)
            assert sync.last_synced_at is not None
        finally:
            task.cancel()

    asyncio.run(scenario())


class FlakyFeed:
    """Fails its first ``failures`` calls, then serves ``entries`` once."""

    def __init__(self, failures: int, entries: list[DenyEntry]) -> None:
        self.failures = failures
        self.entries = entries
        self.calls = 0

    def since(self, cursor: int) -> tuple[int, list[DenyEntry]]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("database down")
        if cursor == 0:
            return len(self.entries), list(self.entries)
        return cursor, []


def test_sync_survives_a_failing_feed_and_becomes_ready_once_it_recovers() -> None:
    feed = FlakyFeed(failures=3, entries=[DenyEntry("token", "j", time.time() + 300)])
    deny_list = DenyList()

    async def scenario() -> None:
        sync = DenyListSync(feed, deny_list, poll_s=0.01)
        task = asyncio.create_task(sync.run())
        try:
            await asyncio.sleep(0.02)
            assert not sync.ready.is_set()
            await asyncio.wait_for(sync.ready.wait(), timeout=5)
            assert sync.cursor == 1
            assert not task.done()
        finally:
            task.cancel()

    asyncio.run(scenario())
    assert deny_list.token_revoked("j")
    assert feed.calls >= 4


def test_revocation_in_one_process_reaches_a_sync_in_another_within_a_second(
    settings: Settings, engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    poll_s = AuthSettings().deny_list_poll_s
    child = subprocess.Popen(
        [sys.executable, str(CHILD), settings.database_url, "jti-x", str(poll_s)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            # Unconfigured structlog also writes to stdout: keep only the protocol.
            if line.strip() in ("ready", "revoked"):
                lines.put(line.strip())

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert lines.get(timeout=30) == "ready"
        started = time.monotonic()
        SqlRevocationStore(engine).revoke_token(
            "jti-x",
            tenant_id=tenant_ids[0],
            client_id=f"c-{tenant_ids[0]}",
            expires_at=time.time() + 300,
            reason="stolen",
        )
        assert lines.get(timeout=5) == "revoked"
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, f"revocation took {elapsed:.3f} s to reach the other process"
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


def test_oauth_clients_table_refuses_unknown_status(
    engine: Engine, tenant_ids: tuple[str, str]
) -> None:
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(
            oauth_clients.update()
            .where(oauth_clients.c.client_id == f"c-{tenant_ids[0]}")
            .values(status="deleted")
        )
