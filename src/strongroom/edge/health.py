"""Active health checks: every ``health_interval_s`` each edge worker probes every pod's
``health_path`` concurrently and feeds the results to its ``Balancer``.

Passive outlier detection only notices a dead pod by failing real requests; active
checks find it (and find it recovered) without spending client traffic, and see a
draining pod's 503 before it stops accepting connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from strongroom.config import BalancerSettings
from strongroom.edge.balancer import Balancer, Pod, Upstream

logger = logging.getLogger(__name__)

Probe = Callable[[Upstream], Awaitable[int]]

# A status line longer than this is not a health endpoint talking.
STATUS_LINE_BYTES_MAX = 1024
# The contract (docs/architecture.md): an explicit 503 from /readyz means draining or not
# ready, and the edge takes the pod out at once instead of waiting for health_fall.
DRAINING_STATUS = 503
_OK_MIN, _OK_MAX = 200, 299


async def probe_http(upstream: Upstream, *, path: str, timeout_s: float) -> int:
    """``GET path`` over a fresh HTTP/1.1 connection; the status code, or 0 on any failure.

    A fresh ``Connection: close`` connection per probe tests what a new request would
    meet (accept queue, listener) and cannot be confused by a pooled connection's state.
    """
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{upstream.port}\r\n"
        "User-Agent: strongroom-edge-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                upstream.host, upstream.port, limit=STATUS_LINE_BYTES_MAX
            )
            writer.write(request)
            await writer.drain()
            line = await reader.readline()
    except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError):
        return 0
    finally:
        if writer is not None:
            writer.close()
    return _status_code(line)


def _status_code(line: bytes) -> int:
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        return 0
    code = parts[1]
    if len(code) != 3 or not code.isdigit():
        return 0
    return int(code)


class HealthChecker:
    """One asyncio task per edge worker that keeps ``Balancer`` health up to date."""

    def __init__(
        self,
        balancer: Balancer,
        settings: BalancerSettings,
        *,
        probe: Probe | None = None,
    ) -> None:
        self._balancer = balancer
        self._settings = settings
        self._probe = probe or self._default_probe

    async def _default_probe(self, upstream: Upstream) -> int:
        return await probe_http(
            upstream, path=self._settings.health_path, timeout_s=self._settings.health_timeout_s
        )

    async def run(self) -> None:
        """Probe all pods every ``health_interval_s`` until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.check_once()
            elapsed = loop.time() - started
            await asyncio.sleep(max(0.0, self._settings.health_interval_s - elapsed))

    async def check_once(self) -> None:
        """Probe every current pod concurrently; returns within ``health_timeout_s``."""
        pods = list(self._balancer.pods)
        if pods:
            await asyncio.gather(*(self._check(pod) for pod in pods))

    async def _check(self, pod: Pod) -> None:
        upstream = pod.upstream
        status = 0
        # Custom probes get the same bound as the default one; a probe that raises is
        # a failed probe, never a dead checker.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self._settings.health_timeout_s):
                status = await self._probe(upstream)
        if self._balancer.get(upstream.name) is not pod:
            return  # replaced or removed while we probed: the result is about another pod
        was_healthy = pod.healthy
        self._balancer.set_health(
            upstream.name,
            ok=_OK_MIN <= status <= _OK_MAX,
            draining=status == DRAINING_STATUS,
        )
        if pod.healthy != was_healthy:
            logger.info(
                "pod %s is now %s (probe status %s)",
                upstream.name,
                "healthy" if pod.healthy else "unhealthy",
                status or "failed",
            )
