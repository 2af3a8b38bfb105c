"""Replay caches for DPoP proof identifiers (``auth.rfc9449_dpop.JtiReplayCache``).

RFC 9449 §11.1: a server must not accept the same proof twice within its acceptance
window, on any pod. Two shared implementations, both atomic across processes:

``SqlJtiReplayCache``
    ``INSERT ... ON CONFLICT DO NOTHING`` into ``dpop_jti`` (migration 0003): the primary
    key decides the one winner. Expired rows are pruned by whichever pod passes by
    after ``PRUNE_INTERVAL_S``. Used by the embedded profile (SQLite) and wherever no
    Redis is configured.
``RedisJtiReplayCache``
    ``SET key 1 NX EXAT expires_at``: one round trip, Redis expires entries itself, and
    the database takes no write per request. The production profile's default.

Both fail closed: a storage error propagates, and the caller refuses the request
rather than accept a proof it could not check.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import write_transaction
from strongroom.adapters.db.schema import dpop_jti
from strongroom.auth.rfc9449_dpop import JtiReplayCache

if TYPE_CHECKING:
    from redis import Redis

    from strongroom.config import Settings

Clock = Callable[[], float]

# Pruning is a range delete on an indexed column; every 30 s per pod keeps the table at
# about (proofs per second x proof window) rows without a delete on the request path.
PRUNE_INTERVAL_S = 30.0
# A replay check is on the request path: a Redis that does not answer within this long
# fails the request instead of holding it (and a worker thread) for the TCP timeout.
REDIS_TIMEOUT_S = 1.0
REDIS_KEY_PREFIX = "strongroom:dpop:jti:"


class _Waiter:
    """One caller's identifier in a batch, and the answer it waits for."""

    __slots__ = ("answer", "done", "error", "expires_at", "jti", "lead")

    def __init__(self, jti: str, expires_at: float) -> None:
        self.jti = jti
        self.expires_at = expires_at
        self.done = threading.Event()
        self.answer = False
        self.error: BaseException | None = None
        self.lead = False  # woken to run the next batch, not with an answer


class SqlJtiReplayCache:
    """The ``dpop_jti`` table as a replay cache, on SQLite or PostgreSQL.

    Concurrent checks at a pod share one statement and one commit (group commit, like
    the ledger's): the caller that finds no batch running runs one with everything
    queued; callers arriving meanwhile wait, and the first of them runs the next batch.
    One transaction per proof used to open a connection per concurrent request and was
    most of the database's work for a DPoP-bound transfer.
    """

    def __init__(self, engine: Engine, *, clock: Clock = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._last_prune = -math.inf
        self._is_postgres = engine.dialect.name == "postgresql"
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._running = False

    def first_use(self, jti: str, expires_at: float) -> bool:
        waiter = _Waiter(jti, expires_at)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._running
            self._running = True
        if not lead:
            waiter.done.wait()
            if not waiter.lead:
                return self._answer(waiter)
        self._run_batch()
        return self._answer(waiter)

    @staticmethod
    def _answer(waiter: _Waiter) -> bool:
        if waiter.error is not None:
            raise waiter.error
        return waiter.answer

    def _run_batch(self) -> None:
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            won = self._insert(batch)
        except BaseException as exc:
            for waiter in batch:
                waiter.error = exc
        else:
            seen: set[str] = set()
            for waiter in batch:
                # A jti twice in one batch: the statement inserts it once; the first wins.
                waiter.answer = waiter.jti in won and waiter.jti not in seen
                seen.add(waiter.jti)
        with self._lock:
            if self._queue:
                successor = self._queue[0]
                successor.lead = True
                successor.done.set()
            else:
                self._running = False
        for waiter in batch:
            waiter.done.set()

    def _insert(self, batch: list[_Waiter]) -> set[str]:
        now = self._clock()
        if now - self._last_prune >= PRUNE_INTERVAL_S:
            self._last_prune = now
            self.prune(now)
        insert: postgresql.Insert | sqlite.Insert = (
            postgresql.insert(dpop_jti) if self._is_postgres else sqlite.insert(dpop_jti)
        )
        rows = {w.jti: w.expires_at for w in batch}
        statement = (
            insert.values([{"jti": jti, "expires_at": at} for jti, at in rows.items()])
            .on_conflict_do_nothing()
            # RETURNING, not rowcount: psycopg reports -1 for this statement.
            .returning(dpop_jti.c.jti)
        )
        with write_transaction(self._engine) as connection:
            return set(connection.execute(statement).scalars())

    def prune(self, now: float) -> int:
        """Delete entries whose proofs can no longer be accepted; returns how many."""
        with write_transaction(self._engine) as connection:
            result = connection.execute(dpop_jti.delete().where(dpop_jti.c.expires_at < now))
        return max(result.rowcount, 0)


class RedisJtiReplayCache:
    """Redis as a replay cache: ``SET NX`` decides the winner, ``EXAT`` forgets it."""

    def __init__(self, client: Redis, *, clock: Clock = time.time) -> None:
        self._redis = client
        self._clock = clock

    @classmethod
    def from_url(cls, url: str) -> RedisJtiReplayCache:
        from redis import Redis  # noqa: PLC0415 - only the Redis profile needs the client

        return cls(
            Redis.from_url(
                url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
            )
        )

    def first_use(self, jti: str, expires_at: float) -> bool:
        # At least one second of life even for a proof at the edge of its window.
        expire_at_s = max(math.ceil(expires_at), math.floor(self._clock()) + 1)
        return bool(self._redis.set(REDIS_KEY_PREFIX + jti, b"1", nx=True, exat=expire_at_s))

    def close(self) -> None:
        self._redis.close()


def replay_cache_for(settings: Settings, engine: Engine) -> JtiReplayCache:
    """The cache ``auth.dpop_replay_cache`` selects ("auto": Redis in production)."""
    choice = settings.auth.dpop_replay_cache
    if choice == "auto":
        choice = "redis" if settings.profile == "production" else "database"
    if choice == "redis":
        return RedisJtiReplayCache.from_url(settings.auth.dpop_redis_url)
    return SqlJtiReplayCache(engine)
