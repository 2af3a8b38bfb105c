"""One edge worker process: TLS listener, balancer, health checks, reloads.

Several workers share the public port with SO_REUSEPORT, so the kernel spreads
connections across them and a worker that dies takes only its own connections.
Each worker runs its own health checks: no shared state between workers to lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
import time
from collections.abc import Iterable

import structlog
import uvloop

from strongroom.config import Settings
from strongroom.edge.admin import serve_admin
from strongroom.edge.balancer import Balancer, Upstream
from strongroom.edge.cache import Coalescer, EdgeCache
from strongroom.edge.health import HealthChecker
from strongroom.edge.local_ca import ensure_local_pki
from strongroom.edge.metrics import EdgeMetrics
from strongroom.edge.protections import build_protections
from strongroom.edge.retry_budget import RetryBudget
from strongroom.edge.security_events import SecurityEvents
from strongroom.edge.server import (
    TIMEOUT_TICK_S,
    Buffered,
    ClientConnection,
    EdgeState,
    sweep_timeouts,
)
from strongroom.edge.tls import ReloadingContext
from strongroom.edge.upstream import UpstreamPool
from strongroom.edge.upstreams_file import UpstreamsWatcher
from strongroom.gc_tuning import tune_gc
from strongroom.observe.logging import configure_logging

log = structlog.get_logger("strongroom.edge")

# Pending connections the kernel may queue per worker; bursts of new TLS clients
# beyond this see SYN retries rather than resets.
LISTEN_BACKLOG = 4096
# After SIGTERM, busy connections get this long to finish their response.
SHUTDOWN_GRACE_S = 10.0


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class EdgeWorker:
    """Wires the edge's parts together; `serve()` runs until `stop()`."""

    def __init__(self, settings: Settings, index: int, zone: str) -> None:
        self.settings = settings
        self.index = index
        self.zone = zone
        edge = settings.edge
        self.balancer = Balancer(edge.balancer, zone)
        self.metrics = EdgeMetrics()
        cache = EdgeCache(edge.cache) if edge.cache.enabled else None
        self.state = EdgeState(
            settings=edge,
            balancer=self.balancer,
            pool=UpstreamPool(edge.balancer),
            retry_budget=RetryBudget(
                edge.balancer.retry_budget_ratio, edge.balancer.retry_budget_min_per_s
            ),
            metrics=self.metrics,
            edge_secret=settings.secrets.edge_secret.get_secret_value().encode(),
            cache=cache,
            coalescer=Coalescer[Buffered](waiters_max=edge.cache.coalesce_waiters_max)
            if cache is not None
            else None,
        )
        self.events = SecurityEvents(settings.data_dir / "security-events", index)
        self.protections = build_protections(settings, index, self.events)
        self.state.set_gates(
            self.protections.head_gates,
            self.protections.body_gates,
            self.protections.connection_gates,
            self.protections.inspect_body_bytes_max,
        )
        for collector in self.protections.collectors:
            self.metrics.registry.register(collector)
        self.metrics.watch_state(
            self.balancer.snapshot,
            lambda: len(self.state.connections),
            self.state.pool.idle_count,
        )
        self.tls: ReloadingContext | None = None
        self._stopping = asyncio.Event()
        self.started_at = time.time()
        self.port = edge.port

    def health(self) -> dict[str, object]:
        return {
            "status": "stopping" if self._stopping.is_set() else "ok",
            "worker": self.index,
            "zone": self.zone,
            "version": self.settings.version,
            "connections": len(self.state.connections),
            "upstreams": self.balancer.snapshot(),
            "protections": self.protections.snapshot(),
            "gate_us": gate_percentiles(self.state.gate_ns),
            "security_events": {
                "emitted": dict(self.events.emitted),
                "dropped": self.events.dropped,
                "recent": list(self.events.recent)[-20:],
            },
        }

    def _apply_upstreams(self, upstreams: list[Upstream]) -> None:
        before = {pod.upstream.name for pod in self.balancer.pods}
        self.balancer.set_upstreams(upstreams)
        for gone in before - {u.name for u in upstreams}:
            self.state.pool.drop_pod(gone)
        log.info("edge.upstreams_applied", pods=[u.name for u in upstreams])

    def stop(self) -> None:
        self._stopping.set()

    async def serve(self, sock: socket.socket | None = None) -> None:
        settings = self.settings
        edge = settings.edge
        ssl_ctx: ssl.SSLContext | None = None
        if not edge.plaintext:
            paths = ensure_local_pki(settings)
            self.tls = ReloadingContext(paths.cert, paths.key)
            ssl_ctx = self.tls.context
        loop = asyncio.get_running_loop()
        if sock is None:
            sock = listening_socket(edge.host, edge.port)
        self.port = sock.getsockname()[1]
        watcher = UpstreamsWatcher(
            settings.run_dir / "upstreams.json", self._apply_upstreams, poll_s=edge.reload_poll_s
        )
        watcher.poll()
        checker = HealthChecker(self.balancer, edge.balancer)
        server = await loop.create_server(
            lambda: ClientConnection(self.state),
            sock=sock,
            ssl=ssl_ctx,
            ssl_handshake_timeout=edge.limits.header_read_timeout_s if ssl_ctx else None,
        )
        admin = await serve_admin(
            edge.admin_host, edge.admin_port + self.index, self.metrics.registry, self.health
        )
        tasks = [
            loop.create_task(checker.run(), name="health-checks"),
            loop.create_task(self._housekeeping(watcher), name="housekeeping"),
            loop.create_task(self._timeouts(), name="timeouts"),
            loop.create_task(self.events.run(), name="security-events"),
            *(
                loop.create_task(part.run(), name=f"protection-{name}")
                for name, part in self.protections.parts.items()
            ),
        ]
        log.info(
            "edge.started",
            worker=self.index,
            zone=self.zone,
            port=self.port,
            tls=ssl_ctx is not None,
        )
        try:
            await self._stopping.wait()
        finally:
            await self._shutdown(server, admin, tasks)

    async def _housekeeping(self, watcher: UpstreamsWatcher) -> None:
        period = self.settings.edge.reload_poll_s
        while True:
            await asyncio.sleep(period)
            try:
                watcher.poll()
                if self.tls is not None and self.tls.maybe_reload():
                    log.info("edge.certificate_reloaded")
                self.state.pool.sweep()
            except Exception:
                log.exception("edge.housekeeping_failed")

    async def _timeouts(self) -> None:
        while True:
            await asyncio.sleep(TIMEOUT_TICK_S)
            try:
                sweep_timeouts(self.state)
            except Exception:
                log.exception("edge.timeout_sweep_failed")

    async def _shutdown(
        self, server: asyncio.Server, admin: asyncio.Server, tasks: list[asyncio.Task[None]]
    ) -> None:
        """Stop accepting, let in-flight responses finish, then close everything."""
        self.state.accepting = False
        server.close()
        for conn in list(self.state.connections):
            conn.shutdown()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while self.state.connections and time.monotonic() < deadline:  # noqa: ASYNC110 - bounded poll of a set other callbacks shrink
            await asyncio.sleep(0.05)
        for conn in list(self.state.connections):
            if conn.transport is not None:
                conn.transport.abort()
        # Protections first (they emit their last aggregated events as they stop), then the
        # security-event writer, whose final flush then includes them.
        events_task = next(t for t in tasks if t.get_name() == "security-events")
        for task in [t for t in tasks if t is not events_task] + [events_task]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.state.pool.close()
        admin.close()
        log.info("edge.stopped", worker=self.index)


def gate_percentiles(samples: Iterable[int]) -> dict[str, float | int]:
    """p50/p99 of the gates' time per recent request, in µs (protection's added cost)."""
    ordered = sorted(samples)
    if not ordered:
        return {"samples": 0}
    n = len(ordered)
    return {
        "samples": n,
        "p50": round(ordered[(n - 1) // 2] / 1000, 1),
        "p99": round(ordered[min(n - 1, (n * 99) // 100)] / 1000, 1),
    }


def run(settings: Settings, index: int, zone: str) -> None:
    """Process entry point used by the supervisor."""
    configure_logging(settings, role="edge", worker=index, zone=zone)

    async def main() -> None:
        worker = EdgeWorker(settings, index, zone)
        tune_gc(settings.edge.gc_young_threshold)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.serve()

    uvloop.run(main())
