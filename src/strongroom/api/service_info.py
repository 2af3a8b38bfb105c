"""``/`` service information and ``/echo``, a diagnostic mirror of what the pod received.

Both are deterministic across pods except for ``pod`` and ``zone``, which is what the
statelessness and load-balancing tests compare. The echo never reflects credentials:
sensitive headers appear with their values redacted, so tests can still see they arrived.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from starlette.requests import Request

from strongroom.api.health import pod_state
from strongroom.api.lifecycle import PodState
from strongroom.api.problems import PROBLEM_RESPONSES
from strongroom.api.request_context import RequestContext, request_context

router = APIRouter(responses=PROBLEM_RESPONSES)

REDACTED = "[redacted]"
REDACTED_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "dpop", "x-strongroom-edge"}
)


class ServiceInfo(BaseModel):
    service: str
    version: str
    api: str
    pod: str
    zone: str


class Echo(BaseModel):
    method: str
    path: str
    query: str
    scheme: str
    host: str | None
    client: str
    from_edge: bool
    request_id: str
    headers: dict[str, str]
    body_bytes: int
    pod: str
    zone: str


@router.get("/", response_model=ServiceInfo, summary="Service information")
async def service_info(state: Annotated[PodState, Depends(pod_state)]) -> ServiceInfo:
    identity = state.identity
    return ServiceInfo(
        service=identity.service,
        version=identity.version,
        api="v1",
        pod=identity.name,
        zone=identity.zone,
    )


async def echo(
    request: Request,
    context: Annotated[RequestContext, Depends(request_context)],
    state: Annotated[PodState, Depends(pod_state)],
) -> Echo:
    body = await request.body()
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        # Repeated headers are joined as HTTP allows (RFC 9110 §5.3).
        shown = REDACTED if name in REDACTED_HEADERS else value
        headers[name] = f"{headers[name]}, {shown}" if name in headers else shown
    return Echo(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        scheme=request.url.scheme,
        host=context.forwarded_host or request.headers.get("host"),
        client=context.client_host,
        from_edge=context.from_edge,
        request_id=context.request_id,
        headers=headers,
        body_bytes=len(body),
        pod=state.identity.name,
        zone=state.identity.zone,
    )


# One operation per method: OpenAPI operation ids must be unique.
for _method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
    router.add_api_route(
        "/echo",
        echo,
        methods=[_method],
        response_model=Echo,
        operation_id=f"echo_{_method.lower()}",
        summary="Echo the request as this pod received it",
    )
