"""The money-moving POSTs without FastAPI's per-request machinery.

``POST /v1/transfers`` is the platform's hottest route, and FastAPI's middleware layers,
route scan and dependency solving were about a fifth of a pod's CPU per transfer
(bench/ledger.py). For the routes listed here the pod middleware calls the route's own
endpoint itself, with the authorization dependency read off the route (so the scope
cannot drift from what the OpenAPI document and the route test see), the same body
model and the app's own exception handlers.

Only a JSON object that the body model accepts takes this path. Anything else —
malformed JSON, a wrong type, another content type, an empty body — is handed to
FastAPI with the body replayed, so every refusal is FastAPI's own answer, byte for byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strongroom.api.authz import Principal, declared_scope
from strongroom.api.ledger_transfers_routes import (
    JournalEntryCreate,
    TransferCreate,
    create_journal_entry,
    create_transfer,
)

Endpoint = Callable[[Any, Request, Response, Principal], Awaitable[Response]]
Authorize = Callable[[Request, Response], Awaitable[Principal]]

# (method, path) → (body model, endpoint): each endpoint takes (body, request, response,
# principal) and is also registered as a FastAPI route, which documents it.
ROUTES: dict[tuple[str, str], tuple[type[BaseModel], Endpoint]] = {
    ("POST", "/v1/transfers"): (TransferCreate, create_transfer),
    ("POST", "/v1/journal-entries"): (JournalEntryCreate, create_journal_entry),
}


@dataclass(frozen=True)
class FastRoute:
    route: APIRoute
    model: type[BaseModel]
    endpoint: Endpoint
    authorize: Authorize


def fast_routes(app: FastAPI) -> dict[tuple[str, str], FastRoute]:
    """Each listed endpoint's registered route and its one authorization dependency."""
    found: dict[tuple[str, str], FastRoute] = {}
    for (method, path), (model, endpoint) in ROUTES.items():
        routes = [
            r
            for r in app.routes
            if isinstance(r, APIRoute)
            and r.path == path
            and method in (r.methods or ())
            and r.endpoint is endpoint
        ]
        if len(routes) != 1:
            raise LookupError(f"{method} {path}: {len(routes)} registered routes, not 1")
        route = routes[0]
        checks = [d.call for d in route.dependant.dependencies if declared_scope(d.call)]
        if len(checks) != 1:
            raise LookupError(f"{method} {path}: {len(checks)} authorization dependencies")
        found[(method, path)] = FastRoute(route, model, endpoint, checks[0])  # type: ignore[arg-type]
    return found


def _json_content_type(headers: list[tuple[bytes, bytes]]) -> bool:
    """True when FastAPI would parse the body as JSON: ``application/json`` or
    ``application/*+json``, parameters ignored (no content type: its strict default
    leaves the body unparsed)."""
    for name, value in headers:
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            )
    return False


class FastPath:
    """Serves :data:`ROUTES`; built on first use, once the app's routes exist."""

    def __init__(self, app: FastAPI) -> None:
        self._app = app
        self._routes: dict[tuple[str, str], FastRoute] | None = None

    def find(self, scope: Scope) -> FastRoute | None:
        routes = self._routes
        if routes is None:
            routes = self._routes = fast_routes(self._app)
        return routes.get((scope["method"], scope["path"]))

    async def handle(
        self, fast: FastRoute, scope: Scope, receive: Receive, send: Send, fallback: ASGIApp
    ) -> None:
        try:
            body = await _read_body(receive)
        except Exception as exc:  # the body outgrew the pod's limit while read
            handler = self._handler(exc)
            if handler is None:
                raise
            await (await handler(Request(scope, receive, send), exc))(scope, receive, send)
            return
        if body is None:
            return  # the client left before its body arrived: nothing to answer
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        model = _parsed(fast.model, body) if _json_content_type(scope["headers"]) else None
        if model is None:
            await fallback(scope, replay, send)
            return
        scope["route"] = fast.route  # the metrics' route label
        request = Request(scope, replay, send)
        sub_response = Response()  # headers set by dependencies (the DPoP nonce)
        try:
            principal = await fast.authorize(request, sub_response)
            response = await fast.endpoint(model, request, sub_response, principal)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise  # the pod middleware's 500, as for any route
            response = await handler(request, exc)
        await response(scope, replay, send)

    def _handler(
        self, exc: Exception
    ) -> Callable[[Request, Exception], Awaitable[Response]] | None:
        handlers = self._app.exception_handlers
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None  # like Starlette: unhandled errors are the outer layer's
            handler = handlers.get(cls)
            if handler is not None:
                return handler  # type: ignore[return-value]
        return None


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _parsed(model: type[BaseModel], body: bytes) -> BaseModel | None:
    # orjson accepts a subset of what FastAPI's json.loads does (no NaN, no integers past
    # 64 bits) and decodes it alike, so whatever it refuses goes to FastAPI instead.
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if type(data) is not dict:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None
