"""`audit.rfc9162_merkle`: RFC 9162 §2.1 trees, proofs and the sequencer's incremental builder.

Checked three ways: the Certificate Transparency test vectors (leaves, node hashes, roots and
proofs shared by every RFC 6962 implementation), a word-for-word transcription of the RFC's
recursive definitions (MTH, PATH, PROOF) as an oracle, and sigstore's Trillian-derived proof
chaining as an independent implementation (test-only dependency).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sigstore._internal import merkle as sigstore_merkle

from strongroom.audit.rfc9162_merkle import (
    EMPTY_ROOT,
    TREE_SIZE_MAX,
    CompactRange,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    right_edge_nodes,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# -- Certificate Transparency test data (transparency-dev/merkle testonly, RFC 6962) ---------

CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# Every perfect-subtree hash of the 8-leaf tree, by level then index.
CT_NODES = [
    [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
        "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    ],
    [
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    ],
    [
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
]
CT_INCLUSION = {  # (index, size) -> audit path
    (0, 1): [],
    (0, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (5, 8): [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 3): ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
    (1, 5): [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
}
CT_CONSISTENCY = {  # (old, new) -> proof
    (1, 1): [],
    (1, 8): [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
    (6, 8): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
    (2, 5): [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
    (6, 7): [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
}


def _hashes(hexes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hexes]


# -- The oracle: RFC 9162 §2.1.1, §2.1.3.1 and §2.1.4.1 as written -----------------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def rfc_mth(d: Sequence[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = _k(len(d))
    return hashlib.sha256(b"\x01" + rfc_mth(d[:k]) + rfc_mth(d[k:])).digest()


def rfc_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*rfc_path(m, d[:k]), rfc_mth(d[k:])]
    return [*rfc_path(m - k, d[k:]), rfc_mth(d[:k])]


def rfc_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [rfc_mth(d)]
    k = _k(n)
    if m <= k:
        return [*rfc_subproof(m, d[:k], b), rfc_mth(d[k:])]
    return [*rfc_subproof(m - k, d[k:], False), rfc_mth(d[:k])]


def rfc_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return rfc_subproof(m, d, True)


# -- helpers -------------------------------------------------------------------------------


def _leaves(count: int, salt: bytes = b"") -> list[bytes]:
    return [salt + i.to_bytes(4, "big") for i in range(count)]


def _store(leaves: Sequence[bytes]) -> dict[tuple[int, int], bytes]:
    """What a storage adapter keeps: every node the builder reports, by coordinate."""
    tree = CompactRange()
    return {(level, index): h for level, index, h in tree.append_many(map(leaf_hash, leaves))}


def _reader(
    store: dict[tuple[int, int], bytes], size: int, log: list[tuple[int, int]] | None = None
) -> Callable[[int, int], bytes]:
    def read(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"({level}, {index}) is not complete at size {size}"
        if log is not None:
            log.append((level, index))
        return store[(level, index)]

    return read


def _sigstore_root(leaf: bytes, index: int, size: int, proof: list[bytes]) -> bytes:
    inner, border = sigstore_merkle._decomp_inclusion_proof(index, size)
    assert len(proof) == inner + border
    seed = sigstore_merkle._chain_inner(sigstore_merkle._hash_leaf(leaf), proof[:inner], index)
    return sigstore_merkle._chain_border_right(seed, proof[inner:])


sizes = st.integers(min_value=1, max_value=300)


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(sizes)
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def two_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(sizes)
    return draw(st.integers(min_value=1, max_value=new)), new


# -- hashing and roots -----------------------------------------------------------------------


def test_leaf_and_node_hashes_are_domain_separated_sha256() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert root_of([]) == EMPTY_ROOT == bytes.fromhex(CT_ROOTS[0])
    assert CompactRange().root() == EMPTY_ROOT


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_ct_leaves_match_the_published_roots(size: int) -> None:
    assert root_of([leaf_hash(x) for x in CT_LEAVES[:size]]).hex() == CT_ROOTS[size]


def test_builder_reports_exactly_the_published_node_hashes() -> None:
    nodes = CompactRange().append_many(leaf_hash(x) for x in CT_LEAVES)
    assert {(level, index): h.hex() for level, index, h in nodes} == {
        (level, index): h for level, row in enumerate(CT_NODES) for index, h in enumerate(row)
    }


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_root_of_matches_the_rfc_definition(size: int) -> None:
    leaves = _leaves(size)
    assert root_of([leaf_hash(x) for x in leaves]) == rfc_mth(leaves)


# -- inclusion -------------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_inclusion_proofs_match_the_published_paths(index: int, size: int) -> None:
    store = _store(CT_LEAVES)
    assert inclusion_proof(index, size, _reader(store, size)) == _hashes(CT_INCLUSION[index, size])


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_published_inclusion_paths_verify(index: int, size: int) -> None:
    proof = _hashes(CT_INCLUSION[index, size])
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, proof, root)


@settings(max_examples=150, deadline=None)
@given(size_and_index())
def test_inclusion_proof_is_the_rfc_path_and_verifies(case: tuple[int, int]) -> None:
    size, index = case
    leaves = _leaves(size)
    proof = inclusion_proof(index, size, _reader(_store(leaves), size))
    assert proof == rfc_path(index, leaves)
    assert verify_inclusion(leaf_hash(leaves[index]), index, size, proof, rfc_mth(leaves))


@settings(max_examples=150, deadline=None)
@given(size_and_index())
def test_sigstore_chains_our_inclusion_proofs_to_our_root(case: tuple[int, int]) -> None:
    size, index = case
    leaves = _leaves(size)
    hashes = [leaf_hash(x) for x in leaves]
    proof = inclusion_proof(index, size, _reader(_store(leaves), size))
    assert _sigstore_root(leaves[index], index, size, proof) == root_of(hashes)


@settings(max_examples=100, deadline=None)
@given(size_and_index(), st.integers(min_value=0, max_value=300))
def test_inclusion_reads_only_the_listed_complete_nodes(
    case: tuple[int, int], extra_leaves: int
) -> None:
    size, index = case
    store = _store(_leaves(size + extra_leaves))  # a store ahead of the tree being proven
    read: list[tuple[int, int]] = []
    inclusion_proof(index, size, _reader(store, size, read))
    assert sorted(read) == sorted(inclusion_nodes(index, size))
    assert len(set(read)) == len(read)


def test_inclusion_proof_is_logarithmic_in_reads() -> None:
    size = 2**40 + 12345
    for index in (0, size // 2, size - 1):
        assert len(inclusion_nodes(index, size)) <= 2 * size.bit_length()


@pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (0, 0), (0, TREE_SIZE_MAX + 1)])
def test_inclusion_proof_refuses_an_index_outside_the_tree(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        inclusion_nodes(index, size)


@settings(max_examples=100, deadline=None)
@given(size_and_index(), st.data())
def test_any_altered_inclusion_proof_fails(case: tuple[int, int], data: st.DataObject) -> None:
    size, index = case
    leaves = _leaves(size)
    root = root_of([leaf_hash(x) for x in leaves])
    proof = inclusion_proof(index, size, _reader(_store(leaves), size))
    good = leaf_hash(leaves[index])
    assert not verify_inclusion(good, index, size, [*proof, b"\x00" * 32], root)
    assert not verify_inclusion(leaf_hash(b"other"), index, size, proof, root)
    if proof:
        assert not verify_inclusion(good, index, size, proof[:-1], root)
        position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        flipped = bytes([proof[position][0] ^ 1]) + proof[position][1:]
        altered = [*proof[:position], flipped, *proof[position + 1 :]]
        assert not verify_inclusion(good, index, size, altered, root)
    other = data.draw(st.integers(min_value=0, max_value=size - 1))
    if leaves[other] != leaves[index]:
        assert not verify_inclusion(good, other, size, proof, root)


def test_inclusion_verification_rejects_hashes_of_the_wrong_length() -> None:
    leaves = _leaves(4)
    root = root_of([leaf_hash(x) for x in leaves])
    proof = inclusion_proof(1, 4, _reader(_store(leaves), 4))
    assert not verify_inclusion(leaf_hash(leaves[1]), 1, 4, [proof[0] + b"\x00", proof[1]], root)
    assert not verify_inclusion(leaf_hash(leaves[1])[:31], 1, 4, proof, root)


# -- consistency -----------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_consistency_proofs_match_the_published_proofs(old: int, new: int) -> None:
    store = _store(CT_LEAVES)
    assert consistency_proof(old, new, _reader(store, new)) == _hashes(CT_CONSISTENCY[old, new])


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_published_consistency_proofs_verify(old: int, new: int) -> None:
    old_root, new_root = bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new])
    assert verify_consistency(old, new, old_root, new_root, _hashes(CT_CONSISTENCY[old, new]))


@settings(max_examples=150, deadline=None)
@given(two_sizes())
def test_consistency_proof_is_the_rfc_proof_and_verifies(case: tuple[int, int]) -> None:
    old, new = case
    leaves = _leaves(new)
    proof = consistency_proof(old, new, _reader(_store(leaves), new))
    assert proof == (rfc_proof(old, leaves) if old < new else [])
    assert verify_consistency(old, new, rfc_mth(leaves[:old]), rfc_mth(leaves), proof)


@settings(max_examples=100, deadline=None)
@given(two_sizes(), st.integers(min_value=0, max_value=300))
def test_consistency_reads_only_the_listed_complete_nodes(
    case: tuple[int, int], extra_leaves: int
) -> None:
    old, new = case
    store = _store(_leaves(new + extra_leaves))
    read: list[tuple[int, int]] = []
    consistency_proof(old, new, _reader(store, new, read))
    assert sorted(read) == sorted(consistency_nodes(old, new))


def test_the_empty_tree_is_a_prefix_of_every_tree_with_an_empty_proof() -> None:
    leaves = _leaves(5)
    root = root_of([leaf_hash(x) for x in leaves])
    assert consistency_proof(0, 5, _reader(_store(leaves), 5)) == []
    assert verify_consistency(0, 5, EMPTY_ROOT, root, [])
    assert not verify_consistency(0, 5, EMPTY_ROOT, root, [root])
    assert not verify_consistency(0, 5, b"\x00" * 32, root, [])


def test_a_tree_is_consistent_with_itself_only_with_the_same_root() -> None:
    root = root_of([leaf_hash(x) for x in _leaves(5)])
    other = root_of([leaf_hash(x) for x in _leaves(5, b"x")])
    assert verify_consistency(5, 5, root, root, [])
    assert not verify_consistency(5, 5, root, other, [])
    assert not verify_consistency(5, 5, root, root, [root])


@pytest.mark.parametrize(("old", "new"), [(-1, 3), (4, 3), (0, TREE_SIZE_MAX + 1)])
def test_consistency_proof_refuses_sizes_out_of_order(old: int, new: int) -> None:
    with pytest.raises(ValueError):
        consistency_nodes(old, new)


@settings(max_examples=100, deadline=None)
@given(two_sizes(), st.data())
def test_any_altered_consistency_proof_fails(case: tuple[int, int], data: st.DataObject) -> None:
    old, new = case
    assume(old < new)
    leaves = _leaves(new)
    old_root, new_root = root_of([leaf_hash(x) for x in leaves[:old]]), rfc_mth(leaves)
    proof = consistency_proof(old, new, _reader(_store(leaves), new))
    assert not verify_consistency(old, new, old_root, new_root, [*proof, b"\x00" * 32])
    assert not verify_consistency(old, new, old_root, new_root, proof[:-1])
    assert not verify_consistency(new, old, new_root, old_root, proof)
    position = data.draw(st.integers(min_value=0, max_value=len(proof) - 1))
    flipped = bytes([proof[position][0] ^ 1]) + proof[position][1:]
    altered = [*proof[:position], flipped, *proof[position + 1 :]]
    assert not verify_consistency(old, new, old_root, new_root, altered)


# -- tampering: what a verifier holding a signed root, or a witness, sees ---------------------


@st.composite
def tree_and_position(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=2, max_value=200))
    return _leaves(size), draw(st.integers(min_value=0, max_value=size - 1))


@settings(max_examples=100, deadline=None)
@given(tree_and_position(), st.binary(max_size=16))
def test_changing_any_one_entry_is_detected(case: tuple[list[bytes], int], forged: bytes) -> None:
    leaves, i = case
    assume(forged != leaves[i])
    trusted = root_of([leaf_hash(x) for x in leaves])
    tampered = [*leaves[:i], forged, *leaves[i + 1 :]]
    assert root_of([leaf_hash(x) for x in tampered]) != trusted
    proof = inclusion_proof(i, len(leaves), _reader(_store(tampered), len(leaves)))
    assert not verify_inclusion(leaf_hash(forged), i, len(leaves), proof, trusted)


@settings(max_examples=100, deadline=None)
@given(tree_and_position())
def test_deleting_any_entry_is_detected(case: tuple[list[bytes], int]) -> None:
    leaves, i = case
    size = len(leaves)
    tampered = leaves[:i] + leaves[i + 1 :]
    # Against the checkpoint of the full tree, and against an earlier one of the same size.
    assert root_of([leaf_hash(x) for x in tampered]) != root_of([leaf_hash(x) for x in leaves])
    if i < size - 1:
        earlier = root_of([leaf_hash(x) for x in leaves[: size - 1]])
        assert root_of([leaf_hash(x) for x in tampered]) != earlier


@settings(max_examples=100, deadline=None)
@given(tree_and_position(), st.data())
def test_reordering_any_two_entries_is_detected(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    leaves, i = case
    j = data.draw(st.integers(min_value=0, max_value=len(leaves) - 1).filter(lambda j: j != i))
    tampered = list(leaves)
    tampered[i], tampered[j] = tampered[j], tampered[i]
    assert root_of([leaf_hash(x) for x in tampered]) != root_of([leaf_hash(x) for x in leaves])


@settings(max_examples=100, deadline=None)
@given(tree_and_position())
def test_truncation_is_detected(case: tuple[list[bytes], int]) -> None:
    leaves, kept = case
    size = len(leaves)
    trusted = root_of([leaf_hash(x) for x in leaves])
    truncated = root_of([leaf_hash(x) for x in leaves[:kept]])
    assert truncated != trusted
    # No proof can take a witness from the signed tree back to the truncated one.
    assert not verify_consistency(size, kept, trusted, truncated, [])


@settings(max_examples=100, deadline=None)
@given(tree_and_position(), st.integers(min_value=0, max_value=50))
def test_a_fork_fails_consistency_with_every_earlier_checkpoint_it_rewrites(
    case: tuple[list[bytes], int], grown: int
) -> None:
    leaves, i = case
    size = len(leaves)
    forked = [*leaves[:i], b"rewritten", *leaves[i + 1 :], *_leaves(grown, b"new")]
    forked_root = root_of([leaf_hash(x) for x in forked])
    forked_store = _store(forked)
    honest_store = _store([*leaves, *_leaves(grown, b"new")])
    for old in range(i + 1, size + 1):  # every checkpoint that already covered entry i
        old_root = root_of([leaf_hash(x) for x in leaves[:old]])
        for store in (forked_store, honest_store):
            proof = consistency_proof(old, len(forked), _reader(store, len(forked)))
            assert not verify_consistency(old, len(forked), old_root, forked_root, proof)


# -- the incremental builder -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=40), max_size=12))
def test_builder_root_equals_root_of_after_every_batch(batches: list[int]) -> None:
    tree, appended = CompactRange(), []
    for count in batches:
        batch = [leaf_hash(x) for x in _leaves(count, len(appended).to_bytes(4, "big"))]
        tree.append_many(batch)
        appended.extend(batch)
        assert tree.size == len(appended)
        assert tree.root() == root_of(appended)


@settings(max_examples=60, deadline=None)
@given(sizes)
def test_builder_reports_every_complete_perfect_subtree_once_children_first(size: int) -> None:
    leaves = _leaves(size)
    nodes = CompactRange().append_many(leaf_hash(x) for x in leaves)
    coordinates = [(level, index) for level, index, _ in nodes]
    expected = {
        (level, index) for level in range(size.bit_length()) for index in range(size >> level)
    }
    assert len(coordinates) == len(set(coordinates)) and set(coordinates) == expected
    position = {c: p for p, c in enumerate(coordinates)}
    for level, index, h in nodes:
        assert h == rfc_mth(leaves[index << level : (index + 1) << level])
        if level:
            assert position[level - 1, 2 * index + 1] < position[level, index]


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=60))
def test_restored_builder_continues_like_the_original(size: int, more: int) -> None:
    leaves = [leaf_hash(x) for x in _leaves(size + more)]
    original = CompactRange()
    stored: dict[tuple[int, int], bytes] = {}
    for level, index, h in original.append_many(leaves[:size]):
        stored[level, index] = h
    read: list[tuple[int, int]] = []
    restored = CompactRange.restore(size, _reader(stored, size, read))
    assert read == right_edge_nodes(size)
    assert restored.size == size and restored.root() == original.root()
    assert restored.append_many(leaves[size:]) == original.append_many(leaves[size:])
    assert restored.root() == root_of(leaves)


def test_extend_builds_the_same_tree_as_append_many() -> None:
    leaves = [leaf_hash(x) for x in _leaves(1000)]
    quiet, loud = CompactRange(), CompactRange()
    quiet.extend(leaves)
    loud.append_many(leaves)
    assert quiet.hashes == loud.hashes and quiet.root() == loud.root() == root_of(leaves)


def test_builder_refuses_a_batch_with_a_bad_hash_and_stays_unchanged() -> None:
    tree = CompactRange()
    tree.append_many([leaf_hash(b"a")])
    with pytest.raises(ValueError):
        tree.append_many([leaf_hash(b"b"), b"short"])
    assert tree.size == 1 and tree.root() == leaf_hash(b"a")


def test_restore_refuses_a_stored_node_that_is_not_a_hash() -> None:
    with pytest.raises(ValueError):
        CompactRange.restore(3, lambda level, index: b"\x00" * 31)


def test_right_edge_nodes_cover_the_tree_with_one_node_per_set_bit() -> None:
    assert right_edge_nodes(0) == []
    assert right_edge_nodes(6) == [(2, 0), (1, 2)]
    assert right_edge_nodes(13) == [(3, 0), (2, 2), (0, 12)]
