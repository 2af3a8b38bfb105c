"""The background worker: periodic jobs, job failures, certificate renewal, SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from strongroom.config import SETTINGS_FILE_ENV_VAR, Settings
from strongroom.runtime import worker
from strongroom.runtime.state import write_settings
from strongroom.runtime.worker import Job, JobFailedError, cert_renewal_job, jobs_for, serve


def fast_settings(**workers: object) -> Settings:
    return Settings(workers={"shutdown_timeout_s": 1.0, **workers})


def run_until(
    jobs: list[Job],
    done: Callable[[], bool],
    settings: Settings | None = None,
    limit_s: float = 5.0,
) -> None:
    """Serve ``jobs`` until ``done()`` holds (or ``limit_s`` passes), then stop them."""

    async def main() -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            deadline = time.monotonic() + limit_s
            while not done() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            stop.set()

        watcher = asyncio.create_task(watch())
        await serve(settings or fast_settings(), jobs, stop)
        await watcher

    asyncio.run(main())


def test_periodic_job_runs_at_once_and_then_every_interval():
    calls: list[float] = []
    started = time.monotonic()
    run_until(
        [worker.periodic_job("tick", 0.05, lambda: calls.append(time.monotonic()))],
        lambda: len(calls) >= 3,
    )
    assert calls[0] - started < 0.5
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.045 for gap in gaps)


def test_failing_step_is_retried_at_the_next_interval():
    attempts: list[int] = []

    def flaky() -> None:
        attempts.append(1)
        raise OSError("disk full")

    run_until([worker.periodic_job("flaky", 0.05, flaky)], lambda: len(attempts) >= 3)
    assert len(attempts) >= 3


def test_job_that_raises_stops_the_worker_with_an_error():
    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("relay lost its cursor")

    async def main() -> None:
        await serve(fast_settings(), [Job("broken", broken)], asyncio.Event())

    with pytest.raises(JobFailedError):
        asyncio.run(main())


def test_job_ignoring_stop_is_cancelled_after_the_shutdown_timeout():
    async def stubborn(stop: asyncio.Event) -> None:
        await asyncio.sleep(60)

    started = time.monotonic()
    run_until([Job("stubborn", stubborn)], lambda: True, fast_settings(shutdown_timeout_s=0.2))
    assert time.monotonic() - started < 2.0


def test_only_worker_zero_renews_certificates():
    settings = fast_settings()
    assert cert_renewal_job(settings, 0) is not None
    assert cert_renewal_job(settings, 1) is None


def test_configured_certificates_are_not_renewed(tmp_path: Path):
    settings = Settings(tls={"cert_file": tmp_path / "c.pem", "key_file": tmp_path / "k.pem"})
    assert cert_renewal_job(settings, 0) is None


def test_cert_renewal_job_calls_renew_leaf_if_needed_every_interval(
    monkeypatch: pytest.MonkeyPatch,
):
    calls: list[Settings] = []
    monkeypatch.setattr(worker, "renew_leaf_if_needed", lambda s: calls.append(s) or False)
    settings = fast_settings(cert_check_interval_s=0.05)
    job = cert_renewal_job(settings, 0)
    assert job is not None
    run_until([job], lambda: len(calls) >= 3, settings)
    assert len(calls) >= 3
    assert all(s is settings for s in calls)


def test_default_jobs_include_cert_renewal_on_worker_zero():
    assert [job.name for job in jobs_for(fast_settings(), 0)] == [
        "cert-renewal",
        "key-rotation",
        "ledger-maintenance",
        "audit-sequencer",
    ]


def test_new_jobs_register_through_a_factory():
    async def relay(stop: asyncio.Event) -> None:
        await stop.wait()

    def relay_factory(settings: Settings, index: int) -> Job | None:
        return Job("outbox-relay", relay)

    names = [job.name for job in jobs_for(fast_settings(), 1, [relay_factory])]
    assert names == ["outbox-relay"]


def test_worker_process_exits_zero_on_sigterm(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, workers={"shutdown_timeout_s": 1.0})
    settings_file = write_settings(tmp_path, settings)
    env = {**os.environ, SETTINGS_FILE_ENV_VAR: str(settings_file)}
    # Worker 1 runs no singleton jobs, so the test needs no PKI.
    child = subprocess.Popen(
        [sys.executable, "-m", "strongroom.runtime.child", "worker", "--index", "1", "--zone", "a"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # "worker running": the signal handlers are installed
        assert b"worker running" in line
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
