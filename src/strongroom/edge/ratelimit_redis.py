"""The production profile's rate-limit store: GCRA in Redis, limits across every edge host.

A check is one round trip whatever the number of policies: a Lua script takes every
policy's key, decides all or nothing and stores the advanced TATs, atomically (Redis
runs a script alone). It reads the clock with ``TIME`` inside the script, so every edge
host shares Redis's clock and host clock skew cannot widen a limit. Times are integer
microseconds (exact in Lua's doubles until the year 2255). The script is sent by SHA
(``EVALSHA``), and in full (``EVAL``, which also caches it) when Redis answers NOSCRIPT
after a restart or failover.

Checks that arrive while a round trip is in flight travel together in the next script
call (each decided in arrival order, exactly as if sent alone): a busy worker makes a
few calls per round trip instead of one per request, and never waits for a pooled
connection — at most ``redis_connections_max`` calls are in flight, one per connection,
all opened at start (``warm``), because opening one costs several round trips. Checks
beyond what those calls carry (Redis slower than the arrivals) are decided locally, as
during an outage, rather than queued without bound.

Keys (``strongroom:rl:<policy>|<key>``) carry a TTL of their remaining back-pressure:
an idle client costs Redis nothing. One call's keys must live on one server, so this
store targets one primary (with replicas), not a Redis Cluster.

When Redis is unreachable or slower than ``redis_timeout_s``, a circuit breaker opens:
for ``redis_retry_s`` every decision is local — each worker enforcing its share of every
policy (``fail_mode = "open"``) or a 503 ``rate-limiter-unavailable`` (``"closed"``) —
so a dead Redis costs no timeout per request. Then one request probes Redis again
(half-open) while the others still decide locally. ``redis_up`` and
``fallback_decisions`` are in the snapshot and metrics.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from strongroom.edge.guard import DEFER, Defer
from strongroom.edge.ratelimit import NS_PER_US, LocalStore, RatePolicy, Verdict

if TYPE_CHECKING:
    from strongroom.config import RateLimitSettings

log = structlog.get_logger("strongroom.edge.ratelimit")

KEY_PREFIX = b"strongroom:rl:"
# Opening a connection is about this many round trips (TCP, HELLO, CLIENT SETINFO,
# SELECT): its timeout is that multiple of a check's.
CONNECT_ROUND_TRIPS = 5
# Checks in one script call. Redis serves nothing else while a script runs; 256 checks
# of three policies are ~800 GET/SET, a fraction of a millisecond.
BATCH_CHECKS_MAX = 256

# ARGV[1] = number of checks; then per check: its key count n, then n pairs of
# (emission interval, tolerance) in µs. KEYS: every check's keys, in order.
# Returns one array per check: {refused, offset_1 .. offset_n}, refused being the 1-based
# index of the policy that refuses for longest (0 = admitted) and offset_i = TAT_i - now
# in µs after the decision. The arithmetic of ratelimit.gcra; '%.0f' keeps 16-digit
# integers exact (tostring would round them to 14 significant digits).
GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local k = 0
local a = 2
for r = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local tats = {}
  local refused = 0
  local wait_max = 0
  for i = 1, n do
    local interval = tonumber(ARGV[a + 2 * i - 2])
    local tolerance = tonumber(ARGV[a + 2 * i - 1])
    local tat = tonumber(redis.call('GET', KEYS[k + i]) or '0')
    if tat < now or tat > now + tolerance + interval then
      tat = now
    end
    local wait = tat - now - tolerance
    if wait > 0 and wait > wait_max then
      wait_max = wait
      refused = i
    end
    tats[i] = tat
  end
  local res = {refused}
  for i = 1, n do
    local tat = tats[i]
    if refused == 0 then
      tat = tat + tonumber(ARGV[a + 2 * i - 2])
      redis.call('SET', KEYS[k + i], string.format('%.0f', tat),
        'PX', math.floor((tat - now) / 1000) + 1)
    end
    res[i + 1] = tat - now
  end
  out[r] = res
  k = k + n
  a = a + 2 * n
end
return out
"""
GCRA_SHA = hashlib.sha1(GCRA_SCRIPT.encode(), usedforsecurity=False).hexdigest()


class RedisUnavailableError(Exception):
    """Redis did not decide this check (unreachable, too slow, or an error reply)."""


_Check = tuple[list[bytes], list[bytes], "asyncio.Future[list[int]]"]


class RedisRateStore:
    """GCRA TATs in Redis, with a local fallback behind a circuit breaker."""

    name = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        timeout_s: float,
        retry_s: float,
        fail_mode: str,
        workers: int,
        calls_in_flight_max: int,
        fallback_keys_max: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._fail_open = fail_mode == "open"
        self._workers = workers
        self._calls_max = calls_in_flight_max
        self._clock = clock
        self._fallback = LocalStore(fallback_keys_max)
        # Each worker's share of a policy, and the script arguments, once per policy.
        self._shares: dict[int, RatePolicy] = {}
        self._args: dict[int, tuple[bytes, bytes]] = {}
        self._pending: list[_Check] = []
        self._flush_scheduled = False
        self._calls: set[asyncio.Task[None]] = set()
        self._warming: set[asyncio.Task[None]] = set()
        self.up = True
        self._retry_at = 0.0
        self._probing = False
        self.decisions = 0
        self.script_calls = 0
        self.fallback_decisions = 0
        self.errors = 0
        self.last_error = ""
        self.script_loads = 0
        self.queue_full = 0

    @classmethod
    def from_settings(cls, config: RateLimitSettings, *, workers: int) -> RedisRateStore:
        pool = ConnectionPool.from_url(
            config.redis_url,
            max_connections=config.redis_connections_max,
            socket_timeout=config.redis_timeout_s,
            socket_connect_timeout=config.redis_timeout_s * CONNECT_ROUND_TRIPS,
            # The breaker decides when to try again, not the client library.
            retry=Retry(NoBackoff(), 0),
        )
        return cls(
            Redis(connection_pool=pool),
            timeout_s=config.redis_timeout_s,
            retry_s=config.redis_retry_s,
            fail_mode=config.fail_mode,
            workers=workers,
            calls_in_flight_max=config.redis_connections_max,
            fallback_keys_max=config.shared_slots,
        )

    # --- decisions ----------------------------------------------------------------------

    def acquire(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict | Defer:
        """DEFER to Redis while it is up (or due a probe); decide locally while it is down."""
        if self.up:
            return DEFER
        if not self._probing and self._clock() >= self._retry_at:
            self._probing = True
            return DEFER
        return self._without_redis(policies, keys)

    async def acquire_async(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        if not self.up and not self._probing:
            # Redis went down between this request's check and now.
            return self._without_redis(policies, keys)
        args: list[bytes] = [str(len(keys)).encode()]
        for policy in policies:
            pair = self._args.get(policy.index)
            if pair is None:
                pair = self._args[policy.index] = (
                    str(policy.interval_us).encode(),
                    str(policy.tolerance_us).encode(),
                )
            args.extend(pair)
        if len(self._pending) >= self._calls_max * BATCH_CHECKS_MAX:
            # Redis answers, but slower than checks arrive: waiting would grow without
            # bound, so this check is decided as if Redis were down.
            self.queue_full += 1
            return self._without_redis(policies, keys)
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._pending.append(([KEY_PREFIX + k for k in keys], args, future))
        if not self._flush_scheduled and len(self._calls) < self._calls_max:
            # Let every check of this loop iteration join the call.
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            reply = await future
        except RedisUnavailableError:
            return self._without_redis(policies, keys)
        self.decisions += 1
        return Verdict(reply[0] - 1, [v * NS_PER_US for v in reply[1:]], policies)

    def _flush(self) -> None:
        self._flush_scheduled = False
        loop = asyncio.get_running_loop()
        while self._pending and len(self._calls) < self._calls_max:
            batch = self._pending[:BATCH_CHECKS_MAX]
            del self._pending[:BATCH_CHECKS_MAX]
            task = loop.create_task(self._call(batch))
            self._calls.add(task)
            task.add_done_callback(self._call_done)

    def _call_done(self, task: asyncio.Task[None]) -> None:
        self._calls.discard(task)
        if self._pending and not self._flush_scheduled:
            self._flush()

    async def _call(self, batch: list[_Check]) -> None:
        keys: list[bytes] = []
        args: list[bytes] = [str(len(batch)).encode()]
        for check_keys, check_args, _ in batch:
            keys.extend(check_keys)
            args.extend(check_args)
        try:
            async with asyncio.timeout(self._timeout_s):
                replies = await self._run(keys, args, len(batch))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(RedisUnavailableError(repr(exc)))
            return
        except asyncio.CancelledError:
            for _, _, future in batch:
                future.cancel()
            raise
        self._recovered()
        self.script_calls += 1
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

    async def _run(self, keys: list[bytes], args: list[bytes], checks: int) -> list[list[int]]:
        try:
            replies = await self._client.evalsha(GCRA_SHA, len(keys), *keys, *args)
        except NoScriptError:
            self.script_loads += 1
            replies = await self._client.eval(GCRA_SCRIPT, len(keys), *keys, *args)
        if not isinstance(replies, list) or len(replies) != checks:
            raise RedisError(f"unexpected rate-limit script reply: {replies!r}")
        return replies

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = repr(exc)
        if self.up or self._probing:
            log.warning(
                "edge.ratelimit_redis_down",
                error=self.last_error,
                fail_mode="open" if self._fail_open else "closed",
                retry_s=self._retry_s,
            )
        self.up = False
        self._probing = False
        self._retry_at = self._clock() + self._retry_s

    def _recovered(self) -> None:
        if not self.up:
            log.info("edge.ratelimit_redis_recovered")
            self.up = True
            task = asyncio.get_running_loop().create_task(self.warm())
            self._warming.add(task)  # a reference until done
            task.add_done_callback(self._warming.discard)
        self._probing = False

    def _without_redis(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        self.fallback_decisions += 1
        if not self._fail_open:
            return Verdict(-1, [], policies, unavailable=True)
        shares = []
        for policy in policies:
            share = self._shares.get(policy.index)
            if share is None:
                share = self._shares[policy.index] = policy.share(self._workers)
            shares.append(share)
        return self._fallback.acquire(shares, keys)

    # --- lifecycle ----------------------------------------------------------------------

    async def warm(self) -> None:
        """Load the script and open every pooled connection before traffic needs them."""
        client = self._client
        try:
            await client.script_load(GCRA_SCRIPT)
            # Concurrent commands each take a connection: the pool opens all of them.
            await asyncio.gather(*(client.ping() for _ in range(self._calls_max)))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc)

    async def aclose(self) -> None:
        await self._client.aclose()

    def snapshot(self) -> dict[str, object]:
        return {
            "redis_up": self.up,
            "redis_decisions": self.decisions,
            "redis_script_calls": self.script_calls,
            "fallback_decisions": self.fallback_decisions,
            "fallback_keys": len(self._fallback),
            "redis_errors": self.errors,
            "redis_last_error": self.last_error,
            "redis_script_loads": self.script_loads,
            "redis_queue_full": self.queue_full,
            "fail_mode": "open" if self._fail_open else "closed",
        }
