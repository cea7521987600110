"""The append-only audit log in Postgres, hashed as RFC 6962 leaves.

Appends are serialised by a row lock on ``audit_state`` taken inside the caller's transaction, so
an entry commits or vanishes together with the change it records. The same lock orders
``change_seq`` numbers (see ``lock_for_change``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from provenance.merkle import Frontier, leaf_hash
from service.audit.signing import tree_head_message


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def lock_for_change(conn: psycopg.Connection) -> tuple[int, list[bytes]]:
    """Take the log's lock for the rest of the transaction; return its size and frontier."""
    row = conn.execute("SELECT size, frontier FROM audit_state WHERE id = 1 FOR UPDATE").fetchone()
    assert row is not None, "audit_state row missing: run migrations"
    if isinstance(row, dict):
        return int(row["size"]), [bytes(b) for b in row["frontier"]]
    return int(row[0]), [bytes(b) for b in row[1]]


def next_change_seq(conn: psycopg.Connection) -> int:
    """A change number for an index-visible row, drawn under the log's lock (taken here, for
    the rest of the transaction, if not already held): numbers follow the commit order."""
    # One round trip: the row lock is taken before the number is drawn (a subquery with
    # FOR UPDATE is never flattened, so nextval runs above its lock).
    row = conn.execute(
        "SELECT nextval('change_seq') AS n"
        " FROM (SELECT 1 FROM audit_state WHERE id = 1 FOR UPDATE) AS locked"
    ).fetchone()
    assert row is not None, "audit_state row missing: run migrations"
    return int(row["n"] if isinstance(row, dict) else row[0])  # type: ignore[index]


@dataclass(frozen=True)
class AppendedEntry:
    seq: int
    leaf_hash: bytes
    root_hash: bytes


class AuditLog:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def append(
        self,
        conn: psycopg.Connection,
        kind: str,
        actor: str,
        subject: str | None,
        data: dict[str, Any],
    ) -> AppendedEntry:
        """Append one entry inside the caller's open transaction."""
        size, nodes = lock_for_change(conn)
        now = datetime.now(UTC)
        entry = canonical_json(
            {
                "seq": size,
                "time": now.isoformat(),
                "kind": kind,
                "actor": actor,
                "subject": subject,
                "data": data,
            }
        )
        leaf = leaf_hash(entry)
        frontier = Frontier(size=size, nodes=nodes)
        root = frontier.append(leaf)
        signature = self.key.sign(tree_head_message(size + 1, root))
        conn.execute(
            "WITH entry AS (INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry,"
            " leaf_hash, root_hash, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s))"
            " UPDATE audit_state SET size = %s, frontier = %s WHERE id = 1",
            (size, now, kind, actor, subject, entry, leaf, root, signature,
             frontier.size, frontier.nodes),
        )
        return AppendedEntry(size, leaf, root)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    root: bytes
    problem: str | None = None
    first_bad_seq: int | None = None


def _rows(
    conn: psycopg.Connection, below: int
) -> Iterator[tuple[int, bytes, bytes, bytes, bytes]]:
    with conn.cursor(name="audit_verify", row_factory=psycopg.rows.tuple_row) as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT seq, entry, leaf_hash, root_hash, signature FROM audit_log"
            " WHERE seq < %s ORDER BY seq",
            (below,),
        )
        for seq, entry, leaf, root, sig in cur:
            yield int(seq), bytes(entry), bytes(leaf), bytes(root), bytes(sig)


def _fail(frontier: Frontier, problem: str, seq: int) -> VerifyResult:
    return VerifyResult(False, frontier.size, frontier.root(), problem, seq)


def verify(conn: psycopg.Connection, key: Ed25519PrivateKey) -> VerifyResult:
    """Recompute the whole tree; name the first entry that was changed, removed or reordered.

    The log is checked as it stood when the check began: its recorded size is read first, and
    entries appended while the check runs (a busy service) are left to the next check. The size
    is updated in the statement that inserts each entry, so every entry below it has committed.
    """
    pub = key.public_key()
    state = conn.execute("SELECT size FROM audit_state WHERE id = 1").fetchone()
    state_size = int(state["size"] if isinstance(state, dict) else state[0])  # type: ignore[index]
    frontier = Frontier()
    for seq, entry, stored_leaf, stored_root, sig in _rows(conn, state_size):
        expected = frontier.size
        if seq != expected:
            return _fail(
                frontier, f"entry {expected} is missing (the log jumps to {seq})", expected
            )
        try:
            body = json.loads(entry)
        except ValueError:
            return _fail(frontier, f"entry {seq} is not valid JSON: its content was changed", seq)
        if body.get("seq") != seq:
            return _fail(
                frontier,
                f"entry {seq} holds the content of entry {body.get('seq')}: entries were reordered",
                seq,
            )
        leaf = leaf_hash(entry)
        if leaf != stored_leaf:
            return _fail(
                frontier, f"entry {seq} was changed: its content no longer matches its hash", seq
            )
        root = frontier.append(leaf)
        if root != stored_root:
            return _fail(frontier, f"entry {seq}: the tree root differs from the one recorded", seq)
        try:
            pub.verify(sig, tree_head_message(seq + 1, root))
        except InvalidSignature:
            return _fail(frontier, f"entry {seq}: the signed tree head does not verify", seq)
    if state_size != frontier.size:
        return _fail(
            frontier,
            f"entries {frontier.size}..{state_size - 1} were removed from the end of the log",
            frontier.size,
        )
    return VerifyResult(True, frontier.size, frontier.root())
