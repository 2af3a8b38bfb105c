"""What a rate-limit decision costs at the edge: per check p50/p99 µs, per store.

Run: ``.venv/bin/python bench/ratelimit.py`` (~20 s; ``--quick`` ~8 s). Redis scenarios
need Redis at ``--redis-url`` (default ``redis://127.0.0.1:6379/15``) and are skipped with a
note without it. Writes ``bench/results/ratelimit.json`` and prints a table.

Scenarios (every check admitted — limits are set out of reach — over ``--keys`` client
addresses, so the figure is the steady cost, not a refusal's):

* ``gcra``: the GCRA arithmetic alone (one policy), the floor of any store.
* ``local``: the in-process store (Redis's fail-open fallback), one policy.
* ``shared_memory_acquire``: the host-wide table of ``ratelimit_shared``, one policy —
  ``flock``, probe, ``flock`` again.
* ``shared_memory_gate``: the whole gate as a request sees it with the default policy
  set for a request whose client is known (ip, client, tenant — one table lock for all
  three — then the concurrency cap's enter and, at the end of the exchange, release).
* ``shared_memory_gate_2procs``: the same in two processes at once on the same keys,
  contending for the table's lock (both cores busy).
* ``redis_gate_1`` / ``redis_gate_3``: ``check_async`` through Redis, one request at a time
  (one round trip each): 1 policy, then ip + client + tenant in the same single round trip.
* ``redis_gate_3_c16``: 16 requests in flight at once on one worker's loop (8 pooled
  connections): what a busy worker sees, and decisions per second.

Timings are ``perf_counter_ns`` around each call (≈ 0.05 µs of the figure is the clock).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import RESULTS_DIR, busy_machine_note, machine_info, percentile, write_json
from rich.console import Console
from rich.table import Table

from strongroom.config import RateLimitSettings, Settings
from strongroom.edge.guard import DEFER, GateRequest, Identity
from strongroom.edge.ratelimit import (
    LocalStore,
    RateLimitProtection,
    RatePolicy,
    build_rate_limits,
    gcra,
)
from strongroom.edge.security_events import SecurityEvents

OUT = RESULTS_DIR / "ratelimit.json"
# Limits no bench load reaches: every check runs, none refuses.
UNREACHABLE = 10**9


def unreachable_limits(store: str, redis_url: str) -> RateLimitSettings:
    base = RateLimitSettings()
    return base.model_copy(
        update={
            "store": store,
            "redis_url": redis_url,
            "policies": [
                p.model_copy(update={"limit": UNREACHABLE, "burst": UNREACHABLE})
                for p in base.policies
            ],
            "concurrency": [
                c.model_copy(update={"concurrent_max": UNREACHABLE}) for c in base.concurrency
            ],
        }
    )


def protection(
    data_dir: Path, store: str, redis_url: str, *, workers: int = 2, worker: int = 0
) -> RateLimitProtection:
    settings = Settings(
        data_dir=data_dir,
        edge={"workers": workers, "rate_limits": unreachable_limits(store, redis_url)},
    )
    built = build_rate_limits(settings, worker, SecurityEvents(None, worker))
    assert built is not None
    return built


def requests(keys: int) -> list[GateRequest]:
    return [
        GateRequest(
            f"198.51.{i // 250}.{i % 250}",
            b"POST",
            b"/v1/transfers",
            [],
            f"req-{i}",
            identity=Identity(f"client-{i % 97}", f"tenant-{i % 13}"),
        )
        for i in range(keys)
    ]


def summarize(name: str, samples_ns: Sequence[int], **extra: Any) -> dict[str, Any]:
    values = sorted(samples_ns)
    return {
        "scenario": name,
        "checks": len(values),
        "p50_us": round(percentile(values, 50) / 1000, 2),
        "p99_us": round(percentile(values, 99) / 1000, 2),
        "mean_us": round(sum(values) / len(values) / 1000, 2),
        **extra,
    }


def timed_loop(n: int, call: Callable[[int], object]) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for i in range(n):
        t0 = clock()
        call(i)
        samples.append(clock() - t0)
    return samples


# --- scenarios ------------------------------------------------------------------------


def bench_gcra(n: int) -> dict[str, Any]:
    p = RatePolicy.compile(0, RateLimitSettings().policies[0])
    intervals, tolerances = [p.interval_ns], [p.tolerance_ns]
    tats = [0] * 1000
    now = time.monotonic_ns

    def call(i: int) -> None:
        k = i % 1000
        refused, after = gcra([tats[k]], now(), intervals, tolerances)
        if refused < 0:
            tats[k] = after[0]

    return summarize("gcra", timed_loop(n, call), policies=1)


def bench_local(n: int, keys: int) -> dict[str, Any]:
    p = [RatePolicy.compile(0, unreachable_limits("shared_memory", "").policies[0])]
    store = LocalStore(1 << 20)
    names = [f"ip|198.51.100.{i}".encode() for i in range(keys)]
    return summarize(
        "local", timed_loop(n, lambda i: store.acquire(p, [names[i % keys]])), policies=1
    )


def bench_shared_acquire(data_dir: Path, n: int, keys: int) -> dict[str, Any]:
    prot = protection(data_dir, "shared_memory", "")
    store = prot.gate.store
    p = [prot.gate.policies[0]]
    names = [f"ip|198.51.100.{i}".encode() for i in range(keys)]
    return summarize(
        "shared_memory_acquire",
        timed_loop(n, lambda i: store.acquire(p, [names[i % keys]])),
        policies=1,
    )


def gate_samples(data_dir: Path, n: int, keys: int, worker: int) -> list[int]:
    prot = protection(data_dir, "shared_memory", "", worker=worker)
    gate = prot.gate
    reqs = requests(keys)
    clock = time.perf_counter_ns
    samples = []
    for i in range(n):
        req = reqs[i % keys]
        req.response_headers.clear()
        req.on_done.clear()
        t0 = clock()
        gate.check(req)
        for done in req.on_done:
            done(200)  # type: ignore[operator]
        samples.append(clock() - t0)
    return samples


def bench_shared_gate(data_dir: Path, n: int, keys: int) -> dict[str, Any]:
    return summarize(
        "shared_memory_gate",
        gate_samples(data_dir, n, keys, 0),
        policies=3,
        concurrency_caps=1,
    )


def _child(data_dir: str, n: int, keys: int, worker: int, start_at: float, out: Any) -> None:
    while time.time() < start_at:
        time.sleep(0.001)
    out.put(gate_samples(Path(data_dir), n, keys, worker))


def bench_shared_gate_2procs(data_dir: Path, n: int, keys: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0  # both children imported and ready
    procs = [
        ctx.Process(target=_child, args=(str(data_dir), n, keys, w, start_at, queue))
        for w in range(2)
    ]
    for proc in procs:
        proc.start()
    samples: list[int] = []
    for _ in procs:
        samples.extend(queue.get(timeout=120))
    for proc in procs:
        proc.join(10)
    return summarize(
        "shared_memory_gate_2procs", samples, policies=3, concurrency_caps=1, processes=2
    )


async def bench_redis(data_dir: Path, redis_url: str, n: int, keys: int) -> list[dict[str, Any]]:
    results = []
    prot = protection(data_dir, "redis", redis_url)
    gate = prot.gate
    reqs = requests(keys)
    anonymous = [GateRequest(r.client_ip, r.method, r.target, [], r.request_id) for r in reqs]
    clock = time.perf_counter_ns
    await gate.store.warm()  # type: ignore[attr-defined]  # as RateLimitProtection.run does
    for name, pool, policies in (
        ("redis_gate_1", anonymous, 1),
        ("redis_gate_3", reqs, 3),
    ):
        for req in pool[:200]:  # warm: connections, script cache
            if gate.check(req) is DEFER:
                await gate.check_async(req)
        samples = []
        for i in range(n):
            req = pool[i % keys]
            req.response_headers.clear()
            req.on_done.clear()
            t0 = clock()
            if gate.check(req) is DEFER:
                await gate.check_async(req)
            for done in req.on_done:
                done(200)  # type: ignore[operator]
            samples.append(clock() - t0)
        results.append(summarize(name, samples, policies=policies))

    concurrency = 16
    samples_c: list[int] = []

    async def client(offset: int) -> None:
        for i in range(offset, n, concurrency):
            req = reqs[i % keys]
            t0 = clock()
            if gate.check(req) is DEFER:
                await gate.check_async(req)
            samples_c.append(clock() - t0)

    t_start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(concurrency)))
    elapsed = time.perf_counter() - t_start
    results.append(
        summarize(
            "redis_gate_3_c16",
            samples_c,
            policies=3,
            in_flight=concurrency,
            decisions_per_s=round(len(samples_c) / elapsed),
        )
    )
    snap = prot.snapshot()
    assert snap["redis_up"] and not snap["fallback_decisions"], snap
    store = gate.store
    await store.aclose()  # type: ignore[attr-defined]
    return results


async def redis_reachable(url: str) -> str | None:
    from redis.asyncio import Redis  # noqa: PLC0415

    client = Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        return f"Redis at {url} unreachable ({exc!r}): Redis scenarios skipped"
    finally:
        await client.aclose()
    return None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--checks", type=int, default=200_000)
    parser.add_argument("--redis-checks", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--quick", action="store_true", help="a tenth of the checks")
    args = parser.parse_args(argv)
    checks, redis_checks = args.checks, args.redis_checks
    if args.quick:
        checks, redis_checks = checks // 10, redis_checks // 10
    console = Console(width=140)
    notes = [note] if (note := busy_machine_note()) else []
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-ratelimit-") as tmp:
        data_dir = Path(tmp)
        results.append(bench_gcra(checks))
        results.append(bench_local(checks, args.keys))
        results.append(bench_shared_acquire(data_dir / "a", checks, args.keys))
        results.append(bench_shared_gate(data_dir / "b", checks, args.keys))
        results.append(bench_shared_gate_2procs(data_dir / "c", checks // 2, args.keys))
        skip = asyncio.run(redis_reachable(args.redis_url))
        if skip:
            notes.append(skip)
        else:
            results.extend(
                asyncio.run(bench_redis(data_dir / "d", args.redis_url, redis_checks, args.keys))
            )
    table = Table(title="Rate-limit decision cost (µs per check)")
    for column in ("scenario", "policies", "checks", "p50 µs", "p99 µs", "mean µs", "notes"):
        table.add_column(column, justify="left" if column in ("scenario", "notes") else "right")
    for r in results:
        extra = []
        if "decisions_per_s" in r:
            extra.append(f"{r['decisions_per_s']:,} decisions/s, {r['in_flight']} in flight")
        if "processes" in r:
            extra.append(f"{r['processes']} processes contending")
        if r.get("concurrency_caps"):
            extra.append("+ concurrency enter/release")
        table.add_row(
            r["scenario"],
            str(r["policies"]),
            f"{r['checks']:,}",
            f"{r['p50_us']:.2f}",
            f"{r['p99_us']:.2f}",
            f"{r['mean_us']:.2f}",
            "; ".join(extra),
        )
    console.print(table)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    write_json(
        OUT,
        {
            "benchmark": "ratelimit",
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["bench/ratelimit.py", *(argv or sys.argv[1:])]),
            "machine": machine_info(),
            "results": results,
            "notes": notes,
        },
    )
    console.print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")


if __name__ == "__main__":
    main()
