"""DPoP proof replay caches (RFC 9449 §11.1) on real storage: SQLite, PostgreSQL, Redis.

Each "pod" is its own cache object over its own connection pool, the way pods share
nothing but the storage. PostgreSQL and Redis tests skip without a reachable server,
except under CI (``CI=true``), where a missing server is a broken environment and fails.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from redis import Redis
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import alembic_config, upgrade
from strongroom.adapters.db.schema import dpop_jti
from strongroom.adapters.dpop_replay import (
    PRUNE_INTERVAL_S,
    REDIS_KEY_PREFIX,
    RedisJtiReplayCache,
    SqlJtiReplayCache,
    replay_cache_for,
)
from strongroom.auth.rfc9449_dpop import JtiReplayCache
from strongroom.config import Settings

REDIS_URL = os.environ.get("STRONGROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
NOW = 1_700_000_000.0
RACERS = 16


def _unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this backend may not be skipped)")
    pytest.skip(reason)


# --- backends -------------------------------------------------------------------------


@pytest.fixture
def engines(settings: Settings) -> Iterator[tuple[Engine, Engine]]:
    """Two independent pools on one migrated database: two pods."""
    upgrade(settings)
    first, second = make_engine(settings), make_engine(settings)
    with first.begin() as connection:
        connection.execute(dpop_jti.delete())
    yield first, second
    first.dispose()
    second.dispose()


@pytest.fixture
def redis_client() -> Iterator[Redis]:
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        _unreachable(f"Redis at {REDIS_URL} unreachable: {exc!r}")
    yield client
    for key in client.scan_iter(f"{REDIS_KEY_PREFIX}*"):
        client.delete(key)
    client.close()


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _race(caches: list[JtiReplayCache], jti: str, expires_at: float) -> list[bool]:
    """Every cache presents ``jti`` at once, several times each; returns who won."""
    barrier = threading.Barrier(RACERS)
    results: list[bool] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        barrier.wait()
        won = caches[index % len(caches)].first_use(jti, expires_at)
        with lock:
            results.append(won)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# --- SQL ------------------------------------------------------------------------------


def test_sql_first_use_wins_and_every_later_use_is_a_replay(
    engines: tuple[Engine, Engine],
) -> None:
    cache = SqlJtiReplayCache(engines[0], clock=Clock())
    assert cache.first_use("proof-1", NOW + 90)
    assert not cache.first_use("proof-1", NOW + 90)
    assert cache.first_use("proof-2", NOW + 90)


def test_sql_replay_on_another_pod_is_refused(engines: tuple[Engine, Engine]) -> None:
    pod_a = SqlJtiReplayCache(engines[0], clock=Clock())
    pod_b = SqlJtiReplayCache(engines[1], clock=Clock())
    assert pod_a.first_use("proof", NOW + 90)
    assert not pod_b.first_use("proof", NOW + 90)


def test_sql_concurrent_presentations_have_exactly_one_winner(
    engines: tuple[Engine, Engine],
) -> None:
    caches: list[JtiReplayCache] = [
        SqlJtiReplayCache(engines[0], clock=Clock()),
        SqlJtiReplayCache(engines[1], clock=Clock()),
    ]
    results = _race(caches, "contended", NOW + 90)
    assert len(results) == RACERS and results.count(True) == 1


def test_sql_concurrent_checks_share_statements_and_each_proof_wins_once(
    engines: tuple[Engine, Engine],
) -> None:
    """Checks arriving together go in shared statements; a jti presented twice in one
    batch still wins once."""
    cache = SqlJtiReplayCache(engines[0], clock=Clock())
    statements: list[str] = []
    sa.event.listen(engines[0], "before_cursor_execute", lambda *args: statements.append(args[2]))
    results: dict[str, list[bool]] = {}
    lock = threading.Lock()
    start = threading.Barrier(32)

    def check(index: int) -> None:
        jti = f"proof-{index % 16}"
        start.wait()
        won = cache.first_use(jti, NOW + 90)
        with lock:
            results.setdefault(jti, []).append(won)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert {jti: sorted(wins) for jti, wins in results.items()} == {
        f"proof-{i}": [False, True] for i in range(16)
    }
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert 1 <= len(inserts) < 32


def test_sql_a_failed_batch_fails_every_check_in_it(tmp_path: Path) -> None:
    """Fail closed: no table, no answer — each waiting caller gets the error."""
    engine = make_engine(Settings(data_dir=tmp_path))  # not migrated: no dpop_jti table
    cache = SqlJtiReplayCache(engine, clock=Clock())
    errors: list[BaseException] = []

    def check(index: int) -> None:
        try:
            cache.first_use(f"proof-{index}", NOW + 90)
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=check, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 8
    assert all(isinstance(e, sa.exc.OperationalError) for e in errors)
    engine.dispose()


def test_sql_expired_entries_are_pruned_and_live_ones_kept(
    engines: tuple[Engine, Engine],
) -> None:
    clock = Clock()
    cache = SqlJtiReplayCache(engines[0], clock=clock)
    cache.first_use("old", NOW + 10)
    cache.first_use("live", NOW + 10_000)
    clock.now = NOW + PRUNE_INTERVAL_S + 20
    cache.first_use("new", clock.now + 90)  # a use past the interval prunes on the way
    with engines[0].connect() as connection:
        left = set(connection.execute(sa.select(dpop_jti.c.jti)).scalars())
    assert left == {"live", "new"}


def test_dpop_migration_downgrades_to_oauth_and_upgrades_again(
    settings: Settings, engines: tuple[Engine, Engine]
) -> None:
    engine = engines[0]
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0002_oauth")
    with engine.connect() as connection:
        assert not sa.inspect(connection).has_table("dpop_jti")
    upgrade(settings)
    with engine.connect() as connection:
        assert sa.inspect(connection).has_table("dpop_jti")


# --- Redis ----------------------------------------------------------------------------


def test_redis_first_use_wins_and_every_later_use_is_a_replay(redis_client: Redis) -> None:
    cache = RedisJtiReplayCache(redis_client)
    jti = uuid.uuid4().hex
    assert cache.first_use(jti, _future(90))
    assert not cache.first_use(jti, _future(90))


def test_redis_replay_on_another_pod_is_refused(redis_client: Redis) -> None:
    pod_a = RedisJtiReplayCache.from_url(REDIS_URL)
    pod_b = RedisJtiReplayCache.from_url(REDIS_URL)
    jti = uuid.uuid4().hex
    try:
        assert pod_a.first_use(jti, _future(90))
        assert not pod_b.first_use(jti, _future(90))
    finally:
        pod_a.close()
        pod_b.close()


def test_redis_concurrent_presentations_have_exactly_one_winner(redis_client: Redis) -> None:
    pods = [RedisJtiReplayCache.from_url(REDIS_URL) for _ in range(2)]
    try:
        results = _race(list(pods), uuid.uuid4().hex, _future(90))
    finally:
        for pod in pods:
            pod.close()
    assert len(results) == RACERS and results.count(True) == 1


def test_redis_entry_expires_when_the_proof_window_closes(redis_client: Redis) -> None:
    cache = RedisJtiReplayCache(redis_client)
    jti = uuid.uuid4().hex
    cache.first_use(jti, _future(90))
    ttl = redis_client.ttl(REDIS_KEY_PREFIX + jti)
    assert isinstance(ttl, int) and 85 <= ttl <= 91


def test_redis_entry_for_an_already_closed_window_still_lives_a_moment(
    redis_client: Redis,
) -> None:
    cache = RedisJtiReplayCache(redis_client)
    jti = uuid.uuid4().hex
    assert cache.first_use(jti, _future(-5))
    assert not cache.first_use(jti, _future(-5))


# --- selection ------------------------------------------------------------------------


def _selected(settings: Settings, tmp_path: Path) -> Callable[[], JtiReplayCache]:
    engine = make_engine(Settings(data_dir=tmp_path))
    return lambda: replay_cache_for(settings, engine)


def test_embedded_profile_uses_the_database(tmp_path: Path) -> None:
    assert isinstance(_selected(Settings(data_dir=tmp_path), tmp_path)(), SqlJtiReplayCache)


def test_production_profile_uses_redis(tmp_path: Path) -> None:
    production = Settings(
        profile="production",
        data_dir=tmp_path,
        database={"url": "postgresql://db/strongroom"},
        secrets={"edge_secret": "e" * 32, "key_encryption_key": "k" * 32},
    )
    cache = _selected(production, tmp_path)()
    assert isinstance(cache, RedisJtiReplayCache)
    cache.close()


def test_explicit_choice_overrides_the_profile(tmp_path: Path) -> None:
    chosen = Settings(data_dir=tmp_path, auth={"dpop_replay_cache": "redis"})
    cache = _selected(chosen, tmp_path)()
    assert isinstance(cache, RedisJtiReplayCache)
    cache.close()


def _future(seconds: float) -> float:
    return time.time() + seconds
