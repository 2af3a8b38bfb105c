"""Fixtures for the pod's app: settings in a temp data dir and an in-process HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from strongroom.adapters.db.migrate import upgrade
from strongroom.api.app import create_app
from strongroom.auth.provisioning import create_client, create_tenant
from strongroom.config import Settings
from strongroom.runtime.signing_keys import ensure_signing_keys

EDGE_SECRET = "test-edge-secret-0123456789"
PEER = ("10.9.8.7", 41000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        secrets={"edge_secret": EDGE_SECRET},
        pods={"request_body_bytes_max": 1024},
    )


@pytest.fixture
def migrated_settings(settings: Settings) -> Settings:
    upgrade(settings)
    return settings


@pytest.fixture
def make_app(settings: Settings) -> Iterator[Callable[..., FastAPI]]:
    apps: list[FastAPI] = []

    def make(pod_name: str = "pod-0", zone: str = "a") -> FastAPI:
        app = create_app(settings, zone=zone, pod_name=pod_name)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., FastAPI]) -> FastAPI:
    return make_app()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=PEER)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        yield http


def edge_headers(**extra: str) -> dict[str, str]:
    return {"x-strongroom-edge": EDGE_SECRET, **extra}


def provision_clients(
    settings: Settings, app: FastAPI, specs: Sequence[tuple[str, Sequence[str], bool]]
) -> dict[str, dict[str, Any]]:
    """One tenant with one client per ``(name, scopes, operator)``: its tenant id, client id
    and secret by name (signing keys made first, so tokens can be issued)."""
    ensure_signing_keys(settings)
    auth = app.state.auth
    made: dict[str, dict[str, Any]] = {}
    for name, scopes, operator in specs:
        tenant = create_tenant(auth.tenants, name)
        record, secret = create_client(
            auth.tenants,
            auth.clients,
            auth.hasher,
            tenant_id=tenant,
            name=f"{name}-app",
            scopes=list(scopes),
            operator=operator,
        )
        made[name] = {"tenant": tenant, "client_id": record.client_id, "secret": secret}
    return made


async def bearer_headers(
    client: httpx.AsyncClient, who: dict[str, Any], scope: str | None = None
) -> dict[str, str]:
    """A client_credentials Bearer token for ``scope`` (None: every scope the client has)."""
    data = {"grant_type": "client_credentials"}
    if scope is not None:
        data["scope"] = scope
    r = await client.post("/oauth2/token", data=data, auth=(who["client_id"], who["secret"]))
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}
