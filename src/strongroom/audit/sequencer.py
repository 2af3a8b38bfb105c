"""The audit log's sequencer: committed entries become leaves, leaves become signed checkpoints.

One :meth:`Sequencer.step` reads up to ``batch_max`` committed, unsequenced entries (which
ones may still appear is :mod:`~strongroom.audit.commit_horizon`'s decision), hashes their
canonical leaf bytes (RFC 9162 §2.1.1), appends them to the in-memory
:class:`~strongroom.audit.rfc9162_merkle.CompactRange` and hands the store the new leaves,
every perfect subtree they complete and the new horizon in one atomic ``append``. Hashing
happens here, in batches, never in the request path that wrote the entry.

:meth:`Sequencer.maybe_publish` signs a C2SP tlog-checkpoint of the current tree when the tree
grew and the last checkpoint is at least ``checkpoint_interval_s`` old, so a growing log gets
a checkpoint that often and an idle one none.

Only one sequencer may append (the worker holds a lock); should a second one run anyway, the
store refuses an append whose first index is not the tree's size
(:class:`~strongroom.audit.ports.AppendConflictError`), and this sequencer reloads its state
from the store: a race costs a retry, never a fork.

Pure domain: storage is the :class:`~strongroom.audit.ports.SequencerStore` port, time comes
from the injected clocks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from strongroom.audit.canonical import leaf_bytes
from strongroom.audit.checkpoint import Checkpoint, sign_checkpoint
from strongroom.audit.commit_horizon import CommitHorizon
from strongroom.audit.ports import SequencerStore, StoredCheckpoint
from strongroom.audit.rfc9162_merkle import CompactRange, leaf_hash
from strongroom.audit.signed_note import Signer

# Entries per append transaction: large enough that per-transaction costs (fsync, round
# trips) vanish at 10,000 entries/s, small enough that one batch's rows, leaf bytes and
# nodes (~3 rows an entry) stay a few MiB and one transaction well under a second.
BATCH_MAX_DEFAULT = 4096


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one :meth:`Sequencer.step` did: entries sequenced, gaps given up over the bound."""

    sequenced: int
    gaps_abandoned: int = 0


class Sequencer:
    """Turns committed audit entries into a Merkle tree and signed checkpoints (module doc)."""

    def __init__(
        self,
        store: SequencerStore,
        signer: Signer,
        *,
        origin: str,
        checkpoint_interval_s: float,
        gap_grace_s: float,
        clock: Callable[[], float],
        now_us: Callable[[], int],
        batch_max: int = BATCH_MAX_DEFAULT,
        on_publish: Callable[[StoredCheckpoint], None] | None = None,
    ) -> None:
        if batch_max < 1 or checkpoint_interval_s <= 0:
            raise ValueError("batch_max and checkpoint_interval_s must be positive")
        # Fail at start, not at the first checkpoint: the origin must be a note line.
        Checkpoint(origin, 0, b"\0" * 32)
        self._store = store
        self._signer = signer
        self._origin = origin
        self._interval_s = checkpoint_interval_s
        self._grace_s = gap_grace_s
        self._clock = clock
        self._now_us = now_us
        self._batch_max = batch_max
        self._on_publish = on_publish
        self._range: CompactRange | None = None
        self._horizon: CommitHorizon | None = None
        self._published_size = 0
        self._published_at_s = float("-inf")

    # -- state -----------------------------------------------------------------------------
    def restore(self) -> None:
        """(Re)load the tree, the horizon and the last checkpoint from the store."""
        state = self._store.state()
        self._range = CompactRange.restore(state.tree_size, self._store.node)
        self._horizon = CommitHorizon(
            state.horizon_seq, state.sequenced_above, grace_s=self._grace_s, now_s=self._clock()
        )
        latest = self._store.latest_checkpoint()
        self._published_size = latest.size if latest is not None else 0
        if self._published_size > state.tree_size:
            raise RuntimeError(
                f"a checkpoint of {self._published_size} leaves exists, the tree has "
                f"{state.tree_size}: the store lost leaves"
            )
        self._store.register_key(self._signer.verifier_key())

    def _loaded(self) -> tuple[CompactRange, CommitHorizon]:
        if self._range is None or self._horizon is None:
            self.restore()
        assert self._range is not None and self._horizon is not None
        return self._range, self._horizon

    @property
    def tree_size(self) -> int:
        return self._loaded()[0].size

    @property
    def horizon(self) -> CommitHorizon:
        return self._loaded()[1]

    # -- sequencing ------------------------------------------------------------------------
    def step(self) -> StepResult:
        """Sequence up to ``batch_max`` entries in one append (see the module doc)."""
        tree, horizon = self._loaded()
        request = horizon.request()
        started = self._clock()
        entries = self._store.unsequenced(
            after_seq=request.after_seq, gaps=request.gaps, limit=self._batch_max
        )
        finished = self._clock()
        seqs = [e.seq for e in entries]
        abandoned = horizon.observe(
            seqs, limit=self._batch_max, started_s=started, finished_s=finished
        )
        if not entries:
            return StepResult(0, abandoned)
        first_index = tree.size
        try:
            nodes = tree.append_many([leaf_hash(leaf_bytes(e.record)) for e in entries])
            horizon.sequenced(seqs)
            self._store.append(first_index, entries, nodes, horizon_seq=horizon.horizon)
        except BaseException:
            # The in-memory tree ran ahead of the store (or another sequencer did): reload.
            self._range = self._horizon = None
            raise
        return StepResult(len(entries), abandoned)

    # -- checkpoints -----------------------------------------------------------------------
    def seconds_until_due(self) -> float | None:
        """How long until :meth:`maybe_publish` would sign; None while nothing changed."""
        if self.tree_size == self._published_size:
            return None
        return max(0.0, self._published_at_s + self._interval_s - self._clock())

    def maybe_publish(self) -> StoredCheckpoint | None:
        """Sign and store a checkpoint if the tree grew and the last one is old enough."""
        tree, _ = self._loaded()
        due = self.seconds_until_due()
        if due is None or due > 0:
            return None
        checkpoint = Checkpoint(self._origin, tree.size, tree.root())
        stored = StoredCheckpoint(
            size=tree.size,
            root_hash=checkpoint.root_hash,
            note=sign_checkpoint(checkpoint, [self._signer]),
            published_at_us=self._now_us(),
        )
        self._store.publish(stored)
        self._published_size = tree.size
        self._published_at_s = self._clock()
        if self._on_publish is not None:
            self._on_publish(stored)
        return stored

    def run_once(self) -> tuple[StepResult, StoredCheckpoint | None]:
        """One step, then a checkpoint if one is due: the worker's loop body."""
        result = self.step()
        return result, self.maybe_publish()
