"""`strongroom up` as a real subprocess, with a bounded load generator beside it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from strongroom.edge.tls import client_context
from tests.dpop_proofs import Dpop, DpopKey


def free_port_block(size: int) -> int:
    """A base port with `size` consecutive free ports above it."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        if base + size >= 65000:
            continue
        ok = True
        for port in range(base, base + size):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base
    raise RuntimeError("no free port block")


@dataclass
class Platform:
    data_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    # What `running_platform` added to the environment (e.g. a PostgreSQL URL): the CLI
    # needs it too to reach the same database.
    env: dict[str, str] = field(default_factory=dict)

    def cli(self, *args: str) -> Any:
        """Run `strongroom <args> --data-dir … --json` against this platform; its JSON."""
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                *args,
                "--data-dir",
                str(self.data_dir),
                "--json",
            ],
            capture_output=True,
            check=True,
            timeout=60,
            env={**os.environ, **self.env},
        )
        return json.loads(out.stdout)

    def status(self) -> dict[str, Any]:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "status",
                "--data-dir",
                str(self.data_dir),
                "--json",
            ],
            capture_output=True,
            check=False,
            timeout=30,
        )
        return json.loads(out.stdout)

    def processes(self) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in self.status()["processes"]}

    def client(self) -> httpx.Client:
        ctx = client_context(self.data_dir / "tls" / "ca.pem")
        return httpx.Client(verify=ctx, base_url=f"https://localhost:{self.port}", timeout=10)

    def wait_healthy(
        self, names: list[str], *, other_pid: dict[str, int] | None = None, timeout_s: float = 60
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            procs = self.processes()
            if all(
                procs[n]["health"] == "healthy"
                and procs[n]["pid"]
                and (other_pid is None or procs[n]["pid"] != other_pid.get(n))
                for n in names
            ):
                return
            time.sleep(0.2)
        raise AssertionError(f"{names} not healthy in time: {self.processes()}")


@contextmanager
def running_platform(
    tmp: Path,
    *,
    pods: int = 2,
    zones: str = "a",
    edge_workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Platform]:
    port = free_port_block(1)
    pod_base = free_port_block(pods + 1)
    admin_base = free_port_block(edge_workers + 1)
    env = {
        **os.environ,
        "STRONGROOM_PODS__PORT_BASE": str(pod_base),
        "STRONGROOM_EDGE__ADMIN_PORT": str(admin_base),
        # Every test client shares the loopback address: per-address rate limits would
        # throttle the suite, not a client. Clients and tenants are still limited, and
        # per-address limits have their own end-to-end tests (test_edge_rate_limits).
        "STRONGROOM_EDGE__RATE_LIMITS__EXEMPT_NETWORKS": '["127.0.0.0/8", "::1/128"]',
        **(extra_env or {}),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "strongroom.cli.main",
            "up",
            "--data-dir",
            str(tmp),
            "--port",
            str(port),
            "--pods",
            str(pods),
            "--zones",
            zones,
            "--edge-workers",
            str(edge_workers),
        ],
        env=env,
        # Every process's log lines, kept for diagnosing a failure (see `up_log_tail`).
        stdout=up_log(tmp).open("wb"),
        stderr=subprocess.STDOUT,
    )
    platform = Platform(tmp, port, proc, dict(extra_env or {}))
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"strongroom up exited with {proc.returncode}")
            try:
                with platform.client() as c:
                    if c.get("/").status_code == 200:
                        break
            except (httpx.HTTPError, OSError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError("platform did not come up in 90 s")
            time.sleep(0.3)
        platform.wait_healthy(list(platform.processes()))
        yield platform
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@dataclass
class Load:
    """Closed-loop clients hammering the edge until stopped (bounded by max_s)."""

    platform: Platform
    clients: int = 4
    max_s: float = 60.0
    paths: tuple[str, ...] = ("/", "/echo")
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    served_by: Counter[str] = field(default_factory=Counter)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + self.max_s
        with self.platform.client() as c:
            i = 0
            while not self._stop.is_set() and time.monotonic() < deadline:
                i += 1
                path = self.paths[i % len(self.paths)]
                try:
                    if n % 2 and i % 3 == 0:
                        r = c.post(
                            "/echo",
                            content=b'{"x":1}',
                            headers={
                                "Idempotency-Key": f"k-{n}-{i}",
                                "Content-Type": "application/json",
                            },
                        )
                    else:
                        r = c.get(path)
                    if r.status_code == 200:
                        with self._lock:
                            self.ok += 1
                            self.served_by[r.json().get("pod", "?")] += 1
                    else:
                        with self._lock:
                            self.failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    with self._lock:
                        self.failures.append(repr(exc))

    def __enter__(self) -> Load:
        for n in range(self.clients):
            t = threading.Thread(target=self._run, args=(n,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.served_by)


def pod_urls(platform: Platform) -> list[str]:
    """Each pod's own address: revocation promises are checked pod by pod, not via the edge."""
    procs = platform.processes().values()
    return [f"http://127.0.0.1:{p['port']}" for p in procs if p["role"] == "pod"]


def pods_still_accepting(
    platform: Platform, headers: dict[str, str], started: float, deadline_s: float = 1.0
) -> dict[str, int]:
    """Pods that do not refuse (401) `headers` by `deadline_s` after `started`.

    Polls every pod directly until each refuses or the deadline passes, then asks every
    pod once more at or after the deadline: the promise is that a pod asked then refuses,
    so a slow test client can neither pass nor fail it by itself.
    """
    urls = pod_urls(platform)
    pending = set(urls)
    while pending and time.monotonic() - started < deadline_s:
        pending = {
            u for u in pending if httpx.get(f"{u}/v1/clients", headers=headers).status_code != 401
        }
        time.sleep(0.02)
    if not pending:
        return {}
    time.sleep(max(0.0, started + deadline_s - time.monotonic()))
    late = {u: httpx.get(f"{u}/v1/clients", headers=headers) for u in urls}
    accepting = {u: r.status_code for u, r in late.items() if r.status_code != 401}
    if accepting:  # pytest shows this with the failure: the pods' own account of it
        print(up_log_tail(platform))
    return accepting


def up_log(data_dir: Path) -> Path:
    """Where `running_platform` sends the output of `strongroom up` and its children."""
    return data_dir.parent / f"{data_dir.name}-up.log"


def up_log_tail(platform: Platform, lines: int = 80) -> str:
    path = up_log(platform.data_dir)
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def tenant_auth(platform: Platform, c: httpx.Client, name: str, scopes: str) -> Dpop:
    """A new tenant, a client of it with ``scopes``, and a DPoP-bound token for it."""
    tenant = platform.cli("tenant", "create", name)["tenant_id"]
    client = platform.cli("client", "create", "--tenant", tenant, "--scopes", scopes)
    issuer = f"https://localhost:{platform.port}"
    key = DpopKey()
    nonce: str | None = None
    for _ in range(2):
        r = c.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
            headers={"DPoP": key.proof("POST", f"{issuer}/oauth2/token", nonce=nonce)},
        )
        if r.status_code == 200:
            return Dpop(issuer, key, r.json()["access_token"], r.headers.get("dpop-nonce"))
        nonce = r.headers["dpop-nonce"]
    raise AssertionError(r.text)
