"""The pod's ASGI application: wiring happens here, once, at start-up.

Later issues add their routers to :func:`build_v1_router`. The app keeps no state that
matters between requests: two pods built from the same settings answer alike.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from fastapi import APIRouter, FastAPI
from opentelemetry import trace
from prometheus_client import Counter, Gauge
from sqlalchemy.engine import Engine

from strongroom.adapters.db.audit_store import SqlAuditStore
from strongroom.adapters.db.engine import make_engine
from strongroom.adapters.db.migrate import Readiness, check_ready
from strongroom.api import (
    audit_routes,
    blocks_routes,
    clients_routes,
    health,
    ledger_accounts_routes,
    ledger_transfers_routes,
    oauth_authorize,
    oauth_server,
    service_info,
    tenants_routes,
)
from strongroom.api.auth_runtime import AuthRuntime
from strongroom.api.client_cache import ClientCache
from strongroom.api.error_handlers import install_error_handlers
from strongroom.api.fast_path import FastPath
from strongroom.api.ledger_runtime import LedgerRuntime
from strongroom.api.lifecycle import PodIdentity, PodState, ReadinessCheck
from strongroom.api.middleware import PodMiddleware
from strongroom.config import Settings
from strongroom.observe.metrics import HttpMetrics, new_registry

API_TITLE = "Strongroom API"


def build_v1_router() -> APIRouter:
    """Everything under ``/v1``: each resource's router (whose prefix starts with ``/v1``)
    contributes its routes to one flat list.

    Flat, not ``include_router``: FastAPI includes a router lazily and re-derives every
    nested router's version on each request, ~10% of a pod's CPU per transfer; a flat list
    is a plain scan. Every route must depend on `authz.requires(scope)`: a test walks this
    router and fails for any route without an authorization decision.
    """
    v1 = APIRouter()
    # FastAPI tries routes in order, at a cost per candidate: money movement first.
    for router in (
        ledger_transfers_routes.router,
        ledger_accounts_routes.router,
        ledger_transfers_routes.journal_router,
        clients_routes.router,
        tenants_routes.router,
        audit_routes.router,
        blocks_routes.router,
    ):
        v1.routes.extend(router.routes)
    return v1


def _readiness_check(engine: Engine, timeout_s: float) -> ReadinessCheck:
    async def check() -> Readiness:
        # The check blocks on the driver, so it runs in a worker thread; past the
        # prober's own timeout an answer is useless, so stop waiting then.
        with anyio.move_on_after(timeout_s):
            return await anyio.to_thread.run_sync(check_ready, engine, abandon_on_cancel=True)
        return Readiness(False, f"storage check exceeded {timeout_s:g}s")

    return check


def create_app(
    settings: Settings,
    *,
    zone: str,
    pod_name: str,
    engine: Engine | None = None,
    tracer: trace.Tracer | None = None,
) -> FastAPI:
    """Build a pod's app. No connection is opened until the first readiness probe.

    ``engine`` defaults to one built from settings (and disposed at shutdown);
    ``tracer`` is what :func:`strongroom.observe.tracing.configure_tracing` returned.
    """
    owns_engine = engine is None
    db_engine = engine if engine is not None else make_engine(settings)

    auth = AuthRuntime(settings, db_engine)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Revocations and suspensions reach this pod through the deny-list feed.
        tasks = [
            asyncio.create_task(auth.deny_list_sync.run(), name="deny-list-sync"),
            asyncio.create_task(auth.refresh_keys_forever(), name="key-refresh"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            _app.state.ledger.close()
            if owns_engine:
                db_engine.dispose()

    app = FastAPI(
        title=API_TITLE,
        version=settings.version,
        # Interactive docs would load scripts from a CDN; the document itself is enough.
        docs_url=None,
        redoc_url=None,
        openapi_url="/v1/openapi.json",
        lifespan=lifespan,
        # Tracing and metrics are the pod middleware's (one span and one sample per
        # request); FastAPI's own OpenTelemetry layer would duplicate both when a tracer
        # provider is configured, and costs a check per request even when it is not.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )

    registry = new_registry()
    http_metrics = HttpMetrics.create(registry)
    edge_proof_failures = Counter(
        "pod_edge_proof_failures",
        "Requests whose X-Strongroom-Edge header did not match: something bypassed the edge.",
        namespace="strongroom",
        registry=registry,
    )
    draining_gauge = Gauge(
        "pod_draining",
        "1 while this pod drains before shutdown.",
        namespace="strongroom",
        registry=registry,
    )
    Gauge(
        "pod_info",
        "Constant 1, labelled with this pod's identity.",
        ["pod", "zone", "version"],
        namespace="strongroom",
        registry=registry,
    ).labels(pod_name, zone, settings.version).set(1)

    # The edge gives up on a probe after its health timeout; answering later is pointless.
    readiness = _readiness_check(db_engine, settings.edge.balancer.health_timeout_s)
    state = PodState(
        identity=PodIdentity(
            name=pod_name,
            zone=zone,
            version=settings.version,
            service=settings.observe.service_name,
        ),
        readiness=readiness,
    )
    state.on_drain.append(lambda: draining_gauge.set(1))
    app.state.pod = state
    app.state.metrics_registry = registry
    app.state.engine = db_engine
    app.state.auth = auth
    app.state.client_cache = ClientCache(auth.clients.get)
    app.state.ledger = LedgerRuntime(settings, db_engine, registry)
    app.state.audit = SqlAuditStore(db_engine)

    install_error_handlers(app)
    app.add_middleware(
        PodMiddleware,
        state=state,
        metrics=http_metrics,
        edge_proof_failures=edge_proof_failures,
        edge_secret=settings.secrets.edge_secret.get_secret_value().encode(),
        body_bytes_max=settings.pods.request_body_bytes_max,
        tracer=tracer,
        fast_path=FastPath(app),
    )
    for router in (
        health.router,
        build_v1_router(),
        oauth_server.router,
        service_info.router,
        oauth_authorize.router,
    ):
        app.router.routes.extend(router.routes)
    return app
