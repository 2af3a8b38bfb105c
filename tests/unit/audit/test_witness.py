"""`audit.witness`: a witness accepts only growth it can prove, and cosigns per tlog-cosignature."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.checkpoint import Checkpoint, sign_checkpoint
from strongroom.audit.rfc9162_merkle import CompactRange, consistency_proof, leaf_hash, root_of
from strongroom.audit.signed_note import NoteError, Signer, open_note, parse_note
from strongroom.audit.witness import (
    ALARMS,
    CONSISTENCY_PROOF_HASHES_MAX,
    TIMESTAMP_MAX,
    CosignatureVerifier,
    Cosigner,
    WitnessState,
    check_advance,
    cosignature_message,
    cosignature_timestamp,
)

ORIGIN = "audit.strongroom.example/log"
# A real cosignature/v1 verifier key (key type 0x04) from transparency-dev/formats' tests.
NATIVE_COSIGNER_KEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"


class Log:
    """An honest in-memory log: leaves, their stored nodes, checkpoints and proofs."""

    def __init__(self) -> None:
        self.tree = CompactRange()
        self.nodes: dict[tuple[int, int], bytes] = {}

    def append(self, count: int, salt: bytes = b"") -> Checkpoint:
        start = self.tree.size
        leaves = [leaf_hash(salt + (start + i).to_bytes(8, "big")) for i in range(count)]
        for level, index, h in self.tree.append_many(leaves):
            self.nodes[level, index] = h
        return self.checkpoint()

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(ORIGIN, self.tree.size, self.tree.root())

    def proof(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, lambda level, index: self.nodes[level, index])


def _state(log: Log) -> WitnessState:
    checkpoint = log.checkpoint()
    return WitnessState(ORIGIN, checkpoint.size, checkpoint.root_hash)


# -- accepting growth --------------------------------------------------------------------------


def test_the_first_checkpoint_is_accepted_from_the_empty_tree() -> None:
    log = Log()
    verdict = check_advance(WitnessState.initial(ORIGIN), log.append(5), [])
    assert verdict.code == "advanced" and verdict.accepted and not verdict.alarm
    assert verdict.state == WitnessState(ORIGIN, 5, log.tree.root())


def test_growth_with_a_valid_consistency_proof_is_accepted() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    checkpoint = log.append(8)
    verdict = check_advance(state, checkpoint, log.proof(5, 13))
    assert verdict.code == "advanced"
    assert verdict.state == WitnessState(ORIGIN, 13, checkpoint.root_hash)


def test_the_same_checkpoint_again_is_accepted_unchanged() -> None:
    log = Log()
    checkpoint = log.append(5)
    verdict = check_advance(_state(log), checkpoint, [])
    assert verdict.code == "unchanged" and verdict.accepted
    assert verdict.state == _state(log)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=70), min_size=1, max_size=10))
def test_an_honest_log_is_always_accepted(growths: Sequence[int]) -> None:
    log, state = Log(), WitnessState.initial(ORIGIN)
    for grown in growths:
        old = state.size
        checkpoint = log.append(grown)
        verdict = check_advance(state, checkpoint, log.proof(old, checkpoint.size), old_size=old)
        assert verdict.accepted, verdict.reason
        state = verdict.state
    assert state == _state(log)


# -- alarms ----------------------------------------------------------------------------------


def test_a_smaller_tree_is_a_rollback_alarm() -> None:
    log = Log()
    earlier = log.append(5)
    log.append(3)
    verdict = check_advance(_state(log), earlier, [])
    assert verdict.code == "rollback" and verdict.alarm and not verdict.accepted
    assert verdict.state == _state(log)


def test_another_root_for_the_same_size_is_a_fork_alarm() -> None:
    log, other = Log(), Log()
    log.append(5)
    forked = other.append(5, salt=b"fork")
    verdict = check_advance(_state(log), forked, [])
    assert verdict.code == "fork" and verdict.alarm


def test_a_larger_tree_that_rewrites_history_is_an_alarm() -> None:
    log, fork = Log(), Log()
    log.append(5)
    fork.append(5, salt=b"fork")
    forked = fork.append(4)
    verdict = check_advance(_state(log), forked, fork.proof(5, 9))
    assert verdict.code == "inconsistent" and verdict.alarm


def test_growth_without_a_proof_is_an_alarm() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    verdict = check_advance(state, log.append(4), [])
    assert verdict.code == "inconsistent" and verdict.state == state


def test_a_proof_from_the_empty_tree_must_be_empty_but_is_no_alarm() -> None:
    log = Log()
    checkpoint = log.append(4)
    verdict = check_advance(WitnessState.initial(ORIGIN), checkpoint, [checkpoint.root_hash])
    assert verdict.code == "malformed-proof" and not verdict.alarm and not verdict.accepted


def test_a_proof_between_equal_trees_must_be_empty_but_is_no_alarm() -> None:
    log = Log()
    checkpoint = log.append(4)
    verdict = check_advance(_state(log), checkpoint, [checkpoint.root_hash])
    assert verdict.code == "malformed-proof" and not verdict.alarm


def test_a_proof_over_the_protocol_limit_is_malformed() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    checkpoint = log.append(4)
    proof = log.proof(5, 9) + [b"\x00" * 32] * CONSISTENCY_PROOF_HASHES_MAX
    assert check_advance(state, checkpoint, proof).code == "malformed-proof"


def test_a_proof_hash_of_the_wrong_length_is_malformed() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    checkpoint = log.append(4)
    proof = log.proof(5, 9)
    verdict = check_advance(state, checkpoint, [proof[0] + b"\x00", *proof[1:]])
    assert verdict.code == "malformed-proof"


def test_a_well_formed_proof_that_fails_is_an_alarm() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    checkpoint = log.append(4)
    proof = log.proof(5, 9)
    verdict = check_advance(state, checkpoint, [bytes(32) for _ in proof])
    assert verdict.code == "inconsistent" and verdict.alarm


def test_a_witness_state_must_hold_a_real_tree_head() -> None:
    with pytest.raises(ValueError):
        WitnessState(ORIGIN, 0, bytes(32))
    with pytest.raises(ValueError):
        WitnessState(ORIGIN, 3, bytes(31))
    with pytest.raises(ValueError):
        WitnessState(ORIGIN, -1, bytes(32))


def test_alarms_are_exactly_rollback_fork_and_inconsistent() -> None:
    assert frozenset({"rollback", "fork", "inconsistent"}) == ALARMS


# -- not alarms ------------------------------------------------------------------------------


def test_another_logs_checkpoint_is_an_unknown_origin_not_an_alarm() -> None:
    log = Log()
    log.append(3)
    verdict = check_advance(_state(log), Checkpoint("other.example/log", 3, log.tree.root()), [])
    assert verdict.code == "unknown-origin" and not verdict.alarm and not verdict.accepted


def test_a_proof_from_another_old_size_is_a_conflict_not_an_alarm() -> None:
    log = Log()
    log.append(5)
    state = _state(log)
    checkpoint = log.append(4)
    verdict = check_advance(state, checkpoint, log.proof(3, 9), old_size=3)
    assert verdict.code == "conflict" and not verdict.alarm and verdict.state.size == 5


# -- cosignatures ----------------------------------------------------------------------------


def _cosigned(cosigner: Cosigner, timestamp_s: int = 1_679_315_147) -> tuple[str, Checkpoint]:
    log_key = Signer.generate(ORIGIN)
    checkpoint = Log().append(7)
    note = sign_checkpoint(checkpoint, [log_key]) + cosigner.cosign(checkpoint, timestamp_s)
    return note, checkpoint


def test_a_cosigned_checkpoint_opens_with_the_witness_key() -> None:
    witness = Cosigner.generate("witness.example/w1")
    note, checkpoint = _cosigned(witness)
    assert open_note(note, [witness.verifier()]).text == checkpoint.format()


def test_the_cosignature_signs_header_time_and_checkpoint() -> None:
    witness = Cosigner.generate("witness.example/w1")
    note, checkpoint = _cosigned(witness, 1_679_315_147)
    cosignature = parse_note(note)[1][-1]
    assert cosignature.key_id == witness.key_id
    assert cosignature_timestamp(cosignature.signature) == 1_679_315_147
    assert cosignature.signature[:8] == (1_679_315_147).to_bytes(8, "big")
    message = (
        "cosignature/v1\ntime 1679315147\n"
        f"{ORIGIN}\n7\n{base64.b64encode(checkpoint.root_hash).decode()}\n"
    ).encode()
    assert message == cosignature_message(checkpoint.format(), 1_679_315_147)
    Ed25519PublicKey.from_public_bytes(witness.public_key).verify(
        cosignature.signature[8:], message
    )


def test_a_cosignature_does_not_carry_over_to_another_checkpoint() -> None:
    witness = Cosigner.generate("witness.example/w1")
    note, _ = _cosigned(witness)
    text, _ = parse_note(note)
    other = note.replace(text.split("\n")[1], "8", 1)
    with pytest.raises(NoteError) as raised:
        open_note(other, [witness.verifier()])
    assert raised.value.code == "invalid-signature"


def test_a_cosignature_key_is_not_a_note_key_and_vice_versa() -> None:
    seed = bytes(range(32))
    witness, same_key_as_log = Cosigner.from_seed("w", seed), Signer.from_seed("w", seed)
    assert witness.key_id != same_key_as_log.key_id
    note, _ = _cosigned(witness)
    with pytest.raises(NoteError) as raised:
        open_note(note, [same_key_as_log.verifier()])
    assert raised.value.code == "unverified-note"


def test_cosigner_key_strings_use_type_0x04_and_round_trip() -> None:
    witness = Cosigner.generate("witness.example/w1")
    assert base64.b64decode(witness.verifier_key().split("+", 2)[2])[0] == 0x04
    assert Cosigner.from_key(witness.private_key_string()).verifier_key() == witness.verifier_key()
    assert CosignatureVerifier.from_key(witness.verifier_key()) == witness.verifier()


def test_a_native_cosignature_verifier_key_parses_and_round_trips() -> None:
    verifier = CosignatureVerifier.from_key(NATIVE_COSIGNER_KEY)
    assert verifier.name == "remora.n621.de" and verifier.key_id.hex() == "da77ade7"
    assert verifier.key_string() == NATIVE_COSIGNER_KEY


def test_a_note_key_is_refused_where_a_cosignature_key_is_expected() -> None:
    with pytest.raises(NoteError):
        CosignatureVerifier.from_key(Signer.generate("w").verifier_key())
    with pytest.raises(NoteError):
        Cosigner.from_key(Signer.generate("w").private_key_string())


@pytest.mark.parametrize("timestamp_s", [-1, TIMESTAMP_MAX + 1])
def test_cosigning_refuses_a_timestamp_out_of_range(timestamp_s: int) -> None:
    with pytest.raises(ValueError):
        Cosigner.generate("w").cosign(Log().append(1), timestamp_s)


def test_a_cosignature_with_a_timestamp_over_the_limit_does_not_verify() -> None:
    witness = Cosigner.generate("w")
    text = Log().append(1).format().encode()
    signature = (TIMESTAMP_MAX + 1).to_bytes(8, "big") + b"\x00" * 64
    assert not witness.verifier().verify(text, signature)
    assert not witness.verifier().verify(text, signature[:-1])


def test_the_witness_state_after_cosigning_matches_the_root_it_signed() -> None:
    log = Log()
    checkpoint = log.append(6)
    verdict = check_advance(WitnessState.initial(ORIGIN), checkpoint, [])
    assert verdict.state.root_hash == root_of([leaf_hash(i.to_bytes(8, "big")) for i in range(6)])
