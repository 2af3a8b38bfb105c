"""Rate limits through the edge: two edge workers share one limit, exactly.

Two edge workers listen on one port (SO_REUSEPORT, as the supervisor runs them) in front
of a fake pod; clients on several keep-alive connections offer three times the policy's
rate for 10 s. Whichever worker a connection lands on, the requests admitted together must
be what the policy allows over the run — ``burst + elapsed x rate`` — within 2%: once
with the embedded profile's shared-memory table, once with Redis. Refused requests are 429
problems with Retry-After and the RateLimit fields, and never reach the pod.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvloop
from redis import Redis

from strongroom.edge.main import EdgeWorker, listening_socket
from strongroom.edge.ratelimit import RateLimitProtection
from tests.e2e.edge_harness import EdgeHarness, FakePod

REDIS_URL = os.environ.get("STRONGROOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
LIMIT_PER_S = 50
# A second of quota: a client thread starved of CPU for a moment on a busy machine loses
# nothing it would have been admitted (the policy is checked, not the load generator).
BURST = 50
RUN_S = 10.0
OFFERED_PER_S = 3 * LIMIT_PER_S
# The kernel spreads connections over the workers by a hash: with 16, the chance that all
# land on one worker (and the test proves nothing about sharing) is 2^-15.
CONNECTIONS = 16


def _unreachable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this backend may not be skipped)")
    pytest.skip(reason)


def rate_limits(store: str, name: str) -> dict[str, Any]:
    return {
        "store": store,
        "redis_url": REDIS_URL,
        "policies": [
            {
                "name": name,
                "key": "ip",
                "limit": LIMIT_PER_S,
                "window_s": 1,
                "burst": BURST,
                "path": "/v1/limited",
            }
        ],
        "concurrency": [],
    }


def rate_limit_part(worker: EdgeWorker) -> RateLimitProtection:
    part = worker.protections.parts["rate_limits"]
    assert isinstance(part, RateLimitProtection)
    return part


class SecondWorker:
    """Edge worker 1 on its own event loop, sharing worker 0's port (SO_REUSEPORT)."""

    def __init__(self, harness: EdgeHarness) -> None:
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.worker = EdgeWorker(harness.settings, 1, harness.zone)
        self.port = harness.port

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self.thread.start()
        sock = listening_socket("127.0.0.1", self.port)
        asyncio.run_coroutine_threadsafe(self.worker.serve(sock), self.loop)
        deadline = time.monotonic() + 10
        while not any(p.available for p in self.worker.balancer.pods):
            assert time.monotonic() < deadline, "worker 1 found no healthy pod"
            time.sleep(0.02)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        time.sleep(0.3)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@contextmanager
def two_workers(
    tmp: Path, store: str, name: str
) -> Iterator[tuple[EdgeHarness, FakePod, list[RateLimitProtection]]]:
    pod = FakePod("pod-0", "a")
    # Only the rate limits: what is measured is theirs alone.
    harness = EdgeHarness(
        tmp,
        [pod],
        workers=2,
        rate_limits=rate_limits(store, name),
        waf={"enabled": False},
        blocklist={"enabled": False},
    )
    harness.start()
    second = SecondWorker(harness)
    try:
        second.start()
        assert harness.worker is not None
        parts = [rate_limit_part(harness.worker), rate_limit_part(second.worker)]
        yield harness, pod, parts
    finally:
        second.stop()
        harness.stop()


def offer_load(harness: EdgeHarness) -> tuple[Counter[int], float, list[httpx.Response]]:
    """CONNECTIONS keep-alive clients, together OFFERED_PER_S requests/s for RUN_S."""
    statuses: Counter[int] = Counter()
    refusals: list[httpx.Response] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2
    spacing = CONNECTIONS / OFFERED_PER_S
    first_last = [float("inf"), 0.0]

    def client(index: int) -> None:
        with httpx.Client(
            verify=harness.tls_context(), base_url=f"https://localhost:{harness.port}", timeout=5
        ) as http:
            due = start + index * spacing / CONNECTIONS
            while due < start + RUN_S:
                pause = due - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                sent = time.monotonic()
                response = http.get("/v1/limited/item")
                with lock:
                    statuses[response.status_code] += 1
                    first_last[0] = min(first_last[0], sent)
                    first_last[1] = max(first_last[1], sent)
                    if response.status_code == 429 and len(refusals) < 5:
                        refusals.append(response)
                due += spacing

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RUN_S + 30)
    return statuses, first_last[1] - first_last[0], refusals


def assert_policy_held(
    statuses: Counter[int], elapsed_s: float, refusals: list[httpx.Response], pod: FakePod
) -> None:
    admitted = statuses[200]
    expected = BURST + elapsed_s * LIMIT_PER_S
    print(f"admitted {admitted} of {sum(statuses.values())}, the policy allows {expected:.1f}")
    assert set(statuses) <= {200, 429}, statuses
    assert sum(statuses.values()) > 2 * expected, f"load too low to test: {statuses}"
    assert abs(admitted - expected) <= 0.02 * expected, (admitted, expected, statuses)
    assert len(pod.paths()) == admitted  # refused requests never reached the pod
    refusal = refusals[0]
    assert refusal.headers["content-type"] == "application/problem+json"
    assert refusal.json()["type"] == "https://strongroom.dev/problems/rate-limited"
    assert refusal.json()["event_id"]
    assert int(refusal.headers["retry-after"]) >= 1
    assert refusal.headers["ratelimit"].endswith(f";r=0;t={refusal.headers['retry-after']}")


def test_two_workers_share_the_limit_through_shared_memory(tmp_path: Path) -> None:
    with two_workers(tmp_path, "shared_memory", "e2e-shm") as (harness, pod, parts):
        statuses, elapsed_s, refusals = offer_load(harness)
        snapshots = [part.snapshot() for part in parts]
    assert_policy_held(statuses, elapsed_s, refusals, pod)
    # Both workers took a share of the traffic: the limit held across them.
    assert all(s["admitted"] or s["refused"] for s in snapshots), snapshots


def test_two_workers_share_the_limit_through_redis(tmp_path: Path) -> None:
    client = Redis.from_url(REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        _unreachable(f"Redis at {REDIS_URL} unreachable: {exc!r}")
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    try:
        with two_workers(tmp_path, "redis", name) as (harness, pod, parts):
            statuses, elapsed_s, refusals = offer_load(harness)
            snapshots = [part.snapshot() for part in parts]
    finally:
        for key in client.scan_iter(f"strongroom:rl:{name}|*"):
            client.delete(key)
        client.close()
    assert_policy_held(statuses, elapsed_s, refusals, pod)
    assert all(s["redis_up"] and not s["fallback_decisions"] for s in snapshots), snapshots
    assert all(s["admitted"] or s["refused"] for s in snapshots), snapshots
