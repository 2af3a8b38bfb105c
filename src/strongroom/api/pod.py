"""Run one API pod: the app under uvicorn (uvloop + httptools) with a graceful drain.

SIGTERM (or SIGINT) does not stop the server at once. The pod first drains: ``/readyz``
answers 503 and responses carry ``Connection: close`` for ``pods.drain_grace_s``, long
enough for every edge worker's health checks to mark it down, while requests still
arriving are served. Then uvicorn stops accepting, lets in-flight requests finish for
up to ``pods.shutdown_timeout_s`` and returns, and :func:`run` returns (exit 0). A
second signal skips the rest of the grace period; a third abandons in-flight requests.
"""

from __future__ import annotations

import time
from types import FrameType

import structlog
import uvicorn

from strongroom.api.app import create_app
from strongroom.api.lifecycle import PodState
from strongroom.config import Settings
from strongroom.gc_tuning import tune_gc
from strongroom.observe.logging import configure_logging
from strongroom.observe.tracing import configure_tracing, shutdown_tracing

log = structlog.get_logger("strongroom.pod")

# Seconds a pod keeps an idle upstream connection beyond the edge's pool idle timeout:
# the edge must always be the side that closes, or it may send on a closing socket.
KEEPALIVE_MARGIN_S = 5


def pod_name(index: int) -> str:
    return f"pod-{index}"


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain phase between the signal and the shutdown."""

    def __init__(self, config: uvicorn.Config, state: PodState, drain_grace_s: float) -> None:
        super().__init__(config)
        self.pod_state = state
        self.drain_grace_s = drain_grace_s
        self.drain_deadline: float | None = None
        self._drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Runs as a signal handler: only flip flags here. Unlike uvicorn's own handler
        # this does not record the signal for re-raising, so the process exits 0.
        if self.drain_deadline is None:
            self.drain_deadline = time.monotonic() + self.drain_grace_s
            self.pod_state.start_draining()
        elif not self.should_exit:
            self.should_exit = True
        else:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None:
            if not self._drain_logged:
                self._drain_logged = True
                log.info("draining", grace_s=self.drain_grace_s)
            if time.monotonic() >= self.drain_deadline and not self.should_exit:
                log.info("drain grace over, shutting down")
                self.should_exit = True
        return await super().on_tick(counter)


def build_server(settings: Settings, index: int, zone: str) -> DrainingServer:
    """The configured server for pod ``index``, not yet started (tests use this directly)."""
    name = pod_name(index)
    tracer = configure_tracing(settings)
    app = create_app(settings, zone=zone, pod_name=name, tracer=tracer)
    pods = settings.pods
    config = uvicorn.Config(
        app,
        host=pods.host,
        port=pods.port_base + index,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="on",
        access_log=False,
        # Logging is ours (structlog JSON); uvicorn's loggers propagate into it.
        log_config=None,
        # Forwarded identity is trusted only with the edge proof (see request_context).
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=int(settings.edge.balancer.pool_idle_timeout_s) + KEEPALIVE_MARGIN_S,
        timeout_graceful_shutdown=max(1, round(pods.shutdown_timeout_s)),
    )
    state: PodState = app.state.pod
    return DrainingServer(config, state, pods.drain_grace_s)


def run(settings: Settings, index: int, zone: str) -> None:
    """Serve pod ``index`` on ``pods.host:pods.port_base + index`` until SIGTERM, then drain."""
    name = pod_name(index)
    configure_logging(settings, role="pod", pod=name, zone=zone)
    server = build_server(settings, index, zone)
    tune_gc(settings.pods.gc_young_threshold)
    log.info("pod starting", host=settings.pods.host, port=settings.pods.port_base + index)
    try:
        server.run()
    finally:
        shutdown_tracing()
    log.info("pod stopped")
