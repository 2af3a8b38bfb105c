"""RFC 9162 §2.1 Merkle tree hashing, proofs and an incremental builder, with no storage of its own.

Storage model: a *perfect subtree* ``(level, index)`` covers leaves ``[index·2^level,
(index+1)·2^level)``; level 0 holds the leaf hashes. Once its last leaf exists its hash never
changes, so a store persists it when :meth:`CompactRange.append_many` creates it and answers
every proof with O(log n) reads of such nodes (:func:`inclusion_nodes` and
:func:`consistency_nodes` list them, for one query). A subtree on the right edge of a tree
that is not perfect is recomputed here from perfect ones, never stored: it changes as the tree
grows (Trillian and Tessera call these *ephemeral* nodes).

All hashes are SHA-256 (the RFC 6962 hash), called through ``hashlib`` directly: the sequencer
hashes every entry once and the verifier rehashes the whole log, so per-node overhead matters.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence
from typing import Protocol

HASH_BYTES = 32
# Tree sizes and indexes live in signed 64-bit columns (SQLite INTEGER, PostgreSQL bigint).
TREE_SIZE_MAX = 2**63 - 1
# RFC 9162 §2.1.1: the hash of an empty tree is the hash of an empty string.
EMPTY_ROOT = hashlib.sha256(b"").digest()
# RFC 9162 §2.1.1 domain separation: leaves and interior nodes can never collide.
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"

_sha256 = hashlib.sha256

NodeCoordinate = tuple[int, int]
"""``(level, index)`` of a perfect subtree."""

NodeHash = tuple[int, int, bytes]
"""``(level, index, hash)`` of a perfect subtree, as a store persists it."""


class NodeReader(Protocol):
    """The hash of the perfect subtree ``(level, index)``; only complete ones are asked for."""

    def __call__(self, level: int, index: int, /) -> bytes: ...


def leaf_hash(data: bytes) -> bytes:
    """``MTH({d}) = SHA-256(0x00 || d)`` (RFC 9162 §2.1.1)."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)`` (RFC 9162 §2.1.1)."""
    return _sha256(NODE_PREFIX + left + right).digest()


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """``MTH(D[n])`` from the leaf hashes (RFC 9162 §2.1.1).

    Pairs level by level and carries an odd last node up unchanged, which builds the same
    left-balanced tree as the RFC's split at the largest power of two below ``n``.
    """
    level = list(leaf_hashes)
    if not level:
        return EMPTY_ROOT
    sha, prefix = _sha256, NODE_PREFIX
    while len(level) > 1:
        paired = [
            sha(prefix + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def _split(size: int) -> int:
    """The largest power of two strictly below ``size`` (``k`` of RFC 9162 §2.1.1), size ≥ 2."""
    return 1 << ((size - 1).bit_length() - 1)


def _perfect_cover(begin: int, end: int) -> list[NodeCoordinate]:
    """The perfect subtrees, largest first, whose right fold is ``MTH(D[begin:end])``.

    Every range a proof names starts at a multiple of a power of two at least its size (it is
    a subtree of the RFC's recursion), so greedy largest-first pieces are aligned.
    """
    cover: list[NodeCoordinate] = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        assert begin & ((1 << level) - 1) == 0, "a proof range is a subtree of the tree"
        cover.append((level, begin >> level))
        begin += 1 << level
    return cover


def _range_hash(begin: int, end: int, node: NodeReader) -> bytes:
    cover = _perfect_cover(begin, end)
    result = node(*cover[-1])
    for level, index in reversed(cover[:-1]):
        result = node_hash(node(level, index), result)
    return result


def _check_size(size: int) -> None:
    if not 0 <= size <= TREE_SIZE_MAX:
        raise ValueError(f"tree size {size} is outside 0..{TREE_SIZE_MAX}")


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form ``PATH(index, D[size])`` (RFC 9162 §2.1.3.1), leaf first."""
    _check_size(size)
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    begin, end = 0, size
    while end - begin > 1:
        k = _split(end - begin)
        if index - begin < k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The subtrees whose hashes form ``PROOF(old, D[new])`` (RFC 9162 §2.1.4.1), leaf first.

    Empty when ``old_size`` is 0 or equals ``new_size``: any tree extends the empty one, and a
    tree is consistent with itself exactly when the roots are equal.
    """
    _check_size(new_size)
    if not 0 <= old_size <= new_size:
        raise ValueError(f"old size {old_size} is not in 0..{new_size}")
    ranges: list[tuple[int, int]] = []
    if old_size in (0, new_size):
        return ranges
    begin, end, whole_old_tree = 0, new_size, True
    while old_size != end:
        k = _split(end - begin)
        if old_size - begin <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            begin += k
            whole_old_tree = False
    if not whole_old_tree:
        # SUBPROOF(m, D[m], false) = {MTH(D[m])}; with b true the verifier has the old root.
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def inclusion_nodes(index: int, size: int) -> list[NodeCoordinate]:
    """Every perfect subtree :func:`inclusion_proof` reads, to fetch them in one query."""
    return [c for begin, end in _inclusion_ranges(index, size) for c in _perfect_cover(begin, end)]


def consistency_nodes(old_size: int, new_size: int) -> list[NodeCoordinate]:
    """Every perfect subtree :func:`consistency_proof` reads, to fetch them in one query."""
    ranges = _consistency_ranges(old_size, new_size)
    return [c for begin, end in ranges for c in _perfect_cover(begin, end)]


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 9162 §2.1.3.1)."""
    return [_range_hash(begin, end, node) for begin, end in _inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, node: NodeReader) -> list[bytes]:
    """The proof that the first ``old_size`` leaves are a prefix of ``new_size`` (§2.1.4.1)."""
    ranges = _consistency_ranges(old_size, new_size)
    return [_range_hash(begin, end, node) for begin, end in ranges]


def _well_formed(hashes: Iterable[bytes]) -> bool:
    return all(len(h) == HASH_BYTES for h in hashes)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Whether ``proof`` places ``leaf_hash`` at ``index`` under ``root`` (RFC 9162 §2.1.3.2)."""
    if not (0 <= index < size <= TREE_SIZE_MAX) or not _well_formed((leaf_hash, root, *proof)):
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(r, root)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Whether ``proof`` shows tree ``old_size`` is a prefix of tree ``new_size`` (§2.1.4.2).

    Sizes the RFC leaves out: equal sizes need an empty proof and equal roots; the empty tree
    (whose root must be ``EMPTY_ROOT``) is a prefix of every tree, with an empty proof.
    """
    if not (0 <= old_size <= new_size <= TREE_SIZE_MAX):
        return False
    if not _well_formed((old_root, new_root, *proof)):
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


def right_edge_nodes(size: int) -> list[NodeCoordinate]:
    """The perfect subtrees, largest first, that together cover a tree of ``size`` leaves.

    One per set bit of ``size``: what :meth:`CompactRange.restore` reads.
    """
    _check_size(size)
    nodes: list[NodeCoordinate] = []
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            begin = size >> (level + 1) << (level + 1)
            nodes.append((level, begin >> level))
    return nodes


class CompactRange:
    """The O(log n) right-edge hashes of a growing tree: the sequencer's whole Merkle state.

    Appending leaf ``i`` completes one perfect subtree per trailing one bit of ``i``; those
    (and the leaf) are the only nodes a store ever has to write, and once written they never
    change, so an append-only table of them is enough to answer every proof.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # one per set bit of size, largest subtree first

    @classmethod
    def restore(cls, size: int, node: NodeReader) -> CompactRange:
        """The range of a stored tree of ``size`` leaves, from its :func:`right_edge_nodes`."""
        hashes = [node(level, index) for level, index in right_edge_nodes(size)]
        if not _well_formed(hashes):
            raise ValueError(f"a stored node is not a {HASH_BYTES}-byte hash")
        restored = cls()
        restored._size = size
        restored._hashes = hashes
        return restored

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The right-edge perfect-subtree hashes, in :func:`right_edge_nodes` order."""
        return tuple(self._hashes)

    def append_many(self, leaf_hashes: Iterable[bytes]) -> list[NodeHash]:
        """Append leaves; return every perfect subtree they complete, leaves included.

        Ordered so that each node comes after its children: a store may persist them as
        they are and crash at any point without leaving a parent whose children are missing.
        """
        created: list[NodeHash] = []
        self._append(leaf_hashes, created)
        return created

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append leaves without collecting nodes: a verifier recomputing a root needs none."""
        self._append(leaf_hashes, None)

    def _append(self, leaf_hashes: Iterable[bytes], created: list[NodeHash] | None) -> None:
        # Checked before any change, so a refused batch leaves the range as it was.
        leaves = list(leaf_hashes)
        if not _well_formed(leaves):
            raise ValueError(f"a leaf hash is not {HASH_BYTES} bytes")
        if self._size + len(leaves) > TREE_SIZE_MAX:
            raise ValueError(f"the tree would pass {TREE_SIZE_MAX} leaves")
        hashes, size = self._hashes, self._size
        push, pop = hashes.append, hashes.pop
        sha, prefix = _sha256, NODE_PREFIX
        record = created.append if created is not None else None
        for leaf in leaves:
            h = leaf
            if record is not None:
                record((0, size, h))
            index, level = size, 0
            while index & 1:
                h = sha(prefix + pop() + h).digest()
                index >>= 1
                level += 1
                if record is not None:
                    record((level, index, h))
            push(h)
            size += 1
        self._size = size

    def root(self) -> bytes:
        """``MTH`` of the leaves so far: the right-edge hashes folded from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            result = node_hash(h, result)
        return result
