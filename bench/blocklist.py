"""Blocklist cost: the edge's in-memory matcher per request, its load, and the store.

Run: ``.venv/bin/python bench/blocklist.py`` (~15 s; ``--entries N`` for the large list,
``--postgres URL`` to add the store figures on a PostgreSQL server).

Entries are random: 60% IPv4 addresses, 20% IPv4 networks (/16 to /28), 15% IPv6
networks (/48 to /128), 5% client ids; 5% of them allows, half with an expiry. Figures:

* ``decide`` per request: empty list (the common case), an address not seen before
  (IPv4, IPv6: the per-prefix-length probe), an address seen before (the decision cache:
  a keep-alive client), and the whole ``BlocklistGate.check``;
* loading N entries (a worker's start), applying 1,000 changes, memory (tracemalloc);
* the store on SQLite (and PostgreSQL): one add with N rows in the table (it counts the
  entries in force), a worker's snapshot read, and an empty ``changes_since`` poll.

Results: ``bench/results/blocklist.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import json
import platform
import random
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from strongroom.adapters.db.blocklist_store import SqlBlocklistStore
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import upgrade
from strongroom.adapters.db.schema import edge_blocks
from strongroom.config import Settings
from strongroom.edge.blocklist import Blocklist, BlocklistGate
from strongroom.edge.blocklist_ports import BlockEntry
from strongroom.edge.guard import GateRequest
from strongroom.edge.security_events import SecurityEvents
from strongroom.ledger.ports import Actor

RESULTS = Path(__file__).parent / "results" / "blocklist.json"
CALLS = 200_000
STORE_ADDS = 50
STORE_POLLS = 200


def random_entries(n: int, rng: random.Random) -> list[BlockEntry]:
    now = time.time()
    out = []
    for i in range(1, n + 1):
        r = rng.random()
        if r < 0.6:
            kind, value = "ip", str(ipaddress.IPv4Address(rng.getrandbits(32)))
        elif r < 0.8:
            p = rng.choice([16, 20, 24, 28])
            net = rng.getrandbits(32) >> (32 - p) << (32 - p)
            kind, value = "cidr", str(ipaddress.IPv4Network((net, p)))
        elif r < 0.95:
            p = rng.choice([48, 56, 64, 128])
            net = (0x2001 << 112 | rng.getrandbits(112)) >> (128 - p) << (128 - p)
            kind, value = "cidr", str(ipaddress.IPv6Network((net, p)))
        else:
            kind, value = "client", f"client-{i}"
        action = "allow" if rng.random() < 0.05 else "block"
        expires = now + 3600 if rng.random() < 0.5 else None
        out.append(BlockEntry(i, kind, value, action, "bench", "bench", now, expires, None, i))  # type: ignore[arg-type]
    return out


def per_call_us(fn: Callable[[], object], n: int = CALLS) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def matcher(size: int, rng: random.Random) -> dict[str, Any]:
    entries = random_entries(size, rng)
    gc.collect()
    tracemalloc.start()
    held = Blocklist()
    held.replace(entries)
    memory_bytes, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    held = Blocklist()
    start = time.perf_counter()
    held.replace(entries)
    load_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    held.apply(entries[:1000])
    apply_ms = (time.perf_counter() - start) * 1000
    v4 = iter([str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(CALLS)])
    v6 = iter(
        [str(ipaddress.IPv6Address(0x2001 << 112 | rng.getrandbits(112))) for _ in range(CALLS)]
    )
    gate = BlocklistGate(held, SecurityEvents(None, 0))
    request = GateRequest("198.51.100.7", b"GET", b"/v1/accounts", [], "req")
    return {
        "entries": size,
        "decide_new_ipv4_us": per_call_us(lambda: held.decide(next(v4))),
        "decide_new_ipv6_us": per_call_us(lambda: held.decide(next(v6))),
        "decide_cached_us": per_call_us(lambda: held.decide("198.51.100.7", "client-x")),
        "gate_check_us": per_call_us(lambda: gate.check(request)),
        "load_ms": load_ms,
        "apply_1000_changes_ms": apply_ms,
        "memory_mb": memory_bytes / 1e6,
        "prefix_lengths": {
            "ipv4": len(held._blocks[32].lengths),
            "ipv6": len(held._blocks[128].lengths),
        },
    }


def store(settings: Settings, rows: int) -> dict[str, Any]:
    upgrade(settings)
    engine = make_engine(settings)
    now = time.time()
    with engine.begin() as connection:
        connection.execute(
            edge_blocks.insert(),
            [
                {
                    "kind": "ip",
                    "value": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    "action": "block",
                    "reason": "",
                    "created_by": "bench",
                    "created_at": now,
                    "expires_at": now + 3600 if i % 2 else None,
                    "version": i + 1,
                }
                for i in range(rows)
            ],
        )
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("ANALYZE edge_blocks"))
    blocks = SqlBlocklistStore(engine, entries_max=rows + STORE_ADDS + 1)
    actor = Actor("system", "bench")
    start = time.perf_counter()
    for i in range(STORE_ADDS):
        blocks.add("ip", f"11.0.0.{i}", "block", reason="", ttl_s=60, actor=actor)
    add_ms = (time.perf_counter() - start) / STORE_ADDS * 1000
    start = time.perf_counter()
    version, entries = blocks.snapshot()
    snapshot_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    for _ in range(STORE_POLLS):
        blocks.changes_since(version)
    poll_ms = (time.perf_counter() - start) / STORE_POLLS * 1000
    engine.dispose()
    return {
        "backend": engine.dialect.name,
        "rows": rows,
        "add_ms": add_ms,
        "snapshot_ms": snapshot_ms,
        "snapshot_entries": len(entries),
        "empty_poll_ms": poll_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument(
        "--postgres", help="admin URL, e.g. postgresql://postgres@127.0.0.1/postgres"
    )
    args = parser.parse_args()
    rng = random.Random(7)

    empty = Blocklist()
    figures: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "decide_empty_us": per_call_us(lambda: empty.decide("198.51.100.7")),
        "matcher": [matcher(size, rng) for size in (1_000, args.entries)],
        "store": [],
    }
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-blocklist-") as tmp:
        figures["store"].append(store(Settings(data_dir=Path(tmp)), args.entries))
        if args.postgres:
            admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
            name = f"strongroom_bench_{int(time.time())}"
            with admin.connect() as connection:
                connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
            try:
                url = sa.make_url(args.postgres).set(database=name).render_as_string(False)
                figures["store"].append(
                    store(Settings(data_dir=Path(tmp), database={"url": url}), args.entries)
                )
            finally:
                with admin.connect() as connection:
                    connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
                admin.dispose()

    print(f"decide, empty list: {figures['decide_empty_us']:.3f} µs")
    for m in figures["matcher"]:
        print(
            f"{m['entries']:>7} entries: decide new IPv4 {m['decide_new_ipv4_us']:.2f} µs, "
            f"new IPv6 {m['decide_new_ipv6_us']:.2f} µs, cached {m['decide_cached_us']:.3f} µs, "
            f"gate.check {m['gate_check_us']:.3f} µs; load {m['load_ms']:.0f} ms, "
            f"1,000 changes {m['apply_1000_changes_ms']:.1f} ms, {m['memory_mb']:.1f} MB"
        )
    for s in figures["store"]:
        print(
            f"store {s['backend']} with {s['rows']} rows: add {s['add_ms']:.1f} ms, "
            f"snapshot {s['snapshot_ms']:.0f} ms ({s['snapshot_entries']} in force), "
            f"empty poll {s['empty_poll_ms']:.2f} ms"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
