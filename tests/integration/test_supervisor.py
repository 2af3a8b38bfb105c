"""The supervisor runs real OS processes: fake roles defined below stand in for edge/pod/worker.

The fake roles are started through the real child entry point
(``python -m strongroom.runtime.child <role> --entry tests.integration.test_supervisor:fake_*``)
and log ``start``/``term``/``exit`` lines to a shared file, so the tests observe
restarts and the stop order from outside the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from strongroom.config import Settings
from strongroom.runtime.lock import SupervisorAlreadyRunningError
from strongroom.runtime.state import pid_alive, read_state, read_upstreams
from strongroom.runtime.supervisor import Supervisor

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENTS_ENV = "STRONGROOM_TEST_EVENTS_FILE"
STUBBORN_ENV = "STRONGROOM_TEST_STUBBORN"
# Fake roles linger this long after SIGTERM, so a supervisor that did not wait for one
# role before signalling the next would interleave their lines in the events file.
FAKE_DRAIN_S = 0.2
MODULE = "tests.integration.test_supervisor"
ENTRYPOINTS = {
    "edge": f"{MODULE}:fake_edge",
    "pod": f"{MODULE}:fake_pod",
    "worker": f"{MODULE}:fake_worker",
}
READY_TIMEOUT_S = 20.0


# Fake roles (run inside child processes) -------------------------------------------------
def _record(event: str) -> None:
    with open(os.environ[EVENTS_ENV], "a", encoding="utf-8") as handle:
        handle.write(event + "\n")


def _fake_role(name: str, host: str | None, port: int | None) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        if os.environ.get(STUBBORN_ENV) == name:
            loop.add_signal_handler(signal.SIGTERM, lambda: None)
        else:
            loop.add_signal_handler(signal.SIGTERM, stop.set)

        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
            writer.close()

        server = None
        if host is not None and port is not None:
            server = await asyncio.start_server(answer, host, port, reuse_address=True)
        _record(f"start {name} {os.getpid()}")
        await stop.wait()
        _record(f"term {name}")
        await asyncio.sleep(FAKE_DRAIN_S)
        if server is not None:
            server.close()
        _record(f"exit {name}")

    asyncio.run(main())


def fake_edge(settings: Settings, index: int, zone: str) -> None:
    _fake_role(f"edge-{index}", settings.edge.admin_host, settings.edge.admin_port + index)


def fake_pod(settings: Settings, index: int, zone: str) -> None:
    _fake_role(f"pod-{index}", settings.pods.host, settings.pods.port_base + index)


def fake_worker(settings: Settings, index: int) -> None:
    _fake_role(f"worker-{index}", None, None)


# Helpers ---------------------------------------------------------------------------------
def free_port_block(count: int) -> int:
    """A base port such that base..base+count-1 are all free on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base + count > 65535:
            continue
        sockets = []
        try:
            for offset in range(count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no block of free ports found")


def make_settings(tmp_path: Path, **supervisor: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        pods={"count": 2, "port_base": free_port_block(2), "zones": ["a", "b"]},
        edge={"workers": 2, "port": free_port_block(1), "admin_port": free_port_block(2)},
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
        env={"PYTHONPATH": str(REPO_ROOT), EVENTS_ENV: str(events), **env},
    )


def events_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


# Tests -----------------------------------------------------------------------------------
def test_started_processes_become_healthy_and_are_published_in_state_json(tmp_path: Path):
    settings = make_settings(tmp_path)
    events = tmp_path / "events"

    async def scenario() -> None:
        async with make_supervisor(settings, events) as sup:
            await sup.wait_ready(READY_TIMEOUT_S)
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
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events") as sup:
            await sup.wait_ready(READY_TIMEOUT_S)
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
            await sup.wait_ready(READY_TIMEOUT_S)
            assert sup.processes["pod-1"].restarts == 0

    run(scenario)


def test_backoff_resets_after_the_child_stayed_up(tmp_path: Path):
    settings = make_settings(tmp_path, restart_backoff_reset_s=0.5)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events") as sup:
            await sup.wait_ready(READY_TIMEOUT_S)
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
        sup = make_supervisor(settings, events)
        await sup.start()
        await sup.wait_ready(READY_TIMEOUT_S)
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
    settings = make_settings(tmp_path)
    events = tmp_path / "events"

    async def scenario() -> None:
        sup = make_supervisor(settings, events)
        await sup.start()
        await sup.wait_ready(READY_TIMEOUT_S)
        sup.request_stop()
        sup.kill("worker-0", signal.SIGKILL)
        await asyncio.sleep(settings.supervisor.restart_backoff_initial_s * 2)
        await sup.stop()
        assert sup.processes["worker-0"].pid is None

    run(scenario)
    starts = [line for line in events_of(events) if line.startswith("start worker-0")]
    assert len(starts) == 1


def test_child_ignoring_sigterm_is_killed_after_stop_timeout(tmp_path: Path):
    settings = make_settings(tmp_path, stop_timeout_s=0.5)
    events = tmp_path / "events"

    async def scenario() -> None:
        sup = make_supervisor(settings, events, **{STUBBORN_ENV: "pod-1"})
        await sup.start()
        await sup.wait_ready(READY_TIMEOUT_S)
        pid = sup.processes["pod-1"].pid
        started = time.monotonic()
        await sup.stop()
        assert 0.5 <= time.monotonic() - started < 5.0
        assert not pid_alive(pid)

    run(scenario)
    assert "exit pod-1" not in events_of(events)


def test_second_supervisor_on_the_same_data_dir_is_refused(tmp_path: Path):
    settings = make_settings(tmp_path)

    async def scenario() -> None:
        async with make_supervisor(settings, tmp_path / "events"):
            second = make_supervisor(settings, tmp_path / "events2")
            with pytest.raises(SupervisorAlreadyRunningError):
                await second.start()
            assert not (tmp_path / "events2").exists()

    run(scenario)
