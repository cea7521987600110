"""RFC 6962 / RFC 9162 Merkle tree: leaf and node hashes, roots, inclusion and consistency proofs.

Leaf hash ``SHA-256(0x00 || entry)``, node hash ``SHA-256(0x01 || left || right)``; the tree over
``n`` leaves splits at the largest power of two below ``n``. ``Frontier`` keeps the right edge of a
growing tree (one hash per set bit of its size) so a log can append and know its new root in
O(log n) without reading old leaves.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def root_from_leaf_hashes(leaves: Sequence[bytes]) -> bytes:
    """Merkle tree hash of already-hashed leaves (MTH in RFC 6962, section 2.1)."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Bottom-up pairing gives the same tree as RFC 6962's recursive split: an odd last node is
    # promoted unchanged to the next level.
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Audit path for leaf ``index`` in the tree over ``leaves`` (leaf hashes)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is outside a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root_from_leaf_hashes(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root_from_leaf_hashes(leaves[:k])]


class Subtrees(Protocol):
    """Where the hashes of a tree's complete subtrees come from (a tree in memory, a log's
    stored nodes): ``subtree(level, index)`` is MTH of leaves ``index * 2**level`` up to
    ``(index + 1) * 2**level``; level 0 is the leaf hash."""

    def subtree(self, level: int, index: int) -> bytes: ...


def range_hash(tree: Subtrees, start: int, end: int) -> bytes:
    """MTH of leaves ``start:end``, for a range RFC 6962's split makes: ``start`` a multiple of
    the largest power of two not above its width (every range a proof asks for)."""
    width = end - start
    if width & (width - 1) == 0:
        level = width.bit_length() - 1
        return tree.subtree(level, start >> level)
    k = _split(width)
    return node_hash(range_hash(tree, start, start + k), range_hash(tree, start + k, end))


def inclusion_path(tree: Subtrees, index: int, size: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of the first ``size`` leaves of ``tree``
    (as ``inclusion_proof`` gives it), from about two hashes a level."""
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(range_hash(tree, start + k, end))
            end = start + k
        else:
            path.append(range_hash(tree, start, start + k))
            start += k
    return path[::-1]


def consistency_path(tree: Subtrees, old_size: int, new_size: int) -> list[bytes]:
    """Proof that the tree of the first ``old_size`` leaves is a prefix of the tree of the first
    ``new_size`` (as ``consistency_proof`` gives it)."""
    if not 0 < old_size <= new_size:
        raise ValueError(f"old size {old_size} must be in 1..{new_size}")
    path: list[bytes] = []
    m, start, end, complete = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(range_hash(tree, start + k, end))
            end = start + k
        else:
            path.append(range_hash(tree, start, start + k))
            m, start, complete = m - k, start + k, False
    if not complete:
        path.append(range_hash(tree, start, end))
    return path[::-1]


class MerkleTree:
    """Every node of the tree over ``leaves`` (leaf hashes), kept level by level as the
    bottom-up pairing builds them, so that many audit paths in one tree cost a few lookups each
    rather than a pass over the leaves each (``inclusion_proof`` for one)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.size = len(leaves)
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)

    def root(self) -> bytes:
        return self.levels[-1][0] if self.size else EMPTY_ROOT

    def subtree(self, level: int, index: int) -> bytes:
        """A complete subtree's hash (``Subtrees``): the bottom-up pairing keeps it as is."""
        return self.levels[level][index]

    def _node(self, start: int, end: int) -> bytes:
        """MTH of leaves ``start:end``: a range that starts at a multiple of its width rounded
        up to a power of two, and is whole or ends the tree (every range a path asks for)."""
        height = (end - start - 1).bit_length()
        return self.levels[height][start >> height]

    def inclusion_proof(self, index: int) -> list[bytes]:
        """The audit path of leaf ``index``, as ``inclusion_proof(index, leaves)`` gives it."""
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is outside a tree of size {self.size}")
        path: list[bytes] = []
        start, end = 0, self.size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                path.append(self._node(start + k, end))
                end = start + k
            else:
                path.append(self._node(start, start + k))
                start += k
        return path[::-1]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """Check an audit path (RFC 9162, section 2.1.3.2)."""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """Proof that the tree of the first ``old_size`` leaves is a prefix of the whole tree."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"old size {old_size} must be in 1..{n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root_from_leaf_hashes(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root_from_leaf_hashes(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root_from_leaf_hashes(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Check a consistency proof (RFC 9162, section 2.1.4.2)."""
    if old_size == new_size:
        return old_root == new_root and not proof
    if not 0 < old_size < new_size or not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
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
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


@dataclass
class Frontier:
    """Right edge of a Merkle tree being appended to: full subtrees, largest first."""

    size: int = 0
    nodes: list[bytes] = field(default_factory=list)

    def append(self, leaf: bytes, completed: list[tuple[int, int, bytes]] | None = None) -> bytes:
        """Add a leaf hash and return the new root; ``completed``, when given, gains each
        subtree the leaf completes, as ``(level, index, hash)`` (see ``Subtrees``)."""
        self.nodes.append(leaf)
        size = self.size
        level = 0
        # Merge equal-sized subtrees, as a binary counter carries.
        while size & 1:
            right = self.nodes.pop()
            left = self.nodes.pop()
            self.nodes.append(node_hash(left, right))
            size >>= 1
            level += 1
            if completed is not None:
                completed.append((level, (self.size + 1 >> level) - 1, self.nodes[-1]))
        self.size += 1
        return self.root()

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        acc = self.nodes[-1]
        for node in reversed(self.nodes[:-1]):
            acc = node_hash(node, acc)
        return acc
