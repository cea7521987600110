"""Proofs from the audit log that a reviewer can check without the database: one entry with its
inclusion proof under a signed tree head (RFC 9162 audit path), and the consistency of two tree
heads (the later log still holds the earlier one, unchanged).

Every entry's row keeps the signed head of the log as it stood right after it, so a head of any
size the log has had can be given. Proofs are computed from the leaf hashes, read in order:
about 32 bytes and one hash per entry below the tree size asked for."""

from __future__ import annotations

import base64
import binascii
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.rows
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from provenance.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from service.audit.log import TreeHead
from service.audit.signing import tree_head_message

PROOF_FORMAT = "chopmark-audit-proof/1"
# Proofs that read the leaf hashes at once in one process (each holds them in memory, about 150
# MB per million entries with a report's tree): more wait their turn.
LEAF_PASSES = threading.BoundedSemaphore(2)


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
    with LEAF_PASSES:
        path = inclusion_proof(seq, leaf_hashes(conn, size))
    return EntryProof(seq, bytes(row["entry"]), path, head)


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
        with LEAF_PASSES:
            path = consistency_proof(first, leaf_hashes(conn, second))
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
