"""The sequencer and its commit horizon, against an in-memory store that commits out of order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.canonical import AuditRecord, leaf_bytes
from strongroom.audit.checkpoint import open_checkpoint
from strongroom.audit.commit_horizon import CommitHorizon
from strongroom.audit.ports import (
    AppendConflictError,
    SequencedEntry,
    SequencerState,
    StoredCheckpoint,
)
from strongroom.audit.rfc9162_merkle import (
    NodeHash,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    root_of,
    verify_inclusion,
)
from strongroom.audit.sequencer import Sequencer
from strongroom.audit.signed_note import Signer

ORIGIN = "test.example/audit"
GRACE_S = 10.0


def record(n: int) -> AuditRecord:
    return AuditRecord(
        event_type="transfer.created",
        tenant_id="t-1",
        actor_kind="client",
        actor_id="c-1",
        request_id=f"r-{n}",
        subject_ids=(f"s-{n}",),
        data={"n": n},
        occurred_at_us=1_000_000 + n,
    )


class MemoryStore:
    """A SequencerStore whose rows become visible in whatever order the test commits them."""

    def __init__(self) -> None:
        self.committed: dict[int, AuditRecord] = {}
        self.leaves: list[int] = []
        self.tree: dict[tuple[int, int], bytes] = {}
        self.horizon = 0
        self.checkpoints: list[StoredCheckpoint] = []
        self.keys: list[str] = []
        self.scans = 0

    def commit(self, *seqs: int) -> None:
        for seq in seqs:
            self.committed[seq] = record(seq)

    def state(self) -> SequencerState:
        above = frozenset(s for s in self.leaves if s > self.horizon)
        return SequencerState(len(self.leaves), self.horizon, above)

    def node(self, level: int, index: int) -> bytes:
        return self.tree[(level, index)]

    def unsequenced(
        self, *, after_seq: int, gaps: Sequence[int], limit: int
    ) -> list[SequencedEntry]:
        self.scans += 1
        done = set(self.leaves)
        wanted = sorted(
            s for s in self.committed if (s > after_seq or s in set(gaps)) and s not in done
        )
        return [SequencedEntry(s, None, self.committed[s]) for s in wanted[:limit]]

    def append(
        self,
        first_index: int,
        entries: Sequence[SequencedEntry],
        nodes: Sequence[NodeHash],
        *,
        horizon_seq: int,
    ) -> None:
        if first_index != len(self.leaves):
            raise AppendConflictError("moved")
        self.leaves.extend(e.seq for e in entries)
        for level, index, h in nodes:
            assert (level, index) not in self.tree
            self.tree[(level, index)] = h
        self.horizon = max(self.horizon, horizon_seq)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        return self.checkpoints[-1] if self.checkpoints else None

    def publish(self, checkpoint: StoredCheckpoint) -> None:
        self.checkpoints.append(checkpoint)

    def register_key(self, verifier_key: str) -> None:
        if verifier_key not in self.keys:
            self.keys.append(verifier_key)

    def nodes(self, coordinates: Sequence[tuple[int, int]]) -> Mapping[tuple[int, int], bytes]:
        return {c: self.tree[c] for c in coordinates}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def signer() -> Signer:
    return Signer.generate(ORIGIN)


def make(store: MemoryStore, signer: Signer, clock: Clock, *, batch_max: int = 100) -> Sequencer:
    return Sequencer(
        store,
        signer,
        origin=ORIGIN,
        checkpoint_interval_s=0.5,
        gap_grace_s=GRACE_S,
        clock=clock,
        now_us=lambda: int(clock.now * 1e6),
        batch_max=batch_max,
    )


def tree_leaves(store: MemoryStore) -> list[bytes]:
    return [leaf_hash(leaf_bytes(record(s))) for s in store.leaves]


def test_a_step_sequences_committed_entries_in_seq_order_and_stores_every_node(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 2, 3, 4, 5)
    sequencer = make(store, signer, clock)
    assert sequencer.step().sequenced == 5
    assert store.leaves == [1, 2, 3, 4, 5]
    assert store.tree[(0, 4)] == leaf_hash(leaf_bytes(record(5)))
    assert store.tree[(2, 0)] == root_of(tree_leaves(store)[:4])
    assert store.horizon == 5


def test_batches_are_at_most_batch_max_entries(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(*range(1, 11))
    sequencer = make(store, signer, clock, batch_max=4)
    assert [sequencer.step().sequenced for _ in range(4)] == [4, 4, 2, 0]
    assert store.leaves == list(range(1, 11))


def test_an_entry_that_commits_after_a_larger_seq_is_sequenced_after_it(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 3)  # seq 2 is still in flight
    sequencer = make(store, signer, clock)
    sequencer.step()
    assert store.leaves == [1, 3] and store.horizon == 1
    clock.now += GRACE_S / 2
    store.commit(2, 4)
    sequencer.step()
    assert store.leaves == [1, 3, 2, 4] and store.horizon == 4


def test_a_rolled_back_seq_stops_holding_the_horizon_after_the_grace_period(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 3)  # seq 2 rolled back
    sequencer = make(store, signer, clock)
    sequencer.step()
    clock.now += GRACE_S - 0.1
    sequencer.step()
    assert sequencer.horizon.gaps == (2,)
    clock.now += 0.2
    store.commit(4)
    sequencer.step()
    assert sequencer.horizon.gaps == () and store.horizon == 4


def test_a_gap_is_asked_for_by_seq_not_by_rescanning_everything_below_the_top(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 5)
    sequencer = make(store, signer, clock)
    sequencer.step()
    request = sequencer.horizon.request()
    assert (request.after_seq, request.gaps) == (5, (2, 3, 4))


def test_a_full_page_does_not_judge_gaps_above_its_last_row(signer):
    horizon = CommitHorizon(0, [], grace_s=1.0, now_s=0.0)
    horizon.observe([1, 3, 5], limit=10, started_s=0.0, finished_s=0.0)
    horizon.sequenced([1, 3, 5])
    # Much later a full page ends at seq 2: gap 4 was not looked at, so it stays open.
    horizon.observe([2], limit=1, started_s=100.0, finished_s=100.0)
    assert horizon.gaps == (4,)


def test_sequencing_closes_only_the_gaps_it_fills_and_nothing_moves_on_an_empty_batch():
    horizon = CommitHorizon(0, [], grace_s=1.0, now_s=0.0)
    horizon.observe([1, 5], limit=10, started_s=0.0, finished_s=0.0)
    horizon.sequenced([5, 1])
    horizon.sequenced([])
    assert (horizon.top, horizon.gaps, horizon.horizon) == (5, (2, 3, 4), 1)
    horizon.observe([3], limit=10, started_s=0.5, finished_s=0.5)
    horizon.sequenced([3])
    assert (horizon.top, horizon.gaps, horizon.horizon) == (5, (2, 4), 1)


def test_restore_resumes_the_tree_and_the_gaps_from_the_store(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 2, 4)
    make(store, signer, clock).step()
    again = make(store, signer, clock)
    assert again.tree_size == 3 and again.horizon.gaps == (3,)
    store.commit(3)
    again.step()
    assert store.leaves == [1, 2, 4, 3]


def test_checkpoints_are_signed_at_most_every_interval_and_never_when_nothing_changed(signer):
    store, clock = MemoryStore(), Clock()
    sequencer = make(store, signer, clock)
    assert sequencer.run_once()[1] is None  # empty log: nothing to sign
    store.commit(1, 2, 3)
    _, first = sequencer.run_once()
    assert first is not None and first.size == 3
    store.commit(4)
    assert sequencer.run_once()[1] is None  # interval not over
    assert sequencer.seconds_until_due() == pytest.approx(0.5)
    clock.now += 0.5
    _, second = sequencer.run_once()
    assert second is not None and second.size == 4
    clock.now += 5
    assert sequencer.run_once()[1] is None  # nothing changed
    assert sequencer.seconds_until_due() is None


def test_a_checkpoint_verifies_with_the_registered_key_and_proves_every_leaf(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(*range(1, 8))
    _, stored = make(store, signer, clock).run_once()
    assert stored is not None and store.keys == [signer.verifier_key()]
    checkpoint = open_checkpoint(stored.note, [signer.verifier()])
    assert (checkpoint.origin, checkpoint.size) == (ORIGIN, 7)
    for index, leaf in enumerate(tree_leaves(store)):
        nodes = store.nodes(inclusion_nodes(index, 7))
        proof = inclusion_proof(index, 7, lambda lv, i: nodes[(lv, i)])
        assert verify_inclusion(leaf, index, 7, proof, checkpoint.root_hash)


def test_a_second_sequencer_racing_the_first_is_refused_and_catches_up_without_a_fork(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1, 2)
    first, second = make(store, signer, clock), make(store, signer, clock)
    first.restore()
    second.restore()
    first.step()
    store.commit(3)
    with pytest.raises(AppendConflictError):
        second.step()  # its tree was stale: nothing written
    assert second.step().sequenced == 1  # reloaded, then appended at the right index
    assert store.leaves == [1, 2, 3]


def test_a_restarted_sequencer_does_not_republish_the_last_checkpoint(signer):
    store, clock = MemoryStore(), Clock()
    store.commit(1)
    make(store, signer, clock).run_once()
    assert make(store, signer, clock).run_once()[1] is None
    assert len(store.checkpoints) == 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 3)), min_size=1, max_size=40),
    st.integers(1, 6),
    st.randoms(use_true_random=False),
)
def test_every_committed_entry_is_sequenced_exactly_once_whatever_the_commit_order(
    plan: list[tuple[bool, int]], batch_max: int, rng
):
    """Seqs are allocated in order; each commits (or rolls back) within the grace period,
    in a random order; every committed one ends up in the tree once, none before commit."""
    store, clock = MemoryStore(), Clock()
    sequencer = make(store, Signer.generate(ORIGIN), clock, batch_max=batch_max)
    in_flight = [(seq, commits, delay) for seq, (commits, delay) in enumerate(plan, 1)]
    rng.shuffle(in_flight)
    for seq, commits, delay in in_flight:
        # Every seq is allocated at the start; all commit within the grace period.
        clock.now += delay * GRACE_S / (4 * len(plan))
        if commits:
            store.commit(seq)
        sequencer.step()
    clock.now += GRACE_S * 2
    for _ in range(len(plan) + 2):
        sequencer.step()
    committed = sorted(store.committed)
    assert sorted(store.leaves) == committed and len(set(store.leaves)) == len(store.leaves)
    assert sequencer.horizon.gaps == ()
    assert sequencer.horizon.horizon == max(committed, default=0) >= store.horizon
