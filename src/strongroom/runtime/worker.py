"""The background-worker process: runs jobs until SIGTERM, then exits 0.

A job is an async function that runs until a stop event is set. Periodic
work (certificate renewal) wraps a blocking step with ``periodic_job``;
long-running consumers (outbox relay, audit sequencer) are jobs of their own.
To add one, append a factory to ``JOB_FACTORIES``: it receives the settings
and the worker index and returns a ``Job``, or None when that worker should
not run it (e.g. singleton jobs run on worker 0 only).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from strongroom.config import Settings
from strongroom.edge.local_ca import renew_leaf_if_needed
from strongroom.observe.logging import configure_logging

log = structlog.get_logger("strongroom.runtime.worker")

JobRun = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Job:
    name: str
    # Runs until the event is set, then returns. Raising ends the worker process
    # with an error so the supervisor restarts it.
    run: JobRun


JobFactory = Callable[[Settings, int], Job | None]


class JobFailedError(RuntimeError):
    """A job raised: the worker exits non-zero (stable id: ``worker-job-failed``)."""


def periodic_job(name: str, interval_s: float, step: Callable[[], object]) -> Job:
    """Run a blocking ``step`` in a thread at once and then every ``interval_s``.

    A failing step is logged and retried at the next interval: one bad check
    (a full disk, say) must not take down the other jobs of the worker.
    """

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(step)
            except Exception:
                log.exception("job step failed", job=name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    return Job(name=name, run=run)


def cert_renewal_job(settings: Settings, index: int) -> Job | None:
    """Renew the local CA's leaf before it expires; edge workers reload it by mtime.

    Only worker 0 renews (two renewers would race on the same files), and only
    when the certificate comes from the local CA rather than the operator.
    """
    if index != 0 or settings.tls.cert_file is not None:
        return None

    def step() -> None:
        if renew_leaf_if_needed(settings):
            log.info("leaf certificate renewed", tls_dir=str(settings.tls_dir))

    return periodic_job("cert-renewal", settings.workers.cert_check_interval_s, step)


def key_rotation_job(settings: Settings, index: int) -> Job | None:
    """Rotate the token signing key when due (worker 0 only: one rotator)."""
    if index != 0:
        return None
    from strongroom.runtime.signing_keys import (  # noqa: PLC0415 - SQLAlchemy import
        ROTATION_CHECK_INTERVAL_S,
        rotate_if_due,
    )

    return periodic_job("key-rotation", ROTATION_CHECK_INTERVAL_S, lambda: rotate_if_due(settings))


def ledger_maintenance_job(settings: Settings, index: int) -> Job | None:
    """Expire due holds every ``ledger.hold_expiry_poll_s`` and purge expired
    Idempotency-Keys (worker 0 only; expiring twice would be refused anyway)."""
    if index != 0:
        return None
    import time  # noqa: PLC0415

    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415 - SQLAlchemy import
    from strongroom.adapters.db.ledger_store import SqlLedgerStore  # noqa: PLC0415
    from strongroom.ledger.maintenance import expire_due_holds  # noqa: PLC0415
    from strongroom.ledger.model import now_us  # noqa: PLC0415

    store = SqlLedgerStore(
        make_engine(settings), hot_account_shards=settings.ledger.hot_account_shards
    )
    purge_every_s = 60.0
    last_purge = 0.0

    def step() -> None:
        nonlocal last_purge
        now = now_us()
        expired = expire_due_holds(store, now)
        if expired:
            log.info("holds expired", count=expired)
        if time.monotonic() - last_purge >= purge_every_s:
            last_purge = time.monotonic()
            purged = store.purge_keys(now)
            if purged:
                log.info("idempotency keys purged", count=purged)

    return periodic_job("ledger-maintenance", settings.ledger.hold_expiry_poll_s, step)


def audit_sequencer_job(settings: Settings, index: int) -> Job | None:
    """Sequence audit entries into the Merkle tree and publish signed checkpoints.

    Worker 0 only, and on PostgreSQL only while holding the one-sequencer advisory lock
    (another host's worker waits for it). Blocking database steps run in a thread; a failed
    step is logged and retried after ``audit.poll_interval_s`` (the sequencer reloads its
    state from the store first), so a database restart does not end the worker.
    """
    if index != 0:
        return None
    import time  # noqa: PLC0415

    from strongroom.adapters.db.audit_store import (  # noqa: PLC0415 - SQLAlchemy import
        SequencerLock,
        SqlAuditStore,
    )
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415
    from strongroom.audit.sequencer import Sequencer  # noqa: PLC0415
    from strongroom.ledger.model import now_us  # noqa: PLC0415
    from strongroom.runtime.audit_export import CheckpointExporter  # noqa: PLC0415
    from strongroom.runtime.audit_key import load_or_create_signer  # noqa: PLC0415

    audit = settings.audit

    async def run(stop: asyncio.Event) -> None:
        engine = make_engine(settings)
        lock = SequencerLock(engine)
        exporter = CheckpointExporter(audit.export_path, audit.export_url, audit.export_timeout_s)
        try:
            signer = await asyncio.to_thread(
                load_or_create_signer, settings.audit_key_path, audit.origin
            )
            while not await asyncio.to_thread(lock.try_acquire):
                log.info("audit sequencer waiting for the lock")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), audit.poll_interval_s * 10)
                if stop.is_set():
                    return
            sequencer = Sequencer(
                SqlAuditStore(engine),
                signer,
                origin=audit.origin,
                checkpoint_interval_s=audit.checkpoint_interval_s,
                gap_grace_s=audit.gap_grace_s,
                clock=time.monotonic,
                now_us=now_us,
                batch_max=audit.batch_max,
                on_publish=exporter,
            )
            while not stop.is_set():
                wait_s = audit.poll_interval_s
                try:
                    result, _ = await asyncio.to_thread(sequencer.run_once)
                except Exception:
                    log.exception("audit sequencer step failed")
                else:
                    if result.gaps_abandoned:
                        log.warning("audit gaps abandoned", count=result.gaps_abandoned)
                    if result.sequenced >= audit.batch_max:
                        wait_s = 0.0  # more are waiting
                    due = sequencer.seconds_until_due()
                    if due is not None:
                        wait_s = min(wait_s, due)
                if wait_s > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait_s)
        finally:
            await asyncio.to_thread(lock.release)
            await asyncio.to_thread(exporter.close)
            engine.dispose()

    return Job(name="audit-sequencer", run=run)


JOB_FACTORIES: list[JobFactory] = [
    cert_renewal_job,
    key_rotation_job,
    ledger_maintenance_job,
    audit_sequencer_job,
]


def jobs_for(
    settings: Settings, index: int, factories: Sequence[JobFactory] | None = None
) -> list[Job]:
    chosen = JOB_FACTORIES if factories is None else factories
    return [job for factory in chosen if (job := factory(settings, index)) is not None]


async def serve(settings: Settings, jobs: Sequence[Job], stop: asyncio.Event) -> None:
    """Run ``jobs`` until ``stop`` is set, then give them a bounded time to finish."""
    failures: list[BaseException] = []

    def on_done(task: asyncio.Task[None]) -> None:
        if task.cancelled() or stop.is_set():
            return
        exc = task.exception()
        if exc is not None:
            log.error("job failed", job=task.get_name(), error=repr(exc))
            failures.append(exc)
            stop.set()

    tasks = [asyncio.create_task(job.run(stop), name=job.name) for job in jobs]
    for task in tasks:
        task.add_done_callback(on_done)
    log.info("worker running", jobs=[job.name for job in jobs])
    await stop.wait()
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=settings.workers.shutdown_timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if failures:
        raise JobFailedError("a worker job failed") from failures[0]


def run(settings: Settings, index: int, jobs: Sequence[Job] | None = None) -> None:
    """Process entry: run this worker's jobs; SIGTERM/SIGINT → graceful return (exit 0)."""

    configure_logging(settings, role="worker", worker=index)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, jobs_for(settings, index) if jobs is None else jobs, stop)
        log.info("worker stopped", index=index)

    asyncio.run(main())
