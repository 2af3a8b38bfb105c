"""Keeps an edge worker's blocklist in step with the store, and builds the protection.

The same shape as the pods' deny list (``adapters.deny_list_sync``): every ``poll_s`` the
worker asks the store for the changes after the last version it applied and applies
them; with the default 0.25 s a block reaches every worker well within a second. The
store call blocks, so it runs in a worker thread and the event loop keeps serving.

At start (in :func:`build_blocklist`, before the worker accepts a connection) the worker
loads every entry in force, so a restarted edge is protected from its first request.
A failed load or poll keeps the last good set — a database blip must not unblock anyone
— is logged once per outage (not once per poll) and counted; the next tick retries.

The edge opens its own connection to the store. On the embedded profile that is the
pods' SQLite file, opened read-write but never created: an edge started before the
database exists (or without one, in tests) waits for it instead of leaving an empty file.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine, make_url

from strongroom.config import Settings
from strongroom.edge.blocklist import Blocklist, BlocklistGate
from strongroom.edge.blocklist_ports import BlockEntry, BlocklistFeed
from strongroom.edge.security_events import SecurityEvents

log = structlog.get_logger(__name__)

# Feed batches applied per poll before yielding to the next tick: bounds one poll while
# a burst of changes streams in (the rest follows next tick).
BATCHES_PER_POLL_MAX = 100


class BlocklistSync:
    """Polls ``feed`` into ``blocklist``; :meth:`run` is one task per edge worker."""

    def __init__(
        self,
        feed: BlocklistFeed,
        blocklist: Blocklist,
        poll_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._feed = feed
        self._blocklist = blocklist
        self._poll_s = poll_s
        self._clock = clock
        self._wall = wall
        self.version = 0
        self.loaded = False
        self.polls = 0
        self.failures = 0
        self.consecutive_failures = 0
        # clock() of the last poll that reached the end of the changes; None before.
        self.last_synced_at: float | None = None
        # Commit-to-applied time of the newest change of the last batch, and the largest
        # since start (changes loaded at start are not counted: they may be old).
        self.last_change_lag_s: float | None = None
        self.max_change_lag_s = 0.0

    def load(self) -> bool:
        """Load every entry in force, blocking; ``False`` (logged) if the store failed."""
        try:
            version, entries = self._feed.snapshot()
        except Exception as exc:
            self._failed(exc)
            return False
        self._loaded(version, entries)
        return True

    async def run(self) -> None:
        """Poll until cancelled (loading first if :meth:`load` did not succeed)."""
        while True:
            try:
                await self.poll_once()
            except Exception as exc:
                self._failed(exc)
            await asyncio.sleep(self._poll_s)

    async def poll_once(self) -> None:
        """Apply what changed since the last poll; raises what the store raised."""
        self.polls += 1
        if not self.loaded:
            version, entries = await asyncio.to_thread(self._feed.snapshot)
            self._loaded(version, entries)
            return
        for _ in range(BATCHES_PER_POLL_MAX):
            version, entries = await asyncio.to_thread(self._feed.changes_since, self.version)
            if version < self.version:
                raise RuntimeError(f"blocklist feed went backwards: {version} < {self.version}")
            if entries:
                self._blocklist.apply(entries)
                self._measure_lag(entries)
            if version == self.version:
                self._synced()
                return
            self.version = version

    def _measure_lag(self, entries: list[BlockEntry]) -> None:
        """How long the newest change took to reach this worker: commit to applied, by the
        wall clocks of the writer and this host (the issue's "within 1 s")."""
        changed_at = max(
            e.removed_at if e.removed_at is not None else e.created_at for e in entries
        )
        lag = max(self._wall() - changed_at, 0.0)
        self.last_change_lag_s = lag
        self.max_change_lag_s = max(self.max_change_lag_s, lag)

    def _loaded(self, version: int, entries: Iterable[BlockEntry]) -> None:
        self._blocklist.replace(entries)
        self.version = version
        self.loaded = True
        log.info("edge.blocklist_loaded", version=version, entries=len(self._blocklist))
        self._synced()

    def _synced(self) -> None:
        if self.consecutive_failures:
            log.info("edge.blocklist_sync_recovered", failed_polls=self.consecutive_failures)
        self.consecutive_failures = 0
        self.last_synced_at = self._clock()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.consecutive_failures += 1
        if self.consecutive_failures == 1:
            # Once per outage: at 4 polls a second a down database would flood the log.
            log.warning(
                "edge.blocklist_sync_failed",
                error=type(exc).__name__,
                detail=str(exc)[:200],
                version=self.version,
                loaded=self.loaded,
                entries=len(self._blocklist),
            )

    def snapshot(self) -> dict[str, object]:
        age = None if self.last_synced_at is None else self._clock() - self.last_synced_at
        return {
            "loaded": self.loaded,
            "version": self.version,
            "polls": self.polls,
            "failures": self.failures,
            "consecutive_failures": self.consecutive_failures,
            "synced_age_s": None if age is None else round(age, 3),
            "last_change_lag_s": None
            if self.last_change_lag_s is None
            else round(self.last_change_lag_s, 3),
            "max_change_lag_s": round(self.max_change_lag_s, 3),
        }


@dataclass
class BlocklistProtection:
    """One edge worker's blocklist as the edge wires it (``guard.EdgeProtection``)."""

    blocklist: Blocklist
    gate: BlocklistGate
    sync: BlocklistSync
    engine: Engine | None = None

    @property
    def connection_gate(self) -> BlocklistGate:
        """Refuses blocked addresses before any request is read."""
        return self.gate

    async def run(self) -> None:
        try:
            await self.sync.run()
        finally:
            if self.engine is not None:
                self.engine.dispose()

    def snapshot(self) -> dict[str, object]:
        return {
            "entries": len(self.blocklist),
            "changes_applied": self.blocklist.changes,
            "malformed": self.blocklist.malformed,
            **self.gate.snapshot(),
            "sync": self.sync.snapshot(),
        }

    def collector(self) -> Collector:
        """Prometheus figures for the worker's registry (``registry.register(...)``)."""
        return _BlocklistCollector(self)


class _BlocklistCollector(Collector):
    def __init__(self, protection: BlocklistProtection) -> None:
        self._p = protection

    def collect(self) -> Iterable[Metric]:
        p = self._p
        yield GaugeMetricFamily(
            "strongroom_edge_blocklist_entries",
            "Block and allow entries in force on this edge worker",
            value=float(len(p.blocklist)),
        )
        yield GaugeMetricFamily(
            "strongroom_edge_blocklist_version",
            "Last change of the blocklist store applied by this worker",
            value=float(p.sync.version),
        )
        yield GaugeMetricFamily(
            "strongroom_edge_blocklist_change_lag_seconds",
            "Commit-to-applied time of the newest blocklist change this worker applied",
            value=float(p.sync.last_change_lag_s or 0.0),
        )
        yield CounterMetricFamily(
            "strongroom_edge_blocklist_sync_failures",
            "Blocklist polls that failed (the last good set stayed in force)",
            value=float(p.sync.failures),
        )
        refused = CounterMetricFamily(
            "strongroom_edge_blocklist_refusals",
            "Requests and connections refused by a block entry",
            labels=["stage"],
        )
        refused.add_metric(["request"], float(p.gate.refused_requests))
        refused.add_metric(["connection"], float(p.gate.refused_connections))
        yield refused


def _embedded_file(settings: Settings) -> Path | None:
    url = make_url(settings.database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def edge_database_url(settings: Settings) -> str:
    """The store's URL for an edge worker: an embedded SQLite file is opened read-write
    but never created (module doc); any other URL is used as is."""
    path = _embedded_file(settings)
    if path is None:
        return settings.database_url
    return f"sqlite:///file:{urllib.parse.quote(str(path), safe='/')}?mode=rw&uri=true"


class _EmbeddedFeed:
    """An embedded store whose file does not exist yet is an empty one: the edge of a
    platform still starting, or an edge run on its own, has nothing to enforce."""

    def __init__(self, feed: BlocklistFeed, path: Path) -> None:
        self._feed = feed
        self._path = path

    def snapshot(self) -> tuple[int, list[BlockEntry]]:
        return self._feed.snapshot() if self._path.exists() else (0, [])

    def changes_since(self, version: int) -> tuple[int, list[BlockEntry]]:
        return self._feed.changes_since(version) if self._path.exists() else (version, [])


def build_blocklist(settings: Settings, worker: int, events: SecurityEvents) -> BlocklistProtection:
    """Edge worker ``worker``'s blocklist, loaded from the store before it returns."""
    from strongroom.adapters.db.blocklist_store import SqlBlocklistStore  # noqa: PLC0415
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415

    del worker  # every worker holds the whole list
    config = settings.edge.blocklist
    engine = make_engine(settings, url=edge_database_url(settings))
    feed: BlocklistFeed = SqlBlocklistStore(engine, entries_max=config.entries_max)
    path = _embedded_file(settings)
    if path is not None:
        feed = _EmbeddedFeed(feed, path)
    blocklist = Blocklist()
    sync = BlocklistSync(feed, blocklist, config.poll_s)
    sync.load()
    return BlocklistProtection(blocklist, BlocklistGate(blocklist, events), sync, engine)
