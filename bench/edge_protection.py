"""Edge throughput with protections off and on, in one run: what the WAF, rate limits and
blocklist cost per request.

Run: ``.venv/bin/python bench/edge_protection.py`` (``--quick`` for a ~30 s smoke run).
Needs wrk (the request is a POST with a JSON body and API headers, which only wrk's Lua
scripting sends).

Scenarios, each one TLS edge worker in front of the same minimal Starlette pod (so the
proxy, not the pod, is what the load reaches):

* ``off``  - ``edge.waf``, ``edge.rate_limits`` and ``edge.blocklist`` disabled
* ``blocklist``, ``rate_limits``, ``waf`` - that protection alone (as in ``on``)
* ``on``   - the defaults: WAF in block mode at paranoia 1, the rate-limit policies with
  their limits raised so nothing is refused (every check still runs), and a blocklist of
  ``--block-entries`` IPs and CIDRs none of which match the load generator

The request is a typical API call: ``POST /v1/transfers`` with a ~230-byte JSON body
(names, a free-text note), a DPoP-bound bearer token, a DPoP proof and an
Idempotency-Key. Pinning as in ``bench/edge.py``: the edge alone on CPU 0, wrk and the pod
on CPU 1; the edge's CPU time per request (from ``/proc``) is the figure to compare, and
``on - off`` is the protections' cost per request. A moderate-load pass (4 connections)
gives the latency each adds at p50.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    POD_ENTRIES,
    RESULTS_DIR,
    LoadResult,
    Processes,
    bench_settings,
    busy_machine_note,
    child_argv,
    free_port,
    http_get,
    machine_info,
    run_load,
    tree_cpu_seconds,
    wait_ready,
    with_edge,
    write_chart,
    write_json,
    write_settings_file,
)
from rich.console import Console
from rich.table import Table

from strongroom.config import SETTINGS_FILE_ENV_VAR, RateLimitSettings, Settings
from strongroom.edge.balancer import Upstream
from strongroom.edge.upstreams_file import write_upstreams_file
from strongroom.ledger.ports import SYSTEM_ACTOR
from strongroom.runtime.bootstrap import prepare

PROXY_CPU = 0
LOAD_CPU = 1
POD_CPU = 1
WARMUP_S_MAX = 2.0
# Limits far above what one wrk can send: every policy is checked, none refuses.
UNREACHABLE_LIMIT = 10_000_000

console = Console(width=120)

_TRANSFER = (
    '{"id":"0b5f8f7e-8a53-4b65-b0f4-0a8d3c9a1e21",'
    '"debit_account_id":"6f1c2a7e-3b1d-4f0e-9a52-7d8e9c0b1a23",'
    '"credit_account_id":"9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",'
    '"amount":125000,"currency":"EUR",'
    '"metadata":{"order":"A-10293","customer":"Siobhan O\'Brien"%s}}'
)
# The request bodies: a typical transfer (ids, amount, an order number and a name), and one
# with a free-text note written to look like SQL, HTML and shell, which takes the WAF's
# tokenizers down their longest paths.
BODIES = {
    "typical": _TRANSFER % "",
    "free-text": _TRANSFER % ',"note":"Lunch & drinks -- select menu; paid by card <thanks!>"',
}
TYPICAL_BODY = BODIES["typical"]
# A real-shaped (but unsigned here: the stub pod does not verify) DPoP-bound access token
# and proof: three base64url segments each, as long as the platform's.
TOKEN = (
    "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIiwidHlwIjoiYXQrand0In0."
    "eyJpc3MiOiJodHRwczovL2xvY2FsaG9zdDo4NDQzIiwic3ViIjoiY2xpZW50LTEyMyIsImF1ZCI6Imh0dHBzOi8v"
    "YXBpLnN0cm9uZ3Jvb20uZGV2L3YxIiwiZXhwIjoxNzk2MDAwMDAwLCJpYXQiOjE3OTU5OTk3MDAsImp0aSI6IjAx"
    "SkU0WjBNRzVRWDdCTjhLM0ZQOVNXMlJUIiwiY2xpZW50X2lkIjoiY2xpZW50LTEyMyIsInNjb3BlIjoidHJhbnNm"
    "ZXJzOndyaXRlIiwidGVuYW50IjoidGVuYW50LTEiLCJjbmYiOnsiamt0IjoiMGJaX2Y4ZjdFIn19."
    "c2lnbmF0dXJlLWJ5dGVzLW9mLWFuLWVkMjU1MTktc2lnbmF0dXJlLXNpeHR5LWZvdXItYnl0ZXMtbG9uZw"
)
PROOF = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVkRFNBIiwiandrIjp7Imt0eSI6Ik9LUCIsImNydiI6IkVkMjU1MTki"
    "LCJ4IjoiMTFxWUFZS3hDcmZWU182VHlXUUhPZzdoY3ZQYXBpTWxyd0lhYVBjSFVSbyJ9fQ."
    "eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vbG9jYWxob3N0Ojg0"
    "NDMvdjEvdHJhbnNmZXJzIiwiaWF0IjoxNzk1OTk5NzAwLCJhdGgiOiJmVXREN3Q4UjZkNGJKOW1QWndZb0VrIn0."
    "c2lnbmF0dXJlLWJ5dGVzLW9mLWFuLWVkMjU1MTktc2lnbmF0dXJlLXNpeHR5LWZvdXItYnl0ZXMtbG9uZw"
)


def wrk_script(path: Path, body: str = TYPICAL_BODY) -> Path:
    """The wrk Lua script sending the API request with ``body``."""
    body = body.replace("\\", "\\\\").replace("'", "\\'")
    path.write_text(
        "wrk.method = 'POST'\n"
        f"wrk.body = '{body}'\n"
        "wrk.headers['Content-Type'] = 'application/json'\n"
        "wrk.headers['Accept'] = 'application/json'\n"
        f"wrk.headers['Authorization'] = 'DPoP {TOKEN}'\n"
        f"wrk.headers['DPoP'] = '{PROOF}'\n"
        "wrk.headers['Idempotency-Key'] = '5c7e2d9a-1b3f-4e6a-8d0c-2f4b6a8e0c1d'\n"
        "wrk.headers['User-Agent'] = 'strongroom-python/0.1 httpx/0.28'\n"
    )
    return path


def protections_on(settings: Settings, admin_port: int, port: int) -> Settings:
    base = RateLimitSettings()
    limits = base.model_copy(
        update={
            "policies": [
                p.model_copy(update={"limit": UNREACHABLE_LIMIT, "burst": UNREACHABLE_LIMIT})
                for p in base.policies
            ],
            "concurrency": [
                c.model_copy(update={"concurrent_max": UNREACHABLE_LIMIT}) for c in base.concurrency
            ],
        }
    )
    return with_edge(settings, port=port, admin_port=admin_port, rate_limits=limits)


def protections_off(settings: Settings, admin_port: int, port: int) -> Settings:
    return only(settings, admin_port, port, keep=())


def only(settings: Settings, admin_port: int, port: int, *, keep: tuple[str, ...]) -> Settings:
    """The shipped protections with every one not in ``keep`` disabled."""
    on = protections_on(settings, admin_port, port)
    edge = on.edge
    return with_edge(
        on,
        **{
            name: getattr(edge, name).model_copy(update={"enabled": False})
            for name in ("waf", "rate_limits", "blocklist")
            if name not in keep
        },
    )


# Scenario → settings builder: everything off, each protection alone, everything on.
SCENARIOS = {
    "off": protections_off,
    "blocklist": lambda s, a, p: only(s, a, p, keep=("blocklist",)),
    "rate_limits": lambda s, a, p: only(s, a, p, keep=("rate_limits",)),
    "waf": lambda s, a, p: only(s, a, p, keep=("waf",)),
    "on": protections_on,
}


def fill_blocklist(settings: Settings, entries: int) -> None:
    """``entries`` blocks of documentation-range addresses and networks (never 127.0.0.1)."""
    from strongroom.adapters.db.blocklist_store import SqlBlocklistStore  # noqa: PLC0415
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415

    engine = make_engine(settings)
    try:
        store = SqlBlocklistStore(engine)
        for n in range(entries):
            # One network in ten, the rest single addresses (documentation ranges).
            cidr = n % 10 == 0
            value = f"198.51.{n % 256}.0/24" if cidr else f"203.0.{n // 256 % 256}.{n % 256}"
            store.add(
                "cidr" if cidr else "ip",
                value,
                "block",
                reason="bench",
                ttl_s=None,
                actor=SYSTEM_ACTOR,
            )
    finally:
        engine.dispose()


@dataclass
class Measured:
    key: str
    load: LoadResult
    edge_cpu_s: float

    def as_dict(self) -> dict[str, Any]:
        requests = self.load.requests
        return {
            **self.load.as_dict(),
            "edge_cpu_s": round(self.edge_cpu_s, 3),
            "edge_requests_per_cpu_s": round(requests / self.edge_cpu_s)
            if self.edge_cpu_s
            else None,
            "edge_cpu_us_per_request": round(1e6 * self.edge_cpu_s / requests, 1)
            if requests
            else None,
        }


def edge_gate_us(admin_port: int) -> dict[str, Any]:
    """The edge's own p50/p99 of the gates' time per request (its /healthz)."""
    _, _, body = http_get(f"http://127.0.0.1:{admin_port}/healthz")
    figures: dict[str, Any] = json.loads(body)["gate_us"]
    return figures


def measure(
    key: str, url: str, pid: int, connections: int, duration_s: float, script: Path
) -> Measured:
    run_load(url, connections, min(WARMUP_S_MAX, duration_s / 3), cpu=LOAD_CPU, script=script)
    before = tree_cpu_seconds([pid])
    load = run_load(url, connections, duration_s, cpu=LOAD_CPU, script=script)
    return Measured(key, load, tree_cpu_seconds([pid]) - before)


def print_tables(saturation: dict[str, Measured], moderate: dict[str, Measured]) -> None:
    table = Table(title="Edge with protections off vs on (TLS 1.3, POST /v1/transfers)")
    for column in (
        "protections",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "edge µs CPU/req",
        "edge req/CPU-s",
    ):
        table.add_column(column, justify="left" if column == "protections" else "right")
    for key, m in saturation.items():
        d = m.as_dict()
        table.add_row(
            key,
            str(m.load.connections),
            f"{m.load.requests_per_s:,.0f}",
            f"{m.load.latency_ms.get('50', 0):.2f}",
            f"{m.load.latency_ms.get('99', 0):.2f}",
            str(m.load.errors),
            f"{d['edge_cpu_us_per_request']}",
            f"{d['edge_requests_per_cpu_s']:,}",
        )
    console.print(table)
    table = Table(title="Moderate load: latency")
    for column in ("protections", "conns", "req/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "protections" else "right")
    for key, m in moderate.items():
        table.add_row(
            key,
            str(m.load.connections),
            f"{m.load.requests_per_s:,.0f}",
            f"{m.load.latency_ms.get('50', 0):.3f}",
            f"{m.load.latency_ms.get('99', 0):.3f}",
        )
    console.print(table)


def draw_chart(document: dict[str, Any]) -> Any:
    saturation = document["saturation"]
    moderate = document["moderate"]

    def draw(figure: Any) -> None:
        keys = list(saturation)
        colours = ["#888888" if k == "off" else "#1f77b4" if k == "on" else "#9ecae1" for k in keys]
        ax1, ax2, ax3 = figure.subplots(1, 3)
        ax1.bar(keys, [saturation[k]["edge_cpu_us_per_request"] for k in keys], color=colours)
        ax1.set_title("Edge CPU µs per request\n(lower is better)")
        ax2.bar(keys, [saturation[k]["requests_per_s"] for k in keys], color=colours)
        ax2.set_title(f"Requests/s, {saturation[keys[0]]['connections']} connections")
        ax3.bar(keys, [moderate[k]["latency_ms"].get("50", 0) for k in keys], color=colours)
        ax3.set_title(f"p50 ms at {moderate[keys[0]]['connections']} connections")
        figure.suptitle(
            f"Edge protections (WAF + rate limits + blocklist) — {document['finished_at']}",
            fontsize="medium",
        )

    return draw


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--moderate-connections", type=int, default=4)
    parser.add_argument("--moderate-duration", type=float, default=5.0)
    parser.add_argument("--block-entries", type=int, default=1000)
    parser.add_argument("--body", choices=sorted(BODIES), default="typical")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (off and on always run)",
    )
    parser.add_argument("--quick", action="store_true", help="~3 s runs: a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "edge_protection.json")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "edge_protection.png")
    args = parser.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.moderate_duration = min(args.moderate_duration, 2.0)
    if shutil.which("wrk") is None:
        console.print(
            "[red]wrk is needed (apt-get install wrk): POST bodies need its Lua scripts[/]"
        )
        return 2
    notes: list[str] = []
    busy = busy_machine_note()
    if busy:
        notes.append(busy)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")

    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-protect-", dir="/tmp") as tmp:
        root = Path(tmp)
        script = wrk_script(root / "request.lua", BODIES[args.body])
        chosen = {"off", "on", *args.scenarios.split(",")}
        unknown = chosen - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios: {sorted(unknown)}")
        with Processes(root / "logs") as procs:
            pod_port = free_port()
            settings = bench_settings(root / "data", pod_port=pod_port, admin_port=free_port())
            tls = prepare(settings)
            client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
            fill_blocklist(settings, args.block_entries)
            write_upstreams_file(
                settings.run_dir / "upstreams.json",
                1,
                [Upstream("pod-0", "127.0.0.1", pod_port, "a")],
            )
            pod_env = {SETTINGS_FILE_ENV_VAR: str(write_settings_file(settings, "pod.json"))}
            pod = procs.start(
                "pod", child_argv("pod", entry=POD_ENTRIES["starlette"]), cpu=POD_CPU, env=pod_env
            )
            wait_ready(f"http://127.0.0.1:{pod_port}/healthz", proc=pod)
            urls: dict[str, str] = {}
            pids: dict[str, int] = {}
            admins: dict[str, int] = {}
            for key, build in SCENARIOS.items():
                if key not in chosen:
                    continue
                port = free_port()
                admins[key] = free_port()
                edge_settings = build(settings, admins[key], port)
                env = {
                    SETTINGS_FILE_ENV_VAR: str(
                        write_settings_file(edge_settings, f"edge-{key}.json")
                    )
                }
                proc = procs.start(f"edge-{key}", child_argv("edge"), cpu=PROXY_CPU, env=env)
                urls[key] = f"https://127.0.0.1:{port}/v1/transfers"
                pids[key] = proc.pid
                wait_ready(f"https://127.0.0.1:{port}/healthz", proc=proc, ssl_context=client_tls)
            saturation = {
                key: measure(key, urls[key], pids[key], args.connections, args.duration, script)
                for key in urls
            }
            moderate = {
                key: measure(
                    key,
                    urls[key],
                    pids[key],
                    args.moderate_connections,
                    args.moderate_duration,
                    script,
                )
                for key in urls
            }
            # The gates' own time per request, measured inside each edge (its /healthz
            # keeps the last 8,192 requests: the moderate-load run).
            gate_us = {key: edge_gate_us(admins[key]) for key in urls}
    finished = datetime.now(UTC)
    print_tables(saturation, moderate)
    off, on = saturation["off"].as_dict(), saturation["on"].as_dict()
    added_cpu_us = round(on["edge_cpu_us_per_request"] - off["edge_cpu_us_per_request"], 1)
    added_p50_ms = round(
        moderate["on"].load.latency_ms.get("50", 0) - moderate["off"].load.latency_ms.get("50", 0),
        3,
    )
    table = Table(title="Time in the gates per request, measured in the edge (µs)")
    for column in ("protections", "requests", "p50 µs", "p99 µs"):
        table.add_column(column, justify="left" if column == "protections" else "right")
    for key, figures in gate_us.items():
        table.add_row(
            key,
            str(figures.get("samples", 0)),
            str(figures.get("p50", "—")),
            str(figures.get("p99", "—")),
        )
    console.print(table)
    console.print(
        f"protections (all on) take p50 {gate_us['on'].get('p50')} µs / p99 "
        f"{gate_us['on'].get('p99')} µs per request in the edge (target: ≤ 100 µs p50 added per "
        f"typical API request); the edge's mean CPU per request rises by {added_cpu_us} µs at "
        f"saturation, p50 latency by {added_p50_ms * 1000:.0f} µs at "
        f"{args.moderate_connections} connections (queueing included)"
    )
    document: dict[str, Any] = {
        "bench": "edge_protection",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "request": {
            "method": "POST",
            "path": "/v1/transfers",
            "body": args.body,
            "body_bytes": len(BODIES[args.body]),
        },
        "block_entries": args.block_entries,
        "saturation": {k: m.as_dict() for k, m in saturation.items()},
        "moderate": {k: m.as_dict() for k, m in moderate.items()},
        "gate_us": gate_us,
        "added_edge_cpu_us_per_request": added_cpu_us,
        "added_edge_cpu_us_by_scenario": {
            key: round(m.as_dict()["edge_cpu_us_per_request"] - off["edge_cpu_us_per_request"], 1)
            for key, m in saturation.items()
            if key != "off"
        },
        "added_p50_ms_moderate": added_p50_ms,
        "target_added_p50_us": 100,
        "notes": notes,
    }
    write_json(args.out, document)
    write_chart(args.chart, draw_chart(document), size=(12, 4))
    console.print(f"wrote {args.out} and {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
