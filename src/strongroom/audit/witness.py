"""The pure core of a C2SP witness: judge each new checkpoint, and cosign the good ones.

- :func:`check_advance` is the decision of tlog-witness ``add-checkpoint``
  (https://c2sp.org/tlog-witness): a tree may only grow, and only with a consistency proof
  from the last tree the witness cosigned. A smaller tree (rollback) or a different tree of
  the same or a larger size (fork) is an alarm: the log, or whoever serves it, rewrote history.
- :class:`Cosigner` and :class:`CosignatureVerifier` are tlog-cosignature ``cosignature/v1``
  (https://c2sp.org/tlog-cosignature): Ed25519 over ``cosignature/v1\\ntime <t>\\n`` and the
  checkpoint text, key type 0x04, signature ``timestamp (8 bytes, big-endian) || sig``.

Storage of the state (atomically, per tlog-witness) and the clock belong to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from strongroom.audit.checkpoint import Checkpoint
from strongroom.audit.rfc9162_merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    TREE_SIZE_MAX,
    verify_consistency,
)
from strongroom.audit.signed_note import (
    ED25519_KEY_BYTES,
    ED25519_SIGNATURE_BYTES,
    Ed25519Key,
    NoteError,
    NoteSignature,
    format_verifier_key,
    key_id,
    parse_verifier_key,
    valid_key_name,
    verify_ed25519,
)

# signed-note "Signature types": 0x04 is a timestamped Ed25519 witness cosignature.
SIGNATURE_TYPE_COSIGNATURE_V1 = 0x04
COSIGNATURE_V1_HEADER = "cosignature/v1\n"
TIMESTAMP_BYTES = 8
# tlog-cosignature: the timestamp "MUST NOT exceed 2^63 - 1".
TIMESTAMP_MAX = 2**63 - 1
# tlog-witness add-checkpoint: "The client MUST NOT send more than 63 consistency proof lines."
CONSISTENCY_PROOF_HASHES_MAX = 63

VERDICTS: frozenset[str] = frozenset(
    {
        "advanced",
        "unchanged",
        "unknown-origin",
        "conflict",
        "malformed-proof",
        "rollback",
        "fork",
        "inconsistent",
    }
)
"""``advanced``/``unchanged``: cosign. ``unknown-origin``: not this log (HTTP 404).
``conflict``: the proof starts from another size than the witness holds (409, retry from
``state.size``). ``malformed-proof``: a proof no tree could have produced — over 63 hashes, a
hash of the wrong length, or hashes where none are due (from the empty tree, or between equal
trees) — a broken request, not evidence (422). Alarms — ``rollback``: smaller tree; ``fork``:
same size, other root; ``inconsistent``: a well-formed consistency proof fails (a fork, or a log
serving bad proofs). add-checkpoint requests are unauthenticated, so there a ``rollback`` may
be someone replaying an old signed checkpoint: answer 400 and keep it as evidence; a witness
that fetches the log's latest checkpoint itself has no such doubt."""

ALARMS: frozenset[str] = frozenset({"rollback", "fork", "inconsistent"})


@dataclass(frozen=True, slots=True)
class WitnessState:
    """The last checkpoint a witness accepted for one log."""

    origin: str
    size: int
    root_hash: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.size <= TREE_SIZE_MAX or len(self.root_hash) != HASH_BYTES:
            raise ValueError(f"a witness state is a size in 0..{TREE_SIZE_MAX} and a root hash")
        if self.size == 0 and self.root_hash != EMPTY_ROOT:
            raise ValueError("the empty tree's root is the hash of nothing (RFC 9162 §2.1.1)")

    @classmethod
    def initial(cls, origin: str) -> WitnessState:
        """Before the first checkpoint: the empty tree, which every tree extends."""
        return cls(origin, 0, EMPTY_ROOT)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one :func:`check_advance`; ``state`` is what to persist next."""

    code: str
    reason: str
    state: WitnessState

    @property
    def accepted(self) -> bool:
        """The checkpoint may be cosigned."""
        return self.code in ("advanced", "unchanged")

    @property
    def alarm(self) -> bool:
        """Evidence of a rewritten history: keep the checkpoint and proof, and tell someone."""
        return self.code in ALARMS


def check_advance(
    state: WitnessState,
    checkpoint: Checkpoint,
    consistency_proof: Sequence[bytes],
    *,
    old_size: int | None = None,
) -> Verdict:
    """Whether ``checkpoint`` (signature already checked) extends the tree in ``state``.

    ``consistency_proof`` is from ``state.size`` to ``checkpoint.size``; a caller relaying an
    ``add-checkpoint`` request passes the request's ``old_size`` and gets ``conflict`` when it
    is not the witness's size (tlog-witness), before any proof is looked at.
    """
    size = checkpoint.size

    def verdict(code: str, reason: str) -> Verdict:
        assert code in VERDICTS, code
        return Verdict(code, reason, state)

    if checkpoint.origin != state.origin:
        return verdict("unknown-origin", f"checkpoint is for {checkpoint.origin!r}")
    if old_size is not None and old_size != state.size:
        return verdict("conflict", f"proof is from size {old_size}; witness holds {state.size}")
    if size < state.size:
        return verdict("rollback", f"tree shrank from {state.size} to {size} leaves")
    if size == state.size and checkpoint.root_hash != state.root_hash:
        return verdict("fork", f"two different roots for a tree of {size} leaves")
    if (
        len(consistency_proof) > CONSISTENCY_PROOF_HASHES_MAX
        or any(len(h) != HASH_BYTES for h in consistency_proof)
        or (consistency_proof and state.size in (0, size))
    ):
        return verdict("malformed-proof", f"no tree has this proof from {state.size} to {size}")
    if not verify_consistency(
        state.size, size, state.root_hash, checkpoint.root_hash, consistency_proof
    ):
        return verdict(
            "inconsistent", f"the consistency proof from {state.size} to {size} leaves fails"
        )
    if size == state.size:
        return verdict("unchanged", f"same tree of {size} leaves")
    return Verdict(
        "advanced",
        f"tree grew from {state.size} to {size} leaves",
        WitnessState(state.origin, size, checkpoint.root_hash),
    )


def cosignature_message(checkpoint_text: str, timestamp_s: int) -> bytes:
    """What a cosignature/v1 signs (tlog-cosignature "Ed25519 signed message")."""
    return f"{COSIGNATURE_V1_HEADER}time {timestamp_s}\n{checkpoint_text}".encode()


def cosignature_timestamp(signature: bytes) -> int:
    """The POSIX time inside a cosignature/v1 signature (the bytes after the key ID)."""
    if len(signature) != TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES:
        raise NoteError("malformed-note", "not a cosignature/v1 signature")
    return int.from_bytes(signature[:TIMESTAMP_BYTES], "big")


class Cosigner(Ed25519Key):
    """A witness's cosignature/v1 key (type 0x04; never reuse a log's 0x01 key for it)."""

    __slots__ = ()
    signature_type: ClassVar[int] = SIGNATURE_TYPE_COSIGNATURE_V1

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self._name, self._public_key)

    def cosign(self, checkpoint: Checkpoint, timestamp_s: int) -> str:
        """The cosignature line for ``checkpoint`` at ``timestamp_s``, newline included.

        Append it to the checkpoint's note (tlog-witness: the response body is such lines).
        """
        if not 0 <= timestamp_s <= TIMESTAMP_MAX:
            raise ValueError(f"timestamp must be in 0..{TIMESTAMP_MAX}")
        signed = self._key.sign(cosignature_message(checkpoint.format(), timestamp_s))
        stamped = timestamp_s.to_bytes(TIMESTAMP_BYTES, "big") + signed
        return NoteSignature(self._name, self.key_id, stamped).line()


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """Checks cosignature/v1 lines; usable with :func:`~strongroom.audit.signed_note.open_note`."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not valid_key_name(self.name) or len(self.public_key) != ED25519_KEY_BYTES:
            raise NoteError("malformed-key", "a cosigner is a valid name and a 32-byte key")
        key = key_id(self.name, SIGNATURE_TYPE_COSIGNATURE_V1, self.public_key)
        object.__setattr__(self, "key_id", key)

    @classmethod
    def from_key(cls, vkey: str) -> CosignatureVerifier:
        return cls(*parse_verifier_key(vkey, SIGNATURE_TYPE_COSIGNATURE_V1))

    def key_string(self) -> str:
        return format_verifier_key(self.name, SIGNATURE_TYPE_COSIGNATURE_V1, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != TIMESTAMP_BYTES + ED25519_SIGNATURE_BYTES:
            return False
        timestamp_s = int.from_bytes(signature[:TIMESTAMP_BYTES], "big")
        if timestamp_s > TIMESTAMP_MAX:
            return False
        try:
            message = cosignature_message(text.decode(), timestamp_s)
        except UnicodeDecodeError:
            return False
        return verify_ed25519(self.public_key, message, signature[TIMESTAMP_BYTES:])
