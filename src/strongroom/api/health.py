"""Operational endpoints: liveness, readiness and Prometheus metrics.

``/healthz`` says the process runs (restart me if not); ``/readyz`` says send me
traffic (storage usable, schema at head, not draining). They are separate because a
pod waiting for a migration must not be restarted, only skipped.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from strongroom.api.lifecycle import PodState
from strongroom.api.problems import ProblemError
from strongroom.observe import metrics

router = APIRouter(include_in_schema=False)


def pod_state(request: Request) -> PodState:
    state: PodState = request.app.state.pod
    return state


def metrics_registry(request: Request) -> CollectorRegistry:
    registry: CollectorRegistry = request.app.state.metrics_registry
    return registry


@router.get("/healthz")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "alive"})


@router.get("/readyz")
async def readyz(state: Annotated[PodState, Depends(pod_state)]) -> JSONResponse:
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    readiness = await state.readiness()
    # Draining may have started while the check ran; the drain answer wins.
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    if not readiness.ok:
        raise ProblemError("not-ready", readiness.reason)
    return JSONResponse({"status": "ready"})


@router.get("/metrics")
async def prometheus_metrics(
    registry: Annotated[CollectorRegistry, Depends(metrics_registry)],
) -> Response:
    return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)
