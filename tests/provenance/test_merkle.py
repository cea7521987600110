import hashlib

import pytest

from provenance.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)


def leaves(n: int) -> list[bytes]:
    return [leaf_hash(f"entry {i}".encode()) for i in range(n)]


def recursive_root(hs: list[bytes]) -> bytes:
    """RFC 6962's definition, written recursively, as an independent reference."""
    if not hs:
        return hashlib.sha256(b"").digest()
    if len(hs) == 1:
        return hs[0]
    k = 1
    while k * 2 < len(hs):
        k *= 2
    return node_hash(recursive_root(hs[:k]), recursive_root(hs[k:]))


def test_hash_prefixes_follow_rfc6962() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


@pytest.mark.parametrize("n", range(0, 33))
def test_roots_agree_with_reference_and_frontier(n: int) -> None:
    hs = leaves(n)
    expected = recursive_root(hs)
    assert root_from_leaf_hashes(hs) == expected
    frontier = Frontier()
    for h in hs:
        frontier.append(h)
    assert frontier.root() == expected
    assert frontier.size == n
    assert len(frontier.nodes) == bin(n).count("1")


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 21])
def test_inclusion_proofs_verify_and_detect_tampering(n: int) -> None:
    hs = leaves(n)
    root = root_from_leaf_hashes(hs)
    for i in range(n):
        proof = inclusion_proof(i, hs)
        assert verify_inclusion(i, n, hs[i], proof, root)
        assert not verify_inclusion(i, n, leaf_hash(b"forged"), proof, root)
        if n > 1:
            assert not verify_inclusion((i + 1) % n, n, hs[i], proof, root)


@pytest.mark.parametrize("n", [2, 3, 7, 8, 9, 17])
def test_consistency_proofs(n: int) -> None:
    hs = leaves(n)
    new_root = root_from_leaf_hashes(hs)
    for m in range(1, n + 1):
        old_root = root_from_leaf_hashes(hs[:m])
        proof = consistency_proof(m, hs)
        assert verify_consistency(m, n, old_root, new_root, proof)
        if m < n:
            forged = root_from_leaf_hashes([leaf_hash(b"x"), *hs[1:m]])
            assert not verify_consistency(m, n, forged, new_root, proof)


def test_a_kept_tree_gives_the_same_audit_paths_as_the_leaves_do() -> None:
    import hashlib

    from provenance.merkle import MerkleTree, root_from_leaf_hashes

    for n in (*range(1, 70), 127, 128, 129, 1000):
        leaves = [hashlib.sha256(f"{n}:{i}".encode()).digest() for i in range(n)]
        tree = MerkleTree(leaves)
        assert tree.root() == root_from_leaf_hashes(leaves)
        for i in range(n) if n < 200 else (0, 1, 511, 512, n - 2, n - 1):
            assert tree.inclusion_proof(i) == inclusion_proof(i, leaves), (n, i)
    assert MerkleTree([]).root() == root_from_leaf_hashes([])


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 9, 255, 256, 257, 1000])
def test_proofs_from_subtree_hashes_equal_those_from_the_leaves(n: int) -> None:
    """``inclusion_path`` and ``consistency_path`` ask a ``Subtrees`` for complete subtrees
    only, and give the proofs the leaf-list functions give, for any tree within the leaves."""
    from provenance.merkle import MerkleTree, consistency_path, inclusion_path

    hs = leaves(n)
    asked: list[tuple[int, int]] = []

    class Counted(MerkleTree):
        def subtree(self, level: int, index: int) -> bytes:
            asked.append((level, index))
            assert (index + 1) << level <= n, "only complete subtrees are asked for"
            return super().subtree(level, index)

    tree = Counted(hs)
    for size in sorted({1, n // 2 or 1, n - 1 or 1, n}):
        for i in sorted({0, size // 3, size - 1}):
            assert inclusion_path(tree, i, size) == inclusion_proof(i, hs[:size]), (size, i)
        for m in sorted({1, size // 2 or 1, size}):
            assert consistency_path(tree, m, size) == consistency_proof(m, hs[:size])
    assert asked or n == 1


def test_the_frontier_names_each_subtree_an_append_completes() -> None:
    from provenance.merkle import MerkleTree

    hs = leaves(300)
    tree, frontier = MerkleTree(hs), Frontier()
    completed: list[tuple[int, int, bytes]] = []
    for leaf in hs:
        frontier.append(leaf, completed)
    assert len(completed) == 300 - bin(300).count("1")  # one per carry of a binary counter
    assert {(lv, i) for lv, i, _ in completed} == {
        (lv, i) for lv in range(1, 9) for i in range(300 >> lv)
    }
    assert all(tree.subtree(lv, i) == h for lv, i, h in completed)
