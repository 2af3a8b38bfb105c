"""The Redis rate-limit store on a real Redis: the script, atomicity, and Redis outages.

Outages are real too: a closed port (nothing listening), a server that accepts and never
answers, and a TCP relay to the real Redis that is started late — never a mock. Tests skip
without a reachable Redis, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis import Redis

from strongroom.config import RateLimitPolicy, RateLimitSettings, Settings
from strongroom.edge.guard import DEFER, GateRequest, Refusal
from strongroom.edge.ratelimit import RateLimitGate, RatePolicy, build_rate_limits
from strongroom.edge.ratelimit_redis import KEY_PREFIX, RedisRateStore
from strongroom.edge.security_events import SecurityEvents

REDIS_URL = os.environ.get("STRONGROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this backend may not be skipped)")
    pytest.skip(reason)


@pytest.fixture
def name() -> Iterator[str]:
    """A policy name of this test's own (its keys collide with nobody's); keys removed after."""
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        _unreachable(f"Redis at {REDIS_URL} unreachable: {exc!r}")
    policy_name = f"t{uuid.uuid4().hex[:10]}"
    yield policy_name
    for key in client.scan_iter(KEY_PREFIX + policy_name.encode() + b"*"):
        client.delete(key)
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def store() -> RedisRateStore:
    return RedisRateStore.from_settings(RateLimitSettings(redis_url=REDIS_URL), workers=2)


def policy(name: str, limit: int = 10, burst: int = 5, index: int = 0) -> RatePolicy:
    spec = RateLimitPolicy(name=name, key="ip", limit=limit, window_s=1, burst=burst)
    return RatePolicy.compile(index, spec)


def run(coro: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(coro())  # type: ignore[arg-type]


def gate_for(tmp: Path, url: str, name: str, **limits: Any) -> RateLimitGate:
    settings = Settings(
        data_dir=tmp,
        edge={
            "workers": 2,
            "rate_limits": {
                "store": "redis",
                "redis_url": url,
                "policies": [{"name": name, "key": "ip", "limit": 10, "burst": 10}],
                "concurrency": [],
                **limits,
            },
        },
    )
    protection = build_rate_limits(settings, 0, SecurityEvents(None, 0))
    assert protection is not None
    return protection.gate


async def decide(gate: RateLimitGate, ip: str = "203.0.113.9") -> tuple[Refusal | None, bool]:
    """(the gate's answer, whether it needed Redis)."""
    request = GateRequest(ip, b"GET", b"/v1/accounts", [], "req")
    verdict = gate.check(request)
    if verdict is DEFER:
        return await gate.check_async(request), True
    assert not isinstance(verdict, type(DEFER))
    return verdict, False


# --- the script ---------------------------------------------------------------------------


def test_the_script_admits_a_burst_then_one_per_interval(name: str) -> None:
    async def go() -> None:
        s = store()
        p = [policy(name, limit=10, burst=5)]
        key = [f"{name}|203.0.113.1".encode()]
        verdicts = [await s.acquire_async(p, key) for _ in range(7)]
        assert [v.refused for v in verdicts] == [-1] * 5 + [0] * 2
        # The TAT is 5 intervals (0.5 s) ahead; a refused check moved nothing.
        assert 0.45e9 < verdicts[-1].offsets_ns[0] <= 0.5e9
        ttl_ms = await s._client.pttl(KEY_PREFIX + key[0])
        assert 0 < ttl_ms <= 501
        await asyncio.sleep(0.11)
        assert (await s.acquire_async(p, key)).refused == -1
        await s.aclose()

    run(go)


def test_every_policy_of_a_request_is_decided_in_one_call(name: str) -> None:
    async def go() -> None:
        s = store()
        policies = [policy(f"{name}-{i}", index=i) for i in range(3)]
        keys = [f"{name}-{i}|k".encode() for i in range(3)]
        verdict = await s.acquire_async(policies, keys)
        assert verdict.refused == -1
        assert s.script_calls == 1
        assert await s._client.exists(*(KEY_PREFIX + k for k in keys)) == 3
        await s.aclose()

    run(go)


def test_a_refusing_policy_leaves_the_others_untouched(name: str) -> None:
    async def go() -> None:
        s = store()
        loose, tight = policy(f"{name}-a", burst=5, index=0), policy(f"{name}-b", burst=1, index=1)
        keys = [f"{name}-a|k".encode(), f"{name}-b|k".encode()]
        assert (await s.acquire_async([loose, tight], keys)).refused == -1
        before = await s._client.get(KEY_PREFIX + keys[0])
        refused = await s.acquire_async([loose, tight], keys)
        assert refused.refused == 1
        assert await s._client.get(KEY_PREFIX + keys[0]) == before
        await s.aclose()

    run(go)


def test_checks_arriving_together_share_a_call_in_arrival_order(name: str) -> None:
    async def go() -> None:
        s = store()
        await s.warm()
        p = [policy(name, limit=10, burst=10)]
        key = [f"{name}|k".encode()]
        verdicts = await asyncio.gather(*(s.acquire_async(p, key) for _ in range(100)))
        assert [v.refused for v in verdicts] == [-1] * 10 + [0] * 90
        assert s.script_calls < 10
        await s.aclose()

    run(go)


def test_checks_beyond_what_redis_keeps_up_with_are_decided_locally(name: str) -> None:
    async def go() -> None:
        s = store()
        await s.warm()
        p = [policy(name, limit=100_000, burst=100_000)]
        key = [f"{name}|k".encode()]
        # More checks at once than the calls in flight can carry (4 x 256).
        verdicts = await asyncio.gather(*(s.acquire_async(p, key) for _ in range(1500)))
        assert all(v.refused == -1 for v in verdicts)
        assert s.queue_full == 1500 - 4 * 256
        assert s.fallback_decisions == s.queue_full
        assert s.up
        await s.aclose()

    run(go)


def test_noscript_after_a_redis_restart_is_answered_with_eval(name: str) -> None:
    async def go() -> None:
        s = store()
        await s.warm()
        await s._client.script_flush()  # what a restarted or failed-over Redis has
        verdict = await s.acquire_async([policy(name)], [f"{name}|k".encode()])
        assert verdict.refused == -1
        assert s.script_loads == 1
        assert s.fallback_decisions == 0
        await s.aclose()

    run(go)


def test_concurrent_clients_together_never_exceed_the_policy(name: str) -> None:
    """Four workers' stores (four pools) hammer one key: Redis serialises them exactly."""
    rate, burst, run_s = 200, 200, 2.0  # a second of burst: CPU stalls lose no quota

    async def go() -> tuple[int, int, float]:
        stores = [store() for _ in range(4)]
        for s in stores:
            await s.warm()
        p = [policy(name, limit=rate, burst=burst)]
        key = [f"{name}|k".encode()]
        admitted = attempts = 0
        first = last = 0.0

        async def client(s: RedisRateStore) -> None:
            nonlocal admitted, attempts, first, last
            end = time.monotonic() + run_s
            while (now := time.monotonic()) < end:
                first = first or now
                last = now
                attempts += 1
                if (await s.acquire_async(p, key)).refused < 0:
                    admitted += 1

        await asyncio.gather(*(client(s) for s in stores for _ in range(4)))
        for s in stores:
            assert s.fallback_decisions == 0
            await s.aclose()
        return admitted, attempts, last - first

    admitted, attempts, elapsed = run(go)
    expected = burst + elapsed * rate
    assert attempts > 3 * expected
    assert admitted <= expected + 1
    assert abs(admitted - expected) <= 0.02 * expected, (admitted, expected)


# --- outages --------------------------------------------------------------------------------


def test_fail_open_limits_each_worker_to_its_share_without_waiting_on_redis(
    tmp_path: Path, name: str
) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there

    async def go() -> None:
        gate = gate_for(tmp_path, url, name)
        first, needed_redis = await decide(gate)
        assert first is None and needed_redis  # tried Redis once, then decided locally
        started = time.perf_counter()
        answers = [await decide(gate) for _ in range(100)]
        elapsed = time.perf_counter() - started
        # The breaker is open: no attempt, no timeout per request.
        assert not any(needed for _, needed in answers)
        assert elapsed < 0.05
        # Two workers: each enforces half the burst (10 → 5) on its own.
        admitted = 1 + sum(refusal is None for refusal, _ in answers)
        assert admitted == 5
        refusal = next(r for r, _ in answers if r is not None)
        assert (refusal.status, refusal.type_id) == (429, "rate-limited")
        snap = gate.store.snapshot()
        assert snap["redis_up"] is False
        assert snap["fallback_decisions"] == 101
        await gate.store.aclose()  # type: ignore[attr-defined]

    run(go)


def test_fail_closed_answers_503_while_redis_is_unreachable(tmp_path: Path, name: str) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"

    async def go() -> None:
        gate = gate_for(tmp_path, url, name, fail_mode="closed")
        for _ in range(3):
            refusal, _ = await decide(gate)
            assert isinstance(refusal, Refusal)
            assert (refusal.status, refusal.type_id) == (503, "rate-limiter-unavailable")
            assert refusal.retry_after_s == 1
        assert gate.counters.unavailable == 3
        await gate.store.aclose()  # type: ignore[attr-defined]

    run(go)


@contextlib.asynccontextmanager
async def silent_server() -> Any:
    """Accepts connections and never answers: a Redis hung or behind a black hole."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()


def test_a_redis_slower_than_the_timeout_costs_one_timeout_not_one_per_request(
    tmp_path: Path, name: str
) -> None:
    async def go() -> None:
        async with silent_server() as port:
            gate = gate_for(tmp_path, f"redis://127.0.0.1:{port}/0", name, redis_timeout_s=0.05)
            started = time.perf_counter()
            first, needed_redis = await decide(gate)
            assert first is None and needed_redis
            waited = time.perf_counter() - started
            assert 0.04 < waited < 1.0
            started = time.perf_counter()
            for _ in range(50):
                _, needed = await decide(gate)
                assert not needed
            assert time.perf_counter() - started < 0.05
            await gate.store.aclose()  # type: ignore[attr-defined]

    run(go)


@contextlib.asynccontextmanager
async def relay(port: int, target: tuple[str, int]) -> Any:
    """A TCP relay from ``port`` to the real Redis: Redis 'comes back' when it starts."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        yield
    finally:
        server.close()


def test_redis_is_probed_once_per_retry_interval_and_used_again_when_back(
    tmp_path: Path, name: str
) -> None:
    port = free_port()
    parts = urlsplit(REDIS_URL)
    target = (parts.hostname or "127.0.0.1", parts.port or 6379)
    db = parts.path or "/0"

    async def go() -> None:
        gate = gate_for(tmp_path, f"redis://127.0.0.1:{port}{db}", name, redis_retry_s=0.2)
        await decide(gate)  # nothing listens yet: the breaker opens
        assert gate.store.snapshot()["redis_up"] is False
        async with relay(port, target):
            # Within the retry interval nobody tries Redis, even though it is back.
            _, needed = await decide(gate)
            assert not needed
            await asyncio.sleep(0.25)
            _, probed = await decide(gate)  # one request probes, and it answers
            assert probed
            assert gate.store.snapshot()["redis_up"] is True
            _, needed = await decide(gate)
            assert needed  # every decision is Redis's again
            await gate.store.aclose()  # type: ignore[attr-defined]

    run(go)
