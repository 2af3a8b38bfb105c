"""The supervisor: starts every child process, restarts crashed ones, stops them in order.

One asyncio task per child waits for it to exit and restarts it after an
exponential backoff; one task probes health and publishes ``run/state.json``.
Stopping is ordered (edge → pods → workers) so traffic stops arriving before
the processes that serve it go away.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import structlog

from strongroom.config import SETTINGS_FILE_ENV_VAR, Settings
from strongroom.edge.local_ca import tls_paths
from strongroom.edge.tls import edge_openssl_env
from strongroom.runtime.health import probe_status
from strongroom.runtime.lock import PidLock
from strongroom.runtime.process import (
    START_ORDER,
    STOP_ORDER,
    SUPERVISOR_PID_ENV_VAR,
    Backoff,
    ProcessSpec,
    Role,
    build_specs,
    child_command,
)
from strongroom.runtime.state import (
    LOCK_FILE,
    Health,
    ProcessState,
    RunState,
    Upstream,
    ensure_run_dir,
    write_settings,
    write_state,
    write_upstreams,
)

# Upstream weight of a pod in a plain (non-canary) deployment.
DEFAULT_UPSTREAM_WEIGHT = 100
_LOCAL_HOSTS = frozenset({"0.0.0.0", "127.0.0.1", "::", "::1", "localhost"})

log = structlog.get_logger("strongroom.runtime.supervisor")

Prepare = Callable[[Settings], object]


@dataclass(frozen=True)
class ProcessInfo:
    """A snapshot of one child, as tests and the CLI see it."""

    name: str
    role: Role
    index: int
    zone: str
    port: int | None
    version: str
    pid: int | None
    health: Health
    restarts: int
    started_at: float | None
    restart_delays: tuple[float, ...]


@dataclass
class _Managed:
    spec: ProcessSpec
    backoff: Backoff
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    process: asyncio.subprocess.Process | None = None
    health: Health = "starting"
    restarts: int = 0
    started_at: float | None = None
    started_monotonic: float = 0.0
    restart_delays: list[float] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def running_pid(self) -> int | None:
        if self.process is None or self.process.returncode is not None:
            return None
        return self.process.pid


def edge_url(settings: Settings) -> str:
    """The URL clients use; loopback/wildcard binds are shown as ``localhost`` (in the leaf)."""
    host = "localhost" if settings.edge.host in _LOCAL_HOSTS else settings.edge.host
    scheme = "http" if settings.edge.plaintext else "https"
    return f"{scheme}://{host}:{settings.edge.port}"


def ca_cert_path(settings: Settings) -> str | None:
    """The local CA's certificate, or None when the operator supplies certificates."""
    ca_cert = tls_paths(settings).ca_cert
    return None if ca_cert is None else str(ca_cert)


class Supervisor:
    """Run the platform's processes on this host.

    ``entrypoints`` (role → ``module:function``) and ``env`` let tests run fake
    roles through the real process machinery; ``prepare`` runs after the data
    dir is locked and before any child starts (PKI, migrations).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        entrypoints: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        prepare: Prepare | None = None,
    ) -> None:
        self.settings = settings.model_copy(update={"data_dir": settings.data_dir.resolve()})
        self._entrypoints = dict(entrypoints or {})
        self._extra_env = dict(env or {})
        self._prepare = prepare
        self._lock = PidLock(self.settings.run_dir / LOCK_FILE)
        self._managed: dict[str, _Managed] = {}
        self._stopping = False
        self._stop_task: asyncio.Future[None] | None = None
        self._stop_event = asyncio.Event()
        self._changed = asyncio.Condition()
        self._health_task: asyncio.Task[None] | None = None
        self._started_at = 0.0
        self._child_env: dict[str, str] = {}
        # Roles in the order stop() signalled them; tests assert edge → pod → worker.
        self.stop_sequence: list[Role] = []

    # Public API ------------------------------------------------------------------
    @property
    def processes(self) -> dict[str, ProcessInfo]:
        return {name: self._info(m) for name, m in self._managed.items()}

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        """Lock the data dir, prepare it, publish the run files and start every child."""
        run_dir = ensure_run_dir(self.settings)
        self._lock.acquire()
        try:
            if self._prepare is not None:
                await asyncio.to_thread(self._prepare, self.settings)
            settings_file = write_settings(run_dir, self.settings)
            write_upstreams(run_dir, self._upstreams())
            self._started_at = time.time()
            self._child_env = {
                **os.environ,
                **self._extra_env,
                SETTINGS_FILE_ENV_VAR: str(settings_file),
                SUPERVISOR_PID_ENV_VAR: str(os.getpid()),
            }
            specs = build_specs(self.settings)
            for role in START_ORDER:
                for spec in (s for s in specs if s.role == role):
                    managed = _Managed(spec=spec, backoff=Backoff.from_settings(self.settings))
                    self._managed[spec.name] = managed
                    await self._spawn(managed)
            for managed in self._managed.values():
                managed.task = asyncio.create_task(
                    self._supervise(managed), name=f"supervise-{managed.spec.name}"
                )
            self._publish_state()
            self._health_task = asyncio.create_task(self._poll_health(), name="health-poll")
        except BaseException:
            await self.stop()
            raise

    async def wait_ready(self, timeout_s: float | None = None) -> None:
        """Return once every child is healthy; TimeoutError after ``timeout_s``.

        The default bound is ``supervisor.startup_timeout_s``.
        """
        limit_s = self.settings.supervisor.startup_timeout_s if timeout_s is None else timeout_s
        await self._wait_for(self.all_healthy, limit_s)

    def all_healthy(self) -> bool:
        return bool(self._managed) and all(m.health == "healthy" for m in self._managed.values())

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send ``sig`` to one child (tests, operators); returns the pid signalled."""
        pid = self._managed[name].running_pid
        if pid is None:
            raise ProcessLookupError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    async def wait_restarted(self, name: str, old_pid: int, timeout_s: float) -> int:
        """Wait until ``name`` runs again under a pid other than ``old_pid``; return it."""
        managed = self._managed[name]

        def restarted() -> bool:
            pid = managed.running_pid
            return pid is not None and pid != old_pid

        await self._wait_for(restarted, timeout_s)
        pid = managed.running_pid
        assert pid is not None
        return pid

    async def wait_stopped(self) -> None:
        """Block until stop() has been requested (e.g. by a signal handler)."""
        await self._stop_event.wait()

    def request_stop(self) -> None:
        """Ask for an ordered stop from a signal handler; stop() does the work.

        Restarts end at once, so a child that dies meanwhile is not started again.
        """
        self._stopping = True
        self._stop_event.set()

    async def stop(self) -> None:
        """Ordered stop: edge workers, then pods, then workers; SIGKILL after the timeout.

        Safe to call twice or concurrently; a cancelled caller does not cancel the stop.
        """
        if self._stop_task is None:
            self._stop_task = asyncio.ensure_future(self._stop_in_order())
        await asyncio.shield(self._stop_task)

    async def _stop_in_order(self) -> None:
        self._stopping = True
        self._stop_event.set()
        for role in STOP_ORDER:
            members = [m for m in self._managed.values() if m.spec.role == role]
            if not members:
                continue
            self.stop_sequence.append(role)
            log.info("stopping role", stopping=role, processes=[m.spec.name for m in members])
            await asyncio.gather(*(self._terminate(m) for m in members))
        if self._health_task is not None:
            self._health_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._health_task
        tasks = [m.task for m in self._managed.values() if m.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._lock.held:
            self._publish_state()
            self._lock.release()

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # Process lifecycle -----------------------------------------------------------
    async def _spawn(self, managed: _Managed) -> None:
        argv = child_command(managed.spec, self._entrypoints)
        env = self._child_env
        if managed.spec.role == "edge":
            env = {**env, **edge_openssl_env(self.settings.run_dir)}
        try:
            managed.process = await asyncio.create_subprocess_exec(
                *argv,
                env=env,
                # Own session: a terminal's Ctrl-C reaches only the supervisor, which
                # then stops the children in order instead of all at once.
                start_new_session=True,
            )
        except OSError as exc:
            managed.process = None
            log.error("spawn failed", process=managed.spec.name, error=str(exc))  # noqa: TRY400
        managed.health = "starting"
        managed.started_at = time.time()
        managed.started_monotonic = time.monotonic()
        if managed.process is not None:
            log.info("process started", process=managed.spec.name, pid=managed.process.pid)
        await self._notify()

    async def _supervise(self, managed: _Managed) -> None:
        """Wait for the child to exit and restart it with backoff until stopping."""
        reset_after_s = self.settings.supervisor.restart_backoff_reset_s
        while True:
            returncode = await managed.process.wait() if managed.process is not None else None
            if self._stopping:
                managed.health = "stopped"
                return
            uptime_s = time.monotonic() - managed.started_monotonic
            if uptime_s >= reset_after_s:
                managed.backoff.reset()
            delay_s = managed.backoff.next_delay()
            managed.restarts += 1
            managed.restart_delays.append(delay_s)
            managed.health = "restarting"
            log.warning(
                "process exited, restarting",
                process=managed.spec.name,
                returncode=returncode,
                uptime_s=round(uptime_s, 3),
                delay_s=delay_s,
                restarts=managed.restarts,
            )
            self._publish_state()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), delay_s)
            async with managed.lock:
                if self._stopping:
                    managed.health = "stopped"
                    return
                await self._spawn(managed)
            self._publish_state()

    async def _terminate(self, managed: _Managed) -> None:
        timeout_s = self.settings.supervisor.stop_timeout_s
        async with managed.lock:
            process = managed.process
            if process is None or process.returncode is not None:
                managed.health = "stopped"
                return
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
            except TimeoutError:
                log.warning("graceful stop timed out, killing", process=managed.spec.name)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            managed.health = "stopped"
            log.info("process stopped", process=managed.spec.name, returncode=process.returncode)

    # Health and state ------------------------------------------------------------
    async def _poll_health(self) -> None:
        interval_s = self.settings.supervisor.health_poll_s
        while not self._stopping:
            await asyncio.gather(*(self._probe(m) for m in self._managed.values()))
            self._publish_state()
            await self._notify()
            await asyncio.sleep(interval_s)

    async def _probe(self, managed: _Managed) -> None:
        process = managed.process
        if process is None or process.returncode is not None:
            return
        spec = managed.spec
        if spec.health_host is None or spec.health_port is None or spec.health_path is None:
            managed.health = "healthy"
            return
        status = await probe_status(
            spec.health_host,
            spec.health_port,
            spec.health_path,
            self.settings.supervisor.health_timeout_s,
        )
        # The child may have been restarted while the probe ran; its answer is stale.
        if managed.process is not process or self._stopping:
            return
        if status is not None and 200 <= status < 300:
            managed.health = "healthy"
        elif managed.health != "starting":
            managed.health = "unhealthy"

    def _publish_state(self) -> None:
        if not self._lock.held:
            return
        state = RunState(
            supervisor_pid=os.getpid(),
            started_at=self._started_at,
            version=self.settings.version,
            edge_url=edge_url(self.settings),
            ca_cert=ca_cert_path(self.settings),
            processes=[self._process_state(m) for m in self._managed.values()],
        )
        try:
            write_state(self.settings.run_dir, state)
        except OSError as exc:
            # A full disk must not stop health tracking or restarts; the next poll retries.
            log.warning("state.json not written", error=str(exc))

    def _process_state(self, managed: _Managed) -> ProcessState:
        spec = managed.spec
        return ProcessState(
            name=spec.name,
            role=spec.role,
            index=spec.index,
            pid=managed.running_pid,
            zone=spec.zone,
            version=self.settings.version,
            port=spec.port,
            health=managed.health,
            restarts=managed.restarts,
            started_at=managed.started_at,
        )

    def _info(self, managed: _Managed) -> ProcessInfo:
        spec = managed.spec
        return ProcessInfo(
            name=spec.name,
            role=spec.role,
            index=spec.index,
            zone=spec.zone,
            port=spec.port,
            version=self.settings.version,
            pid=managed.running_pid,
            health=managed.health,
            restarts=managed.restarts,
            started_at=managed.started_at,
            restart_delays=tuple(managed.restart_delays),
        )

    def _upstreams(self) -> list[Upstream]:
        pods = self.settings.pods
        return [
            Upstream(
                name=f"pod-{i}",
                host=pods.host,
                port=pods.port_base + i,
                zone=self.settings.pod_zone(i),
                weight=DEFAULT_UPSTREAM_WEIGHT,
                version=self.settings.version,
            )
            for i in range(pods.count)
        ]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)
