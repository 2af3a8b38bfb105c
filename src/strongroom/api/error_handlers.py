"""Turn every error the framework or a route raises into problem+json.

Installed by :func:`strongroom.api.app.create_app`; routes only ever raise
:class:`~strongroom.api.problems.ProblemError` (or let the framework raise its own).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from strongroom.api import problems
from strongroom.api.request_context import SCOPE_KEY, RequestContext


def _request_id(request: Request) -> str:
    context = request.scope.get(SCOPE_KEY)
    return context.request_id if isinstance(context, RequestContext) else ""


async def _problem_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, problems.ProblemError)
    return problems.problem_response(
        exc.problem,
        detail=exc.detail,
        instance=request.url.path,
        request_id=_request_id(request),
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    problem = problems.problem_for_status(exc.status_code)
    detail = exc.detail if exc.detail != problem.title else ""
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No resource at {request.url.path}."
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}."
    return problems.problem_response(
        problem,
        detail=detail,
        instance=request.url.path,
        request_id=_request_id(request),
        headers=exc.headers,
    )


def _sanitised_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Keep location, message and error kind; drop "input"/"ctx", which echo request
    # data (possibly secrets) back into responses and logs.
    return [
        {
            "loc": list(error.get("loc", ())),
            "msg": error.get("msg", ""),
            "type": error.get("type", ""),
        }
        for error in exc.errors()
    ]


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = _sanitised_errors(exc)
    return problems.problem_response(
        problems.VALIDATION_FAILED,
        detail=f"{len(errors)} field(s) failed validation.",
        instance=request.url.path,
        request_id=_request_id(request),
        extensions={"errors": errors},
    )


async def _unhandled_error(request: Request, _exc: Exception) -> Response:
    # Reached only if something fails outside PodMiddleware's own 500 handling.
    return problems.problem_response(
        problems.INTERNAL_ERROR,
        detail="The request failed; quote the request id.",
        instance=request.url.path,
        request_id=_request_id(request),
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(problems.ProblemError, _problem_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unhandled_error)
