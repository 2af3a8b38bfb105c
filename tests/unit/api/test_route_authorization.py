"""No /v1 route is reachable without an authorization decision (least privilege)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.testclient import TestClient

from strongroom.adapters.db.migrate import upgrade
from strongroom.api.app import create_app
from strongroom.api.authz import declared_scope, requires
from strongroom.auth.scopes import SCOPES
from strongroom.config import Settings


def _scopes(dependant: Dependant) -> list[str]:
    found = []
    for dep in dependant.dependencies:
        scope = declared_scope(dep.call)
        if scope is not None:
            found.append(scope)
        found.extend(_scopes(dep))
    return found


def _routes(routes: list[Any]) -> Iterator[tuple[str, Dependant]]:
    """Every (path, dependant), through FastAPI's included-router wrappers."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                yield context.path, context.dependant
        elif hasattr(route, "dependant"):
            yield route.path, route.dependant


def test_every_v1_route_declares_exactly_one_known_scope(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), zone="a", pod_name="pod-0")
    v1 = [(path, dep) for path, dep in _routes(app.routes) if path.startswith("/v1")]
    assert v1, "expected /v1 routes"
    for path, dependant in v1:
        scopes = _scopes(dependant)
        assert len(scopes) == 1, f"{path} declares {scopes}"
        assert scopes[0] in SCOPES


def test_every_documented_v1_operation_refuses_a_request_without_a_token(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    upgrade(settings)
    app = create_app(settings, zone="a", pod_name="pod-0")
    with TestClient(app) as client:
        paths = client.get("/v1/openapi.json").json()["paths"]
        checked = 0
        for template, operations in paths.items():
            if not template.startswith("/v1/") and template != "/v1":
                continue
            path = re.sub(r"\{[^}]+\}", "x", template)
            for method in operations:
                response = client.request(method.upper(), path)
                assert response.status_code == 401, (method, template, response.text)
                assert response.headers["www-authenticate"].startswith("Bearer")
                checked += 1
    assert checked >= 3


def test_requiring_an_unknown_scope_fails_at_import_time() -> None:
    with pytest.raises(ValueError, match="unknown scope"):
        requires("accounts:*")
