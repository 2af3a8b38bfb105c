"""Which ``audit_entries`` rows may still appear: the sequencer's commit horizon.

``seq`` is assigned when a row is inserted, not when its transaction commits. On
PostgreSQL two transactions may commit in the opposite order of their ``seq`` (a larger
``seq`` is visible while a smaller one is still in flight), and a rolled-back transaction
leaves a ``seq`` that will never exist. A reader tailing "``seq`` above the last one seen"
would skip the late row for ever; a reader waiting for every gap to fill would wait for
ever on a rollback. This module decides, from what successive scans saw, which missing
``seq`` values are still worth looking for.

The argument. Sequence values are handed out in increasing order, so when a scan sees
``seq`` *s* committed, every smaller ``seq`` *g* was already allocated when that scan
finished (time *t₀*). A transaction that allocated *g* commits within ``grace_s`` or never
(``audit.gap_grace_s`` must exceed the longest transaction the database allows: PostgreSQL's
``transaction_timeout``/``idle_in_transaction_session_timeout``, statement timeouts). So a
scan *started* at or after *t₀* + ``grace_s`` that still does not see *g* proves *g* dead:
only then does the horizon pass it. Until then *g* is a *gap*, and every scan asks for it
explicitly besides the rows above the highest ``seq`` sequenced (``top``), so a late commit
is sequenced whenever it lands (after rows with larger ``seq``: leaf order is sequencing
order, not ``seq`` order).

The state is small: the horizon (every ``seq`` ≤ it is in the tree or dead), the open gaps
with the time each was first seen, and ``top``. The store persists the horizon with each
append; after a restart the gaps between the horizon and ``top`` are re-derived and their
grace starts again (conservative). Pure: the caller passes clock readings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A gap is tracked as one entry per missing seq; a rollback leaves at most one ledger group's
# events (ledger BATCH_MAX units), so this bound is far above any honest gap. Past it the
# oldest gaps are judged as if their grace had run (logged by the caller): a sequence bumped
# by millions (setval) must not make every scan send millions of numbers.
GAPS_TRACKED_MAX = 100_000


@dataclass(frozen=True, slots=True)
class ScanRequest:
    """What to ask the store for: rows above ``after_seq``, and the open ``gaps``."""

    after_seq: int
    gaps: tuple[int, ...]


class CommitHorizon:
    """The horizon, the open gaps and ``top`` of one sequencer (see the module doc)."""

    __slots__ = ("_gaps", "_grace_s", "_horizon", "_top")

    def __init__(
        self,
        horizon_seq: int,
        sequenced_above: Iterable[int],
        *,
        grace_s: float,
        now_s: float,
    ) -> None:
        if grace_s <= 0:
            raise ValueError("the gap grace period must be positive")
        above = set(sequenced_above)
        if any(s <= horizon_seq for s in above):
            raise ValueError("sequenced_above must lie above the horizon")
        self._grace_s = grace_s
        self._horizon = horizon_seq
        self._top = max(above, default=horizon_seq)
        # After a restart nobody knows when these gaps were first seen: from now on.
        self._gaps: dict[int, float] = {
            g: now_s for g in range(horizon_seq + 1, self._top) if g not in above
        }

    @property
    def horizon(self) -> int:
        """Every ``seq`` ≤ this is in the tree or can never commit."""
        return self._horizon

    @property
    def top(self) -> int:
        return self._top

    @property
    def gaps(self) -> tuple[int, ...]:
        return tuple(sorted(self._gaps))

    def request(self) -> ScanRequest:
        return ScanRequest(self._top, self.gaps)

    def observe(
        self,
        found: Sequence[int],
        *,
        limit: int,
        started_s: float,
        finished_s: float,
    ) -> int:
        """Record a scan for :meth:`request` that returned ``found`` (sorted ``seq``s).

        ``started_s``/``finished_s`` are clock readings taken before the query was sent and
        after its answer came back: the snapshot lies between them. The caller then
        sequences ``found`` and calls :meth:`sequenced`. Returns how many gaps were given up
        early because more than :data:`GAPS_TRACKED_MAX` were open (0 normally; log it).
        """
        found_set = set(found)
        # Everything up to `seen_to` that the scan asked for and did not return is absent in
        # its snapshot; with a full page, rows beyond the last one were not looked at.
        seen_to = found[-1] if len(found) >= limit and found else None
        for g in [g for g in self._gaps if g in found_set]:
            del self._gaps[g]
        for g, first_seen in list(self._gaps.items()):
            if seen_to is not None and g > seen_to:
                continue
            if started_s - first_seen >= self._grace_s:
                del self._gaps[g]  # absent a whole grace after it was allocated: dead
        # New gaps: seqs between top and the highest row found that the scan did not return.
        # A larger seq committed, so they were allocated by `finished_s`.
        above = sorted(s for s in found_set if s > self._top)
        previous = self._top
        for s in above:
            for g in range(previous + 1, s):
                self._gaps[g] = finished_s
            previous = s
        excess = len(self._gaps) - GAPS_TRACKED_MAX
        if excess > 0:
            for g in sorted(self._gaps)[:excess]:
                del self._gaps[g]
        self._settle()
        return max(excess, 0)

    def sequenced(self, seqs: Iterable[int]) -> None:
        """``seqs`` are in the tree now: raise ``top`` and the horizon accordingly."""
        done = list(seqs)
        if self._gaps:  # usually none: a whole batch then costs one max()
            for s in done:
                self._gaps.pop(s, None)
        if done:
            self._top = max(self._top, *done)
        self._settle()

    def _settle(self) -> None:
        # Only `sequenced` raises `top`, so rows a scan found above it do not count yet; the
        # store persists the horizon with the append that puts those rows in the tree.
        self._horizon = min(self._gaps) - 1 if self._gaps else self._top
