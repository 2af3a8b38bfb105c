"""Group commit: concurrent requests at one pod share one database transaction.

A durable commit costs one fsync whatever it holds, so a pod that commits each transfer
alone is bounded by fsync latency; one that gathers the transfers arriving while the
previous commit runs pays it once per group. Each request still gets its own outcome:
units are independent inside the group (the store applies them one by one).

The store is blocking, so it runs in a worker thread (``run_blocking``); at most
``concurrency`` groups are in flight per pod, so a slow database queues work here
instead of opening ever more connections.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from strongroom.ledger.model import BATCH_MAX, now_us
from strongroom.ledger.ports import LedgerStore, Outcome, Unit

T = TypeVar("T")
RunBlocking = Callable[[Callable[[], T]], Awaitable[T]]


async def _to_thread(fn: Callable[[], T]) -> T:
    return await asyncio.to_thread(fn)


class GroupCommitter:
    def __init__(
        self,
        store: LedgerStore,
        *,
        max_units: int = 256,
        max_commands: int = BATCH_MAX,
        concurrency: int = 2,
        clock_us: Callable[[], int] = now_us,
        run_blocking: RunBlocking[list[list[Outcome]]] = _to_thread,
        on_group: Callable[[int, int, float], None] | None = None,
        linger_s: float = 0.0,
    ) -> None:
        """``on_group(units, commands, seconds)`` after each committed group: what
        operators watch to see whether groups form (metrics)."""
        self._store = store
        self._max_units = max_units
        self._max_commands = max_commands
        self._clock_us = clock_us
        self._run_blocking = run_blocking
        self._on_group = on_group
        self._linger_s = linger_s
        self._last_size = 0  # units in the last group taken
        self._enough: asyncio.Event | None = None  # set once the queue is that long again
        self._queue: deque[tuple[Unit, asyncio.Future[list[Outcome]]]] = deque()
        self._slots = asyncio.Semaphore(concurrency)
        self._drainer: asyncio.Task[None] | None = None
        self._commits: set[asyncio.Task[None]] = set()  # strong references until done
        self.groups = 0
        self.units = 0

    async def submit(self, unit: Unit) -> list[Outcome]:
        """Queue ``unit`` for the next group; its outcomes once the group has committed."""
        future: asyncio.Future[list[Outcome]] = asyncio.get_running_loop().create_future()
        self._queue.append((unit, future))
        if self._enough is not None and len(self._queue) >= self._last_size:
            self._enough.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        # The group commits whether or not this caller still waits: never cancel it.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            await self._slots.acquire()
            await self._gather()
            group = self._take_group()
            self._last_size = len(group)
            if not group:
                self._slots.release()
                continue
            task = asyncio.create_task(self._commit(group))
            self._commits.add(task)
            task.add_done_callback(self._commits.discard)
            # Let requests that arrive during this commit gather for the next group.
            await asyncio.sleep(0)

    async def _gather(self) -> None:
        """Wait, at most ``linger_s``, until as many units are queued as the last group
        took. Under load that wait is short and groups stay as large as the load makes
        them, so fewer transactions carry the same transfers (a group's round trips and
        locks cost the same for 3 transfers as for 15); a lone client (last group: 1)
        never waits."""
        if self._linger_s <= 0 or len(self._queue) >= min(self._last_size, self._max_units):
            return
        self._enough = asyncio.Event()
        try:
            await asyncio.wait_for(self._enough.wait(), self._linger_s)
        except TimeoutError:
            pass
        finally:
            self._enough = None

    def _take_group(self) -> list[tuple[Unit, asyncio.Future[list[Outcome]]]]:
        group: list[tuple[Unit, asyncio.Future[list[Outcome]]]] = []
        commands = 0
        while self._queue and len(group) < self._max_units:
            unit = self._queue[0][0]
            if group and commands + len(unit.commands) > self._max_commands:
                break
            group.append(self._queue.popleft())
            commands += len(unit.commands)
        return group

    async def _commit(self, group: Sequence[tuple[Unit, asyncio.Future[list[Outcome]]]]) -> None:
        units = [unit for unit, _ in group]
        started = time.perf_counter()
        try:
            now = self._clock_us()
            results = await self._run_blocking(lambda: self._store.execute(units, now))
        except BaseException as exc:  # infrastructure failure: nothing was written
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            self.groups += 1
            self.units += len(units)
            if self._on_group is not None:
                commands = sum(len(unit.commands) for unit in units)
                self._on_group(len(units), commands, time.perf_counter() - started)
            for (_, future), outcomes in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(outcomes)
        finally:
            self._slots.release()
            if self._queue and (self._drainer is None or self._drainer.done()):
                self._drainer = asyncio.create_task(self._drain())
