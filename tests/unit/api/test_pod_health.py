"""Liveness, readiness, draining and metrics of one pod."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from strongroom.adapters.db.migrate import head_revision, upgrade
from strongroom.config import Settings

pytestmark = pytest.mark.anyio


async def test_healthz_is_ok_even_when_storage_is_not(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200


async def test_readyz_is_not_ready_problem_when_database_is_unreachable(
    client: httpx.AsyncClient,
) -> None:
    # The data dir does not exist yet, so SQLite cannot open the file.
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["detail"] == "database unreachable (OperationalError)"


async def test_readyz_is_not_ready_problem_before_migrations(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    settings.data_dir.mkdir(parents=True)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"].endswith("/not-ready")
    assert head_revision() in body["detail"]


async def test_readyz_is_ready_once_migrated(client: httpx.AsyncClient, settings: Settings) -> None:
    upgrade(settings)
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_draining_pod_answers_readyz_503_draining(
    app: FastAPI, client: httpx.AsyncClient, migrated_settings: Settings
) -> None:
    app.state.pod.start_draining()
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "draining"}
    assert response.headers["connection"] == "close"


async def test_draining_pod_closes_connections_on_every_response(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    assert "connection" not in (await client.get("/")).headers
    app.state.pod.start_draining()
    for path in ("/", "/healthz", "/nope"):
        assert (await client.get(path)).headers["connection"] == "close"


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.get("/echo", params={"q": "1"})
    await client.get("/v1/unknown/123")
    await client.request("BREW", "/echo")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'strongroom_http_requests_total{method="GET",route="/echo",status="200"} 1.0' in text
    assert (
        'strongroom_http_requests_total{method="GET",route="<unmatched>",status="404"} 1.0' in text
    )
    assert 'method="OTHER",route="/echo",status="405"' in text
    assert "strongroom_http_request_duration_seconds_bucket" in text
    assert "strongroom_http_requests_in_flight" in text
    assert 'strongroom_pod_info{pod="pod-0",version="0.1.0",zone="a"} 1.0' in text
    assert "process_cpu_seconds_total" in text


async def test_draining_gauge_turns_on(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert "strongroom_pod_draining 0.0" in (await client.get("/metrics")).text
    app.state.pod.start_draining()
    assert "strongroom_pod_draining 1.0" in (await client.get("/metrics")).text
