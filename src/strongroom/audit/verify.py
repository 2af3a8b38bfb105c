"""Full verification of an audit log: recompute the tree and name the first entry that is wrong.

A verifier is fed the log's leaf bytes in index order, in chunks, by an adapter (the database
or the HTTP API), optionally with the stored level-0 hashes of the same indexes, after it has
been given the signed checkpoints it trusts. It rehashes every leaf, grows the RFC 9162 tree
with :class:`~strongroom.audit.rfc9162_merkle.CompactRange`, compares the root at every
checkpoint size, and stops at the first failure with a :class:`VerifyReport`.

How precisely a failure is located depends on the evidence, and the report says which:

- A leaf whose hash differs from the hash the sequencer stored for it (``leaf-hash-mismatch``),
  a leaf that is not a canonical entry (``malformed-leaf``) or a hole in the indexes
  (``missing-entry``): that exact index.
- A root that differs from a signed checkpoint (``root-mismatch``), when whoever rewrote a
  leaf rewrote its stored hash too: the leaves since the previous checkpoint that verified,
  ``bad_range = [previous size, failing size)``. The sequencer signs a checkpoint per batch,
  so this is one batch. :meth:`LogVerifier.narrow` then pins the first leaf the log cannot
  prove with a binary search of consistency proofs to the failing checkpoint.
- A log shorter than a checkpoint (``truncated``): the first missing index (when every
  leaf before it is proven by a checkpoint or its stored hash; else the range).
- A checkpoint the log's key did not sign (``bad-checkpoint``), or two signed checkpoints
  with different roots for one size (``conflicting-checkpoints``: the log forked): no index,
  the log's history itself is in question.

Pure: no I/O, no clock. Leaves are checked for canonical form with a fast path (C JSON
parser and orjson) that provably agrees with :func:`~strongroom.audit.canonical.parse_leaf`
where it applies, so a million entries verify in seconds.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from strongroom.audit.canonical import (
    LEAF_BYTES_MAX,
    LEAF_FORMAT_VERSION,
    AuditRecord,
    AuditRecordError,
    parse_leaf,
)
from strongroom.audit.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from strongroom.audit.rfc9162_merkle import (
    EMPTY_ROOT,
    HASH_BYTES,
    LEAF_PREFIX,
    CompactRange,
    right_edge_nodes,
    verify_consistency,
)
from strongroom.audit.signed_note import NoteError, NoteVerifier

VERIFY_FAILURES: frozenset[str] = frozenset(
    {
        "bad-checkpoint",
        "conflicting-checkpoints",
        "wrong-origin",
        "malformed-leaf",
        "leaf-hash-mismatch",
        "missing-entry",
        "root-mismatch",
        "truncated",
    }
)
"""Why a log failed verification; a passing report's ``reason`` is ``"ok"``."""

_LEAF_FIELDS = frozenset(
    {
        "v",
        "event_type",
        "tenant_id",
        "actor_kind",
        "actor_id",
        "request_id",
        "subject_ids",
        "data",
        "occurred_at_us",
    }
)
_sha256 = hashlib.sha256

# Leaf hashes kept since the last verified checkpoint so that narrow() can pin a root
# mismatch (32 bytes each: 64 MiB at most). Checkpoints come every batch, so windows are
# small; a larger one (a single old checkpoint) is reported as a range instead.
NARROW_WINDOW_LEAVES_MAX = 2**21

ConsistencyProofSource = Callable[[int, int], Sequence[bytes]]
"""``(old size, new size)`` → the log's RFC 9162 consistency proof (the adapter's I/O)."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of a verification.

    ``checked_entries``: leaves rehashed before the verifier stopped. ``verified_size``: the
    largest checkpoint size whose root the recomputed tree matched (everything below it is
    proven). On failure ``first_bad_index`` is the first wrong index when the evidence pins
    it, and ``bad_range`` (``[start, end)``) the indexes it certainly lies in.
    """

    ok: bool
    reason: str
    detail: str
    checked_entries: int
    verified_size: int
    checkpoints_checked: int
    first_bad_index: int | None = None
    bad_range: tuple[int, int] | None = None

    def summary(self) -> str:
        """One line for a terminal or a log."""
        if self.ok:
            return (
                f"ok: {self.checked_entries} entries, {self.checkpoints_checked} checkpoints; "
                f"tree of {self.verified_size} leaves matches its signed root"
            )
        if self.first_bad_index is not None:
            where = f"first bad index {self.first_bad_index}"
        elif self.bad_range is not None:
            where = f"first bad index in [{self.bad_range[0]}, {self.bad_range[1]})"
        else:
            where = "no index (the checkpoints themselves are in question)"
        return f"FAILED ({self.reason}): {where}: {self.detail}"


def leaf_canonical_error(data: bytes) -> str | None:
    """Why ``data`` is not a canonical audit leaf, or ``None`` when it is.

    Same answer as :func:`~strongroom.audit.canonical.parse_leaf`, about six times faster
    on ordinary entries. The fast path applies to ASCII leaves without floats: there JCS
    (RFC 8785) key order is plain code-point order, integers are their digits, and string
    escapes are ``json.encoder.encode_basestring``'s, all of which orjson's compact sorted
    output reproduces; duplicate keys, whitespace or other escapes make the re-encoding
    differ. Everything else (non-ASCII text, floats, NaN, integers beyond 64 bits, any
    mismatch) takes the exact path.
    """
    if len(data) <= LEAF_BYTES_MAX and data.isascii():
        fields = _fast_parse(data)
        if fields is not None:
            try:
                same = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS) == data
            except TypeError:  # an integer beyond 64 bits, a lone surrogate: exact path
                same = False
            if same and _record_valid(fields):
                return None
    try:
        parse_leaf(data)
    except AuditRecordError as exc:
        return exc.message
    return None


def _reject_literal(text: str) -> Any:
    raise ValueError(text)


# JSON's C scanner; floats and NaN/Infinity abort the fast path (JCS writes them otherwise).
_FAST_DECODER = json.JSONDecoder(parse_float=_reject_literal, parse_constant=_reject_literal)


def _fast_parse(data: bytes) -> dict[str, Any] | None:
    try:
        fields = _FAST_DECODER.decode(data.decode("ascii"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(fields, dict) or fields.keys() != _LEAF_FIELDS:
        return None
    return fields


def _record_valid(fields: dict[str, Any]) -> bool:
    if type(fields["v"]) is not int or fields["v"] != LEAF_FORMAT_VERSION:
        return False
    if not isinstance(fields["subject_ids"], list):
        return False
    try:
        AuditRecord(
            event_type=fields["event_type"],
            tenant_id=fields["tenant_id"],
            actor_kind=fields["actor_kind"],
            actor_id=fields["actor_id"],
            request_id=fields["request_id"],
            subject_ids=tuple(fields["subject_ids"]),
            data=fields["data"],
            occurred_at_us=fields["occurred_at_us"],
        )
    except AuditRecordError:
        return False
    return True


class _Failure(Exception):
    """The first failure found; :meth:`LogVerifier.narrow` may pin its index afterwards."""

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        index: int | None = None,
        bad_range: tuple[int, int] | None = None,
    ) -> None:
        assert reason in VERIFY_FAILURES, reason
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.index = index
        self.bad_range = bad_range if bad_range is not None or index is None else (index, index + 1)


class LogVerifier:
    """Streaming verification of one log against the checkpoints its key signed.

    Usage: :meth:`add_checkpoint` for every trusted note (the latest, exported ones, the
    store's), then :meth:`feed` chunks of leaves from index 0 on while it returns ``True``,
    then :meth:`finish`. After the first failure feeding is refused and ``finish`` reports it.
    """

    def __init__(
        self,
        verifiers: Iterable[NoteVerifier],
        *,
        origin: str | None = None,
        check_leaves: bool = True,
    ) -> None:
        self._verifiers = tuple(verifiers)
        self._origin = origin
        self._check_leaves = check_leaves
        self._roots: dict[int, bytes] = {}
        self._pending: list[int] = []  # checkpoint sizes not reached yet, largest first
        self._range = CompactRange()
        self._verified_size = 0
        self._checked_checkpoints = 0
        self._failure: _Failure | None = None
        self._started = False
        self._stored_evidence = True  # every leaf fed so far came with its stored hash
        # The tree at the last verified checkpoint and the leaf hashes since: what narrow()
        # needs to recompute any prefix inside the window a root mismatch leaves open.
        self._anchor: tuple[bytes, ...] = ()
        self._window = bytearray()

    @property
    def size(self) -> int:
        """Leaves fed so far (the next leaf fed is this index)."""
        return self._range.size

    @property
    def target_size(self) -> int:
        """The largest trusted checkpoint size: the log must have at least this many leaves."""
        return max(self._roots, default=0)

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def add_checkpoint(self, note: str | bytes, *, source: str = "checkpoint") -> bool:
        """Trust ``note`` once the log's key verifies it; ``False`` (and a failure) if not.

        All checkpoints come before the first :meth:`feed`: a root can only be compared
        when the tree passes its size.
        """
        if self._started:
            raise ValueError("checkpoints are added before the first leaf is fed")
        if self._failure is not None:
            return False
        try:
            checkpoint = open_checkpoint(note, self._verifiers)
        except (NoteError, CheckpointError) as exc:
            self._failure = _Failure("bad-checkpoint", f"{source}: {exc}")
            return False
        return self.add_opened(checkpoint, source=source)

    def add_opened(self, checkpoint: Checkpoint, *, source: str = "checkpoint") -> bool:
        """Trust a checkpoint whose signature the caller has already verified."""
        if self._started:
            raise ValueError("checkpoints are added before the first leaf is fed")
        if self._failure is not None:
            return False
        if self._origin is None:
            self._origin = checkpoint.origin
        if checkpoint.origin != self._origin:
            self._failure = _Failure(
                "wrong-origin", f"{source} is for {checkpoint.origin!r}, not {self._origin!r}"
            )
            return False
        size, root = checkpoint.size, checkpoint.root_hash
        if size == 0 and root != EMPTY_ROOT:
            self._failure = _Failure(
                "conflicting-checkpoints", f"{source}: an empty tree with a non-empty root"
            )
            return False
        held = self._roots.get(size)
        if held is None:
            self._roots[size] = root
        elif held != root:
            self._failure = _Failure(
                "conflicting-checkpoints",
                f"{source}: two signed roots for the tree of {size} leaves (the log forked)",
            )
            return False
        return True

    def feed(
        self, leaves: Sequence[bytes], stored_hashes: Sequence[bytes | None] | None = None
    ) -> bool:
        """Verify the next ``len(leaves)`` leaves; ``False`` once the log has failed.

        ``stored_hashes``, when given, are the level-0 hashes the store holds for the same
        indexes (``None`` items: not stored); a difference names the exact index.
        """
        self._start()
        if self._failure is not None:
            return False
        if stored_hashes is not None and len(stored_hashes) != len(leaves):
            raise ValueError("stored_hashes must match leaves one for one")
        if stored_hashes is None or None in stored_hashes:
            self._stored_evidence = False
        try:
            self._feed(leaves, stored_hashes)
        except _Failure as failure:
            self._failure = failure
            return False
        return True

    def missing(self, index: int, detail: str = "") -> None:
        """Record that the source skipped ``index`` (its next leaf had a later index)."""
        self._start()
        if self._failure is None:
            self._failure = _Failure(
                "missing-entry", detail or f"the source has no leaf {index}", index=index
            )

    def finish(self) -> VerifyReport:
        """The report: the first failure, or truncation if checkpoints are beyond the leaves."""
        self._start()
        if self._failure is None:
            try:
                self._extend(self.size, [])  # checkpoints of exactly this size (or 0)
            except _Failure as failure:
                self._failure = failure
        if self._failure is None and self._pending:
            # Leaf `size` is certainly missing; it is the *first* bad one only if every leaf
            # before it is proven by a checkpoint or was checked against its stored hash.
            size, pinned = self._pending[0], self._stored_evidence
            start = self.size if pinned or self._verified_size == self.size else None
            self._failure = _Failure(
                "truncated",
                f"the log has {self.size} leaves; a signed checkpoint has {size}",
                index=start,
                bad_range=(self._verified_size if start is None else start, size),
            )
        found = self._failure
        if found is None:
            return VerifyReport(
                ok=True,
                reason="ok",
                detail="every checkpoint root matches the recomputed tree"
                if self._checked_checkpoints
                else "no trusted checkpoint: leaves rehashed, nothing anchors the tree",
                checked_entries=self.size,
                verified_size=self._verified_size,
                checkpoints_checked=self._checked_checkpoints,
            )
        return VerifyReport(
            ok=False,
            reason=found.reason,
            detail=found.detail,
            checked_entries=self.size,
            verified_size=self._verified_size,
            checkpoints_checked=self._checked_checkpoints,
            first_bad_index=found.index,
            bad_range=found.bad_range,
        )

    def _start(self) -> None:
        """Freeze the checkpoints: sorted once (a day of them is ~170,000)."""
        if not self._started:
            self._started = True
            self._pending = sorted(self._roots, reverse=True)

    def _feed(self, leaves: Sequence[bytes], stored: Sequence[bytes | None] | None) -> None:
        start = self._range.size
        if self._check_leaves:
            for offset, data in enumerate(leaves):
                error = leaf_canonical_error(data)
                if error is not None:
                    # Leaves before it still count: hash them so the report is exact.
                    self._grow(start, leaves[:offset], stored)
                    raise _Failure("malformed-leaf", error, index=start + offset)
        self._grow(start, leaves, stored)

    def _grow(
        self, start: int, leaves: Sequence[bytes], stored: Sequence[bytes | None] | None
    ) -> None:
        sha, prefix = _sha256, LEAF_PREFIX
        hashes = [sha(prefix + data).digest() for data in leaves]
        if stored is not None and hashes != stored[: len(hashes)]:
            for offset, (mine, theirs) in enumerate(zip(hashes, stored, strict=False)):
                if theirs is not None and mine != theirs:
                    self._extend(start, hashes[:offset])
                    raise _Failure(
                        "leaf-hash-mismatch",
                        "the leaf's bytes do not hash to the hash the sequencer stored for it",
                        index=start + offset,
                    )
        self._extend(start, hashes)

    def _extend(self, start: int, hashes: list[bytes]) -> None:
        """Append ``hashes``, stopping at every checkpoint size on the way to compare roots."""
        done, end = 0, start + len(hashes)
        while self._pending and self._pending[-1] <= end:
            size = self._pending.pop()
            assert size >= start, "checkpoints are all added before the first leaf"
            part = hashes[done : size - start]
            self._range.extend(part)
            self._remember(part)
            done = size - start
            self._checked_checkpoints += 1
            if self._range.root() != self._roots[size]:
                previous = self._verified_size
                raise _Failure(
                    "root-mismatch",
                    f"the recomputed root of the first {size} leaves differs from the signed "
                    f"checkpoint; the tree of {previous} leaves matched",
                    index=previous if size - previous == 1 else None,
                    bad_range=(previous, size),
                )
            self._verified_size = size
            self._anchor = self._range.hashes
            self._window = bytearray()
        part = hashes[done:]
        self._range.extend(part)
        if self._pending:  # past the last checkpoint no root can fail: nothing to narrow
            self._remember(part)

    def _remember(self, hashes: list[bytes]) -> None:
        if len(self._window) < NARROW_WINDOW_LEAVES_MAX * HASH_BYTES:
            self._window += b"".join(hashes)

    def narrow(self, consistency_proof: ConsistencyProofSource) -> VerifyReport:
        """:meth:`finish`, with a ``root-mismatch`` pinned to one index by consistency proofs.

        The failing checkpoint's root is signed, so a consistency proof from a prefix of the
        recomputed tree to it proves every leaf of that prefix. The longest provable prefix
        is found by binary search (O(log window) proofs); the leaf after it is the first the
        log cannot prove: ``first_bad_index``. That is exactly the rewritten leaf when the
        log's stored tree nodes are intact (a rewritten entry row); when its stored hashes
        were rewritten as well, a proof can fail on them instead, so the rewritten leaf is
        at or after that index, within ``bad_range``. Any other report is returned as is.
        """
        report = self.finish()
        failure = self._failure
        if (
            failure is None
            or report.reason != "root-mismatch"
            or report.first_bad_index is not None
            or report.bad_range is None
            or len(self._window) < (report.bad_range[1] - report.bad_range[0]) * HASH_BYTES
        ):
            return report
        good, bad = report.bad_range  # the prefix `good` is proven, the prefix `bad` fails
        root = self._roots[bad]
        size = bad
        while bad - good > 1:
            middle = (good + bad) // 2
            proof = consistency_proof(middle, size)
            if verify_consistency(middle, size, self._prefix_root(middle), root, proof):
                good = middle
            else:
                bad = middle
        # Proofs are built from the log's stored nodes: if the rewrite reached those too,
        # a proof may fail because of a node right of `good`, so the range stays to `size`.
        failure.index, failure.bad_range = good, (good, size)
        failure.detail += (
            f"; consistency proofs to the signed tree of {size} leaves cover the first {good} "
            f"leaves and no more: leaf {good} is the first the log cannot prove (the rewritten "
            "leaf itself, unless its stored tree nodes were rewritten too)"
        )
        return self.finish()

    def _prefix_root(self, size: int) -> bytes:
        """The recomputed root of the first ``size`` leaves, ``size`` within the window."""
        anchor = dict(zip(right_edge_nodes(self._verified_size), self._anchor, strict=True))
        prefix = CompactRange.restore(self._verified_size, lambda level, i: anchor[level, i])
        window = bytes(self._window)
        count = size - self._verified_size
        prefix.extend(window[n * HASH_BYTES : (n + 1) * HASH_BYTES] for n in range(count))
        return prefix.root()
