"""Shared machinery of the edge benchmarks: processes, CPU accounting, load, output.

Why a harness at all: a benchmark on a 2-core machine is only worth its numbers when
every run pins the same processes to the same cores, counts CPU time from the kernel
(not wall time), and leaves nothing running behind it. Everything here serves that:

* ``Processes`` starts children (optionally ``taskset``-pinned) and stops every one of
  them by PID on exit, also on Ctrl-C, SIGTERM or an exception; the children also get
  ``PR_SET_PDEATHSIG`` so a bench killed with SIGKILL does not leave servers behind.
* ``cpu_seconds`` reads utime + stime from ``/proc/<pid>/stat``: requests per
  CPU-second of a proxy is the one figure that stays comparable on a shared machine.
* ``run_load`` drives wrk (keep-alive, ``--latency``) and parses its report, or falls
  back to a small asyncio load generator (``python -m bench._harness loadgen``) when
  wrk is not installed.

Run as a module only for that fallback load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import urlsplit

from strongroom.config import Settings, dump_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# A child that ignores SIGTERM this long is killed: benches must end in bounded time.
STOP_TIMEOUT_S = 5.0
# How long a server may take to answer its first request (imports, key generation).
READY_TIMEOUT_S = 60.0
# wrk's own bound on top of the run's duration: connection set-up, report writing.
LOAD_GRACE_S = 30.0
_PR_SET_PDEATHSIG = 1


# --- /proc accounting ---------------------------------------------------------------


def parse_proc_stat_ticks(stat_text: str) -> tuple[int, int]:
    """(utime, stime) in clock ticks from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or
    parentheses, so fields are counted from the LAST closing parenthesis.
    """
    fields = stat_text[stat_text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14 and stime field 15 (proc(5)).
    return int(fields[11]), int(fields[12])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (all its threads)."""
    utime, stime = parse_proc_stat_ticks(Path(f"/proc/{pid}/stat").read_text())
    return (utime + stime) / CLOCK_TICKS_PER_S


def tree_cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time of several processes (e.g. nginx's master and worker), summed."""
    return sum(cpu_seconds(pid) for pid in pids)


def parse_status_rss_kib(status_text: str) -> int:
    """Resident set size in KiB from the text of ``/proc/<pid>/status``."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line: the process is a zombie or a kernel thread")


def rss_kib(pid: int) -> int:
    return parse_status_rss_kib(Path(f"/proc/{pid}/status").read_text())


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                found.extend(int(p) for p in text.split())
    return found


def descendant_pids(pid: int) -> list[int]:
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in child_pids(stack.pop()):
            out.append(child)
            stack.append(child)
    return out


# --- processes ------------------------------------------------------------------------


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    """``argv`` run under ``taskset -c cpu`` when that CPU exists and taskset is installed."""
    if cpu is None or shutil.which("taskset") is None or cpu >= cpu_count():
        return list(argv)
    return ["taskset", "-c", str(cpu), *argv]


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL it if the bench process dies."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc: Any = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Processes:
    """Every process a bench started; ``with Processes() as procs:`` stops them all by PID."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._previous_sigterm: Any = None

    def __enter__(self) -> Processes:
        # SIGTERM becomes an exception so the `with` block's exit still runs.
        self._previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._previous_sigterm)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | None = None,
        env: dict[str, str] | None = None,
        stdin: int | None = subprocess.DEVNULL,
        stdout: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (pinned to ``cpu``); stderr (and stdout unless piped) go to a log."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            pinned(argv, cpu),
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdin=stdin,
            stdout=stdout if stdout is not None else log,
            stderr=log,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded bench parent
            start_new_session=True,  # a terminal's Ctrl-C reaches the bench, which stops us
        )
        log.close()
        self._started.append((name, proc))
        return proc

    def log_of(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM, wait, SIGKILL; descendants (nginx workers) are stopped by PID too."""
        if proc.poll() is not None:
            return
        descendants = descendant_pids(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def stop_all(self) -> None:
        while self._started:
            _, proc = self._started.pop()
            with contextlib.suppress(Exception):
                self.stop(proc)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out; the tiny reuse race is acceptable for a bench."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_get(
    url: str, *, ssl_context: ssl.SSLContext | None = None, timeout_s: float = 2.0
) -> tuple[int, dict[str, str], bytes]:
    """One GET (status, lower-cased headers, body); TLS for https URLs."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(host, parts.port, timeout=timeout_s, context=ssl_context)
    else:
        conn = http.client.HTTPConnection(host, parts.port, timeout=timeout_s)
    try:
        conn.request("GET", parts.path or "/", headers={"Host": "localhost"})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def wait_ready(
    url: str,
    *,
    proc: subprocess.Popen[bytes],
    ssl_context: ssl.SSLContext | None = None,
    timeout_s: float = READY_TIMEOUT_S,
) -> None:
    """Until ``url`` answers 200; raises if ``proc`` exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: server exited with {proc.returncode} before it was ready")
        try:
            status, _, _ = http_get(url, ssl_context=ssl_context)
            if status == 200:
                return
            last = status
        except (OSError, http.client.HTTPException) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s} s (last: {last!r})")


# --- Strongroom processes ----------------------------------------------------------------

# The bench stops pods right after measuring: no edge is left to see a drain.
BENCH_POD_DRAIN_GRACE_S = 0.2


def bench_settings(data_dir: Path, *, pod_port: int, admin_port: int) -> Settings:
    """Settings for one pod (``pod_port``) and edges whose admin ports start at ``admin_port``.

    Only ports, the data dir and the pod's drain grace differ from the defaults: the
    bench measures the edge as shipped.
    """
    base = Settings()
    return base.model_copy(
        update={
            "data_dir": data_dir,
            "pods": base.pods.model_copy(
                update={
                    "count": 1,
                    "port_base": pod_port,
                    "zones": ["a"],
                    "drain_grace_s": BENCH_POD_DRAIN_GRACE_S,
                }
            ),
            "edge": base.edge.model_copy(update={"admin_port": admin_port}),
        }
    )


def with_edge(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with some ``edge.*`` fields replaced (port, plaintext, limits...)."""
    return settings.model_copy(update={"edge": settings.edge.model_copy(update=changes)})


def write_settings_file(settings: Settings, name: str) -> Path:
    """The frozen tree a child reads through ``STRONGROOM_SETTINGS_FILE`` (mode 0600)."""
    path = settings.run_dir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(dump_settings(settings))
    return path


def child_argv(
    role: str, *, index: int = 0, zone: str = "a", entry: str | None = None
) -> list[str]:
    """``python -m strongroom.runtime.child <role>``: how the supervisor starts its children."""
    argv = [sys.executable, "-m", "strongroom.runtime.child", role, "--index", str(index)]
    argv += ["--zone", zone]
    if entry is not None:
        argv += ["--entry", entry]
    return argv


# The upstream the bench puts behind the proxies: the real pod (FastAPI app) or a bare
# Starlette app, which answers ~2-3x faster and so loads the proxy harder.
POD_ENTRIES: dict[str, str | None] = {
    "real": None,
    "starlette": "bench._harness:run_starlette_pod",
}


def run_starlette_pod(settings: Settings, index: int, zone: str) -> None:
    """A minimal pod (``/healthz``, ``/readyz``, ``/v1/*`` accepting anything) with the real
    pod's server settings."""
    # Imported here: only the pod child pays for the web stack.
    import uvicorn  # noqa: PLC0415
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import JSONResponse  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive"})

    async def readyz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ready"})

    async def accept(request: Request) -> JSONResponse:
        # A stand-in for API routes: reads the body, answers like a created resource.
        body = await request.body()
        return JSONResponse({"accepted": len(body)}, status_code=201)

    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/{rest:path}", accept, methods=["GET", "POST"]),
        ]
    )
    uvicorn.run(
        app,
        host=settings.pods.host,
        port=settings.pods.port_base + index,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=int(settings.edge.balancer.pool_idle_timeout_s) + 5,
    )


# --- load -----------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_DURATION = r"([\d.]+)(us|ms|s|m|h)"


def parse_duration_ms(text: str) -> float:
    """wrk prints times as ``812.00us``, ``1.23ms``, ``2.00s`` or ``1.50m``."""
    match = re.fullmatch(_DURATION, text.strip())
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


@dataclass
class LoadResult:
    """One load run: throughput, latency percentiles and every kind of failure."""

    tool: str
    connections: int
    requests: int
    duration_s: float
    requests_per_s: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # "50", "75", "90", "99"
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect/read/write/timeout
    non_2xx_3xx: int = 0

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors}


def parse_wrk(output: str, connections: int) -> LoadResult:
    """The figures of a ``wrk --latency`` report."""
    done = re.search(r"(\d+) requests in " + _DURATION, output)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if done is None or rate is None:
        raise ValueError(f"not a wrk report:\n{output}")
    latency = {
        pct: parse_duration_ms(value)
        for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket is not None:
        errors = dict(zip(errors, (int(g) for g in socket.groups()), strict=True))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return LoadResult(
        tool="wrk",
        connections=connections,
        requests=int(done.group(1)),
        duration_s=parse_duration_ms(done.group(2) + done.group(3)) / 1000.0,
        requests_per_s=float(rate.group(1)),
        latency_ms=latency,
        socket_errors=errors,
        non_2xx_3xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil without floats drifting
    return sorted_values[min(len(sorted_values), int(rank)) - 1]


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def load_command(
    url: str,
    connections: int,
    duration_s: float,
    *,
    threads: int = 1,
    script: Path | None = None,
) -> list[str]:
    """The load generator's argv: wrk when installed, else this module's fallback.

    ``script`` is a wrk Lua script (method, body, headers of the request); only wrk runs it.
    """
    if wrk_available():
        return [
            "wrk",
            f"-t{min(threads, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--latency",
            "-H",
            "Host: localhost",
            *(["-s", str(script)] if script is not None else []),
            url,
        ]
    if script is not None:
        raise RuntimeError("a scripted load (POST bodies) needs wrk")
    return [
        sys.executable,
        "-m",
        "bench._harness",
        "loadgen",
        url,
        "--connections",
        str(connections),
        "--duration",
        str(duration_s),
    ]


def run_load(
    url: str,
    connections: int,
    duration_s: float,
    *,
    cpu: int | None = None,
    threads: int = 1,
    script: Path | None = None,
) -> LoadResult:
    """Drive ``url`` with keep-alive connections for ``duration_s``; bounded in time."""
    argv = pinned(load_command(url, connections, duration_s, threads=threads, script=script), cpu)
    completed = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=duration_s + LOAD_GRACE_S,
        check=False,
        preexec_fn=_die_with_parent,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed ({completed.returncode}): {completed.stderr}")
    if wrk_available():
        return parse_wrk(completed.stdout, connections)
    return LoadResult(**json.loads(completed.stdout))


# --- fallback load generator ------------------------------------------------------------


async def _one_connection(
    host: str,
    port: int,
    request: bytes,
    ssl_context: ssl.SSLContext | None,
    deadline: float,
    latencies: list[float],
    errors: dict[str, int],
) -> None:
    """Keep-alive requests one after another on one connection until ``deadline``."""
    try:
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
    except OSError:
        errors["connect"] += 1
        return
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - start) * 1000.0)
            status = int(head.split(b" ", 2)[1])
            if status >= 400:
                errors["status"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError):
        errors["read"] += 1
    finally:
        writer.close()


async def python_load(url: str, connections: int, duration_s: float) -> LoadResult:
    """A minimal keep-alive HTTP/1.1 load generator: slower than wrk, same figures."""
    parts = urlsplit(url)
    ssl_context: ssl.SSLContext | None = None
    if parts.scheme == "https":
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname = False
        ssl_context.verify_mode = ssl.CERT_NONE
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if ssl_context else 80)
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0, "status": 0}
    started = time.monotonic()
    deadline = started + duration_s
    await asyncio.gather(
        *(
            _one_connection(host, port, request, ssl_context, deadline, latencies, errors)
            for _ in range(connections)
        )
    )
    elapsed = time.monotonic() - started
    latencies.sort()
    non_2xx = errors.pop("status")
    return LoadResult(
        tool="python",
        connections=connections,
        requests=len(latencies),
        duration_s=round(elapsed, 3),
        requests_per_s=round(len(latencies) / elapsed, 2),
        latency_ms={p: round(percentile(latencies, float(p)), 3) for p in ("50", "75", "90", "99")},
        socket_errors=errors,
        non_2xx_3xx=non_2xx,
    )


# --- output -----------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """What a reader needs to judge the figures: cores, Python, tools' versions."""
    info: dict[str, Any] = {
        "cpus": cpu_count(),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_generator": "wrk" if wrk_available() else "python (wrk not installed)",
        "taskset": shutil.which("taskset") is not None,
        "loadavg_1m_at_end": round(os.getloadavg()[0], 2),
    }
    nginx = shutil.which("nginx")
    if nginx:
        probe = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        info["nginx"] = probe.stderr.strip().removeprefix("nginx version: ")
    return info


def busy_machine_note() -> str | None:
    """A warning when other work competes for the cores: absolute figures then mean little."""
    load_1m = os.getloadavg()[0]
    if load_1m <= cpu_count() / 2:
        return None
    return (
        f"load average {load_1m:.1f} on {cpu_count()} CPUs at the start: other processes "
        "compete for the cores; compare ratios within this run, not absolute figures"
    )


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def write_chart(path: Path, draw: Callable[[Any], None], *, size: tuple[float, float]) -> None:
    """Render with matplotlib's Agg backend (no display) into a PNG of ``size`` inches."""
    # Imported here: matplotlib takes ~0.5 s to import and only the final step draws.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    figure = plt.figure(figsize=size, dpi=100)
    try:
        draw(figure)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
    finally:
        plt.close(figure)


@contextlib.contextmanager
def timed(label: str, log: Callable[[str], None]) -> Iterator[None]:
    started = time.monotonic()
    yield
    log(f"{label}: {time.monotonic() - started:.1f} s")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench._harness")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("loadgen", help="fallback load generator (wrk is absent)")
    load.add_argument("url")
    load.add_argument("--connections", type=int, default=32)
    load.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    result = asyncio.run(python_load(args.url, args.connections, args.duration))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
