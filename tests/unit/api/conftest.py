"""Fixtures for the pod's app: settings in a temp data dir and an in-process HTTP client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from strongroom.adapters.db.migrate import upgrade
from strongroom.api.app import create_app
from strongroom.config import Settings

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
