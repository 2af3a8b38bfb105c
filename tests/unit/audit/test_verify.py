"""`audit.verify`: a recomputed log passes, and any change is caught at its first bad index."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.canonical import AuditRecord, AuditRecordError, leaf_bytes, parse_leaf
from strongroom.audit.checkpoint import Checkpoint, sign_checkpoint
from strongroom.audit.rfc9162_merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    leaf_hash,
    root_of,
)
from strongroom.audit.signed_note import Signer
from strongroom.audit.verify import (
    VERIFY_FAILURES,
    LogVerifier,
    VerifyReport,
    leaf_canonical_error,
)

ORIGIN = "audit.strongroom.test/log"
SIGNER = Signer.generate(ORIGIN)
OTHER = Signer.generate(ORIGIN)


def entry(i: int, note: str = "") -> bytes:
    record = AuditRecord(
        event_type="payment.created",
        tenant_id=f"tenant-{i % 3}",
        actor_kind="client",
        actor_id="client-1",
        request_id=f"req-{i}",
        subject_ids=(f"pay-{i}",),
        data={"amount": i * 7, "note": note},
        occurred_at_us=1_700_000_000_000_000 + i,
    )
    return leaf_bytes(record)


def note_for(leaves: Sequence[bytes], signer: Signer = SIGNER) -> str:
    root = root_of([leaf_hash(d) for d in leaves])
    return sign_checkpoint(Checkpoint(ORIGIN, len(leaves), root), [signer])


def verify(
    leaves: Sequence[bytes],
    notes: Sequence[str],
    stored: Sequence[bytes] | None = None,
    *,
    chunk: int = 7,
    check_leaves: bool = True,
) -> VerifyReport:
    verifier = LogVerifier([SIGNER.verifier()], check_leaves=check_leaves)
    for note in notes:
        verifier.add_checkpoint(note)
    for start in range(0, len(leaves), chunk):
        part = leaves[start : start + chunk]
        hashes = None if stored is None else stored[start : start + len(part)]
        if not verifier.feed(part, hashes):
            break
    return verifier.finish()


def honest(size: int) -> tuple[list[bytes], list[bytes], list[str]]:
    """A log of ``size`` entries, its stored leaf hashes and one checkpoint per 4 entries."""
    leaves = [entry(i) for i in range(size)]
    sizes = sorted({*range(0, size + 1, 4), size})
    return leaves, [leaf_hash(d) for d in leaves], [note_for(leaves[:n]) for n in sizes]


def tampered(data: bytes) -> bytes:
    """The same entry with another amount: still canonical, another hash."""
    record = parse_leaf(data)
    return leaf_bytes(
        AuditRecord(
            record.event_type,
            record.tenant_id,
            record.actor_kind,
            record.actor_id,
            record.request_id,
            record.subject_ids,
            {**record.data, "amount": record.data["amount"] + 1},
            record.occurred_at_us,
        )
    )


sizes = st.integers(min_value=1, max_value=40)
chunks = st.integers(min_value=1, max_value=16)


# -- an honest log ------------------------------------------------------------------------------


@given(size=st.integers(min_value=0, max_value=40), chunk=chunks)
@settings(max_examples=40, deadline=None)
def test_an_honest_log_verifies_at_every_checkpoint(size: int, chunk: int) -> None:
    leaves, stored, notes = honest(size)
    report = verify(leaves, notes, stored, chunk=chunk)
    assert report.ok, report
    assert report.reason == "ok"
    assert report.checked_entries == size
    assert report.verified_size == size
    assert report.checkpoints_checked == len(notes)
    assert report.first_bad_index is None


def test_a_log_without_checkpoints_is_rehashed_but_reported_unanchored() -> None:
    leaves, stored, _ = honest(5)
    report = verify(leaves, [], stored)
    assert report.ok
    assert report.verified_size == 0
    assert "nothing anchors" in report.detail


def test_the_empty_log_verifies_against_the_empty_checkpoint() -> None:
    report = verify([], [sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), [SIGNER])])
    assert report.ok
    assert report.checkpoints_checked == 1


def test_leaves_beyond_the_latest_checkpoint_are_checked_but_not_anchored() -> None:
    leaves, stored, _ = honest(10)
    report = verify(leaves, [note_for(leaves[:6])], stored)
    assert report.ok
    assert (report.checked_entries, report.verified_size) == (10, 6)


# -- changes with the stored hashes kept: the exact index ---------------------------------------


@given(size=sizes, data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_a_changed_entry_is_named_exactly_by_its_stored_hash(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves, stored, notes = honest(size)
    victim = data.draw(st.integers(0, size - 1))
    leaves[victim] = tampered(leaves[victim])
    report = verify(leaves, notes, stored, chunk=chunk)
    assert not report.ok
    assert report.reason == "leaf-hash-mismatch"
    assert report.first_bad_index == victim
    assert report.bad_range == (victim, victim + 1)


@given(size=st.integers(min_value=2, max_value=40), data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_a_deleted_entry_is_named_exactly(size: int, data: st.DataObject, chunk: int) -> None:
    leaves, stored, notes = honest(size)
    victim = data.draw(st.integers(0, size - 2))
    del leaves[victim]  # the rows after it shift down one index
    report = verify(leaves, notes, stored, chunk=chunk)
    assert not report.ok
    assert report.first_bad_index == victim


@given(size=st.integers(min_value=2, max_value=40), data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_two_swapped_entries_are_caught_at_the_first(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves, stored, notes = honest(size)
    first = data.draw(st.integers(0, size - 2))
    second = data.draw(st.integers(first + 1, size - 1))
    leaves[first], leaves[second] = leaves[second], leaves[first]
    report = verify(leaves, notes, stored, chunk=chunk)
    assert report.reason == "leaf-hash-mismatch"
    assert report.first_bad_index == first


@given(size=sizes, data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_a_truncated_log_is_reported_at_its_first_missing_index(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves, stored, notes = honest(size)
    kept = data.draw(st.integers(0, size - 1))
    report = verify(leaves[:kept], notes, stored[:kept], chunk=chunk)
    assert report.reason == "truncated"
    assert report.first_bad_index == kept
    assert report.bad_range == (kept, size)


def test_a_gap_reported_by_the_source_names_the_missing_index() -> None:
    leaves, stored, notes = honest(8)
    verifier = LogVerifier([SIGNER.verifier()])
    for note in notes:
        verifier.add_checkpoint(note)
    verifier.feed(leaves[:3], stored[:3])
    verifier.missing(3)
    report = verifier.finish()
    assert (report.reason, report.first_bad_index) == ("missing-entry", 3)


# -- changes with the stored hashes rewritten too: the checkpoints narrow it --------------------


@given(size=sizes, data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_a_rewritten_entry_and_hash_fail_the_next_checkpoint_within_its_window(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves, _, notes = honest(size)
    victim = data.draw(st.integers(0, size - 1))
    leaves[victim] = tampered(leaves[victim])
    rewritten = [leaf_hash(d) for d in leaves]
    report = verify(leaves, notes, rewritten, chunk=chunk)
    assert report.reason == "root-mismatch"
    assert report.bad_range is not None
    start, end = report.bad_range
    assert start <= victim < end
    assert (start, end) == (victim // 4 * 4, min(victim // 4 * 4 + 4, size))


@given(size=sizes, data=st.data())
@settings(max_examples=40, deadline=None)
def test_a_checkpoint_per_entry_pins_a_rewritten_entry_exactly(
    size: int, data: st.DataObject
) -> None:
    leaves = [entry(i) for i in range(size)]
    notes = [note_for(leaves[:n]) for n in range(size + 1)]
    victim = data.draw(st.integers(0, size - 1))
    leaves[victim] = tampered(leaves[victim])
    report = verify(leaves, notes, [leaf_hash(d) for d in leaves])
    assert report.reason == "root-mismatch"
    assert report.first_bad_index == victim


@given(size=st.integers(min_value=2, max_value=40), data=st.data(), chunk=chunks)
@settings(max_examples=40, deadline=None)
def test_every_single_change_is_detected_without_any_stored_hash(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves, _, _ = honest(size)
    latest = [note_for(leaves)]
    victim = data.draw(st.integers(0, size - 1))
    kind = data.draw(st.sampled_from(["change", "delete", "reorder", "truncate"]))
    if kind == "change":
        leaves[victim] = tampered(leaves[victim])
    elif kind == "delete":
        del leaves[victim]
    elif kind == "reorder":
        other = (victim + 1) % size
        leaves[victim], leaves[other] = leaves[other], leaves[victim]
    else:
        del leaves[victim:]
    report = verify(leaves, latest, chunk=chunk)
    assert not report.ok
    assert report.reason in {"root-mismatch", "truncated"}
    assert report.bad_range is not None
    assert report.bad_range[0] <= victim < report.bad_range[1]


# -- malformed leaves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        b"not json",
        b'{"v":1}',
        b" " + entry(0),
        entry(0).replace(b'"v":1', b'"v":1.0'),
        entry(0).replace(b'"amount":0', b'"amount":0,"amount":1'),
        entry(0).replace(b'"amount":0', b'"amount":NaN'),
        entry(0).replace(b"payment.created", b"payment.invented"),
    ],
    ids=[
        "not-json",
        "missing-fields",
        "whitespace",
        "float-version",
        "duplicate-key",
        "nan",
        "type",
    ],
)
def test_a_leaf_that_is_not_a_canonical_entry_is_named(bad: bytes) -> None:
    leaves, _, _ = honest(6)
    leaves[4] = bad
    honest_notes = [note_for(leaves[:n]) for n in (0, 4)]
    report = verify(leaves, honest_notes)
    assert (report.reason, report.first_bad_index) == ("malformed-leaf", 4)
    assert report.checked_entries == 4


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(value=json_values, mutate=st.booleans(), position=st.integers(0, 400))
@settings(max_examples=300, deadline=None)
def test_the_fast_canonical_check_agrees_with_parse_leaf(
    value: object, mutate: bool, position: int
) -> None:
    data = leaf_bytes(
        AuditRecord("config.changed", None, "system", "strongroom", None, (), {"x": value}, 0)
    )
    if mutate:  # a byte changed anywhere: usually invalid, sometimes another valid leaf
        position %= len(data)
        data = data[:position] + bytes([data[position] ^ 0x20]) + data[position + 1 :]
    try:
        parse_leaf(data)
        expected = True
    except AuditRecordError:
        expected = False
    assert (leaf_canonical_error(data) is None) is expected


def test_leaf_checks_can_be_skipped_when_only_hashes_matter() -> None:
    leaves, stored, notes = honest(6)
    leaves[2] = b"opaque"
    stored[2] = leaf_hash(b"opaque")
    notes = [note_for(leaves)]
    assert verify(leaves, notes, stored, check_leaves=False).ok


# -- checkpoints --------------------------------------------------------------------------------


def test_a_checkpoint_signed_by_another_key_is_refused() -> None:
    leaves, stored, _ = honest(4)
    report = verify(leaves, [note_for(leaves, OTHER)], stored)
    assert report.reason == "bad-checkpoint"
    assert report.first_bad_index is None
    assert report.checked_entries == 0


def test_a_checkpoint_with_a_forged_signature_is_refused() -> None:
    leaves, stored, _ = honest(4)
    note = note_for(leaves)
    forged = note.replace(note.split("\n")[1], "5")  # the size changed after signing
    report = verify(leaves, [forged], stored)
    assert report.reason == "bad-checkpoint"
    assert "signature" in report.detail


def test_two_signed_roots_for_one_size_are_a_fork() -> None:
    leaves, stored, _ = honest(4)
    fork = [*leaves[:3], tampered(leaves[3])]
    report = verify(leaves, [note_for(leaves), note_for(fork)], stored)
    assert report.reason == "conflicting-checkpoints"


def test_a_checkpoint_of_another_log_is_refused() -> None:
    other = Signer.generate("other.example/log")
    verifier = LogVerifier([SIGNER.verifier(), other.verifier()], origin=ORIGIN)
    root = root_of([])
    verifier.add_checkpoint(sign_checkpoint(Checkpoint("other.example/log", 0, root), [other]))
    assert verifier.finish().reason == "wrong-origin"


def test_checkpoints_come_before_leaves() -> None:
    leaves, _, _ = honest(2)
    verifier = LogVerifier([SIGNER.verifier()])
    verifier.feed(leaves)
    with pytest.raises(ValueError, match="before the first leaf"):
        verifier.add_checkpoint(note_for(leaves))


def test_every_reason_is_a_declared_failure() -> None:
    assert {
        "bad-checkpoint",
        "root-mismatch",
        "leaf-hash-mismatch",
        "malformed-leaf",
        "truncated",
        "missing-entry",
    } <= VERIFY_FAILURES


def test_the_summary_names_the_first_bad_index() -> None:
    leaves, stored, notes = honest(9)
    leaves[5] = tampered(leaves[5])
    report = verify(leaves, notes, stored)
    assert "first bad index 5" in report.summary()


# -- narrowing a root mismatch with consistency proofs ------------------------------------------


def stored_nodes(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    tree = CompactRange()
    return {(level, index): h for level, index, h in tree.append_many(map(leaf_hash, leaves))}


@given(size=st.integers(min_value=2, max_value=60), data=st.data(), chunk=chunks)
@settings(max_examples=60, deadline=None)
def test_consistency_proofs_pin_a_rewritten_entry_exactly(
    size: int, data: st.DataObject, chunk: int
) -> None:
    leaves = [entry(i) for i in range(size)]
    nodes = stored_nodes(leaves)  # the interior nodes the sequencer stored, untouched
    victim = data.draw(st.integers(0, size - 1))
    tampered_leaves = [*leaves[:victim], tampered(leaves[victim]), *leaves[victim + 1 :]]
    verifier = LogVerifier([SIGNER.verifier()])
    verifier.add_checkpoint(note_for(leaves))
    for start in range(0, size, chunk):
        verifier.feed(tampered_leaves[start : start + chunk])
    asked: list[tuple[int, int]] = []

    def proof(old: int, new: int) -> list[bytes]:
        asked.append((old, new))
        return consistency_proof(old, new, lambda level, index: nodes[level, index])

    report = verifier.narrow(proof)
    assert (report.reason, report.first_bad_index) == ("root-mismatch", victim)
    assert len(asked) <= size.bit_length()


def test_a_log_that_proves_nothing_is_pinned_at_the_window_start() -> None:
    leaves, _, _ = honest(20)
    notes = [note_for(leaves[:8]), note_for(leaves)]
    leaves[13] = tampered(leaves[13])
    verifier = LogVerifier([SIGNER.verifier()])
    for note in notes:
        verifier.add_checkpoint(note)
    verifier.feed(leaves)
    report = verifier.narrow(lambda old, new: [b"\x00" * 32])
    assert report.first_bad_index == 8
    assert "cannot prove" in report.detail


def test_narrowing_leaves_other_failures_alone() -> None:
    leaves, stored, notes = honest(9)
    leaves[5] = tampered(leaves[5])
    verifier = LogVerifier([SIGNER.verifier()])
    for note in notes:
        verifier.add_checkpoint(note)
    verifier.feed(leaves, stored)

    def never(old: int, new: int) -> list[bytes]:
        raise AssertionError("no proof is needed")

    assert verifier.narrow(never).first_bad_index == 5
