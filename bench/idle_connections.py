"""Idle keep-alive TLS connections: what 10,000 of them cost one edge worker.

Run: ``.venv/bin/python bench/idle_connections.py`` (``--quick``: 2,000 idle, short runs).

One edge worker (TLS 1.3, CPU 0) in front of the real pod (CPU 1). Phases:

1. baseline - 64 active wrk connections for ``--duration`` s; edge RSS afterwards.
2. ramp     - client processes (CPU 1, ``--clients`` of them: one process may hold
   at most ~20,000 fds here) open ``--idle`` connections; each completes a handshake
   and one request, then stays idle. 64 active connections run alongside.
3. steady   - the idle connections held, 64 active connections for ``--duration`` s.
4. check    - each client sends one more request on a sample of its idle connections,
   proving the edge kept them open.

Memory per idle connection = (edge RSS with the idle connections open - RSS before)
/ connections open. Target: ≤ 64 KiB. The edge's ``limits.idle_timeout_s`` is raised
for this bench only so the connections outlive the measurement; nothing else changes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import queue
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

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
    cpu_seconds,
    free_port,
    http_get,
    machine_info,
    open_fds,
    rss_kib,
    run_load,
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
from strongroom.edge.upstreams_file import write_upstreams_file
from strongroom.runtime.bootstrap import prepare

EDGE_CPU = 0
CLIENT_CPU = 1
POD_CPU = 1
TARGET_KIB_PER_IDLE = 64
# Far above the bench's own length so no idle connection times out while measured.
BENCH_IDLE_TIMEOUT_S = 900.0
# Per-process fd ceiling on this machine is 20,000: leave room for the interpreter.
CONNECTIONS_PER_CLIENT_MAX = 9_000
# Opening threads per client process: handshakes overlap, the edge sees a burst.
CLIENT_THREADS = 8
CLIENT_SOCKET_TIMEOUT_S = 30.0
# The whole ramp (all idle connections open) must finish within this time.
RAMP_TIMEOUT_S = 300.0
# Idle connections per client re-used for one request at the end, to prove they are alive.
ALIVE_SAMPLE = 100
SAMPLE_PERIOD_S = 0.5
RESPONSE_BYTES_MAX = 64 * 1024

console = Console(width=120)


# --- client process ---------------------------------------------------------------------


def request_once(sock: ssl.SSLSocket, request: bytes) -> int:
    """Send one request, read one Content-Length response; return its status."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk or len(data) > RESPONSE_BYTES_MAX:
            raise ConnectionError("connection closed before a full response header")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(length - len(body))
        if not chunk:
            raise ConnectionError("connection closed mid-body")
        body += chunk
    return int(head.split(b" ", 2)[1])


def client_main(port: int, count: int, ca_cert: Path, path: str) -> None:
    """Open ``count`` idle TLS connections, report, hold them until stdin closes."""
    context = ssl.create_default_context(cafile=str(ca_cert))
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    request = f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    held: list[ssl.SSLSocket] = []
    failures: list[str] = []
    lock = threading.Lock()
    started = time.monotonic()

    def opener(n: int) -> None:
        for _ in range(n):
            try:
                raw = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_SOCKET_TIMEOUT_S)
                tls = context.wrap_socket(raw, server_hostname="localhost")
                status = request_once(tls, request)
                if status != 200:
                    tls.close()
                    raise ConnectionError(f"status {status}")
            except (OSError, ValueError) as exc:
                with lock:
                    failures.append(repr(exc))
                continue
            with lock:
                held.append(tls)
                opened = len(held)
            if opened % 1000 == 0:
                print(json.dumps({"progress": opened}), flush=True)

    shares = [count // CLIENT_THREADS + (i < count % CLIENT_THREADS) for i in range(CLIENT_THREADS)]
    threads = [threading.Thread(target=opener, args=(n,), daemon=True) for n in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(
        json.dumps(
            {
                "open": len(held),
                "failed": len(failures),
                "first_failures": failures[:5],
                "seconds": round(time.monotonic() - started, 2),
            }
        ),
        flush=True,
    )
    sys.stdin.readline()  # the parent writes a line (or dies) when measuring is over
    alive = 0
    sample = held[:: max(1, len(held) // ALIVE_SAMPLE)][:ALIVE_SAMPLE]
    for sock in sample:
        with contextlib.suppress(OSError, ValueError):
            alive += request_once(sock, request) == 200
    print(json.dumps({"alive_checked": len(sample), "alive_ok": alive}), flush=True)
    for sock in held:
        sock.close()


# --- parent -------------------------------------------------------------------------------


def _pump(stream: IO[bytes], into: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        try:
            into.put(json.loads(line))
        except ValueError:
            continue


def latency_row(table: Table, phase: str, load: LoadResult) -> None:
    table.add_row(
        phase,
        f"{load.requests_per_s:,.0f}",
        f"{load.latency_ms.get('50', 0):.2f}",
        f"{load.latency_ms.get('99', 0):.2f}",
        str(load.errors),
    )


def draw_chart(document: dict[str, Any]) -> Callable[[Any], None]:
    samples = document["samples"]

    def draw(figure: Any) -> None:
        ax1, ax2 = figure.subplots(1, 2)
        t = [s["t_s"] for s in samples]
        ax1.plot(t, [s["rss_kib"] / 1024 for s in samples], label="edge RSS (MiB)")
        ax1.set_xlabel("seconds")
        ax1.set_ylabel("MiB")
        twin = ax1.twinx()
        twin.plot(t, [s["fds"] for s in samples], color="#ff7f0e", label="edge open fds")
        twin.set_ylabel("open fds (≈ connections)")
        per = document["memory"]["kib_per_idle_connection"]
        ax1.set_title(
            f"{document['idle']['open']:,} idle TLS connections: {per:.1f} KiB each "
            f"(target ≤ {TARGET_KIB_PER_IDLE})"
        )
        ax1.legend(loc="upper left", fontsize="small")
        twin.legend(loc="lower right", fontsize="small")
        phases = list(document["active"])
        width = 0.4
        xs = range(len(phases))
        ax2.bar(
            [x - width / 2 for x in xs],
            [document["active"][p]["latency_ms"].get("50", 0) for p in phases],
            width,
            label="p50",
        )
        ax2.bar(
            [x + width / 2 for x in xs],
            [document["active"][p]["latency_ms"].get("99", 0) for p in phases],
            width,
            label="p99",
        )
        ax2.set_xticks(list(xs), phases)
        ax2.set_ylabel("ms")
        ax2.set_title(f"{document['config']['active']} active TLS clients' latency")
        ax2.legend(fontsize="small")

    return draw


def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    clients = max(args.clients, math.ceil(args.idle / CONNECTIONS_PER_CLIENT_MAX))
    samples: list[dict[str, Any]] = []
    busy = busy_machine_note()
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="strongroom-bench-idle-", dir="/tmp") as tmp:
        root = Path(tmp)
        with Processes(root / "logs") as procs:
            pod_port, edge_port = free_port(), free_port()
            settings = bench_settings(root / "data", pod_port=pod_port, admin_port=free_port())
            settings = with_edge(
                settings,
                port=edge_port,
                limits=settings.edge.limits.model_copy(
                    update={"idle_timeout_s": BENCH_IDLE_TIMEOUT_S}
                ),
            )
            tls = prepare(settings)
            assert tls.ca_cert is not None
            write_upstreams_file(
                settings.run_dir / "upstreams.json",
                1,
                [Upstream("pod-0", "127.0.0.1", pod_port, "a")],
            )
            env = {SETTINGS_FILE_ENV_VAR: str(write_settings_file(settings, "settings.json"))}
            pod = procs.start(
                "pod", child_argv("pod", entry=POD_ENTRIES[args.pod]), cpu=POD_CPU, env=env
            )
            wait_ready(f"http://127.0.0.1:{pod_port}{args.path}", proc=pod)
            edge = procs.start("edge", child_argv("edge"), cpu=EDGE_CPU, env=env)
            client_tls = ssl.create_default_context(cafile=str(tls.ca_cert))
            url = f"https://127.0.0.1:{edge_port}{args.path}"
            wait_ready(url, proc=edge, ssl_context=client_tls)
            admin_url = f"http://127.0.0.1:{settings.edge.admin_port}/healthz"

            def sample(phase: str) -> dict[str, Any]:
                point = {
                    "t_s": round(time.monotonic() - t0, 2),
                    "phase": phase,
                    "rss_kib": rss_kib(edge.pid),
                    "fds": open_fds(edge.pid),
                    "cpu_s": round(cpu_seconds(edge.pid), 3),
                }
                samples.append(point)
                return point

            def load_while_sampling(phase: str) -> LoadResult:
                result: list[LoadResult] = []
                worker = threading.Thread(
                    target=lambda: result.append(
                        run_load(url, args.active, args.duration, cpu=CLIENT_CPU)
                    ),
                    daemon=True,  # an interrupted bench exits at once; wrk then dies with it
                )
                worker.start()
                while worker.is_alive():
                    sample(phase)
                    worker.join(SAMPLE_PERIOD_S)
                if not result:
                    raise RuntimeError(f"{phase}: the load generator failed (see above)")
                return result[0]

            sample("start")
            run_load(url, args.active, min(2.0, args.duration), cpu=CLIENT_CPU)  # warm-up
            baseline = load_while_sampling("baseline")
            time.sleep(1.0)
            before = sample("before idle")

            console.print(
                f"opening {args.idle:,} idle TLS connections from {clients} client processes"
            )
            updates: queue.Queue[dict[str, Any]] = queue.Queue()
            client_procs: list[subprocess.Popen[bytes]] = []
            for i in range(clients):
                count = args.idle // clients + (i < args.idle % clients)
                argv = [
                    sys.executable,
                    __file__,
                    "client",
                    "--port",
                    str(edge_port),
                    "--count",
                    str(count),
                ]
                argv += ["--ca", str(tls.ca_cert), "--path", args.path]
                proc = procs.start(
                    f"client-{i}",
                    argv,
                    cpu=CLIENT_CPU,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
                assert proc.stdout is not None
                threading.Thread(target=_pump, args=(proc.stdout, updates), daemon=True).start()
                client_procs.append(proc)
            ramp_started = time.monotonic()
            ramp_load: list[LoadResult] = []
            ramp_worker = threading.Thread(
                target=lambda: ramp_load.append(
                    run_load(url, args.active, args.duration, cpu=CLIENT_CPU)
                ),
                daemon=True,
            )
            ramp_worker.start()
            reports: list[dict[str, Any]] = []
            while len(reports) < clients:
                if time.monotonic() - ramp_started > RAMP_TIMEOUT_S:
                    raise TimeoutError(f"idle connections not open after {RAMP_TIMEOUT_S} s")
                if edge.poll() is not None:
                    raise RuntimeError(f"edge exited with {edge.returncode} during the ramp")
                try:
                    update = updates.get(timeout=SAMPLE_PERIOD_S)
                except queue.Empty:
                    sample("ramp")
                    continue
                if "open" in update:
                    reports.append(update)
            ramp_s = time.monotonic() - ramp_started
            while ramp_worker.is_alive():
                sample("ramp")
                ramp_worker.join(SAMPLE_PERIOD_S)
            opened = sum(r["open"] for r in reports)
            failed = sum(r["failed"] for r in reports)
            time.sleep(1.0)
            after = sample("idle held")
            _, _, health_body = http_get(admin_url)
            edge_connections = json.loads(health_body).get("connections")
            steady = load_while_sampling("steady")
            after_steady = sample("after steady")

            for proc in client_procs:
                assert proc.stdin is not None
                proc.stdin.write(b"check\n")
                proc.stdin.flush()
            alive_checked = alive_ok = 0
            deadline = time.monotonic() + 60
            pending = clients
            while pending and time.monotonic() < deadline:
                try:
                    update = updates.get(timeout=1.0)
                except queue.Empty:
                    continue
                if "alive_checked" in update:
                    alive_checked += update["alive_checked"]
                    alive_ok += update["alive_ok"]
                    pending -= 1
            edge_alive = edge.poll() is None
            edge_log_tail = procs.log_of("edge")[-3000:]

    delta_kib = after["rss_kib"] - before["rss_kib"]
    per_idle = delta_kib / opened if opened else float("nan")
    notes = [f"edge limits.idle_timeout_s raised to {BENCH_IDLE_TIMEOUT_S:g} s for this bench only"]
    if busy:
        notes.append(busy)
    if failed:
        notes.append(
            f"{failed} idle connections failed to open: {reports[0].get('first_failures')}"
        )
    if not edge_alive:
        notes.append("the edge exited during the bench")
    document: dict[str, Any] = {
        "bench": "idle_connections",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "idle": args.idle,
            "active": args.active,
            "duration_s": args.duration,
            "client_processes": clients,
            "pod": args.pod,
            "path": args.path,
            "pinning": {
                "edge_cpu": EDGE_CPU,
                "clients_and_load_cpu": CLIENT_CPU,
                "pod_cpu": POD_CPU,
            },
        },
        "idle": {
            "open": opened,
            "failed": failed,
            "ramp_s": round(ramp_s, 2),
            "handshakes_per_s": round(opened / ramp_s, 1) if ramp_s else None,
            "edge_reported_connections": edge_connections,
            "alive_checked": alive_checked,
            "alive_ok": alive_ok,
        },
        "memory": {
            "rss_before_kib": before["rss_kib"],
            "rss_with_idle_kib": after["rss_kib"],
            "rss_after_steady_kib": after_steady["rss_kib"],
            "kib_per_idle_connection": round(per_idle, 2),
            "target_kib_per_idle_connection": TARGET_KIB_PER_IDLE,
            "within_target": per_idle <= TARGET_KIB_PER_IDLE,
            "fds_before": before["fds"],
            "fds_with_idle": after["fds"],
        },
        "active": {
            "baseline": baseline.as_dict(),
            "ramp": ramp_load[0].as_dict() if ramp_load else {},
            "steady": steady.as_dict(),
        },
        "samples": samples,
        "notes": notes,
    }
    if not edge_alive or failed or alive_ok < alive_checked:
        document["edge_log_tail"] = edge_log_tail
    return document


def print_report(document: dict[str, Any]) -> None:
    memory, idle = document["memory"], document["idle"]
    colour = "green" if memory["within_target"] else "red"
    table = Table(title="Edge memory with idle TLS keep-alive connections")
    for column in (
        "idle open",
        "failed",
        "ramp s",
        "handshakes/s",
        "RSS before MiB",
        "RSS with idle MiB",
        "KiB per idle",
        "alive check",
    ):
        table.add_column(column, justify="right")
    table.add_row(
        f"{idle['open']:,}",
        str(idle["failed"]),
        f"{idle['ramp_s']:.1f}",
        f"{idle['handshakes_per_s'] or 0:,.0f}",
        f"{memory['rss_before_kib'] / 1024:.1f}",
        f"{memory['rss_with_idle_kib'] / 1024:.1f}",
        f"[{colour}]{memory['kib_per_idle_connection']:.1f}[/]",
        f"{idle['alive_ok']}/{idle['alive_checked']}",
    )
    console.print(table)
    table = Table(title=f"{document['config']['active']} active TLS clients")
    for column in ("phase", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="left" if column == "phase" else "right")
    for phase, figures in document["active"].items():
        if figures:
            latency_row(
                table, phase, LoadResult(**{k: v for k, v in figures.items() if k != "errors"})
            )
    console.print(table)
    for note in document["notes"]:
        console.print(f"[yellow]note:[/] {note}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        parser = argparse.ArgumentParser(prog="idle_connections.py client")
        parser.add_argument("client")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--ca", type=Path, required=True)
        parser.add_argument("--path", default="/healthz")
        a = parser.parse_args()
        client_main(a.port, a.count, a.ca, a.path)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--idle", type=int, default=10_000, help="idle TLS connections to open")
    parser.add_argument("--active", type=int, default=64, help="active keep-alive TLS clients")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per active phase")
    parser.add_argument(
        "--clients", type=int, default=2, help="client processes holding idle connections"
    )
    parser.add_argument("--quick", action="store_true", help="2,000 idle connections, 3 s phases")
    parser.add_argument("--path", default="/healthz")
    parser.add_argument("--pod", choices=sorted(POD_ENTRIES), default="real")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "idle_connections.json")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "idle_connections.png")
    args = parser.parse_args()
    if args.quick:
        args.idle = min(args.idle, 2_000)
        args.duration = min(args.duration, 3.0)
    document = run_bench(args)
    print_report(document)
    write_json(args.out, document)
    write_chart(args.chart, draw_chart(document), size=(13, 4.5))
    console.print(f"wrote {args.out} and {args.chart}")
    idle = document["idle"]
    return 0 if not idle["failed"] and idle["alive_ok"] == idle["alive_checked"] else 1


if __name__ == "__main__":
    started_at = time.monotonic()
    try:
        code = main()
    except KeyboardInterrupt:
        console.print("[red]interrupted: every started process was stopped[/]")
        code = 130
    if sys.argv[1:2] != ["client"]:
        console.print(f"bench took {time.monotonic() - started_at:.0f} s")
    sys.exit(code)
