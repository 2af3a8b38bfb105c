"""The /v1 service info is identical across pods except for pod and zone: no pod-local state."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from strongroom.api.openapi import openapi_document
from strongroom.config import Settings

pytestmark = pytest.mark.anyio


async def get_json(app: FastAPI, path: str) -> dict[str, object]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.get(path)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_two_pods_differ_only_in_pod_and_zone(make_app: Callable[..., FastAPI]) -> None:
    first = await get_json(make_app("pod-0", "a"), "/")
    second = await get_json(make_app("pod-1", "b"), "/")
    assert (first["pod"], first["zone"]) == ("pod-0", "a")
    assert (second["pod"], second["zone"]) == ("pod-1", "b")
    for body in (first, second):
        del body["pod"], body["zone"]
    assert first == second == {"service": "strongroom", "version": "0.1.0", "api": "v1"}


async def test_echo_reports_method_path_and_query(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        body = (await http.delete("/echo?a=1&b=two")).json()
    assert (body["method"], body["path"], body["query"]) == ("DELETE", "/echo", "a=1&b=two")


def test_openapi_document_lists_v1_routes_without_touching_the_database(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "never-created")
    document = openapi_document(settings)
    assert document["info"]["title"] == "Strongroom API"
    assert {"/", "/echo"} <= document["paths"].keys()
    assert "/healthz" not in document["paths"]
    assert "Problem" in document["components"]["schemas"]
    assert not (tmp_path / "never-created").exists()
