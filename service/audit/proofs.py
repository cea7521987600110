"""Proofs from the audit log that a reviewer can check without the database: one entry with its
inclusion proof under a signed tree head (RFC 9162 audit path), and the consistency of two tree
heads (the later log still holds the earlier one, unchanged).

Every entry's row keeps the signed head of the log as it stood right after it, so a head of any
size the log has had can be given. Proofs are computed from the log's stored tree nodes
(``service.audit.nodes``): a few tiles of 256 hashes each, however long the log. Each proof is
checked against its signed head before it is given."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.rows
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from provenance.merkle import (
    MerkleTree,
    consistency_path,
    inclusion_path,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from service.audit.log import TreeHead
from service.audit.nodes import TILE, MissingEntries, StoredSubtrees
from service.audit.signing import tree_head_message

PROOF_FORMAT = "chopmark-audit-proof/1"


class ProofError(ValueError):
    """A proof that cannot be given: no such entry, or a tree size the log never had."""


def committed_size(conn: psycopg.Connection) -> int:
    """Entries in the log; every entry below this count has committed."""
    row = conn.execute("SELECT size FROM audit_state WHERE id = 1").fetchone()
    assert row is not None, "audit_state row missing: run migrations"
    return int(row["size"] if isinstance(row, dict) else row[0])  # type: ignore[index]


def head_at(conn: psycopg.Connection, size: int, held: int | None = None) -> TreeHead:
    """The signed tree head of the log when it held ``size`` entries (1 up to its size;
    ``held``: the log's size, when the caller has just read it)."""
    if not 1 <= size <= (committed_size(conn) if held is None else held):
        raise ProofError(f"the log has never held {size} entries")
    row = conn.execute(
        "SELECT root_hash, signature FROM audit_log WHERE seq = %s", (size - 1,)
    ).fetchone()
    if row is None:
        raise ProofError(f"entry {size - 1} is missing from the log: run chopmark audit verify")
    return TreeHead(size, bytes(row["root_hash"]), bytes(row["signature"]))


def leaf_hashes(conn: psycopg.Connection, size: int) -> list[bytes]:
    with (
        conn.transaction(),  # a server-side cursor lives in a transaction
        conn.cursor(name="audit_leaves", row_factory=psycopg.rows.tuple_row) as cur,
    ):
        cur.itersize = 10_000
        cur.execute("SELECT leaf_hash FROM audit_log WHERE seq < %s ORDER BY seq", (size,))
        leaves = [bytes(r[0]) for r in cur]
    if len(leaves) != size:
        held = len(leaves)
        raise ProofError(f"the log holds {held} of {size} entries: run chopmark audit verify")
    return leaves


@dataclass(frozen=True)
class EntryProof:
    seq: int
    entry: bytes
    path: list[bytes]
    head: TreeHead

    def to_json(self, public_key_pem: str) -> dict[str, Any]:
        return {
            "format": PROOF_FORMAT,
            "leaf_index": self.seq,
            "entry": base64.b64encode(self.entry).decode(),
            "entry_json": json.loads(self.entry),
            "leaf_hash": leaf_hash(self.entry).hex(),
            "inclusion_proof": [p.hex() for p in self.path],
            "tree_head": self.head.to_json(),
            "public_key": public_key_pem,
        }


def entry_proof(conn: psycopg.Connection, seq: int, tree_size: int | None = None) -> EntryProof:
    """Entry ``seq`` with its audit path in the tree of ``tree_size`` entries (default: the log
    as it stands), and that tree's signed head."""
    held = committed_size(conn)
    size = held if tree_size is None else tree_size
    if not 0 <= seq < held:
        raise LookupError(f"no audit entry {seq}")
    if size <= seq:
        raise ProofError(f"a tree of {size} entries does not hold entry {seq}")
    head = head_at(conn, size, held)
    row = conn.execute("SELECT entry FROM audit_log WHERE seq = %s", (seq,)).fetchone()
    assert row is not None  # below the committed size
    tree = StoredSubtrees(conn, size)
    proof = EntryProof(seq, bytes(row["entry"]), entry_path(tree, seq, head), head)
    tree.write_back()
    return proof


def entry_path(tree: StoredSubtrees, seq: int, head: TreeHead) -> list[bytes]:
    """Entry ``seq``'s audit path under ``head``, checked against its signed root."""
    try:
        path = inclusion_path(tree, seq, head.size)
        leaf = tree.subtree(0, seq)  # from the tile the path read
    except MissingEntries as exc:
        raise ProofError(str(exc)) from None
    if not verify_inclusion(seq, head.size, leaf, path, head.root):
        raise ProofError(
            f"the log's stored hashes do not make its signed root at {head.size} entries: run "
            "chopmark audit verify"
        )
    return path


def inclusion_paths(
    conn: psycopg.Connection, seqs: Sequence[int], head: TreeHead
) -> list[list[bytes]]:
    """The audit paths of many entries under one head (a report's): from the stored nodes, the
    tiles they read shared; or, when that would read about as many leaf hashes as the tree
    holds (a tile of 256 an entry), from one pass over the leaves, whose memory is then bounded
    by the entries' count (16 KB each)."""
    if len(seqs) * TILE < head.size:
        tree = StoredSubtrees(conn, head.size)
        tree.prefetch(seqs)
        paths = [entry_path(tree, seq, head) for seq in seqs]
        tree.write_back()
        return paths
    whole = MerkleTree(leaf_hashes(conn, head.size))
    if whole.root() != head.root:
        raise ProofError(f"the log's leaves do not make its signed root at {head.size} entries")
    return [whole.inclusion_proof(seq) for seq in seqs]


@dataclass(frozen=True)
class Consistency:
    first: TreeHead
    second: TreeHead
    path: list[bytes]

    def to_json(self, public_key_pem: str) -> dict[str, Any]:
        return {
            "first": self.first.to_json(),
            "second": self.second.to_json(),
            "consistency_proof": [p.hex() for p in self.path],
            "public_key": public_key_pem,
        }


def consistency(conn: psycopg.Connection, first: int, second: int) -> Consistency:
    """The signed heads of sizes ``first`` and ``second`` and the proof that the second tree
    extends the first."""
    if not 1 <= first <= second:
        raise ProofError("first must be at least 1 and at most second")
    held = committed_size(conn)
    older, newer = head_at(conn, first, held), head_at(conn, second, held)
    path: list[bytes] = []
    if first < second:
        tree = StoredSubtrees(conn, second)
        try:
            path = consistency_path(tree, first, second)
        except MissingEntries as exc:
            raise ProofError(str(exc)) from None
        if not verify_consistency(first, second, older.root, newer.root, path):
            raise ProofError(
                f"the log's stored hashes do not make its signed roots at {first} and {second}"
                " entries: run chopmark audit verify"
            )
        tree.write_back()
    return Consistency(older, newer, path)


# ---- checking, with no database ---------------------------------------------------------------


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def _hashes(values: Any, name: str) -> Sequence[bytes]:
    if not isinstance(values, list):
        raise ValueError(f"{name} must be a list of hex hashes")
    return [bytes.fromhex(v) for v in values]


def check_signed(head: TreeHead, key: Ed25519PublicKey) -> None:
    """Raises ``ValueError`` unless ``key`` signed ``head``."""
    try:
        key.verify(head.signature, tree_head_message(head.size, head.root))
    except InvalidSignature:
        raise ValueError(f"the tree head of {head.size} is not signed by this key") from None


def check_entry_in(item: Any, head: TreeHead) -> dict[str, Any]:
    """Check one entry of a bundle (``leaf_index``, ``entry``, ``inclusion_proof``) against a
    head already checked: its leaf hash and audit path lead to the head's root, and it says it
    is that entry. Returns its content; raises ``ValueError`` saying what does not hold."""
    try:
        entry = base64.b64decode(item["entry"], validate=True)
        index = item["leaf_index"]
        path = _hashes(item["inclusion_proof"], "inclusion_proof")
    except (KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"not a proof bundle: {exc!r}") from None
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError("leaf_index must be a whole number")
    if not verify_inclusion(index, head.size, leaf_hash(entry), path, head.root):
        raise ValueError(
            f"entry {index} is not in the signed tree of {head.size} entries as given: the entry"
            " or its proof was changed"
        )
    try:
        content = json.loads(entry)
    except ValueError:
        raise ValueError("the entry is not JSON") from None
    if not isinstance(content, dict) or content.get("seq") != index:
        raise ValueError(f"the entry does not say it is entry {index}")
    return content


def check_entry_proof(bundle: Any, key: Ed25519PublicKey) -> dict[str, Any]:
    """Check a bundle made by ``EntryProof.to_json`` against the log's public key: the tree
    head's signature, the entry's leaf hash, and its audit path to the head's root. Returns the
    entry's content; raises ``ValueError`` saying what does not hold."""
    if not isinstance(bundle, dict) or bundle.get("format") != PROOF_FORMAT:
        raise ValueError(f"not a {PROOF_FORMAT} bundle")
    head = TreeHead.from_json(bundle.get("tree_head"))
    check_signed(head, key)
    return check_entry_in(bundle, head)


def check_consistency(bundle: Any, key: Ed25519PublicKey) -> None:
    """Check a bundle made by ``Consistency.to_json``; raises ``ValueError`` if it fails."""
    try:
        first = TreeHead.from_json(bundle["first"])
        second = TreeHead.from_json(bundle["second"])
        path = _hashes(bundle["consistency_proof"], "consistency_proof")
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a consistency bundle: {exc!r}") from None
    for head in (first, second):
        check_signed(head, key)
    if not verify_consistency(first.size, second.size, first.root, second.root, path):
        raise ValueError(
            f"the tree of {second.size} entries does not extend the tree of {first.size}"
        )
