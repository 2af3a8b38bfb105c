"""RFC 9457 problem details: the one error shape every Strongroom endpoint returns.

A problem's ``type`` is a stable URI clients may branch on; ``title`` is fixed per type;
``detail`` describes this occurrence. Types live in one registry so a route raising
``ProblemError("insufficient-funds", ...)`` cannot invent an undocumented one: later
modules add theirs with :func:`register_problem` at import time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.responses import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE_URI = "https://strongroom.dev/problems/"


@dataclass(frozen=True)
class ProblemType:
    """One kind of error: a stable slug (the URI's last segment), its title and status."""

    slug: str
    title: str
    status: int

    @property
    def uri(self) -> str:
        return PROBLEM_BASE_URI + self.slug


_REGISTRY: dict[str, ProblemType] = {}
_BY_STATUS: dict[int, ProblemType] = {}


def register_problem(
    slug: str, title: str, status: int, *, default_for_status: bool = False
) -> ProblemType:
    """Add a problem type; re-registering the same slug identically is allowed (re-imports).

    ``default_for_status`` makes it the type used for a bare HTTP error of that status
    (e.g. a framework 404), so at most one type per status may claim it.
    """
    problem = ProblemType(slug, title, status)
    existing = _REGISTRY.get(slug)
    if existing is not None and existing != problem:
        raise ValueError(f"problem type {slug!r} already registered as {existing}")
    _REGISTRY[slug] = problem
    if default_for_status:
        claimed = _BY_STATUS.get(status)
        if claimed is not None and claimed != problem:
            raise ValueError(f"status {status} already defaults to {claimed.slug!r}")
        _BY_STATUS[status] = problem
    return problem


def problem_type(slug: str) -> ProblemType:
    """The registered type for ``slug``; an unknown slug is a programming error."""
    return _REGISTRY[slug]


def registered_problems() -> Mapping[str, ProblemType]:
    return dict(_REGISTRY)


def problem_for_status(status: int) -> ProblemType:
    """The default type for a status; unregistered statuses fall back to RFC 9457's about:blank."""
    registered = _BY_STATUS.get(status)
    if registered is not None:
        return registered
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return ProblemType("", phrase, status)


BAD_REQUEST = register_problem("bad-request", "Bad request", 400, default_for_status=True)
UNAUTHORIZED = register_problem(
    "unauthorized", "Authentication required", 401, default_for_status=True
)
FORBIDDEN = register_problem("forbidden", "Forbidden", 403, default_for_status=True)
NOT_FOUND = register_problem("not-found", "Resource not found", 404, default_for_status=True)
METHOD_NOT_ALLOWED = register_problem(
    "method-not-allowed", "Method not allowed", 405, default_for_status=True
)
NOT_ACCEPTABLE = register_problem("not-acceptable", "Not acceptable", 406, default_for_status=True)
CONFLICT = register_problem("conflict", "Conflict", 409, default_for_status=True)
BODY_TOO_LARGE = register_problem(
    "body-too-large", "Request body too large", 413, default_for_status=True
)
UNSUPPORTED_MEDIA_TYPE = register_problem(
    "unsupported-media-type", "Unsupported media type", 415, default_for_status=True
)
VALIDATION_FAILED = register_problem(
    "validation-failed", "Request validation failed", 422, default_for_status=True
)
RATE_LIMITED = register_problem("rate-limited", "Too many requests", 429, default_for_status=True)
INTERNAL_ERROR = register_problem(
    "internal-error", "Internal server error", 500, default_for_status=True
)
NOT_READY = register_problem("not-ready", "Service not ready", 503, default_for_status=True)


class Problem(BaseModel):
    """The RFC 9457 document, plus ``request_id`` and type-specific extension members."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Stable URI identifying the problem type.")
    title: str = Field(description="Short summary, fixed per type.")
    status: int = Field(description="HTTP status code of this occurrence.")
    detail: str = Field(default="", description="What went wrong this time.")
    instance: str = Field(default="", description="Path of the request that failed.")
    request_id: str = Field(default="", description="Quote this when reporting the error.")


class ProblemError(HTTPException):
    """Raise anywhere in a request to answer with a problem of a registered type.

    Subclasses :class:`HTTPException` so FastAPI's body reader re-raises it instead of
    converting it into a generic 400.
    """

    def __init__(
        self,
        slug: str,
        detail: str = "",
        *,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        self.problem = problem_type(slug)
        self.extensions = extensions
        super().__init__(self.problem.status, detail=detail, headers=dict(headers or {}))


def problem_body(
    problem: ProblemType,
    *,
    detail: str,
    instance: str,
    request_id: str,
    extensions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": problem.uri if problem.slug else "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": instance,
        "request_id": request_id,
    }
    if extensions:
        for key, value in extensions.items():
            body.setdefault(key, value)
    return body


def encode_problem(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class ProblemResponse(Response):
    media_type = PROBLEM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return encode_problem(content)


def problem_response(
    problem: ProblemType,
    *,
    detail: str,
    instance: str,
    request_id: str,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> ProblemResponse:
    body = problem_body(
        problem, detail=detail, instance=instance, request_id=request_id, extensions=extensions
    )
    return ProblemResponse(body, status_code=problem.status, headers=dict(headers or {}))


# For route decorators: ``responses=PROBLEM_RESPONSES`` documents the error shape.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "Client error"},
    "5XX": {"model": Problem, "content": {PROBLEM_MEDIA_TYPE: {}}, "description": "Server error"},
}
