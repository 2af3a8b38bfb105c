"""Active health checks against small real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

from strongroom.config import BalancerSettings
from strongroom.edge.balancer import Balancer, Upstream
from strongroom.edge.health import HealthChecker, probe_http

TIMEOUT_S = 0.2

RESPONSES = {
    "up": b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{"status":"ok"}',
    "draining": (
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 21\r\nConnection: close\r\n\r\n"
        b'{"status":"draining"}'
    ),
    "error": b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
    "garbage": b"SSH-2.0-OpenSSH_9.6\r\n",
}


class Server:
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.requests: list[bytes] = []
        self.port = 0
        self._release = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            if self.mode == "slow":
                await self._release.wait()
            else:
                writer.write(RESPONSES[self.mode])
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def serving(mode: str) -> AsyncIterator[Server]:
    server = Server(mode)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        server._release.set()
        listener.close()
        await listener.wait_closed()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def endpoint(name: str, port: int) -> Upstream:
    return Upstream(name, "127.0.0.1", port, "a")


def settings(**overrides: object) -> BalancerSettings:
    values: dict[str, object] = {
        "health_timeout_s": TIMEOUT_S,
        "health_interval_s": 0.02,
        "health_rise": 2,
        "health_fall": 2,
    }
    values.update(overrides)
    return BalancerSettings(**values)


def seeded_balancer(cfg: BalancerSettings, *upstreams: Upstream) -> Balancer:
    """A balancer whose listed pods joined after start-up, so they start unhealthy."""
    balancer = Balancer(cfg, "a")
    balancer.set_upstreams([endpoint("seed", closed_port())])
    balancer.set_upstreams(list(upstreams))
    return balancer


# The default probe ---------------------------------------------------------------------


def test_probe_sends_get_with_connection_close_and_returns_the_status() -> None:
    async def scenario() -> None:
        async with serving("up") as server:
            status = await probe_http(
                endpoint("p", server.port), path="/readyz", timeout_s=TIMEOUT_S
            )
            assert status == 200
            request = server.requests[0].lower()
            assert request.startswith(b"get /readyz http/1.1\r\n")
            assert b"\r\nconnection: close\r\n" in request
            assert f"host: 127.0.0.1:{server.port}".encode() in request

    asyncio.run(scenario())


def test_probe_of_a_closed_port_returns_zero() -> None:
    async def scenario() -> int:
        return await probe_http(endpoint("p", closed_port()), path="/readyz", timeout_s=TIMEOUT_S)

    assert asyncio.run(scenario()) == 0


def test_probe_of_a_silent_server_gives_up_after_the_timeout() -> None:
    async def scenario() -> tuple[int, float]:
        async with serving("slow") as server:
            started = time.monotonic()
            status = await probe_http(
                endpoint("p", server.port), path="/readyz", timeout_s=TIMEOUT_S
            )
            return status, time.monotonic() - started

    status, elapsed = asyncio.run(scenario())
    assert status == 0
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S * 3


def test_probe_of_a_non_http_server_returns_zero() -> None:
    async def scenario() -> int:
        async with serving("garbage") as server:
            return await probe_http(endpoint("p", server.port), path="/readyz", timeout_s=TIMEOUT_S)

    assert asyncio.run(scenario()) == 0


# The checker ---------------------------------------------------------------------------


def test_a_new_pod_that_answers_becomes_healthy_after_rise_checks() -> None:
    async def scenario() -> list[bool]:
        async with serving("up") as server:
            balancer = seeded_balancer(settings(), endpoint("pod-0", server.port))
            checker = HealthChecker(balancer, balancer.settings)
            seen = []
            for _ in range(2):
                await checker.check_once()
                seen.append(balancer.pods[0].healthy)
            return seen

    assert asyncio.run(scenario()) == [False, True]


def test_a_pod_that_stops_listening_goes_down_after_fall_checks() -> None:
    async def scenario() -> list[bool]:
        cfg = settings()
        balancer = Balancer(cfg, "a")
        balancer.set_upstreams([endpoint("pod-0", closed_port())])
        checker = HealthChecker(balancer, cfg)
        seen = []
        for _ in range(2):
            await checker.check_once()
            seen.append(balancer.pods[0].healthy)
        return seen

    assert asyncio.run(scenario()) == [True, False]


def test_a_draining_503_takes_the_pod_down_after_one_check() -> None:
    async def scenario() -> tuple[bool, bool]:
        async with serving("draining") as server:
            cfg = settings(health_fall=5)
            balancer = Balancer(cfg, "a")
            balancer.set_upstreams([endpoint("pod-0", server.port)])
            await HealthChecker(balancer, cfg).check_once()
            return balancer.pods[0].healthy, balancer.pods[0].draining

    assert asyncio.run(scenario()) == (False, True)


def test_a_500_counts_as_a_failed_check_but_not_as_draining() -> None:
    async def scenario() -> list[bool]:
        async with serving("error") as server:
            cfg = settings()
            balancer = Balancer(cfg, "a")
            balancer.set_upstreams([endpoint("pod-0", server.port)])
            checker = HealthChecker(balancer, cfg)
            seen = []
            for _ in range(2):
                await checker.check_once()
                seen.append(balancer.pods[0].healthy)
            return seen

    assert asyncio.run(scenario()) == [True, False]


def test_a_slow_pod_fails_its_check_within_the_timeout() -> None:
    async def scenario() -> tuple[bool, float]:
        async with serving("slow") as server:
            cfg = settings(health_fall=1)
            balancer = Balancer(cfg, "a")
            balancer.set_upstreams([endpoint("pod-0", server.port)])
            started = time.monotonic()
            await HealthChecker(balancer, cfg).check_once()
            return balancer.pods[0].healthy, time.monotonic() - started

    healthy, elapsed = asyncio.run(scenario())
    assert not healthy
    assert elapsed < TIMEOUT_S * 3


def test_pods_are_probed_concurrently() -> None:
    async def scenario() -> float:
        async with serving("slow") as a, serving("slow") as b, serving("slow") as c:
            cfg = settings()
            balancer = Balancer(cfg, "a")
            balancer.set_upstreams([endpoint(f"pod-{s.port}", s.port) for s in (a, b, c)])
            started = time.monotonic()
            await HealthChecker(balancer, cfg).check_once()
            return time.monotonic() - started

    assert asyncio.run(scenario()) < TIMEOUT_S * 2


def test_a_custom_probe_that_hangs_is_bounded_by_the_timeout() -> None:
    async def hang(upstream: Upstream) -> int:
        await asyncio.sleep(60)
        return 200

    async def scenario() -> tuple[bool, float]:
        cfg = settings(health_fall=1)
        balancer = Balancer(cfg, "a")
        balancer.set_upstreams([endpoint("pod-0", 1)])
        started = time.monotonic()
        await HealthChecker(balancer, cfg, probe=hang).check_once()
        return balancer.pods[0].healthy, time.monotonic() - started

    healthy, elapsed = asyncio.run(scenario())
    assert not healthy
    assert elapsed < TIMEOUT_S * 3


def test_a_probe_that_raises_counts_as_a_failed_check() -> None:
    async def broken(upstream: Upstream) -> int:
        raise RuntimeError("probe bug")

    async def scenario() -> bool:
        cfg = settings(health_fall=1)
        balancer = Balancer(cfg, "a")
        balancer.set_upstreams([endpoint("pod-0", 1)])
        await HealthChecker(balancer, cfg, probe=broken).check_once()
        return balancer.pods[0].healthy

    assert asyncio.run(scenario()) is False


def test_a_result_for_a_pod_replaced_during_the_probe_is_discarded() -> None:
    cfg = settings(health_fall=1)
    balancer = Balancer(cfg, "a")
    balancer.set_upstreams([endpoint("pod-0", 1)])

    async def replacing(upstream: Upstream) -> int:
        balancer.set_upstreams([endpoint("pod-0", 2)])
        for _ in range(cfg.health_rise):
            balancer.set_health("pod-0", ok=True)
        return 0

    asyncio.run(HealthChecker(balancer, cfg, probe=replacing).check_once())
    assert balancer.pods[0].upstream.port == 2
    assert balancer.pods[0].healthy


def test_run_probes_every_interval_and_stops_cleanly_on_cancel() -> None:
    calls: list[float] = []

    async def counting(upstream: Upstream) -> int:
        calls.append(time.monotonic())
        return 200

    async def scenario() -> tuple[bool, int]:
        cfg = settings(health_interval_s=0.02)
        balancer = Balancer(cfg, "a")
        balancer.set_upstreams([endpoint("pod-0", 1)])
        task = asyncio.create_task(HealthChecker(balancer, cfg, probe=counting).run())
        await asyncio.sleep(0.15)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return task.cancelled(), len(others)

    cancelled, leftover = asyncio.run(scenario())
    assert cancelled
    assert leftover == 0
    assert 3 <= len(calls) <= 10


def test_cancel_during_a_probe_stops_the_probe_too() -> None:
    async def scenario() -> tuple[bool, int]:
        async with serving("slow") as server:
            cfg = settings(health_timeout_s=5.0)
            balancer = Balancer(cfg, "a")
            balancer.set_upstreams([endpoint("pod-0", server.port)])
            task = asyncio.create_task(HealthChecker(balancer, cfg).run())
            while not server.requests:
                await asyncio.sleep(0.005)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            others = [
                t
                for t in asyncio.all_tasks()
                if t is not asyncio.current_task() and "handle" not in repr(t.get_coro())
            ]
            return balancer.pods[0].healthy, len(others)

    healthy, leftover = asyncio.run(scenario())
    assert healthy  # the interrupted probe was not counted as a failure
    assert leftover == 0
