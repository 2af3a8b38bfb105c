"""Edge benchmark: the Strongroom edge against nginx, in front of the same pod process.

Run: ``.venv/bin/python bench/edge.py`` (``--quick`` for a ~1 minute smoke run).

Scenarios, all against ONE pod process:

* ``direct``      - load generator → pod
* ``edge_plain``  - → Strongroom edge (``edge.plaintext``) → pod: the proxy's own cost
* ``edge_tls``    - → Strongroom edge, TLS 1.3 → pod
* ``nginx_plain`` - → nginx 1 worker, upstream keep-alive, access_log off → pod
* ``nginx_tls``   - the same nginx, TLS 1.3 with the edge's certificate (local CA)

Pinning (2 cores): every proxy on CPU 0, alone; the load generator and the pod share
CPU 1. The proxy is the process being judged, so it gets a core nobody else uses,
and its CPU time (utime + stime from ``/proc``) is what "requests per CPU-second"
divides by. Throughput (requests/s) is capped by the pod + load generator on CPU 1 for
every scenario alike, which is why requests per CPU-second of the proxy, not
requests/s, is the figure to compare proxies by.

A second, "moderate load" pass uses few connections (4): far from saturation, the
p50 difference to ``direct`` is the latency the proxy adds to each request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
    descendant_pids,
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

from strongroom.config import SETTINGS_FILE_ENV_VAR
from strongroom.edge.balancer import Upstream
from strongroom.edge.local_ca import TlsPaths
from strongroom.edge.upstreams_file import write_upstreams_file
from strongroom.runtime.bootstrap import prepare

PROXY_CPU = 0
LOAD_CPU = 1
POD_CPU = 1
# Warm-up before each measured run: pools filled, TLS sessions set up, caches hot.
WARMUP_S_MAX = 2.0
NGINX_KEEPALIVE_CONNECTIONS = 64

console = Console(width=120)


@dataclass
class Target:
    """One way to reach the pod, and which processes count as its proxy."""

    key: str
    label: str
    url: str
    proxy_pids: Callable[[], list[int]] = field(default=lambda: [])


@dataclass
class Measured:
    target: Target
    load: LoadResult
    proxy_cpu_s: float | None
    pod_cpu_s: float

    @property
    def proxy_requests_per_cpu_s(self) -> float | None:
        if self.proxy_cpu_s is None or self.proxy_cpu_s <= 0:
            return None
        return self.load.requests / self.proxy_cpu_s

    def as_dict(self) -> dict[str, Any]:
        per_cpu = self.proxy_requests_per_cpu_s
        return {
            "label": self.target.label,
            "url": self.target.url,
            **self.load.as_dict(),
            "proxy_cpu_s": _round(self.proxy_cpu_s, 3),
            "proxy_requests_per_cpu_s": _round(per_cpu, 0),
            "proxy_cpu_us_per_request": _round(
                1e6 * self.proxy_cpu_s / self.load.requests
                if self.proxy_cpu_s and self.load.requests
                else None,
                1,
            ),
            "pod_cpu_s": round(self.pod_cpu_s, 3),
            "pod_cpu_us_per_request": _round(
                1e6 * self.pod_cpu_s / self.load.requests if self.load.requests else None, 1
            ),
        }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def nginx_config(
    prefix: Path, *, pod_port: int, plain_port: int, tls_port: int, tls: TlsPaths
) -> str:
    """One worker, upstream keep-alive, no access log: nginx at its most efficient.

    It sets the same kind of forwarding headers the edge sets, so both do
    comparable work per request.
    """
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""
{user}
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 100000;
    upstream pod {{
        server 127.0.0.1:{pod_port};
        keepalive {NGINX_KEEPALIVE_CONNECTIONS};
    }}
    server {{
        listen 127.0.0.1:{plain_port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_protocols TLSv1.3;
        ssl_certificate {tls.cert};
        ssl_certificate_key {tls.key};
        location / {{
            proxy_pass http://pod;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=$host";
        }}
    }}
}}
"""


def measure(target: Target, pod_pid: int, connections: int, duration_s: float) -> Measured:
    """Warm up, then one measured run with CPU deltas of the proxy and of the pod."""
    warmup_s = min(WARMUP_S_MAX, duration_s / 3)
    run_load(target.url, connections, warmup_s, cpu=LOAD_CPU)
    pids = target.proxy_pids()
    proxy_before = tree_cpu_seconds(pids) if pids else None
    pod_before = tree_cpu_seconds([pod_pid])
    load = run_load(target.url, connections, duration_s, cpu=LOAD_CPU)
    proxy_cpu = None if proxy_before is None else tree_cpu_seconds(pids) - proxy_before
    return Measured(target, load, proxy_cpu, tree_cpu_seconds([pod_pid]) - pod_before)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else round(a / b, 3)


def print_tables(saturation: list[Measured], moderate: list[Measured]) -> None:
    table = Table(title="Saturation (keep-alive, requests/s capped by pod + load on CPU 1)")
    for column in (
        "scenario",
        "conns",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "proxy CPU s",
        "proxy req/CPU-s",
        "pod µs CPU/req",
    ):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for m in saturation:
        d = m.as_dict()
        table.add_row(
            m.target.label,
            str(m.load.connections),
            f"{m.load.requests_per_s:,.0f}",
            f"{m.load.latency_ms.get('50', 0):.2f}",
            f"{m.load.latency_ms.get('99', 0):.2f}",
            str(m.load.errors),
            "—" if m.proxy_cpu_s is None else f"{m.proxy_cpu_s:.2f}",
            "—"
            if d["proxy_requests_per_cpu_s"] is None
            else f"{d['proxy_requests_per_cpu_s']:,.0f}",
            f"{d['pod_cpu_us_per_request'] or 0:.0f}",
        )
    console.print(table)
    if moderate:
        direct = next((m for m in moderate if m.target.key == "direct"), None)
        base = direct.load.latency_ms.get("50", 0.0) if direct else 0.0
        table = Table(title="Moderate load: latency added vs direct")
        for column in ("scenario", "conns", "req/s", "p50 ms", "p99 ms", "added p50 ms"):
            table.add_column(column, justify="left" if column == "scenario" else "right")
        for m in moderate:
            p50 = m.load.latency_ms.get("50", 0.0)
            table.add_row(
                m.target.label,
                str(m.load.connections),
                f"{m.load.requests_per_s:,.0f}",
                f"{p50:.3f}",
                f"{m.load.latency_ms.get('99', 0):.3f}",
                "—" if m.target.key == "direct" else f"{p50 - base:+.3f}",
            )
        console.print(table)


def draw_chart(document: dict[str, Any]) -> Callable[[Any], None]:
    saturation: dict[str, dict[str, Any]] = document["saturation"]
    moderate: dict[str, dict[str, Any]] = document["moderate"]

    def draw(figure: Any) -> None:
        keys = list(saturation)
        labels = [k.replace("_", "\n") for k in keys]
        colours = [
            "#888888" if k == "direct" else "#1f77b4" if "edge" in k else "#2ca02c" for k in keys
        ]
        ax1, ax2, ax3 = figure.subplots(1, 3)
        proxied = [k for k in keys if saturation[k]["proxy_requests_per_cpu_s"]]
        ax1.bar(
            [k.replace("_", "\n") for k in proxied],
            [saturation[k]["proxy_requests_per_cpu_s"] for k in proxied],
            color=[c for k, c in zip(keys, colours, strict=True) if k in proxied],
        )
        ax1.set_title("Proxy requests per CPU-second\n(higher is better)")
        ax2.bar(labels, [saturation[k]["requests_per_s"] for k in keys], color=colours)
        ax2.set_title(f"Requests/s, {saturation[keys[0]]['connections']} connections")
        width = 0.4
        xs = range(len(keys))
        ax3.bar(
            [x - width / 2 for x in xs],
            [saturation[k]["latency_ms"].get("99", 0) for k in keys],
            width,
            label="p99 saturated",
        )
        if moderate:
            ax3.bar(
                [x + width / 2 for x in xs],
                [moderate.get(k, {}).get("latency_ms", {}).get("50", 0) for k in keys],
                width,
                label=f"p50 at {moderate[keys[0]]['connections']} connections",
            )
        ax3.set_xticks(list(xs), labels)
        ax3.set_ylabel("ms")
        ax3.set_title("Latency (lower is better)")
        ax3.legend(fontsize="small")
        for ax in (ax1, ax2, ax3):
            ax.tick_params(axis="x", labelsize="small")
        figure.suptitle(f"Strongroom edge vs nginx — {document['finished_at']}", fontsize="medium")

    return draw


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    parser.add_argument(
        "--connections", type=int, default=32, help="keep-alive connections at saturation"
    )
    parser.add_argument("--moderate-connections", type=int, default=4)
    parser.add_argument("--moderate-duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="~3 s runs: a smoke test of the bench")
    parser.add_argument("--path", default="/healthz", help="the pod's GET route to request")
    parser.add_argument("--pod", choices=sorted(POD_ENTRIES), default="real")
    parser.add_argument("--no-nginx", action="store_true", help="skip nginx even if installed")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "edge.json")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "edge.png")
    args = parser.parse_args()
    if args.quick:
        args.duration = min(args.duration, 3.0)
        args.moderate_duration = min(args.moderate_duration, 2.0)

    notes: list[str] = []
    busy = busy_machine_note()
    if busy:
        notes.append(busy)
    nginx = None if args.no_nginx else shutil.which("nginx")
    if nginx is None:
        notes.append("nginx not installed (or --no-nginx): nginx columns skipped")
    if shutil.which("wrk") is None:
        notes.append("wrk not installed: the Python load generator was used (lower ceiling)")
    if shutil.which("taskset") is None:
        notes.append("taskset not installed: processes were not pinned")
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")

    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-edge-", dir="/tmp") as tmp:
        root = Path(tmp)
        with Processes(root / "logs") as procs:
            pod_port, edge_plain_port, edge_tls_port = free_port(), free_port(), free_port()
            settings = bench_settings(root / "data", pod_port=pod_port, admin_port=free_port())
            # As the supervisor does: data dir, local PKI (shared by every proxy), schema.
            tls = prepare(settings)
            client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
            write_upstreams_file(
                settings.run_dir / "upstreams.json",
                1,
                [Upstream("pod-0", "127.0.0.1", pod_port, "a")],
            )
            pod_env = {SETTINGS_FILE_ENV_VAR: str(write_settings_file(settings, "pod.json"))}
            pod = procs.start(
                "pod", child_argv("pod", entry=POD_ENTRIES[args.pod]), cpu=POD_CPU, env=pod_env
            )
            wait_ready(f"http://127.0.0.1:{pod_port}{args.path}", proc=pod)

            edges: dict[str, subprocess.Popen[bytes]] = {}
            for key, port, plaintext, admin in (
                ("edge_plain", edge_plain_port, True, free_port()),
                ("edge_tls", edge_tls_port, False, free_port()),
            ):
                edge_settings = with_edge(
                    settings, port=port, plaintext=plaintext, admin_port=admin
                )
                env = {
                    SETTINGS_FILE_ENV_VAR: str(write_settings_file(edge_settings, f"{key}.json"))
                }
                edges[key] = procs.start(key, child_argv("edge"), cpu=PROXY_CPU, env=env)

            targets = [
                Target("direct", "direct to pod", f"http://127.0.0.1:{pod_port}{args.path}"),
                Target(
                    "edge_plain",
                    "Strongroom edge, plain",
                    f"http://127.0.0.1:{edge_plain_port}{args.path}",
                    lambda: [edges["edge_plain"].pid],
                ),
                Target(
                    "edge_tls",
                    "Strongroom edge, TLS 1.3",
                    f"https://127.0.0.1:{edge_tls_port}{args.path}",
                    lambda: [edges["edge_tls"].pid],
                ),
            ]
            if nginx is not None:
                nginx_plain, nginx_tls = free_port(), free_port()
                conf = root / "nginx.conf"
                conf.write_text(
                    nginx_config(
                        root, pod_port=pod_port, plain_port=nginx_plain, tls_port=nginx_tls, tls=tls
                    )
                )
                master = procs.start(
                    "nginx",
                    [nginx, "-p", str(root), "-c", str(conf), "-e", "stderr"],
                    cpu=PROXY_CPU,
                )

                def nginx_pids() -> list[int]:
                    return [master.pid, *descendant_pids(master.pid)]

                targets += [
                    Target(
                        "nginx_plain",
                        "nginx, plain",
                        f"http://127.0.0.1:{nginx_plain}{args.path}",
                        nginx_pids,
                    ),
                    Target(
                        "nginx_tls",
                        "nginx, TLS 1.3",
                        f"https://127.0.0.1:{nginx_tls}{args.path}",
                        nginx_pids,
                    ),
                ]
            procs_by_target = {"edge_plain": edges["edge_plain"], "edge_tls": edges["edge_tls"]}
            if nginx is not None:
                procs_by_target["nginx_plain"] = procs_by_target["nginx_tls"] = master
            samples: dict[str, dict[str, Any]] = {}
            for target in targets:
                wait_ready(
                    target.url, proc=procs_by_target.get(target.key, pod), ssl_context=client_tls
                )
                status, headers, body = http_get(target.url, ssl_context=client_tls)
                samples[target.key] = {
                    "status": status,
                    "headers": headers,
                    "body": body.decode(errors="replace")[:200],
                }

            saturation: list[Measured] = []
            for target in targets:
                console.print(
                    f"measuring {target.label}: {args.connections} connections, {args.duration:g} s"
                )
                saturation.append(measure(target, pod.pid, args.connections, args.duration))
            moderate: list[Measured] = []
            for target in targets:
                console.print(
                    f"moderate load {target.label}: {args.moderate_connections} connections"
                )
                moderate.append(
                    measure(target, pod.pid, args.moderate_connections, args.moderate_duration)
                )
            for key, proc in procs_by_target.items():
                if proc.poll() is not None:
                    notes.append(f"{key}: process exited with {proc.returncode} during the bench")
            edge_log_tail = {key: procs.log_of(key)[-2000:] for key in edges}

    print_tables(saturation, moderate)
    by_key = {m.target.key: m for m in saturation}

    def per_cpu(key: str) -> float | None:
        m = by_key.get(key)
        return m.proxy_requests_per_cpu_s if m else None

    direct_p50 = next(
        m.load.latency_ms.get("50", 0.0) for m in moderate if m.target.key == "direct"
    )
    document: dict[str, Any] = {
        "bench": "edge",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "pod": args.pod,
            "path": args.path,
            "connections": args.connections,
            "duration_s": args.duration,
            "moderate_connections": args.moderate_connections,
            "moderate_duration_s": args.moderate_duration,
            "pinning": {"proxy_cpu": PROXY_CPU, "load_cpu": LOAD_CPU, "pod_cpu": POD_CPU},
        },
        "saturation": {m.target.key: m.as_dict() for m in saturation},
        "edge_vs_nginx_requests_per_cpu_s": {
            "plain": ratio(per_cpu("edge_plain"), per_cpu("nginx_plain")),
            "tls": ratio(per_cpu("edge_tls"), per_cpu("nginx_tls")),
        },
        "moderate": {m.target.key: m.as_dict() for m in moderate},
        "moderate_added_p50_ms": {
            m.target.key: round(m.load.latency_ms.get("50", 0.0) - direct_p50, 3)
            for m in moderate
            if m.target.key != "direct"
        },
        "sample_responses": samples,
        "notes": notes,
    }
    ratios = document["edge_vs_nginx_requests_per_cpu_s"]
    console.print(
        f"edge/nginx requests per CPU-second: plain {ratios['plain']}, TLS {ratios['tls']}"
    )
    errors = {m.target.key: m.load.errors for m in saturation + moderate if m.load.errors}
    if errors:
        console.print(f"[red]errors during load:[/] {errors}")
        document["edge_log_tail"] = edge_log_tail
    write_json(args.out, document)
    write_chart(args.chart, draw_chart(document), size=(13, 4.5))
    console.print(f"wrote {args.out} and {args.chart}")
    return 1 if errors else 0


if __name__ == "__main__":
    started_at = time.monotonic()
    try:
        code = main()
    except KeyboardInterrupt:
        console.print("[red]interrupted: every started process was stopped[/]")
        code = 130
    console.print(f"bench took {time.monotonic() - started_at:.0f} s")
    sys.exit(code)
