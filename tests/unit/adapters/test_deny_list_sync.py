"""DenyListSync's read barrier: fresh answers for introspection, one poll per crowd."""

from __future__ import annotations

import asyncio
import threading

import pytest

from strongroom.adapters.deny_list_sync import DenyListSync
from strongroom.auth.deny_list import DenyList
from strongroom.auth.ports import DenyEntry


class Feed:
    """An in-memory stream; ``gate`` (when set) holds every read until released."""

    def __init__(self) -> None:
        self.entries: list[DenyEntry] = []
        self.calls = 0
        self.fail = False
        self.gate: threading.Event | None = None
        self.entered = threading.Event()

    def since(self, cursor: int) -> tuple[int, list[DenyEntry]]:
        self.calls += 1
        snapshot = list(self.entries)  # what is committed when the read starts
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail:
            raise ConnectionError("database down")
        return len(snapshot), snapshot[cursor:]


pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def token(jti: str) -> DenyEntry:
    return DenyEntry("token", jti, None)


async def started(
    feed: Feed, poll_s: float = 3600.0
) -> tuple[DenyListSync, DenyList, asyncio.Task[None]]:
    deny = DenyList()
    sync = DenyListSync(feed, deny, poll_s=poll_s)
    task = asyncio.create_task(sync.run())
    await asyncio.wait_for(sync.ready.wait(), 5)
    return sync, deny, task


async def test_catch_up_sees_what_was_committed_before_it_without_waiting_a_period() -> None:
    feed = Feed()
    sync, deny, task = await started(feed)  # the ticker will not poll again for an hour
    feed.entries.append(token("j1"))
    await asyncio.wait_for(sync.catch_up(), 5)
    assert deny.token_revoked("j1")
    task.cancel()


async def test_a_poll_already_in_flight_does_not_satisfy_a_later_barrier() -> None:
    feed = Feed()
    sync, deny, task = await started(feed)
    feed.gate, feed.entered = threading.Event(), threading.Event()
    early = asyncio.create_task(sync.catch_up())  # starts a poll that reads before j1
    await asyncio.to_thread(feed.entered.wait, 5)
    feed.entries.append(token("j1"))  # committed after that read began
    late = asyncio.create_task(sync.catch_up())
    await asyncio.sleep(0.01)
    feed.gate.set()
    await asyncio.wait_for(asyncio.gather(early, late), 5)
    assert deny.token_revoked("j1")
    task.cancel()


async def test_inline_reads_give_the_same_fresh_answer() -> None:
    feed = Feed()
    deny = DenyList()
    sync = DenyListSync(feed, deny, poll_s=3600.0, inline_reads=True)
    task = asyncio.create_task(sync.run())
    await asyncio.wait_for(sync.ready.wait(), 5)
    feed.entries.append(token("j4"))
    await asyncio.wait_for(sync.catch_up(), 5)
    assert deny.token_revoked("j4")
    task.cancel()


async def test_concurrent_barriers_share_polls() -> None:
    feed = Feed()
    sync, _, task = await started(feed)
    before = feed.calls
    await asyncio.wait_for(asyncio.gather(*(sync.catch_up() for _ in range(50))), 5)
    # The first caller's poll, plus at most one that began after all the others.
    assert feed.calls - before <= 2
    task.cancel()


async def test_a_failing_feed_fails_the_barrier_and_the_ticker_survives() -> None:
    feed = Feed()
    sync, deny, task = await started(feed, poll_s=0.01)
    feed.fail = True
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(sync.catch_up(), 5)
    feed.fail = False
    feed.entries.append(token("j2"))
    await asyncio.wait_for(sync.catch_up(), 5)
    assert deny.token_revoked("j2") and not task.done()
    task.cancel()


async def test_a_cancelled_waiter_does_not_cancel_the_shared_poll() -> None:
    feed = Feed()
    sync, deny, task = await started(feed)
    feed.gate, feed.entered = threading.Event(), threading.Event()
    feed.entries.append(token("j3"))
    impatient = asyncio.create_task(sync.catch_up())
    patient = asyncio.create_task(sync.catch_up())
    await asyncio.to_thread(feed.entered.wait, 5)
    impatient.cancel()
    feed.gate.set()
    await asyncio.wait_for(patient, 5)
    assert impatient.cancelled() and deny.token_revoked("j3")
    task.cancel()
