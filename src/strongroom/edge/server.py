"""The edge's client side: one protocol object per client connection.

Callback style (asyncio.Protocol + llhttp) rather than streams keeps the per-request
cost low: bytes go from llhttp callbacks straight into the upstream or client
transport, and the only coroutine per request is the exchange that picks a pod,
retries and consults the cache. Pipelined requests are answered strictly in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools
import structlog

from strongroom.config import EdgeSettings
from strongroom.edge import http1, problem
from strongroom.edge.balancer import (
    AllUpstreamsSaturated,
    Balancer,
    NoHealthyUpstream,
    Outcome,
    Pod,
)
from strongroom.edge.cache import (
    XCACHE_MISS,
    XCACHE_REVALIDATED,
    CoalescedFetchCancelled,
    Coalescer,
    CoalescingOverflow,
    EdgeCache,
    with_x_cache,
)
from strongroom.edge.compress import choose_encoding, compress, should_compress
from strongroom.edge.guard import (
    DEFER,
    IDENTITY_CLIENT_HEADER,
    IDENTITY_TENANT_HEADER,
    ConnectionGate,
    Gate,
    GateRequest,
    IdentityCache,
    Refusal,
    token_fingerprint,
)
from strongroom.edge.metrics import EdgeMetrics
from strongroom.edge.retry_budget import RetryBudget
from strongroom.edge.upstream import ConnectFailed, UpstreamConnection, UpstreamPool

log = structlog.get_logger("strongroom.edge")

# Request bodies up to this size are read completely before a pod is chosen: the pod
# never waits on a slow client, and the request can be retried on another pod.
REPLAYABLE_BODY_BYTES_MAX = 64 * 1024
# Pipelined requests queued behind the one in flight before we stop reading.
PIPELINE_DEPTH_MAX = 16
# Streamed request bytes held while the pod connection is not writable.
STREAM_BUFFER_BYTES_MAX = 256 * 1024

_NEVER = float("inf")
_UNSET = object()
# Recent requests whose gate time the worker keeps for its /healthz percentiles.
GATE_SAMPLES_MAX = 8192
# How often connection and response deadlines are checked; timeouts fire up to this late.
TIMEOUT_TICK_S = 0.25

_PHRASES = {s.value: s.phrase.encode() for s in HTTPStatus}
_RETRY_STATUSES = frozenset({502, 503})


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _PHRASES.get(status, b"Unknown"))


class _Answered(Exception):
    """A cache fetch whose response went to the leader's client (streamed or an error).

    Coalesced followers receive it too and fetch their own response instead.
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class _Retry(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class Buffered:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


@dataclass
class EdgeState:
    """Everything one edge worker shares across its connections."""

    settings: EdgeSettings
    balancer: Balancer
    pool: UpstreamPool
    retry_budget: RetryBudget
    metrics: EdgeMetrics
    edge_secret: bytes
    cache: EdgeCache | None = None
    coalescer: Coalescer[Buffered] | None = None
    connections: set[ClientConnection] = field(default_factory=set)
    accepting: bool = True
    request_id_prefix: str = field(default_factory=lambda: os.urandom(6).hex())
    request_counter: itertools.count[int] = field(default_factory=itertools.count)
    pass_hints: OrderedDict[object, float] = field(default_factory=OrderedDict)
    # Protections, in the order they run: head gates (blocklist, rate limits) as soon as
    # the headers are in, then body gates (the WAF) on the whole body.
    head_gates: list[Gate] = field(default_factory=list)
    body_gates: list[Gate] = field(default_factory=list)
    connection_gates: list[ConnectionGate] = field(default_factory=list)
    identities: IdentityCache = field(default_factory=IdentityCache)
    # Bodies up to this size are held whole before dispatch so body gates can inspect them.
    inspect_body_bytes_max: int = 0
    # Event-loop time the gates took, per recent request (ns): protection's cost, in /healthz.
    gate_ns: deque[int] = field(default_factory=lambda: deque(maxlen=GATE_SAMPLES_MAX))

    def __post_init__(self) -> None:
        self.private_paths = frozenset(p.encode() for p in self.settings.private_paths)
        self.hsts = b"max-age=%d; includeSubDomains" % self.settings.hsts_max_age_s
        self.gates: list[Gate] = [*self.head_gates, *self.body_gates]

    def set_gates(
        self,
        head: list[Gate],
        body: list[Gate],
        connection: list[ConnectionGate],
        inspect_body_bytes_max: int,
    ) -> None:
        self.head_gates, self.body_gates, self.connection_gates = head, body, connection
        self.gates = [*head, *body]
        self.inspect_body_bytes_max = inspect_body_bytes_max

    def passes(self, key: object) -> bool:
        """Whether `key` is marked hit-for-pass (its last response was not storable)."""
        expiry = self.pass_hints.get(key)
        if expiry is None:
            return False
        if expiry < time.monotonic():
            del self.pass_hints[key]
            return False
        return True

    def mark_pass(self, key: object) -> None:
        hints = self.pass_hints
        hints[key] = time.monotonic() + self.settings.cache.pass_ttl_s
        hints.move_to_end(key)
        if len(hints) > self.settings.cache.pass_keys_max:
            hints.popitem(last=False)

    def new_request_id(self) -> str:
        return f"{self.request_id_prefix}{next(self.request_counter):010x}"


class ClientConnection(asyncio.Protocol):
    """Parses requests from one client and runs them one at a time."""

    def __init__(self, state: EdgeState) -> None:
        self.state = state
        self.limits = state.settings.limits
        self.transport: asyncio.Transport | None = None
        self.client_ip = "0.0.0.0"
        self.parser = httptools.HttpRequestParser(self)
        self.loop = asyncio.get_running_loop()
        self.closing = False
        self.requests_seen = 0
        self.deadline = _NEVER
        self.phase = "idle"
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._parsing: Exchange | None = None
        self._active: Exchange | None = None
        self._pending: deque[Exchange] = deque()
        self._reading_paused = False
        self._writable = True
        self._write_waiters: list[asyncio.Future[None]] = []
        self._gated_connection = False

    # connection lifecycle -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if peer:
            self.client_ip = str(peer[0])
        self.state.metrics.connections_accepted.inc()
        if not self.state.accepting or len(self.state.connections) >= self.limits.connections_max:
            self.state.metrics.rejected.labels(problem.OVERLOADED).inc()
            transport.write(
                problem.problem_response(
                    503,
                    problem.OVERLOADED,
                    "the edge is at its connection limit",
                    self.state.new_request_id(),
                    close=True,
                    retry_after_s=self.state.settings.balancer.retry_after_s,
                )
            )
            transport.close()
            self.closing = True
            return
        self.state.connections.add(self)
        gates = self.state.connection_gates
        for i, gate in enumerate(gates):
            refusal = gate.admit_connection(self.client_ip)
            if refusal is not None:
                for admitted in gates[:i]:
                    admitted.connection_closed(self.client_ip)
                self.state.connections.discard(self)
                self.state.metrics.rejected.labels(refusal.type_id).inc()
                transport.write(refusal_response(refusal, self.state, self.state.new_request_id()))
                transport.close()
                self.closing = True
                return
        self._gated_connection = bool(gates)
        self._arm(self.limits.idle_timeout_s, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.state.connections.discard(self)
        if self._gated_connection:
            self._gated_connection = False
            for gate in self.state.connection_gates:
                gate.connection_closed(self.client_ip)
        self._disarm()
        for waiter in self._write_waiters:
            if not waiter.done():
                waiter.set_result(None)
        if self._active is not None:
            self._active.client_gone()
        for exchange in self._pending:
            exchange.client_gone()
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except http1.FramingError as exc:
            self._refuse(exc.status, exc.type_id, exc.detail)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, http1.FramingError):
                self._refuse(cause.status, cause.type_id, cause.detail)
            else:
                log.exception("edge.parser_callback_failed")
                self._refuse(500, problem.BAD_REQUEST, "internal error while reading request")
        except httptools.HttpParserUpgrade:
            self._refuse(501, problem.NOT_IMPLEMENTED, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self._refuse(400, problem.REQUEST_SMUGGLING, f"malformed HTTP: {exc}")

    def pause_writing(self) -> None:
        self._writable = False
        if self._active is not None:
            self._active.client_backpressure(True)

    def resume_writing(self) -> None:
        self._writable = True
        if self._active is not None:
            self._active.client_backpressure(False)
        waiters, self._write_waiters = self._write_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def shutdown(self) -> None:
        """Graceful stop: idle connections close now, busy ones after their response."""
        self.closing = True
        if self._active is None and self.transport is not None:
            self.transport.close()

    # timers ---------------------------------------------------------------------------
    # Deadlines are plain floats checked by `sweep_timeouts` a few times a second: arming
    # one per request phase costs an attribute write instead of a timer-heap operation.
    def _arm(self, timeout_s: float, phase: str) -> None:
        self.deadline = time.monotonic() + timeout_s
        self.phase = phase

    def _disarm(self) -> None:
        self.deadline = _NEVER

    def _timeout(self, phase: str) -> None:
        self.deadline = _NEVER
        if self.transport is None or self.transport.is_closing():
            return
        if phase == "idle":
            self.transport.close()
            return
        if phase == "body" and self._parsing is not None:
            last = self._parsing.last_body_at
            remaining = last + self.limits.body_read_timeout_s - time.monotonic()
            if remaining > 0:
                self._arm(remaining, "body")
                return
            if self._parsing is self._active and self._parsing.response_started:
                self._parsing.abort("client body stalled")
                return
        self._refuse(408, problem.REQUEST_TIMEOUT, f"client too slow sending the request ({phase})")

    # llhttp callbacks -----------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._header_bytes = 0
        self._arm(self.limits.header_read_timeout_s, "headers")

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.url_bytes_max:
            raise http1.FramingError(414, problem.URI_TOO_LONG, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4
        self._header_bytes += size
        if size > self.limits.header_line_bytes_max:
            raise http1.FramingError(431, problem.HEADERS_TOO_LARGE, "a header line is too long")
        if self._header_bytes > self.limits.header_bytes_max:
            raise http1.FramingError(431, problem.HEADERS_TOO_LARGE, "request headers too large")
        if len(self._headers) >= self.limits.header_count_max:
            raise http1.FramingError(431, problem.HEADERS_TOO_LARGE, "too many request headers")
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        head = http1.validate_request(
            parser.get_method(), self._url, parser.get_http_version(), self._headers
        )
        if head.content_length is not None and head.content_length > self.limits.body_bytes_max:
            raise http1.FramingError(413, problem.BODY_TOO_LARGE, "request body too large")
        path = head.target.split(b"?", 1)[0]
        if path in self.state.private_paths:
            raise http1.FramingError(404, problem.NOT_FOUND, "no such public resource")
        self.requests_seen += 1
        if self.requests_seen >= self.limits.requests_per_connection_max:
            head.keep_alive = False
        exchange = Exchange(self, head)
        self._parsing = exchange
        if head.has_body:
            self._arm(self.limits.body_read_timeout_s, "body")
        else:
            self._disarm()
        if self._active is None:
            self._start(exchange)
        else:
            self._pending.append(exchange)
            if len(self._pending) >= PIPELINE_DEPTH_MAX:
                self.pause_reading()

    def on_body(self, body: bytes) -> None:
        exchange = self._parsing
        if exchange is not None:
            exchange.body_data(body)

    def on_message_complete(self) -> None:
        exchange = self._parsing
        self._parsing = None
        if exchange is not None:
            exchange.body_complete()
        if self._active is None:
            self._arm(self.limits.idle_timeout_s, "idle")
        else:
            self._disarm()

    # flow ---------------------------------------------------------------------------------
    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closing:
            self._reading_paused = False
            self.transport.resume_reading()

    def _start(self, exchange: Exchange) -> None:
        self._active = exchange
        exchange.begin()

    def exchange_done(self, exchange: Exchange) -> None:
        if self._active is not exchange:
            return
        self._active = None
        if self.transport is None or self.transport.is_closing():
            return
        if not exchange.keep_alive or self.closing or not exchange.body_done:
            self.closing = True
            self.transport.close()
            return
        if self._pending:
            self._start(self._pending.popleft())
            if len(self._pending) < PIPELINE_DEPTH_MAX:
                self.resume_reading()
        elif self._parsing is None:
            self._arm(self.limits.idle_timeout_s, "idle")

    def _refuse(self, status: int, type_id: str, detail: str) -> None:
        """Answer an unusable request and close: the rest of the stream can't be trusted."""
        self.state.metrics.rejected.labels(type_id).inc()
        self.closing = True
        self._disarm()
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._active is not None and self._active.response_started:
            # Mid-response: the only honest signal left is to cut the connection.
            self._active.abort(detail)
            return
        if self._active is not None:
            self._active.client_gone()
        self.state.metrics.count_response(status, 0.0)
        transport.write(
            problem.problem_response(
                status,
                type_id,
                detail,
                self.state.new_request_id(),
                close=True,
                extra_headers=[(b"strict-transport-security", self.state.hsts)],
            )
        )
        transport.close()


class Exchange:
    """One request/response through the edge, possibly over several attempts."""

    def __init__(self, client: ClientConnection, head: http1.RequestHead) -> None:
        self.client = client
        self.state = client.state
        self.head = head
        self.started_at = time.monotonic()
        self.last_body_at = self.started_at
        candidate = head.client_request_id
        self.request_id = (
            candidate.decode("ascii")
            if http1.usable_request_id(candidate)
            else self.state.new_request_id()
        )
        self.keep_alive = head.keep_alive
        self.task: asyncio.Task[None] | None = None
        self.response_started = False
        self.finished = False
        # Request body: replayable bodies are buffered whole before dispatch.
        self.replayable = not head.chunked and (head.content_length or 0) <= (
            REPLAYABLE_BODY_BYTES_MAX
        )
        self.body_chunks: list[bytes] = []
        self.body_bytes = 0
        # Gates: the request as they see it, the next gate to run and why we wait.
        self.gate_request: GateRequest | None = None
        self._gate_index = 0
        self._gate_wait = ""
        self._gates_released = False
        self._begin_on_body = False
        self._gate_ns = 0
        self._fingerprint: object = _UNSET
        self._raw_body: list[bytes] | None = None
        if self.state.body_gates and head.has_body:
            inspectable = head.chunked or (head.content_length or 0) <= (
                self.state.inspect_body_bytes_max
            )
            if inspectable:
                # Held whole (and so replayable) until the body gates have seen it.
                self.replayable = True
                if head.chunked:
                    self._raw_body = []
        self.body_done = not head.has_body
        self.body_event: asyncio.Event | None = None
        self.body_sent_upstream = False
        # Current attempt.
        self.conn: UpstreamConnection | None = None
        self.pod: Pod | None = None
        self._head_fut: asyncio.Future[None] | None = None
        self._done_fut: asyncio.Future[None] | None = None
        self._mode = "stream"
        self._want_buffer = False
        self._may_retry_status = False
        self._resp_status = 0
        self._resp_headers: list[tuple[bytes, bytes]] = []
        self._resp_keep_alive = True
        self._resp_chunks: list[bytes] = []
        self._resp_bytes = 0
        self._resp_chunked_out = False
        self._buffer_limit = 0
        self._ran_fetch = False
        self.cache_state = b""
        self.head_deadline = _NEVER
        self._pending_head = b""
        self._head_awaits_body = False
        self._fast = False
        if head.expect_continue and client.transport is not None:
            client.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    # request body from the client ---------------------------------------------------------
    def body_data(self, data: bytes) -> None:
        self.last_body_at = time.monotonic()
        self.body_bytes += len(data)
        if self.body_bytes > self.client.limits.body_bytes_max:
            raise http1.FramingError(413, problem.BODY_TOO_LARGE, "request body too large")
        if self._raw_body is not None:
            if self.body_bytes > self.state.inspect_body_bytes_max:
                self._raw_body = None  # too large to inspect: the body gates see None
            else:
                self._raw_body.append(data)
        framed = b"%x\r\n%s\r\n" % (len(data), data) if self.head.chunked else data
        conn = self.conn
        if self.body_sent_upstream and conn is not None and not conn.closed:
            conn.write(framed)
            if conn.writable is not None and not conn.writable.done():
                self.client.pause_reading()
                conn.writable.add_done_callback(lambda _: self.client.resume_reading())
            return
        self.body_chunks.append(framed)
        if not self.replayable and self.body_bytes > STREAM_BUFFER_BYTES_MAX:
            self.client.pause_reading()

    def body_complete(self) -> None:
        self.body_done = True
        terminator = b"0\r\n\r\n" if self.head.chunked else b""
        conn = self.conn
        if self.body_sent_upstream and conn is not None and not conn.closed:
            if terminator:
                conn.write(terminator)
        elif terminator:
            self.body_chunks.append(terminator)
        if self.body_event is not None:
            self.body_event.set()
        if self._begin_on_body:
            self._begin_on_body = False
            self.begin()

    # lifecycle ---------------------------------------------------------------------------
    def client_gone(self) -> None:
        self._release_gates(0)
        if self.finished:
            return
        if self._fast:
            self._fast = False
            self.finished = True
        self.keep_alive = False
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self._drop_conn()

    def abort(self, reason: str) -> None:
        log.info("edge.exchange_aborted", request_id=self.request_id, reason=reason)
        self.keep_alive = False
        self._drop_conn()
        transport = self.client.transport
        if transport is not None:
            transport.abort()

    def _drop_conn(self) -> None:
        conn = self.conn
        if conn is not None:
            conn.detach()
            conn.abort()
            self.conn = None
        self._release_pod(Outcome.RESET)

    def _release_pod(self, outcome: Outcome) -> None:
        pod = self.pod
        if pod is not None:
            self.pod = None
            self.state.balancer.end(pod, outcome)
            self.state.metrics.count_upstream(outcome)

    def client_backpressure(self, paused: bool) -> None:
        conn = self.conn
        if conn is None or self._mode != "stream":
            return
        if paused:
            conn.pause_reading()
        else:
            conn.resume_reading()

    # Fast path: most requests need no coroutine at all ------------------------------------
    def begin(self) -> None:
        """Start the exchange: synchronously when a pooled connection is at hand."""
        if self.state.gates:
            verdict = self._gates_now()
            if verdict is DEFER:
                if self._gate_wait == "body":
                    # The body is held for inspection: `body_complete` calls begin() again,
                    # so a small body that arrives with its headers keeps the fast path.
                    self._begin_on_body = True
                    return
                self.task = self.client.loop.create_task(self.run())
                return
            if isinstance(verdict, Refusal):
                self._complete(self._refuse(verdict))
                return
        if not self._try_fast():
            self.task = self.client.loop.create_task(self.run())

    # gates ---------------------------------------------------------------------------------
    def _gates_now(self) -> Refusal | object | None:
        """Run the gates that can decide now; DEFER when one waits for the body or I/O.

        The time spent here (on the event loop) is what protection adds to the request:
        kept per request for the worker's /healthz (``EdgeState.gate_ns``).
        """
        started = time.perf_counter_ns()
        try:
            return self._run_gates_now()
        finally:
            self._gate_ns += time.perf_counter_ns() - started

    def _run_gates_now(self) -> Refusal | object | None:
        request = self.gate_request
        if request is None:
            head = self.head
            request = self.gate_request = GateRequest(
                client_ip=self.client.client_ip,
                method=head.method,
                target=head.target,
                headers=head.headers,
                request_id=self.request_id,
                identity=self.state.identities.get(self._token_fingerprint()),
                body=None if head.has_body else b"",
            )
        gates = self.state.gates
        first_body_gate = len(self.state.head_gates)
        while self._gate_index < len(gates):
            index = self._gate_index
            if index >= first_body_gate and request.body is None and self.head.has_body:
                if self.replayable and not self.body_done:
                    self._gate_wait = "body"
                    return DEFER
                request.body = self._held_body()
            verdict = gates[index].check(request)
            if verdict is DEFER:
                self._gate_wait = "io"
                return DEFER
            self._gate_index = index + 1
            if verdict is not None:
                return verdict
        return None

    async def _gates(self) -> Refusal | None:
        """Run the remaining gates, waiting for the body and for I/O where they must."""
        while True:
            verdict = self._gates_now()
            if verdict is None or isinstance(verdict, Refusal):
                return verdict
            if self._gate_wait == "body":
                self.body_event = asyncio.Event()
                await self.body_event.wait()
                continue
            assert self.gate_request is not None
            gate = self.state.gates[self._gate_index]
            self._gate_index += 1
            refusal = await gate.check_async(self.gate_request)
            if refusal is not None:
                return refusal

    def _token_fingerprint(self) -> bytes | None:
        """The request's token digest, computed once (gates read it, responses teach it)."""
        if self._fingerprint is _UNSET:
            self._fingerprint = token_fingerprint(_header(self.head.headers, b"authorization"))
        return cast("bytes | None", self._fingerprint)

    def _held_body(self) -> bytes | None:
        """The whole request body when the edge held it for inspection, else None."""
        if not (self.replayable and self.body_done):
            return None
        if self.head.chunked:
            return b"".join(self._raw_body) if self._raw_body is not None else None
        return b"".join(self.body_chunks)

    def _refuse(self, refusal: Refusal) -> int:
        """Answer with a gate's refusal instead of a pod's response."""
        self.state.metrics.rejected.labels(refusal.type_id).inc()
        transport = self.client.transport
        if self.response_started or transport is None or transport.is_closing():
            return refusal.status
        self.response_started = True
        if refusal.close or not self.body_done or self.client.closing:
            # An unread body would be parsed as the next request: close instead.
            self.keep_alive = False
        transport.write(
            refusal_response(
                refusal,
                self.state,
                self.request_id,
                instance=self.head.target.decode("latin-1"),
                close=not self.keep_alive,
            )
        )
        return refusal.status

    def _release_gates(self, status: int) -> None:
        request = self.gate_request
        if request is None or self._gates_released:
            return
        self._gates_released = True
        self.state.gate_ns.append(self._gate_ns)
        for done in request.on_done:
            done(status)

    def _needs_cache(self) -> bool:
        cache = self.state.cache
        return (
            cache is not None
            and self.head.method in (b"GET", b"HEAD")
            and cache.request_is_cacheable(self.head.method, self.head.headers)
            and not self.state.passes(cache.key_for(self.head.host, self.head.target))
        )

    def _try_fast(self) -> bool:
        """Send the request from this callback if nothing needs to wait.

        Falls back to the coroutine (`run`) for cache lookups, bodies still arriving, new
        upstream connections, retries and every error answer, so those paths exist once.
        """
        if not self.body_done or self._needs_cache():
            return False
        state = self.state
        try:
            pod = state.balancer.pick()
        except (NoHealthyUpstream, AllUpstreamsSaturated):
            return False
        conn = state.pool.take_idle(pod.upstream.name)
        if conn is None:
            return False
        state.retry_budget.record_request()
        state.balancer.begin(pod)
        self.pod = pod
        self._fast = True
        self._send(conn, self._upstream_head(None), 0, False, 1)
        return True

    def _to_slow(self, exclude: set[str]) -> None:
        """Continue a fast exchange in the coroutine (retry on another pod)."""
        self._fast = False
        self.task = self.client.loop.create_task(self.run(exclude=exclude))

    def _fast_finished(self, status: int) -> None:
        self._fast = False
        self._after_response(status)
        self._complete(status)

    def _after_response(self, status: int) -> None:
        cache = self.state.cache
        if cache is not None and self.head.method not in (b"GET", b"HEAD"):
            cache.invalidate_after_unsafe(
                self.head.method, self.head.host, self.head.target, status, self._resp_headers
            )

    def _complete(self, status: int) -> None:
        self.finished = True
        self._release_gates(status)
        if status:
            duration_s = time.monotonic() - self.started_at
            self.state.metrics.count_response(status, duration_s)
            if self.state.settings.access_log:
                self._log_access(status, duration_s)
        self.client.exchange_done(self)

    async def run(self, exclude: set[str] | None = None) -> None:
        status = 0
        try:
            if self.state.gates and self._gate_index < len(self.state.gates):
                refusal = await self._gates()
                if refusal is not None:
                    status = self._refuse(refusal)
                    return
            if exclude is not None:
                # Continuing a fast-path exchange whose first attempt failed.
                status = await self._proxy(buffer_limit=0, exclude=exclude, attempt=1)
                self._after_response(status)
            elif self._needs_cache():
                status = await self._cached()
            else:
                status = await self._proxy(buffer_limit=0)
                self._after_response(status)
        except asyncio.CancelledError:
            self.keep_alive = False
            self._drop_conn()
        except Exception:
            log.exception("edge.exchange_failed", request_id=self.request_id)
            self._drop_conn()
            status = self._fail(502, problem.BAD_GATEWAY, "the edge failed to proxy the request")
        finally:
            self._complete(status)

    def _log_access(self, status: int, duration_s: float) -> None:
        log.info(
            "edge.access",
            request_id=self.request_id,
            client_ip=self.client.client_ip,
            method=self.head.method.decode("ascii", "replace"),
            path=self.head.target.split(b"?", 1)[0].decode("latin-1"),
            status=status,
            duration_ms=round(duration_s * 1000, 3),
            cache=self.cache_state.decode() or None,
        )

    # caching -----------------------------------------------------------------------------------
    async def _cached(self) -> int:
        cache = self.state.cache
        assert cache is not None
        method = self.head.method
        lookup = cache.lookup(method, self.head.target, self.head.host, self.head.headers)
        state_name = lookup.state.name
        self.state.metrics.cache_result[state_name].inc()
        if state_name == "FRESH" and lookup.response is not None:
            return self._serve_cached(
                cache.serve(lookup.response, self.head.headers, method=method)
            )
        if state_name == "MISS" and lookup.only_if_cached:
            # RFC 9111 §5.2.1.7: nothing stored and the client forbids contacting a pod.
            return self._fail(504, problem.GATEWAY_TIMEOUT, "not in the edge cache")
        extra: list[tuple[bytes, bytes]] = []
        if state_name == "STALE" and lookup.response is not None:
            extra = list(lookup.conditional_headers)
        request_time = time.time()
        try:
            if extra:
                result = await self._fetch(extra)
            else:
                assert self.state.coalescer is not None
                result = await self.state.coalescer.run(
                    lookup.key,
                    lambda: self._fetch(extra),
                    shareable=lambda r: cache.response_is_shareable(
                        self.head.headers, r.status, r.headers
                    ),
                )
        except CoalescingOverflow:
            return self._fail(
                503,
                problem.OVERLOADED,
                "too many requests wait for this resource",
                retry_after=True,
            )
        except CoalescedFetchCancelled:
            return await self._proxy(buffer_limit=0)
        except _Answered as answered:
            if self._ran_fetch:
                if self.response_started and self._mode == "stream":
                    self.state.mark_pass(lookup.key)  # too large to buffer
                return answered.status
            # The leader's response could not be shared (too large, an error): fetch our own.
            return await self._proxy(buffer_limit=0)
        if result.status == 304 and extra:
            fresh = cache.freshen(
                lookup.key, self.head.headers, result.headers, request_time=request_time
            )
            if fresh is not None:
                return self._serve_cached(
                    cache.serve(fresh, self.head.headers, method=method, x_cache=XCACHE_REVALIDATED)
                )
        if cache.store(
            lookup.key,
            self.head.headers,
            result.status,
            result.headers,
            result.body,
            method=method,
            request_time=request_time,
        ):
            stored = cache.lookup(method, self.head.target, self.head.host, self.head.headers)
            if stored.response is not None:
                return self._serve_cached(
                    cache.serve(
                        stored.response, self.head.headers, method=method, x_cache=XCACHE_MISS
                    )
                )
        if self._ran_fetch:
            self.state.mark_pass(lookup.key)
        return self._write_buffered(
            Buffered(result.status, with_x_cache(result.headers, XCACHE_MISS), result.body)
        )

    def _serve_cached(self, served: tuple[int, list[tuple[bytes, bytes]], bytes]) -> int:
        """Write a response the cache built (it negotiated encoding and set x-cache)."""
        status, headers, body = served
        transport = self.client.transport
        self.response_started = True
        if transport is None:
            return status
        length = _header(headers, b"content-length")
        framing = b"content-length: %s\r\n" % length if length is not None else b""
        self.cache_state = _header(headers, b"x-cache") or b""
        transport.write(self._response_head(status, headers, framing) + body)
        return status

    async def _fetch(self, extra: list[tuple[bytes, bytes]]) -> Buffered:
        """Fetch a whole response for the cache; a coalesced follower re-runs it itself."""
        limit = self.state.settings.cache.object_bytes_max if self.state.cache else 0
        self._ran_fetch = True
        status = await self._proxy(buffer_limit=limit, extra_headers=extra, for_cache=True)
        if self._mode == "buffered-done":
            return Buffered(self._resp_status, self._resp_headers, b"".join(self._resp_chunks))
        raise _Answered(status)

    # proxying ---------------------------------------------------------------------------------
    async def _proxy(
        self,
        *,
        buffer_limit: int,
        extra_headers: list[tuple[bytes, bytes]] | None = None,
        for_cache: bool = False,
        exclude: set[str] | None = None,
        attempt: int = 0,
    ) -> int:
        state = self.state
        settings = state.settings.balancer
        if exclude is None:
            state.retry_budget.record_request()
            exclude = set()
        if self.replayable and not self.body_done:
            self.body_event = asyncio.Event()
            await self.body_event.wait()
        head_bytes = self._upstream_head(extra_headers)
        while True:
            attempt += 1
            try:
                pod = state.balancer.pick(exclude)
            except NoHealthyUpstream:
                return self._fail(
                    503,
                    problem.NO_HEALTHY_UPSTREAM,
                    "no healthy pod can serve this request now",
                    retry_after=True,
                )
            except AllUpstreamsSaturated:
                return self._fail(
                    503,
                    problem.UPSTREAM_SATURATED,
                    "every pod is at its concurrency limit",
                    retry_after=True,
                )
            state.balancer.begin(pod)
            self.pod = pod
            try:
                conn, _reused = await state.pool.acquire(pod.upstream)
            except ConnectFailed:
                self._release_pod(Outcome.CONNECT_FAILURE)
                exclude.add(pod.upstream.name)
                if attempt < settings.attempts_max:
                    # Nothing was sent: retrying is always safe.
                    state.metrics.retries.labels("connect_failure").inc()
                    continue
                return self._fail(502, problem.BAD_GATEWAY, "no pod accepted the connection")
            try:
                status = await self._attempt(conn, head_bytes, buffer_limit, for_cache, attempt)
            except _Retry as retry:
                exclude.add(pod.upstream.name)
                if retry.reason == "timeout":
                    # A slow pod is not helped by more load: answer instead of retrying.
                    return self._fail(
                        504, problem.GATEWAY_TIMEOUT, "the pod did not answer in time"
                    )
                if retry.reason.startswith("status_") or (
                    attempt < settings.attempts_max and self._can_retry()
                ):
                    state.metrics.retries.labels(retry.reason).inc()
                    continue
                return self._fail(502, problem.BAD_GATEWAY, "the pod failed to answer")
            return status

    def _can_retry(self) -> bool:
        if not (self.head.retryable and self.replayable) or self.response_started:
            return False
        if not self.state.retry_budget.try_acquire_retry():
            self.state.metrics.retry_budget_exhausted.inc()
            return False
        return True

    async def _attempt(
        self,
        conn: UpstreamConnection,
        head_bytes: bytes,
        buffer_limit: int,
        for_cache: bool,
        attempt: int,
    ) -> int:
        loop = self.client.loop
        self._head_fut = loop.create_future()
        self._done_fut = loop.create_future()
        self._send(conn, head_bytes, buffer_limit, for_cache, attempt)
        try:
            await self._head_fut
        finally:
            self.head_deadline = _NEVER
        if self._mode == "discarded":
            raise _Retry(f"status_{self._resp_status}")
        await self._done_fut
        return self._attempt_done(conn, for_cache)

    def _send(
        self,
        conn: UpstreamConnection,
        head_bytes: bytes,
        buffer_limit: int,
        for_cache: bool,
        attempt: int,
    ) -> None:
        self.conn = conn
        self._mode = "wait-head"
        self._pending_head = b""
        self._resp_status = 0
        self._resp_chunks = []
        self._resp_bytes = 0
        self._buffer_limit = buffer_limit
        self._want_buffer = for_cache
        self._may_retry_status = attempt < self.state.settings.balancer.attempts_max
        if self.body_chunks:
            head_bytes += b"".join(self.body_chunks)
            if not self.replayable:
                self.body_chunks = []
        conn.start(self, head_bytes, head_request=self.head.method == b"HEAD")
        self.body_sent_upstream = True
        if not self.replayable:
            self.client.resume_reading()
        self.head_deadline = time.monotonic() + self.state.settings.balancer.response_timeout_s

    def _attempt_done(self, conn: UpstreamConnection, for_cache: bool) -> int:
        """Return the connection and the pod after a complete response."""
        self.conn = None
        if self._resp_keep_alive and self.body_done:
            self.state.pool.release(conn)
        else:
            conn.close()
        self._release_pod(Outcome.HTTP_5XX if self._resp_status >= 500 else Outcome.SUCCESS)
        if self._mode == "buffered":
            self._mode = "buffered-done"
            if for_cache:
                return self._resp_status
            return self._write_buffered(
                Buffered(self._resp_status, self._resp_headers, b"".join(self._resp_chunks))
            )
        return self._resp_status

    def head_timeout(self) -> None:
        self.head_deadline = _NEVER
        if self._fast:
            self._drop_conn_for_retry(Outcome.TIMEOUT)
            self._fast_finished(
                self._fail(504, problem.GATEWAY_TIMEOUT, "the pod did not answer in time")
            )
            return
        fut = self._head_fut
        if fut is not None and not fut.done():
            fut.set_exception(_Retry("timeout"))
            self._drop_conn_for_retry(Outcome.TIMEOUT)

    def _drop_conn_for_retry(self, outcome: Outcome) -> None:
        conn = self.conn
        self.conn = None
        if conn is not None:
            conn.detach()
            conn.abort()
        self._release_pod(outcome)

    # ResponseSink (called from the upstream connection's callbacks) -------------------------
    def on_response_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        self._resp_status = status
        self._resp_headers = headers = self._learn_identity(headers)
        self._resp_keep_alive = keep_alive
        head_fut = self._head_fut
        self.head_deadline = _NEVER
        if status in _RETRY_STATUSES and self._may_retry_status and self._can_retry():
            self._mode = "discarded"
            failed = self.pod.upstream.name if self.pod is not None else ""
            self._drop_conn_for_retry(Outcome.HTTP_5XX)
            self.state.metrics.retries.labels(f"status_{status}").inc()
            if self._fast:
                self._to_slow({failed})
                return
            if head_fut is not None and not head_fut.done():
                head_fut.set_result(None)
            return
        content_length = _content_length(headers)
        if self._want_buffer and (content_length is None or content_length <= self._buffer_limit):
            self._mode = "buffered"
        elif (
            self.head.method != b"HEAD"
            and self.state.cache is not None
            and self.state.settings.cache.compression
            and content_length is not None
            and choose_encoding(_header(self.head.headers, b"accept-encoding")) is not None
            and should_compress(status, headers, content_length, self.state.settings.cache)
        ):
            self._mode = "buffered"
            self._buffer_limit = self.state.settings.cache.compression_bytes_max
        else:
            self._start_stream(content_length)
        if head_fut is not None and not head_fut.done():
            head_fut.set_result(None)

    def on_response_body(self, data: bytes) -> None:
        if self._mode == "buffered":
            self._resp_bytes += len(data)
            self._resp_chunks.append(data)
            if self._resp_bytes > self._buffer_limit:
                # Too large to hold: stream what we have and the rest.
                pending = b"".join(self._resp_chunks)
                self._resp_chunks = []
                self._start_stream(None)
                self._stream_body(pending)
            return
        if self._mode == "stream":
            self._stream_body(data)

    def on_response_complete(self) -> None:
        if self._mode == "stream":
            if self._resp_chunked_out:
                self._stream_body_end()
            else:
                self.flush_head(final=True)
        if self._fast:
            conn = self.conn
            if conn is not None:
                self._fast_finished(self._attempt_done(conn, False))
            return
        done = self._done_fut
        if done is not None and not done.done():
            done.set_result(None)

    def on_upstream_lost(self, exc: BaseException | None) -> None:
        self.conn = None
        self.head_deadline = _NEVER
        if self._fast:
            failed = self.pod.upstream.name if self.pod is not None else ""
            self._release_pod(Outcome.RESET)
            if not self.response_started:
                if self._can_retry():
                    self.state.metrics.retries.labels("reset").inc()
                    self._to_slow({failed})
                else:
                    self._fast_finished(
                        self._fail(502, problem.BAD_GATEWAY, "the pod failed to answer")
                    )
                return
            self.keep_alive = False
            transport = self.client.transport
            if transport is not None:
                transport.abort()
            self._fast_finished(self._resp_status)
            return
        head_fut = self._head_fut
        if head_fut is not None and not head_fut.done():
            self._release_pod(Outcome.RESET)
            head_fut.set_exception(_Retry("reset"))
            return
        done = self._done_fut
        if done is not None and not done.done():
            # Part of the response is already with the client: cut it so the client
            # sees a truncated response rather than a wrong one.
            self._release_pod(Outcome.RESET)
            self.keep_alive = False
            transport = self.client.transport
            if self.response_started and transport is not None:
                transport.abort()
            done.set_exception(_Retry("reset"))

    def _learn_identity(self, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        """Take the pod's verified client/tenant headers off the response and remember them."""
        client = tenant = None
        for name, value in headers:
            if name == IDENTITY_CLIENT_HEADER:
                client = value
            elif name == IDENTITY_TENANT_HEADER:
                tenant = value
        if client is None and tenant is None:
            return headers
        if client is not None:
            self.state.identities.learn(
                self._token_fingerprint(),
                client.decode("latin-1"),
                tenant.decode("latin-1") if tenant is not None else None,
            )
        return [
            (name, value)
            for name, value in headers
            if name not in (IDENTITY_CLIENT_HEADER, IDENTITY_TENANT_HEADER)
        ]

    # writing to the client ------------------------------------------------------------
    def _response_head(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        framing: bytes,
    ) -> bytes:
        parts = [_status_line(status)]
        hop_by_hop = http1.RESPONSE_HOP_BY_HOP
        for name, value in headers:
            if name not in hop_by_hop:
                parts += (name, b": ", value, b"\r\n")
        parts.append(framing)
        parts.append(b"x-request-id: %s\r\n" % self.request_id.encode())
        parts.append(b"strict-transport-security: %s\r\n" % self.state.hsts)
        gated = self.gate_request
        if gated is not None:
            for name, value in gated.response_headers:
                parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive or self.client.closing:
            self.keep_alive = False
            parts.append(b"connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _start_stream(self, content_length: int | None) -> None:
        self._mode = "stream"
        status = self._resp_status
        no_body = self.head.method == b"HEAD" or status in (204, 304) or status < 200
        # A head whose body is due is held until body bytes arrive: a pod that dies in
        # between (uvicorn writes head and body separately) leaves nothing with the client,
        # so the request can still be retried on another pod instead of being cut.
        self._head_awaits_body = bool(content_length) and not no_body
        if content_length is not None:
            framing = b"content-length: %d\r\n" % content_length
            self._resp_chunked_out = False
        elif no_body:
            framing = b""
            self._resp_chunked_out = False
        elif self.head.version == "1.1":
            framing = b"transfer-encoding: chunked\r\n"
            self._resp_chunked_out = True
        else:
            framing = b""
            self.keep_alive = False
            self._resp_chunked_out = False
        # Held back so the head and the first body bytes leave in one write (one TLS
        # record); `flush_head` sends it if no body arrives with this read.
        self._pending_head = self._response_head(status, self._resp_headers, framing)

    def _stream_body(self, data: bytes) -> None:
        transport = self.client.transport
        if transport is None or not data:
            return
        if self._resp_chunked_out:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        if self._pending_head:
            data = self._pending_head + data
            self._pending_head = b""
        self.response_started = True
        transport.write(data)

    def _stream_body_end(self) -> None:
        self.response_started = True
        transport = self.client.transport
        if transport is not None:
            transport.write(self._pending_head + b"0\r\n\r\n")
        self._pending_head = b""

    def flush_head(self, *, final: bool = False) -> None:
        """End of one upstream read (or of the response): send a held-back response head,
        unless its body is still due (see ``_start_stream``)."""
        if self._pending_head and (final or not self._head_awaits_body):
            self.response_started = True
            transport = self.client.transport
            if transport is not None:
                transport.write(self._pending_head)
            self._pending_head = b""

    def _write_buffered(self, response: Buffered) -> int:
        transport = self.client.transport
        if transport is None:
            return response.status
        headers = response.headers
        body = response.body
        cache = self.state.cache
        if cache is not None and self.state.settings.cache.compression and body:
            encoding = choose_encoding(_header(self.head.headers, b"accept-encoding"))
            if encoding is not None and should_compress(
                response.status, headers, len(body), self.state.settings.cache
            ):
                body = compress(body, encoding, self.state.settings.cache)
                headers = _with_encoding(headers, encoding)
        self.response_started = True
        if self.head.method == b"HEAD" or response.status in (204, 304):
            framing = (
                b"content-length: %d\r\n" % len(body) if response.status not in (204, 304) else b""
            )
            transport.write(self._response_head(response.status, headers, framing))
        else:
            framing = b"content-length: %d\r\n" % len(body)
            transport.write(self._response_head(response.status, headers, framing) + body)
        return response.status

    def _fail(self, status: int, type_id: str, detail: str, *, retry_after: bool = False) -> int:
        self.state.metrics.rejected.labels(type_id).inc()
        transport = self.client.transport
        if self.response_started or transport is None or transport.is_closing():
            return status
        self.response_started = True
        extra = [(b"strict-transport-security", self.state.hsts)]
        if not self.keep_alive or self.client.closing:
            self.keep_alive = False
        transport.write(
            problem.problem_response(
                status,
                type_id,
                detail,
                self.request_id,
                instance=self.head.target.decode("latin-1"),
                close=not self.keep_alive,
                retry_after_s=self.state.settings.balancer.retry_after_s if retry_after else None,
                extra_headers=extra,
            )
        )
        return status

    def _upstream_head(self, extra: list[tuple[bytes, bytes]] | None) -> bytes:
        head = self.head
        tokens = head.connection_tokens
        parts = [head.method, b" ", head.target, b" HTTP/1.1\r\n"]
        hop_by_hop = http1.HOP_BY_HOP
        for name, value in head.headers:
            if name in hop_by_hop or (tokens and name in tokens):
                continue
            if extra and name in (b"if-none-match", b"if-modified-since"):
                continue
            parts += (name, b": ", value, b"\r\n")
        for name, value in extra or ():
            parts.append(b"%s: %s\r\n" % (name, value))
        ip = self.client.client_ip
        parts.append(
            b"x-request-id: %s\r\nx-forwarded-for: %s\r\nx-forwarded-proto: https\r\n"
            b"forwarded: %s\r\nx-strongroom-edge: %s\r\n"
            % (
                self.request_id.encode(),
                ip.encode(),
                http1.forwarded_for(ip),
                self.state.edge_secret,
            )
        )
        if head.chunked:
            parts.append(b"transfer-encoding: chunked\r\n")
        elif head.content_length is not None:
            parts.append(b"content-length: %d\r\n" % head.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)


def refusal_response(
    refusal: Refusal,
    state: EdgeState,
    request_id: str,
    *,
    instance: str = "",
    close: bool = True,
) -> bytes:
    """A gate's refusal as a complete problem+json response."""
    return problem.problem_response(
        refusal.status,
        refusal.type_id,
        refusal.detail,
        request_id,
        instance=instance,
        close=close,
        retry_after_s=refusal.retry_after_s,
        extra_headers=[(b"strict-transport-security", state.hsts), *refusal.headers],
        extensions={"event_id": refusal.event_id} if refusal.event_id else None,
    )


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    value = _header(headers, b"content-length")
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return int(value)
    return None


def _with_encoding(
    headers: list[tuple[bytes, bytes]], encoding: bytes
) -> list[tuple[bytes, bytes]]:
    out = [(n, v) for n, v in headers if n not in (b"content-length", b"etag", b"vary")]
    out.append((b"content-encoding", encoding))
    vary = [v for n, v in headers if n == b"vary"]
    out.append((b"vary", b", ".join([*vary, b"accept-encoding"]) if vary else b"accept-encoding"))
    etag = _header(headers, b"etag")
    if etag is not None:
        # The compressed bytes differ from the identity ones: keep validators distinct.
        tag = etag[2:] if etag.startswith(b"W/") else etag
        out.append((b"etag", b'W/"' + tag.strip(b'"') + b"-" + encoding + b'"'))
    return out


def sweep_timeouts(state: EdgeState) -> None:
    """Fire every connection and response deadline that has passed."""
    now = time.monotonic()
    for conn in list(state.connections):
        if conn.deadline <= now:
            conn._timeout(conn.phase)
        exchange = conn._active
        if exchange is not None and exchange.head_deadline <= now:
            exchange.head_timeout()
