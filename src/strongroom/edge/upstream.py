"""Keep-alive connections from the edge to pods, and the per-pod pool.

A connection parses one response at a time with a fresh llhttp parser (so a HEAD
response, which has no body whatever its Content-Length says, never confuses the
next one). Events go to a ``ResponseSink``: the proxy decides per response whether
to stream or buffer. A connection that saw EOF or an error is never reused.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Protocol, cast

import httptools

from strongroom.config import BalancerSettings
from strongroom.edge.balancer import Upstream


class ResponseSink(Protocol):
    def on_response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None: ...

    def on_response_body(self, data: bytes) -> None: ...

    def on_response_complete(self) -> None: ...

    def on_upstream_lost(self, exc: BaseException | None) -> None: ...

    def flush_head(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a pod, carrying one request at a time."""

    __slots__ = (
        "_headers",
        "_parser",
        "_sink",
        "_skip_body",
        "_status",
        "closed",
        "idle_since",
        "pod_name",
        "transport",
        "uses",
        "writable",
    )

    def __init__(self, pod_name: str) -> None:
        self.pod_name = pod_name
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.uses = 0
        self.idle_since = 0.0
        self.writable: asyncio.Future[None] | None = None
        self._sink: ResponseSink | None = None
        self._parser: httptools.HttpResponseParser | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._status = 0
        self._skip_body = False

    # asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        if parser is None:
            # Bytes with no request outstanding: the pod is confused; never reuse.
            self.close()
            return
        sink = self._sink
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            return
        if sink is not None:
            sink.flush_head()

    def eof_received(self) -> bool:
        self.closed = True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        if self._sink is not None:
            self._fail(exc)

    def pause_writing(self) -> None:
        if self.writable is None or self.writable.done():
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    # llhttp callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # Interim responses are consumed here; the final one follows.
            self._headers = []
            return
        self._status = status
        sink = self._sink
        if sink is not None:
            sink.on_response_head(status, self._headers, self._parser.should_keep_alive())
            if self._skip_body:
                self._complete()

    def on_body(self, body: bytes) -> None:
        if self._sink is not None and not self._skip_body:
            self._sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if self._status and not self._skip_body:
            self._complete()

    # proxy side ----------------------------------------------------------------------
    def start(self, sink: ResponseSink, head: bytes, *, head_request: bool) -> None:
        """Send a request head (and any body the caller writes next)."""
        assert self.transport is not None
        self.uses += 1
        self._sink = sink
        self._headers = []
        self._status = 0
        self._skip_body = head_request
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def detach(self) -> None:
        """Stop delivering events to the current sink (the proxy gave up on it)."""
        self._sink = None
        self._parser = None

    def _complete(self) -> None:
        sink = self._sink
        self._sink = None
        self._parser = None
        if self._skip_body:
            # The HEAD response's framing told us nothing about what follows.
            self._skip_body = False
        if sink is not None:
            sink.on_response_complete()

    def _fail(self, exc: BaseException | None) -> None:
        sink = self._sink
        self._sink = None
        self._parser = None
        self.abort()
        if sink is not None:
            sink.on_upstream_lost(exc)


class ConnectFailed(Exception):
    """The pod could not be reached; nothing was sent, so any request may be retried."""


class UpstreamPool:
    """Idle keep-alive connections per pod, most recently used first."""

    def __init__(self, settings: BalancerSettings) -> None:
        self._settings = settings
        self._idle: dict[str, deque[UpstreamConnection]] = {}
        self.connects = 0

    async def acquire(self, upstream: Upstream) -> tuple[UpstreamConnection, bool]:
        """A ready connection and whether it was reused from the pool."""
        idle = self._idle.get(upstream.name)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn, True
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._settings.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(upstream.name), upstream.host, upstream.port
                )
        except (OSError, TimeoutError) as exc:
            raise ConnectFailed(f"{upstream.name}: {exc!r}") from exc
        self.connects += 1
        return protocol, False

    def take_idle(self, name: str) -> UpstreamConnection | None:
        """A pooled connection to pod `name` without waiting, or None."""
        idle = self._idle.get(name)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def release(self, conn: UpstreamConnection) -> None:
        if conn.closed:
            return
        idle = self._idle.setdefault(conn.pod_name, deque())
        if len(idle) >= self._settings.pool_idle_per_pod_max:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def drop_pod(self, name: str) -> None:
        for conn in self._idle.pop(name, ()):
            conn.close()

    def idle_count(self) -> int:
        return sum(len(q) for q in self._idle.values())

    def sweep(self) -> None:
        """Close connections idle longer than the pod's own keep-alive would allow."""
        deadline = time.monotonic() - self._settings.pool_idle_timeout_s
        for idle in self._idle.values():
            while idle and (idle[0].closed or idle[0].idle_since < deadline):
                idle.popleft().close()

    def close(self) -> None:
        for name in list(self._idle):
            self.drop_pod(name)
