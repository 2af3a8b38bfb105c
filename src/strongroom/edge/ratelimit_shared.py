"""The embedded profile's rate-limit store: one table shared by this host's edge workers.

Edge workers are separate processes sharing the port (SO_REUSEPORT), so a limit kept
per process would admit N times the policy. They share instead one fixed-size table in
a file they all ``mmap`` (``<run_dir>/ratelimit-v1-<geometry>.shm``):

- **rate slots**: open addressing (linear probing, at most ``PROBE_MAX`` slots) of
  ``(key hash, TAT)`` pairs, TATs in ``CLOCK_MONOTONIC`` nanoseconds — one clock for
  every process on the host, never stepped by NTP. A slot whose TAT has passed holds
  no information (GCRA treats it as a fresh key), so it is reused as is: the table never
  needs deleting. A full probe window evicts its least-limited entry (counted).
- **concurrency slots**: ``(key hash, in-flight count per worker)``. Each worker only
  changes its own column, and a new worker zeroes its column on start, so a crashed
  worker's in-flight requests are released by its replacement (same worker index)
  instead of leaking forever. The cap applies to the column sum: exact per host.

One ``flock`` on the file guards a whole request's check (every policy's slot at once,
so the all-or-nothing decision is atomic). The kernel drops it if the holder dies, so a
crashed worker never wedges the others. A check is two system calls and a few struct
reads: ~2-4 µs (``bench/ratelimit.py``).

The geometry is in the file name: workers started with other table sizes use another
file rather than ever truncating a table that a running worker has mapped.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from strongroom.edge.ratelimit import (
    ConcurrencyLimit,
    RatePolicy,
    Verdict,
    gcra,
    key_hash,
)

MAGIC = b"SRRL0001"
HEADER = struct.Struct("<8sIII")
HEADER_BYTES = 64
RATE_SLOT = struct.Struct("<Qq")
KEY = struct.Struct("<Q")
COUNT = struct.Struct("<i")
# Slots examined per key: long enough that a table a few percent full never evicts,
# short enough that a check stays a handful of struct reads.
PROBE_MAX = 32
# Key → 64-bit hash memo per worker: blake2b costs ~0.4 µs, a dict hit ~0.05 µs.
HASHES_MAX = 65_536
# More edge workers than this on one host would make the concurrency rows wide for no
# gain; the supervisor starts a handful.
WORKERS_MAX = 256


class SharedMemoryStore:
    """Rate TATs and in-flight counts in a file mapped by every edge worker of the host.

    The lock is per open file (``flock``): one store object per process, used from the
    event loop's thread.
    """

    name = "shared_memory"

    def __init__(
        self,
        path: Path,
        *,
        rate_slots: int,
        concurrency_slots: int,
        workers: int,
        worker: int,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not 0 <= worker < workers <= WORKERS_MAX:
            raise ValueError(f"worker {worker} outside 0..{workers - 1} (at most {WORKERS_MAX})")
        self.path = path
        self._rate_slots = rate_slots
        self._conc_slots = concurrency_slots
        self._workers = workers
        self._worker = worker
        self._clock = clock
        self._counts = struct.Struct(f"<{workers}i")
        self._conc_stride = 8 + 4 * workers
        self._rate_base = HEADER_BYTES
        self._conc_base = HEADER_BYTES + rate_slots * RATE_SLOT.size
        size = self._conc_base + concurrency_slots * self._conc_stride
        self._hashes: dict[bytes, int] = {}
        self.evictions = 0
        self.untracked = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                current = os.fstat(self._fd).st_size
                if current == 0:
                    os.ftruncate(self._fd, size)
                    os.pwrite(
                        self._fd,
                        HEADER.pack(MAGIC, rate_slots, concurrency_slots, workers),
                        0,
                    )
                elif current != size:
                    raise ValueError(f"{path} has {current} bytes, expected {size}")
                self._mm = mmap.mmap(self._fd, size)
                magic, slots, cslots, columns = HEADER.unpack_from(self._mm, 0)
                if (magic, slots, cslots, columns) != (
                    MAGIC,
                    rate_slots,
                    concurrency_slots,
                    workers,
                ):
                    raise ValueError(f"{path} is not a rate-limit table of this geometry")
                self._reset_own_column()
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(self._fd)
            raise

    @classmethod
    def open(
        cls,
        run_dir: Path,
        *,
        rate_slots: int,
        concurrency_slots: int,
        workers: int,
        worker: int,
    ) -> SharedMemoryStore:
        name = f"ratelimit-v1-{rate_slots}-{concurrency_slots}-{workers}.shm"
        return cls(
            run_dir / name,
            rate_slots=rate_slots,
            concurrency_slots=concurrency_slots,
            workers=workers,
            worker=worker,
        )

    def close(self) -> None:
        if self._fd >= 0:
            self._mm.close()
            os.close(self._fd)
            self._fd = -1

    def _hash(self, key: bytes) -> int:
        hashes = self._hashes
        h = hashes.get(key)
        if h is None:
            if len(hashes) >= HASHES_MAX:
                hashes.clear()
            h = hashes[key] = key_hash(key)
        return h

    # --- rate limits ----------------------------------------------------------------

    def _rate_slot(self, h: int, now: int, taken: list[int]) -> tuple[int, int]:
        """(slot, TAT) of key ``h``; a free, expired or (table full) evicted slot if new."""
        mm = self._mm
        unpack = RATE_SLOT.unpack_from
        base = self._rate_base
        slots = self._rate_slots
        start = h % slots
        free = -1
        victim = -1
        victim_tat = 0
        for probe in range(PROBE_MAX):
            i = (start + probe) % slots
            if i in taken:
                continue  # claimed by another key of this request, written on admission
            key, tat = unpack(mm, base + i * 16)
            if key == h:
                return i, tat
            if key == 0:
                return (free, 0) if free >= 0 else (i, 0)
            if free >= 0:
                continue
            if tat <= now:
                free = i
            elif victim < 0 or tat < victim_tat:
                victim, victim_tat = i, tat
        if free >= 0:
            return free, 0
        self.evictions += 1
        return victim, 0

    def acquire(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        memo = self._hashes
        hashes = [memo.get(k) or self._hash(k) for k in keys]
        mm = self._mm
        unpack = RATE_SLOT.unpack_from
        base = self._rate_base
        slots = self._rate_slots
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            now = self._clock()
            taken: list[int] = []
            tats: list[int] = []
            for h in hashes:
                i = h % slots
                key, tat = unpack(mm, base + i * 16)
                if key != h or i in taken:  # not in its home slot: probe
                    i, tat = self._rate_slot(h, now, taken)
                taken.append(i)
                tats.append(tat)
            refused, after = gcra(
                tats,
                now,
                [p.interval_ns for p in policies],
                [p.tolerance_ns for p in policies],
            )
            if refused < 0:
                pack = RATE_SLOT.pack_into
                for i, h, tat in zip(taken, hashes, after, strict=True):
                    pack(mm, base + i * 16, h, tat)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        return Verdict(refused, [tat - now for tat in after], policies)

    async def acquire_async(self, policies: Sequence[RatePolicy], keys: Sequence[bytes]) -> Verdict:
        return self.acquire(policies, keys)

    # --- concurrency ------------------------------------------------------------------

    def _conc_slot(self, h: int, taken: list[int]) -> tuple[int, int]:
        """(slot, in flight across workers) for key ``h``; slot -1 when the window is full."""
        mm = self._mm
        base = self._conc_base
        stride = self._conc_stride
        counts = self._counts.unpack_from
        slots = self._conc_slots
        start = h % slots
        free = -1
        for probe in range(PROBE_MAX):
            i = (start + probe) % slots
            if i in taken:
                continue  # claimed by another key of this request
            offset = base + i * stride
            (key,) = KEY.unpack_from(mm, offset)
            if key == h:
                return i, sum(counts(mm, offset + 8))
            if key == 0:
                return (free if free >= 0 else i), 0
            if free < 0 and not any(counts(mm, offset + 8)):
                free = i
        return free, 0

    def enter(self, limits: Sequence[ConcurrencyLimit], keys: Sequence[bytes]) -> int | list[int]:
        """Admit (returns the slots to release) or refuse (returns the limit's index)."""
        hashes = [self._hash(k) for k in keys]
        mm = self._mm
        column = 8 + 4 * self._worker
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            taken: list[int] = []
            for index, h in enumerate(hashes):
                i, in_flight = self._conc_slot(h, taken)
                if in_flight >= limits[index].concurrent_max:
                    return index
                taken.append(i)
            token: list[int] = []
            for i, h in zip(taken, hashes, strict=True):
                if i < 0:
                    # Every slot of the window holds requests in flight: admit untracked
                    # rather than refuse a client for others' load.
                    self.untracked += 1
                    continue
                offset = self._conc_base + i * self._conc_stride
                (own,) = COUNT.unpack_from(mm, offset + column)
                KEY.pack_into(mm, offset, h)
                COUNT.pack_into(mm, offset + column, own + 1)
                token.append(i)
            return token
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def leave(self, token: list[int]) -> None:
        if not token or self._fd < 0:
            return
        mm = self._mm
        column = 8 + 4 * self._worker
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            for i in token:
                offset = self._conc_base + i * self._conc_stride + column
                (own,) = COUNT.unpack_from(mm, offset)
                # Never below zero: a column reset by a restart forgets older requests.
                COUNT.pack_into(mm, offset, max(own - 1, 0))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def in_flight(self, key: bytes) -> int:
        """Requests of ``key`` in flight on this host (every worker's column)."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            i, count = self._conc_slot(self._hash(key), [])
            return count if i >= 0 else 0
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _reset_own_column(self) -> None:
        """A (re)started worker holds nothing in flight: forget its predecessor's counts."""
        mm = self._mm
        column = 8 + 4 * self._worker
        for i in range(self._conc_slots):
            offset = self._conc_base + i * self._conc_stride
            if KEY.unpack_from(mm, offset)[0]:
                COUNT.pack_into(mm, offset + column, 0)

    def snapshot(self) -> dict[str, object]:
        return {
            "shared_file": str(self.path),
            "rate_slots": self._rate_slots,
            "concurrency_slots": self._conc_slots,
            "evictions": self.evictions,
            "concurrency_untracked": self.untracked,
        }
