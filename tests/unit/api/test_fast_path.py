"""The fast path of POST /v1/transfers and /v1/journal-entries answers as FastAPI would.

Every request is sent twice: once as served (fast path), once with the fast path off
(FastAPI's routing, dependencies and handlers). Status, problem type and validation
errors must match, for accepted bodies and for every kind of refusal.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.api.conftest import bearer_headers, provision_clients

from strongroom.api import fast_path
from strongroom.api.authz import declared_scope
from strongroom.config import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's pod settings, with Bearer tokens allowed for transfers (no DPoP)."""
    return settings.model_copy(
        update={"auth": settings.auth.model_copy(update={"dpop_required_scopes": []})}
    )


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, Any]:
    scopes = ["accounts:read", "accounts:write", "transfers:read", "transfers:write"]
    return provision_clients(
        migrated_settings, app, (("alpha", scopes, False), ("reader", ["accounts:read"], False))
    )


@pytest.fixture
async def auth(client: httpx.AsyncClient, world: dict[str, Any]) -> dict[str, str]:
    return await bearer_headers(client, world["alpha"])


@pytest.fixture
async def wallets(client: httpx.AsyncClient, auth: dict[str, str]) -> AsyncIterator[list[str]]:
    made = []
    for _ in range(2):
        r = await client.post(
            "/v1/accounts", json={"kind": "wallet", "currency": "EUR"}, headers=auth
        )
        assert r.status_code == 201, r.text
        made.append(r.json()["id"])
    r = await client.get("/v1/accounts", params={"kind": "system"}, headers=auth)
    (clearing,) = [a["id"] for a in r.json()["accounts"] if a["code"] == "clearing"]
    r = await client.post(
        "/v1/transfers",
        json={
            "debit_account_id": clearing,
            "credit_account_id": made[0],
            "amount": 10_000,
            "currency": "EUR",
        },
        headers=auth,
    )
    assert r.status_code == 201, r.text
    yield made


async def both_ways(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, path: str, **kwargs: Any
) -> tuple[httpx.Response, httpx.Response]:
    fast = await client.post(path, **kwargs)
    with monkeypatch.context() as patch:
        patch.setattr(fast_path.FastPath, "find", lambda self, scope: None)
        framework = await client.post(path, **kwargs)
    return fast, framework


def essence(r: httpx.Response) -> tuple[int, Any, Any, list[str]]:
    body = r.json()
    if r.status_code < 400:
        return r.status_code, body.get("amount"), body.get("status"), sorted(body)
    return r.status_code, body["type"], body.get("errors"), sorted(body)


def test_each_fast_route_is_the_registered_route_with_its_own_scope(app: FastAPI) -> None:
    routes = fast_path.fast_routes(app)
    assert set(routes) == set(fast_path.ROUTES)
    for (method, path), fast in routes.items():
        assert fast.route.path == path and method in fast.route.methods
        assert declared_scope(fast.authorize) == "transfers:write"


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ('{"amount": 5}', "application/json"),
        ('{"amount": 5}', "application/json; charset=utf-8"),
        ('{"amount": 5}', None),
        ('{"amount": 5}', "text/plain"),
        ('{"amount": 5}', "application/merge-patch+json"),
        ('{"amount": "5"}', "application/json"),
        ('{"amount": 1.5}', "application/json"),
        ('{"amount": 0}', "application/json"),
        ('{"amount": 1180591620717411303424}', "application/json"),
        ('{"amount": 5, "extra": 1}', "application/json"),
        ('{"amount": 5, "metadata": {"x": NaN}}', "application/json"),
        ('{"amount": 5, "currency": "XXX"}', "application/json"),
        ('{"amount": ', "application/json"),
        ("[1, 2]", "application/json"),
        ("", "application/json"),
    ],
)
async def test_transfers_answer_alike_on_both_paths(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, str],
    wallets: list[str],
    content: str,
    content_type: str | None,
) -> None:
    accounts = f'"debit_account_id": "{wallets[0]}", "credit_account_id": "{wallets[1]}"'
    if content.startswith("{") and content.endswith("}"):
        content = "{" + accounts + ', "currency": "EUR", ' + content[1:]
    headers = dict(auth)
    if content_type is not None:
        headers["content-type"] = content_type
    fast, framework = await both_ways(
        client, monkeypatch, "/v1/transfers", content=content.encode(), headers=headers
    )
    assert essence(fast) == essence(framework), (fast.text, framework.text)


@pytest.mark.parametrize("who", ["nobody", "reader", "alpha"])
async def test_refusals_by_authorization_and_by_the_ledger_answer_alike(
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    world: dict[str, Any],
    wallets: list[str],
    who: str,
) -> None:
    headers = {} if who == "nobody" else await bearer_headers(client, world[who])
    body = {
        "debit_account_id": wallets[1],  # empty: insufficient funds for alpha
        "credit_account_id": wallets[0],
        "amount": 5,
        "currency": "EUR",
    }
    fast, framework = await both_ways(
        client, monkeypatch, "/v1/transfers", json=body, headers=headers
    )
    assert essence(fast) == essence(framework)
    assert fast.status_code == {"nobody": 401, "reader": 403, "alpha": 422}[who]
    assert fast.headers.get("www-authenticate") == framework.headers.get("www-authenticate")


async def test_a_journal_entry_takes_the_fast_path_and_is_counted_under_its_route(
    app: FastAPI,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    auth: dict[str, str],
    wallets: list[str],
) -> None:
    legs = [
        {"account_id": wallets[0], "side": "debit", "amount": 3, "currency": "EUR"},
        {"account_id": wallets[1], "side": "credit", "amount": 3, "currency": "EUR"},
    ]
    served: list[str] = []
    handle = fast_path.FastPath.handle

    async def counted(self: fast_path.FastPath, fast: fast_path.FastRoute, *args: Any) -> None:
        served.append(fast.route.path)
        await handle(self, fast, *args)

    monkeypatch.setattr(fast_path.FastPath, "handle", counted)
    r = await client.post("/v1/journal-entries", json={"legs": legs}, headers=auth)
    assert r.status_code == 201, r.text
    assert served == ["/v1/journal-entries"]
    labels = {"route": "/v1/journal-entries", "method": "POST", "status": "201"}
    assert (
        app.state.metrics_registry.get_sample_value("strongroom_http_requests_total", labels) == 1
    )


async def test_a_body_growing_past_the_limit_while_read_is_refused_with_413(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only counting stops it
        yield b'{"metadata": {"note": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}}'

    r = await client.post("/v1/transfers", content=chunks(), headers=auth)
    assert r.status_code == 413
    assert r.json()["type"].endswith("/body-too-large")


async def test_a_client_gone_before_its_body_arrived_gets_no_answer_and_moves_nothing(
    app: FastAPI, auth: dict[str, str], wallets: list[str]
) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/transfers",
        "raw_path": b"/v1/transfers",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"pod"),
            (b"content-type", b"application/json"),
            (b"authorization", auth["Authorization"].encode()),
        ],
        "client": ("10.9.8.7", 41000),
        "server": ("pod", 80),
    }
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    units = app.state.ledger.committer.units
    await app(scope, receive, send)
    assert sent == []
    assert app.state.ledger.committer.units == units
