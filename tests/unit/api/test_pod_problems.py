"""Every error the pod returns is RFC 9457 problem+json with a stable type."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from strongroom.api import problems
from strongroom.api.problems import PROBLEM_BASE_URI, ProblemError, register_problem

pytestmark = pytest.mark.anyio

PROBLEM_FIELDS = {"type", "title", "status", "detail", "instance", "request_id"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert body.keys() >= PROBLEM_FIELDS
    assert body["type"] == PROBLEM_BASE_URI + slug
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_unknown_route_is_not_found_problem(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/v1/no-such-thing"), 404, "not-found")
    assert body["instance"] == "/v1/no-such-thing"
    assert body["title"] == "Resource not found"


async def test_wrong_method_is_method_not_allowed_problem_with_allow(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/healthz")
    assert_problem(response, 405, "method-not-allowed")
    assert response.headers["allow"] == "GET"


async def test_declared_oversized_body_is_rejected_before_reading(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/echo", content=b"x" * 1025)
    body = assert_problem(response, 413, "body-too-large")
    assert "1024" in str(body["detail"])
    assert response.headers["connection"] == "close"


async def test_streamed_oversized_body_is_rejected_while_reading(
    client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"y" * 400

    response = await client.post("/echo", content=chunks())
    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body-too-large")


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/echo", content=b"x" * 1024)
    assert response.status_code == 200
    assert response.json()["body_bytes"] == 1024


async def test_validation_error_is_problem_without_echoing_input(app: FastAPI) -> None:
    @app.get("/v1/needs-int")
    async def needs_int(n: int) -> dict[str, int]:
        return {"n": n}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.get("/v1/needs-int", params={"n": "secret-value"})
    body = assert_problem(response, 422, "validation-failed")
    assert body["errors"] == [
        {"loc": ["query", "n"], "msg": body["errors"][0]["msg"], "type": "int_parsing"}  # type: ignore[index]
    ]
    assert "secret-value" not in response.text


async def test_unhandled_exception_is_internal_error_problem(app: FastAPI) -> None:
    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.get("/v1/boom")
    assert_problem(response, 500, "internal-error")
    assert "hunter2" not in response.text


async def test_raised_problem_error_keeps_type_detail_and_extensions(app: FastAPI) -> None:
    register_problem("test-insufficient-funds", "Insufficient funds", 409)

    @app.post("/v1/pay")
    async def pay() -> None:
        raise ProblemError("test-insufficient-funds", "Balance 5 < 10.", balance=5)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.post("/v1/pay")
    body = assert_problem(response, 409, "test-insufficient-funds")
    assert body["detail"] == "Balance 5 < 10."
    assert body["balance"] == 5


def test_registering_a_slug_twice_differently_is_refused() -> None:
    register_problem("test-twice", "Twice", 400)
    register_problem("test-twice", "Twice", 400)
    with pytest.raises(ValueError, match="already registered"):
        register_problem("test-twice", "Other title", 400)


def test_status_without_registered_type_falls_back_to_about_blank() -> None:
    problem = problems.problem_for_status(418)
    body = problems.problem_body(problem, detail="", instance="/x", request_id="r")
    assert body["type"] == "about:blank"
    assert body["title"] == "I'm a Teapot"


def test_every_registered_type_has_a_stable_uri_and_error_status() -> None:
    for slug, problem in problems.registered_problems().items():
        assert problem.uri == PROBLEM_BASE_URI + slug
        assert 400 <= problem.status <= 599
