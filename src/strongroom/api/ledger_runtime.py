"""Per-pod wiring of the ledger: one store and one group committer, built at start-up.

Every write of every request at this pod goes through the one :class:`GroupCommitter`,
so concurrent transfers share database transactions (one fsync per group, not per
transfer). SQLite has a single writer: a second group in flight would only wait for the
first, so the committer runs one group at a time there.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from prometheus_client import CollectorRegistry, Histogram
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import is_sqlite, make_engine
from strongroom.adapters.db.ledger_store import SqlLedgerStore
from strongroom.config import LedgerSettings, Settings
from strongroom.ledger.group_commit import GroupCommitter
from strongroom.observe.metrics import LATENCY_BUCKETS_S

_UNIT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 8190)


class LedgerRuntime:
    def __init__(
        self, settings: Settings, engine: Engine, registry: CollectorRegistry | None = None
    ) -> None:
        ledger = settings.ledger
        self.settings: LedgerSettings = ledger
        sqlite = is_sqlite(engine)
        # Groups run on their own pool without pre-ping: a round trip less per group (the
        # store retries a group whose pooled connection was dead before it wrote).
        self.writer: Engine | None = (
            None
            if sqlite
            else make_engine(
                settings,
                url=engine.url.render_as_string(hide_password=False),
                pre_ping=False,
            )
        )
        self.store = SqlLedgerStore(
            engine, writer=self.writer, hot_account_shards=ledger.hot_account_shards
        )
        concurrency = 1 if sqlite else ledger.group_commit_concurrency
        self.committer = GroupCommitter(
            self.store,
            max_units=ledger.group_commit_max_units,
            concurrency=concurrency,
            linger_s=ledger.group_commit_linger_s,
            on_group=None if registry is None else _group_metrics(registry),
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.dispose()


def ledger_runtime(request: Request) -> LedgerRuntime:
    runtime: LedgerRuntime = request.app.state.ledger
    return runtime


def _group_metrics(registry: CollectorRegistry) -> Callable[[int, int, float], None]:
    """Requests and commands per group commit, and its time: a group of 1 under load
    means requests are not meeting (too few clients per pod, or a slow database)."""
    units = Histogram(
        "ledger_group_requests",
        "Requests per ledger group commit.",
        namespace="strongroom",
        buckets=_UNIT_BUCKETS,
        registry=registry,
    )
    commands = Histogram(
        "ledger_group_commands",
        "Ledger commands (transfers, holds, legs, ...) per group commit.",
        namespace="strongroom",
        buckets=_UNIT_BUCKETS,
        registry=registry,
    )
    seconds = Histogram(
        "ledger_group_seconds",
        "Time of a ledger group commit, from its first statement to its COMMIT.",
        namespace="strongroom",
        buckets=LATENCY_BUCKETS_S,
        registry=registry,
    )

    def observe(unit_count: int, command_count: int, elapsed_s: float) -> None:
        units.observe(unit_count)
        commands.observe(command_count)
        seconds.observe(elapsed_s)

    return observe
