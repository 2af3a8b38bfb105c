"""Keeps a pod's in-memory deny list in step with the database's revocation stream.

A revocation (RFC 7009) or client suspension commits a ``deny_list_events`` row; every
pod polls ``DenyListFeed.since(cursor)`` every ``poll_s`` and applies what is new, so it
reaches every pod within about one poll period without a broker. The feed is a blocking
database call, so it runs in a worker thread and the event loop keeps serving requests.

A failed poll is logged and retried on the next tick with the cursor unchanged: the
stream is durable, so nothing is lost, only delayed. ``last_synced_at`` lets readiness
or metrics tell how stale the pod's view is.
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if poll_s <= 0:
            raise ValueError("poll_s must be positive")
        self._feed = feed
        self._deny_list = deny_list
        self._poll_s = poll_s
        self._clock = clock
        self._cursor = 0
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
                caught_up = await self.poll_once()
            except Exception as exc:
                # Keep the last good view and retry: a database blip must not kill the
                # task (the pod would silently stop learning of revocations).
                log.warning("deny_list_poll_failed", error=type(exc).__name__, cursor=self._cursor)
            else:
                if caught_up:
                    self.last_synced_at = self._clock()
                    if not self.ready.is_set():
                        log.info("deny_list_loaded", cursor=self._cursor)
                        self.ready.set()
            await asyncio.sleep(self._poll_s)

    async def poll_once(self) -> bool:
        """Apply new entries; ``True`` when the stream's end was reached in this poll."""
        for _ in range(BATCHES_PER_POLL_MAX):
            cursor, entries = await asyncio.to_thread(self._feed.since, self._cursor)
            if cursor < self._cursor:
                raise RuntimeError(f"deny-list feed went backwards: {cursor} < {self._cursor}")
            if entries:
                self._deny_list.apply(entries)
            if cursor == self._cursor:
                return True
            self._cursor = cursor
        return False
