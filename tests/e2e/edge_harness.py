"""An edge worker and scriptable fake pods, in one background event loop.

The fake pods record every request they receive, so tests can assert that refused
requests never reached a pod. Everything binds 127.0.0.1 on free ports.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httptools
import uvloop

from strongroom.config import Settings
from strongroom.edge.balancer import Upstream
from strongroom.edge.local_ca import ensure_local_pki
from strongroom.edge.main import EdgeWorker, listening_socket
from strongroom.edge.tls import client_context
from strongroom.edge.upstreams_file import write_upstreams_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Handler = Callable[["Seen"], "tuple[int, list[tuple[str, str]], bytes] | None"]


@dataclass
class FakePod:
    name: str
    zone: str
    port: int = 0
    seen: list[Seen] = field(default_factory=list)
    ready: bool = True
    server: asyncio.Server | None = None
    delay_s: float = 0.0
    handler: Handler | None = None
    fail_status: int = 0
    # Send the response head, then close before the body: a pod killed mid-response.
    die_after_head: bool = False
    transports: set[asyncio.Transport] = field(default_factory=set)

    def paths(self) -> list[str]:
        return [s.path for s in self.seen if s.path != "/readyz"]


class _PodProtocol(asyncio.Protocol):
    def __init__(self, pod: FakePod) -> None:
        self.pod = pod
        self.parser = httptools.HttpRequestParser(self)
        self.headers: dict[str, str] = {}
        self.url = b""
        self.body = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.pod.transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.pod.transports.discard(self.transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            assert self.transport is not None
            self.transport.close()

    def on_message_begin(self) -> None:
        self.headers, self.url, self.body = {}, b"", b""

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        seen = Seen(self.parser.get_method().decode(), self.url.decode(), self.headers, self.body)
        self.pod.seen.append(seen)
        asyncio.get_running_loop().create_task(self.respond(seen))

    async def respond(self, seen: Seen) -> None:
        pod = self.pod
        if seen.path == "/readyz":
            status, headers, body = (
                (200, [], b'{"status":"ready"}')
                if pod.ready
                else (503, [], b'{"status":"draining"}')
            )
        else:
            if pod.delay_s:
                await asyncio.sleep(pod.delay_s)
            result = pod.handler(seen) if pod.handler else None
            if result is None:
                if pod.fail_status:
                    result = (pod.fail_status, [], b"fail")
                else:
                    echo = {
                        "pod": pod.name,
                        "zone": pod.zone,
                        "path": seen.path,
                        "method": seen.method,
                        "headers": seen.headers,
                        "body_len": len(seen.body),
                    }
                    result = (
                        200,
                        [("content-type", "application/json")],
                        json.dumps(echo).encode(),
                    )
            status, headers, body = result
        hdrs = "".join(f"{k}: {v}\r\n" for k, v in headers)
        out = (f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{hdrs}\r\n").encode()
        if seen.method == "HEAD":
            body = b""
        if self.transport is not None and not self.transport.is_closing():
            if pod.die_after_head and seen.path != "/readyz":
                self.transport.write(out)
                self.transport.close()
                return
            self.transport.write(out + body)


class EdgeHarness:
    def __init__(self, tmp: Path, pods: list[FakePod], *, zone: str = "a", **edge: Any) -> None:
        self.tmp = tmp
        self.pods = pods
        self.zone = zone
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        edge_settings: dict[str, Any] = {"admin_port": free_port(), "reload_poll_s": 0.2}
        balancer = {"health_interval_s": 0.2, "health_timeout_s": 0.5}
        balancer.update(edge.pop("balancer", {}))
        edge_settings["balancer"] = balancer
        edge_settings.update(edge)
        self.settings = Settings(data_dir=tmp, edge=edge_settings)
        self.worker: EdgeWorker | None = None
        self.port = 0
        self.ca = ensure_local_pki(self.settings).ca_cert

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def start(self) -> None:
        self.thread.start()
        for pod in self.pods:
            self.call(self._start_pod(pod))
        self.write_upstreams()
        sock = listening_socket("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.worker = EdgeWorker(self.settings, 0, self.zone)
        asyncio.run_coroutine_threadsafe(self.worker.serve(sock), self.loop)
        self.wait_for(
            lambda: self.worker is not None and any(p.available for p in self.worker.balancer.pods)
        )

    def write_upstreams(self, generation: int = 1) -> None:
        self.settings.run_dir.mkdir(parents=True, exist_ok=True)
        write_upstreams_file(
            self.settings.run_dir / "upstreams.json",
            generation,
            [Upstream(p.name, "127.0.0.1", p.port, p.zone) for p in self.pods],
        )

    async def _start_pod(self, pod: FakePod) -> None:
        loop = asyncio.get_running_loop()
        pod.server = await loop.create_server(lambda: _PodProtocol(pod), "127.0.0.1", pod.port)
        pod.port = pod.server.sockets[0].getsockname()[1]

    async def _stop_pod(self, pod: FakePod) -> None:
        if pod.server is not None:
            pod.server.close()
            for t in list(pod.transports):
                t.abort()

    def kill_pod(self, pod: FakePod) -> None:
        self.call(self._stop_pod(pod))

    def revive_pod(self, pod: FakePod) -> None:
        self.call(self._start_pod(pod))

    def wait_for(self, cond: Callable[[], bool], timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.02)
        raise AssertionError("condition not met in time")

    def stop(self) -> None:
        if self.worker is not None:
            self.loop.call_soon_threadsafe(self.worker.stop)
            time.sleep(0.3)
        for pod in self.pods:
            self.call(self._stop_pod(pod))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    # clients ---------------------------------------------------------------------------
    def tls_context(self) -> ssl.SSLContext:
        return client_context(self.ca)

    def connect(self, timeout_s: float = 5.0) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)
        return self.tls_context().wrap_socket(raw, server_hostname="localhost")

    def raw(self, data: bytes, timeout_s: float = 5.0) -> bytes:
        """Send bytes on a fresh TLS connection and read until the edge closes or times out."""
        with self.connect(timeout_s) as s:
            s.sendall(data)
            return read_all(s)


def read_all(s: ssl.SSLSocket) -> bytes:
    chunks = []
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except (TimeoutError, ssl.SSLError, ConnectionResetError):
        pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@contextmanager
def running_edge(tmp: Path, pods: list[FakePod], **kw: Any) -> Iterator[EdgeHarness]:
    harness = EdgeHarness(tmp, pods, **kw)
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()
