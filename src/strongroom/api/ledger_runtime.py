"""Per-pod wiring of the ledger: one store and one group committer, built at start-up.

Every write of every request at this pod goes through the one :class:`GroupCommitter`,
so concurrent transfers share database transactions (one fsync per group, not per
transfer). SQLite has a single writer: a second group in flight would only wait for the
first, so the committer runs one group at a time there.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.engine import Engine

from strongroom.adapters.db.engine import is_sqlite, make_engine
from strongroom.adapters.db.ledger_store import SqlLedgerStore
from strongroom.config import LedgerSettings, Settings
from strongroom.ledger.group_commit import GroupCommitter


class LedgerRuntime:
    def __init__(self, settings: Settings, engine: Engine) -> None:
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
            self.store, max_units=ledger.group_commit_max_units, concurrency=concurrency
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.dispose()


def ledger_runtime(request: Request) -> LedgerRuntime:
    runtime: LedgerRuntime = request.app.state.ledger
    return runtime
