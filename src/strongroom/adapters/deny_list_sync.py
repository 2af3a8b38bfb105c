"""Keeps a pod's in-memory deny list in step with the database's revocation stream.

A revocation (RFC 7009) or client suspension commits a ``deny_list_events`` row; every
pod polls ``DenyListFeed.since(cursor)`` every ``poll_s`` and applies what is new, so it
reaches every pod within about one poll period without a broker. The feed is a blocking
database call, so it runs in a worker thread and the event loop keeps serving requests —
except with ``inline_reads`` (an embedded SQLite file: an indexed read there takes tens
of microseconds, less than the thread hand-off, and never waits on the network).

A failed poll is logged and retried on the next tick with the cursor unchanged: the
stream is durable, so nothing is lost, only delayed. ``last_synced_at`` lets readiness
or metrics tell how stale the pod's view is.

Introspection (RFC 7662) must not answer from a view up to one period old, so
:meth:`DenyListSync.catch_up` is a read barrier: it returns once a poll that *began
after the call* has reached the end of the stream. Callers arriving together share one
poll (as group commit shares one fsync), so under load the database sees about one
query per poll duration, not one per request, and the answer is still as fresh as a
direct lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from strongroom.auth.ports import DenyEntry, DenyListFeed

log = structlog.get_logger(__name__)

# Feed batches applied per poll before yielding to the next tick: bounds how long one
# poll can run while a burst of revocations streams in (the rest follows next tick).
BATCHES_PER_POLL_MAX = 100


class AppliesDenyEntries(Protocol):
    """What the sync feeds (``auth.deny_list.DenyList``)."""

    def apply(self, entries: list[DenyEntry]) -> None: ...


class DenyListSync:
    """Polls ``feed`` into ``deny_list`` forever; run it as one task per pod."""

    def __init__(
        self,
        feed: DenyListFeed,
        deny_list: AppliesDenyEntries,
        poll_s: float,
        *,
        inline_reads: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._feed = feed
        self._deny_list = deny_list
        self._poll_s = poll_s
        self._inline_reads = inline_reads
        self._clock = clock
        self._cursor = 0
        # The single poll in flight, shared by the ticker and every barrier; polls are
        # numbered so a barrier can tell one that began before it from one after.
        self._poll: asyncio.Future[bool] | None = None
        self._polls_started = 0
        self._caught_up_through = 0  # number of the last poll that reached the end
        self.ready = asyncio.Event()
        # clock() of the last poll that reached the end of the stream; None before that.
        self.last_synced_at: float | None = None

    @property
    def cursor(self) -> int:
        """The sequence number of the last event applied."""
        return self._cursor

    async def run(self) -> None:
        """Load everything still in force, set ``ready``, then poll until cancelled."""
        while True:
            try:
                caught_up = await self._shared_poll()
            except Exception as exc:
                # Keep the last good view and retry: a database blip must not kill the
                # task (the pod would silently stop learning of revocations).
                log.warning("deny_list_poll_failed", error=type(exc).__name__, cursor=self._cursor)
            else:
                if caught_up and not self.ready.is_set():
                    log.info("deny_list_loaded", cursor=self._cursor)
                    self.ready.set()
            await asyncio.sleep(self._poll_s)

    async def catch_up(self) -> None:
        """Return once every entry committed before this call is applied; raise if the
        feed fails (the caller must not answer from a stale view)."""
        needed = self._polls_started + 1
        while self._caught_up_through < needed:
            await self._shared_poll()

    def _shared_poll(self) -> asyncio.Future[bool]:
        """Join the poll in flight, or start one; callers never run two at once."""
        if self._poll is None:
            self._polls_started += 1
            self._poll = asyncio.ensure_future(self._numbered_poll(self._polls_started))
        # A cancelled caller must not cancel the poll others wait on.
        return asyncio.shield(self._poll)

    async def _numbered_poll(self, number: int) -> bool:
        # The bookkeeping happens before the future completes: a waiter that wakes (or
        # finds it done) must already see it, or `catch_up` would spin on a done future.
        try:
            caught_up = await self.poll_once()
        finally:
            self._poll = None
        if caught_up:
            self._caught_up_through = number
            self.last_synced_at = self._clock()
        return caught_up

    async def poll_once(self) -> bool:
        """Apply new entries; ``True`` when the stream's end was reached in this poll."""
        for _ in range(BATCHES_PER_POLL_MAX):
            if self._inline_reads:
                cursor, entries = self._feed.since(self._cursor)
            else:
                cursor, entries = await asyncio.to_thread(self._feed.since, self._cursor)
            if cursor < self._cursor:
                raise RuntimeError(f"deny-list feed went backwards: {cursor} < {self._cursor}")
            if entries:
                self._deny_list.apply(entries)
            if cursor == self._cursor:
                return True
            self._cursor = cursor
        return False
