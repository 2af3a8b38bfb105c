"""The shared-memory rate-limit store is exact across edge worker processes of one host.

Real processes (as the edge's SO_REUSEPORT workers are) hammer one key through the same
table file at many times the policy's rate; together they must be admitted exactly what
one GCRA would admit: ``burst + elapsed / interval`` (within 2%, and never above it).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from strongroom.config import RateLimitPolicy
from strongroom.edge.ratelimit import NS_PER_S, RatePolicy
from strongroom.edge.ratelimit_shared import SharedMemoryStore

WORKERS = 4
RUN_S = 3.0
# Burst = a second of quota: a process starved of CPU for a moment on a busy machine loses
# nothing it would have been admitted.
POLICY = RateLimitPolicy(name="hammer", key="route", limit=400, window_s=1, burst=400)
# Between attempts: each process still offers ~5-10k requests/s, 50x the policy, without
# spinning both cores flat for the whole test.
PAUSE_S = 0.0001


def hammer(table: str, worker: int, ready: Any, out: Any) -> None:
    store = SharedMemoryStore(
        Path(table), rate_slots=1024, concurrency_slots=1024, workers=WORKERS, worker=worker
    )
    policies = [RatePolicy.compile(0, POLICY)]
    keys = [b"hammer|*"]
    ready.wait(30)  # every worker imported and its table mapped
    end_at = time.monotonic() + RUN_S
    admitted = attempts = 0
    first = last = 0
    while time.monotonic() < end_at:
        now = time.monotonic_ns()
        first = first or now
        last = now
        attempts += 1
        if store.acquire(policies, keys).refused < 0:
            admitted += 1
        time.sleep(PAUSE_S)
    store.close()
    out.put((admitted, attempts, first, last))


def test_workers_together_are_admitted_exactly_the_policy(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    ready = ctx.Barrier(WORKERS)
    table = str(tmp_path / "ratelimit.shm")
    procs = [ctx.Process(target=hammer, args=(table, w, ready, queue)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    try:
        results = [queue.get(timeout=30) for _ in procs]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    admitted = sum(r[0] for r in results)
    attempts = sum(r[1] for r in results)
    elapsed_ns = max(r[3] for r in results) - min(r[2] for r in results)
    policy = RatePolicy.compile(0, POLICY)
    expected = POLICY.burst + elapsed_ns / policy.interval_ns
    assert attempts > 5 * expected, "the load must exceed the policy to test it"
    assert admitted <= expected + 1  # GCRA's bound, across processes
    print(f"admitted {admitted} of {attempts}, policy allows {expected:.1f}")
    assert abs(admitted - expected) <= 0.02 * expected, (admitted, expected)
    assert elapsed_ns > 0.9 * RUN_S * NS_PER_S
