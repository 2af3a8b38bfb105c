"""The supervisor runs real OS processes; fake roles stand in for edge, pod and worker.

The fakes (``supervisor_fake_roles``) start through the real child entry point
(``python -m strongroom.runtime.child <role> --entry ...``) and log
``start``/``term``/``exit`` lines to a shared file, so the tests observe restarts
and the stop order from outside the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from tests.integration import supervisor_fake_roles as fake_roles

from strongroom.config import Settings
from strongroom.runtime.lock import SupervisorAlreadyRunningError
from strongroom.runtime.state import pid_alive, read_state, read_upstreams
from strongroom.runtime.supervisor import Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINTS = {
    "edge": f"{fake_roles.__name__}:edge",
    "pod": f"{fake_roles.__name__}:pod",
    "worker": f"{fake_roles.__name__}:worker",
}
READY_TIMEOUT_S = 20.0
PORT_BLOCK_LOW = 20000
PORT_BLOCK_HIGH = 32000


# Helpers ---------------------------------------------------------------------------------
def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are all free on 127.0.0.1 right now.

    Drawn below the kernel's ephemeral range (32768+ by default): there, the
    supervisor's own health probes leave client ports in TIME_WAIT, and other
    tests' bind(0) listeners come and go.
    """
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(PORT_BLOCK_LOW, PORT_BLOCK_HIGH - count)
        sockets = []
        try:
            for offset in range(count):
                s = socket.socket()
                sockets.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no block of free ports found")


def make_settings(tmp_path: Path, pods: int = 2, edges: int = 2, **supervisor: Any) -> Settings:
    """Fast supervisor timings on free ports; 2+2 processes by default to test zones."""
    # One block for every port, so pod, edge and admin ports cannot collide with each other.
    base = free_port_block(pods + 1 + edges)
    return Settings(
        data_dir=tmp_path / "data",
        pods={"count": pods, "port_base": base, "zones": ["a", "b"]},
        edge={"workers": edges, "port": base + pods, "admin_port": base + pods + 1},
        workers={"count": 1},
        supervisor={
            "restart_backoff_initial_s": 0.3,
            "restart_backoff_max_s": 5.0,
            "restart_backoff_reset_s": 30.0,
            "health_poll_s": 0.1,
            "health_timeout_s": 0.5,
            "stop_timeout_s": 5.0,
            **supervisor,
        },
    )


def make_supervisor(settings: Settings, events: Path, **env: str) -> Supervisor:
    return Supervisor(
        settings,
        entrypoints=ENTRYPOINTS,
        env={"PYTHONPATH": str(REPO_ROOT), fake_roles.EVENTS_ENV: str(events), **env},
    )


def events_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


async def ready(sup: Supervisor) -> None:
    """wait_ready, failing with every process's state so a slow start can be diagnosed."""
    try:
        await sup.wait_ready(READY_TIMEOUT_S)
    except TimeoutError:
        pytest.fail(f"not ready in {READY_TIMEOUT_S} s: {sup.processes}")


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


# Tests -----------------------------------------------------------------------------------
def test_started_processes_become_healthy_and_are_published_in_state_json(tmp_path: Path):
    settings = make_settings(tmp_path)
    events = tmp_path / "events"

    async def scenario() -> None:
        async with make_supervisor(settings, events) as sup:
            await ready(sup)
            await asyncio.sleep(0.3)  # one more poll, so state.json shows "healthy"
            state = read_state(settings.run_dir)
            assert state is not None
            assert state.supervisor_pid == os.getpid()
            by_name = {p.name: p for p in state.processes}
            assert set(by_name) == {"worker-0", "pod-0", "pod-1", "edge-0", "edge-1"}
            assert all(p.health == "healthy" and pid_alive(p.pid) for p in state.processes)
            assert [by_name["pod-0"].zone, by_name["pod-1"].zone] == ["a", "b"]
            assert [by_name["edge-0"].zone, by_name["edge-1"].zone] == ["a", "b"]
            assert by_name["pod-1"].port == settings.pods.port_base + 1

    run(scenario)


def test_upstreams_and_settings_files_are_written_before_children_start(tmp_path: Path):
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events"):
            upstreams = read_upstreams(settings.run_dir)
            assert upstreams is not None
            assert upstreams.generation == 1
            assert [(u.name, u.port, u.zone) for u in upstreams.upstreams] == [
                ("pod-0", settings.pods.port_base, "a"),
                ("pod-1", settings.pods.port_base + 1, "b"),
            ]
            mode = stat.S_IMODE((settings.run_dir / "settings.json").stat().st_mode)
            assert mode == 0o600

    run(scenario)


def test_killed_child_is_restarted_with_a_new_pid_after_growing_backoff(tmp_path: Path):
    settings = make_settings(tmp_path, pods=2, edges=1)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events") as sup:
            await ready(sup)
            gaps = []
            for _ in range(2):
                old_pid = sup.kill("pod-0", signal.SIGKILL)
                killed_at = time.monotonic()
                new_pid = await sup.wait_restarted("pod-0", old_pid, timeout_s=10)
                gaps.append(time.monotonic() - killed_at)
                assert new_pid != old_pid
                assert not pid_alive(old_pid)
            info = sup.processes["pod-0"]
            assert info.restarts == 2
            assert info.restart_delays == (0.3, 0.6)
            assert gaps[0] >= 0.3
            assert gaps[1] >= 0.6
            await ready(sup)
            assert sup.processes["pod-1"].restarts == 0

    run(scenario)


def test_backoff_resets_after_the_child_stayed_up(tmp_path: Path):
    settings = make_settings(tmp_path, pods=1, edges=1, restart_backoff_reset_s=0.5)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events") as sup:
            await ready(sup)
            pid = sup.kill("worker-0")
            pid = await sup.wait_restarted("worker-0", pid, timeout_s=10)
            await asyncio.sleep(0.7)
            pid = sup.kill("worker-0")
            await sup.wait_restarted("worker-0", pid, timeout_s=10)
            assert sup.processes["worker-0"].restart_delays == (0.3, 0.3)

    run(scenario)


def test_stop_terminates_edge_then_pods_then_workers(tmp_path: Path):
    settings = make_settings(tmp_path)
    events = tmp_path / "events"

    async def scenario() -> None:
        async with make_supervisor(settings, events) as sup:
            await ready(sup)
            await sup.stop()
            assert sup.stop_sequence == ["edge", "pod", "worker"]
            assert all(info.pid is None for info in sup.processes.values())
            assert all(info.health == "stopped" for info in sup.processes.values())

    run(scenario)
    lines = [line for line in events_of(events) if not line.startswith("start")]
    role_order = [line.split()[1].split("-")[0] for line in lines]
    # Every edge line (term and exit) precedes every pod line, which precede the worker's.
    assert role_order == sorted(role_order, key=["edge", "pod", "worker"].index)
    assert sum(1 for line in lines if line.startswith("exit")) == 5
    state = read_state(settings.run_dir)
    assert state is not None
    assert {p.health for p in state.processes} == {"stopped"}


def test_child_that_dies_during_shutdown_is_not_restarted(tmp_path: Path):
    settings = make_settings(tmp_path, pods=1, edges=1)
    events = tmp_path / "events"

    async def scenario() -> None:
        async with make_supervisor(settings, events) as sup:
            await ready(sup)
            async with asyncio.timeout(READY_TIMEOUT_S):
                while not any(line.startswith("start worker-0") for line in events_of(events)):
                    await asyncio.sleep(0.05)
            sup.request_stop()
            sup.kill("worker-0", signal.SIGKILL)
            await asyncio.sleep(settings.supervisor.restart_backoff_initial_s * 2)
            await sup.stop()
            assert sup.processes["worker-0"].pid is None
            assert sup.processes["worker-0"].restarts == 0

    run(scenario)
    starts = [line for line in events_of(events) if line.startswith("start worker-0")]
    assert len(starts) == 1


def test_child_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path):
    settings = make_settings(tmp_path, pods=2, edges=1, stop_timeout_s=0.5)
    events = tmp_path / "events"

    async def scenario() -> None:
        stubborn = {fake_roles.STUBBORN_ENV: "pod-1"}
        async with make_supervisor(settings, events, **stubborn) as sup:
            await ready(sup)
            pid = sup.processes["pod-1"].pid
            started = time.monotonic()
            await sup.stop()
            assert 0.5 <= time.monotonic() - started < 5.0
            assert not pid_alive(pid)

    run(scenario)
    assert "exit pod-1" not in events_of(events)


def test_second_supervisor_on_the_same_data_dir_is_refused(tmp_path: Path):
    settings = make_settings(tmp_path, pods=1, edges=1)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events"):
            second = make_supervisor(settings, tmp_path / "events2")
            with pytest.raises(SupervisorAlreadyRunningError):
                await second.start()
            assert not (tmp_path / "events2").exists()

    run(scenario)
