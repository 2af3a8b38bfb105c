"""The pod's one ASGI middleware: identity, limits, metrics, tracing and draining per request.

Pure ASGI (no ``BaseHTTPMiddleware``) because it runs on every request: one pass over
the headers, no extra task, no body buffering. It sits inside Starlette's outermost
error middleware, so it renders 500s itself; that way even a crash gets an
``X-Request-Id`` header, a metric sample and a problem+json body.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from opentelemetry import trace
from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.api import problems
from strongroom.api.fast_path import FastPath
from strongroom.api.lifecycle import PodState
from strongroom.api.request_context import (
    IDENTITY_CLIENT_HEADER,
    IDENTITY_TENANT_HEADER,
    PRINCIPAL_SCOPE_KEY,
    SCOPE_KEY,
    RequestContext,
    resolve_request_context,
)
from strongroom.observe.metrics import UNMATCHED_ROUTE, HttpMetrics
from strongroom.observe.tracing import server_span

log = structlog.get_logger("strongroom.api")

_CONNECTION_CLOSE = (b"connection", b"close")


def route_label(scope: Scope) -> str:
    """The matched route's full template (``/v1/accounts/{id}``), never the raw path.

    FastAPI leaves the route object of the included router in ``scope["route"]``, whose
    path lacks the include prefix; the full template is on its effective-route record.
    Fall back to the route's own path if a FastAPI upgrade moves that record (a test
    pins the full template, so the fallback cannot go unnoticed).
    """
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        path = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
        if isinstance(path, str):
            return path
    path = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class PodMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        state: PodState,
        metrics: HttpMetrics,
        edge_proof_failures: Counter,
        edge_secret: bytes,
        body_bytes_max: int,
        tracer: trace.Tracer | None = None,
        fast_path: FastPath | None = None,
    ) -> None:
        self.app = app
        self.fast_path = fast_path
        self.state = state
        self.metrics = metrics
        self.edge_proof_failures = edge_proof_failures
        self.edge_secret = edge_secret
        self.body_bytes_max = body_bytes_max
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        context = resolve_request_context(scope["headers"], scope.get("client"), self.edge_secret)
        if not context.from_edge and _has_edge_proof(scope):
            self.edge_proof_failures.inc()
        scope[SCOPE_KEY] = context
        if context.from_edge:
            # Make request.client / request.url.scheme tell the truth for every route.
            scope["client"] = (context.client_host, context.client_port)
            if context.forwarded_proto is not None:
                scope["scheme"] = context.forwarded_proto
        tokens = structlog.contextvars.bind_contextvars(request_id=context.request_id)
        request_id_header = (b"x-request-id", context.request_id.encode())
        status = 500
        response_started = False
        state = self.state

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append(request_id_header)
                principal = scope.get(PRINCIPAL_SCOPE_KEY)
                if principal is not None and context.from_edge:
                    client_id, tenant = principal
                    headers.append((IDENTITY_CLIENT_HEADER, client_id.encode()))
                    if tenant:
                        headers.append((IDENTITY_TENANT_HEADER, str(tenant).encode()))
                if (state.draining or status == 413) and not any(
                    name == b"connection" for name, _ in headers
                ):
                    # 413: the unread rest of the body would otherwise be parsed as
                    # the next request on this connection.
                    headers.append(_CONNECTION_CLOSE)
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            if self.tracer is None:
                await self._dispatch(scope, receive, send_with_headers, context)
            else:
                await self._dispatch_traced(scope, receive, send_with_headers, context)
        except Exception:
            log.exception("request failed", path=scope["path"], method=scope["method"])
            if response_started:
                raise
            await self._send_problem(
                send_with_headers,
                scope,
                context,
                problems.INTERNAL_ERROR,
                "The request failed; quote the request id.",
            )
        finally:
            self.metrics.in_flight.dec()
            self.metrics.observe(
                route_label(scope), scope["method"], status, time.perf_counter() - started_at
            )
            structlog.contextvars.reset_contextvars(**tokens)

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> None:
        declared = _content_length(scope)
        if declared is not None and declared > self.body_bytes_max:
            await self._send_problem(
                send, scope, context, problems.BODY_TOO_LARGE, self._too_large()
            )
            return
        fast = None if self.fast_path is None else self.fast_path.find(scope)
        if fast is None:
            await self.app(scope, self._limited(receive), send)
            return
        assert self.fast_path is not None
        await self.fast_path.handle(fast, scope, self._limited(receive), send, self.app)

    async def _dispatch_traced(
        self, scope: Scope, receive: Receive, send: Send, context: RequestContext
    ) -> None:
        assert self.tracer is not None
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
        }
        method: str = scope["method"]
        with server_span(self.tracer, method, scope["path"], headers) as span:
            span.set_attribute("strongroom.request_id", context.request_id)
            status_box: list[int] = []

            async def send_recording(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status_box.append(message["status"])
                await send(message)

            await self._dispatch(scope, receive, send_recording, context)
            route = route_label(scope)
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
            if status_box:
                span.set_attribute("http.response.status_code", status_box[0])
                if status_box[0] >= 500:
                    span.set_status(trace.StatusCode.ERROR)

    def _too_large(self) -> str:
        return f"The request body exceeds {self.body_bytes_max} bytes."

    def _limited(self, receive: Receive) -> Receive:
        """Count body bytes as the app reads them (covers chunked bodies without a length)."""
        limit = self.body_bytes_max
        received = 0
        detail = self._too_large()

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise problems.ProblemError("body-too-large", detail)
            return message

        return receive_limited

    async def _send_problem(
        self,
        send: Send,
        scope: Scope,
        context: RequestContext,
        problem: problems.ProblemType,
        detail: str,
    ) -> None:
        body = problems.encode_problem(
            problems.problem_body(
                problem, detail=detail, instance=scope["path"], request_id=context.request_id
            )
        )
        start: dict[str, Any] = {
            "type": "http.response.start",
            "status": problem.status,
            "headers": [
                (b"content-type", problems.PROBLEM_MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})


def _has_edge_proof(scope: Scope) -> bool:
    return any(name == b"x-strongroom-edge" for name, _ in scope["headers"])
