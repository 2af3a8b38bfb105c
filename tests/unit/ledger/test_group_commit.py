"""GroupCommitter: concurrent units share transactions, each gets its own outcomes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from strongroom.ledger.commands import VoidTransfer
from strongroom.ledger.errors import LedgerError
from strongroom.ledger.group_commit import GroupCommitter
from strongroom.ledger.ports import SYSTEM_ACTOR, Outcome, Unit

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Store:
    """Records each execute call; answers each unit with its tenant id as an error detail."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def execute(self, units: Sequence[Unit], now_us: int) -> list[list[Outcome]]:
        self.gate.wait(5)
        self.calls.append([u.tenant_id for u in units])
        if self.fail:
            raise ConnectionError("database down")
        return [[Outcome(error=LedgerError("validation-failed", u.tenant_id))] for u in units]


def unit(name: str) -> Unit:
    return Unit(name, (VoidTransfer("x"),), SYSTEM_ACTOR)


async def test_units_arriving_during_a_commit_share_the_next_transaction() -> None:
    store = Store()
    committer = GroupCommitter(store, concurrency=1)  # type: ignore[arg-type]
    store.gate.clear()  # the first commit blocks until the others have queued
    first = asyncio.create_task(committer.submit(unit("u0")))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(committer.submit(unit(f"u{i}"))) for i in range(1, 40)]
    await asyncio.sleep(0.05)
    store.gate.set()
    results = await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert [r[0].error.detail for r in results if r[0].error] == [f"u{i}" for i in range(40)]
    assert store.calls[0] == ["u0"]
    assert len(store.calls) == 2 and len(store.calls[1]) == 39


async def test_groups_are_bounded_by_max_units() -> None:
    store = Store()
    committer = GroupCommitter(store, concurrency=1, max_units=10)  # type: ignore[arg-type]
    store.gate.clear()
    tasks = [asyncio.create_task(committer.submit(unit(f"u{i}"))) for i in range(35)]
    await asyncio.sleep(0.05)
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert max(len(c) for c in store.calls) <= 10
    assert sorted(t for c in store.calls for t in c) == sorted(f"u{i}" for i in range(35))


async def test_an_infrastructure_failure_reaches_every_unit_of_the_group() -> None:
    store = Store(fail=True)
    committer = GroupCommitter(store)  # type: ignore[arg-type]
    results = await asyncio.gather(
        *(committer.submit(unit(f"u{i}")) for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, ConnectionError) for r in results)
    store.fail = False
    assert (await committer.submit(unit("after")))[0].error is not None  # still serving


async def test_a_cancelled_caller_does_not_cancel_the_commit() -> None:
    store = Store()
    committer = GroupCommitter(store)  # type: ignore[arg-type]
    store.gate.clear()
    impatient = asyncio.create_task(committer.submit(unit("gone")))
    await asyncio.sleep(0.05)
    impatient.cancel()
    store.gate.set()
    await asyncio.sleep(0.1)
    assert store.calls == [["gone"]]


async def one_then_four(committer: GroupCommitter, store: Store, name: str) -> None:
    """A group of one unit whose commit is held while four more queue: two groups, 1 and 4."""
    store.gate.clear()
    first = asyncio.create_task(committer.submit(unit(f"{name}0")))
    await asyncio.sleep(0.05)
    rest = [asyncio.create_task(committer.submit(unit(f"{name}{i}"))) for i in range(1, 5)]
    await asyncio.sleep(0.05)
    store.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)


async def test_each_committed_group_is_reported_with_its_size_and_time() -> None:
    store = Store()
    seen: list[tuple[int, int, float]] = []
    committer = GroupCommitter(
        store,  # type: ignore[arg-type]
        concurrency=1,
        on_group=lambda units, commands, seconds: seen.append((units, commands, seconds)),
    )
    await one_then_four(committer, store, "u")
    assert [(u, c) for u, c, _ in seen] == [(1, 1), (4, 4)]
    assert seen[0][2] >= 0.05  # the first group waited on the gate
    failing = GroupCommitter(Store(fail=True), on_group=lambda *a: seen.append(a))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await failing.submit(unit("x"))
    assert len(seen) == 2  # a failed group is not a committed one


async def test_a_group_waits_briefly_for_as_many_units_as_the_last_one_had() -> None:
    store = Store()
    committer = GroupCommitter(store, concurrency=1, linger_s=0.3)  # type: ignore[arg-type]
    await one_then_four(committer, store, "a")
    assert [len(c) for c in store.calls] == [1, 4]
    # The next group waits for four units (they trickle in), not for the first alone.
    trickle = [asyncio.create_task(committer.submit(unit("b0")))]
    await asyncio.sleep(0.1)
    trickle += [asyncio.create_task(committer.submit(unit(f"b{i}"))) for i in range(1, 4)]
    await asyncio.wait_for(asyncio.gather(*trickle), 5)
    assert store.calls[2] == ["b0", "b1", "b2", "b3"]
    # Fewer arrive than last time: the wait ends at linger_s; then a lone client's group
    # (last size 1) goes at once.
    loop = asyncio.get_running_loop()
    started = loop.time()
    await committer.submit(unit("c0"))
    assert 0.25 <= loop.time() - started < 2
    started = loop.time()
    await committer.submit(unit("d0"))
    assert loop.time() - started < 0.2
    assert store.calls[3:] == [["c0"], ["d0"]]
