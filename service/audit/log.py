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
from service.audit.nodes import store_completed, stored_level
from service.audit.signing import tree_head_message


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def lock_for_change(conn: psycopg.Connection) -> tuple[int, list[bytes]]:
    """Take the log's lock for the rest of the transaction; return its size and frontier.

    Lock order: a transaction that locks other rows (``FOR NO KEY UPDATE``) and then appends
    takes this lock first, before those rows; appending after inserts holds it while foreign
    keys take their share locks. Both ways, no two writers wait on each other in a circle."""
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
        completed: list[tuple[int, int, bytes]] = []
        root = frontier.append(leaf, completed)
        signature = self.key.sign(tree_head_message(size + 1, root))
        conn.execute(
            "WITH entry AS (INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry,"
            " leaf_hash, root_hash, signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s))"
            " UPDATE audit_state SET size = %s, frontier = %s WHERE id = 1",
            (
                size,
                now,
                kind,
                actor,
                subject,
                entry,
                leaf,
                root,
                signature,
                frontier.size,
                frontier.nodes,
            ),
        )
        store_completed(conn, completed)  # every 256th entry
        return AppendedEntry(size, leaf, root)


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    size: int
    root: bytes
    problem: str | None = None
    first_bad_seq: int | None = None


@dataclass(frozen=True)
class TreeHead:
    """A signed tree head: the log's size and root, signed with its key. Kept outside the
    database (a file, a ticket, a witness), it lets a later check prove that no entry it covers
    was removed or changed since, the end of the log included."""

    size: int
    root: bytes
    signature: bytes

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "root": self.root.hex(), "signature": self.signature.hex()}

    @classmethod
    def from_json(cls, data: Any) -> TreeHead:
        try:
            size, root = data["size"], bytes.fromhex(data["root"])
            head = cls(size, root, bytes.fromhex(data["signature"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a tree head: {exc}") from None
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError("not a tree head: size must be a whole number, 0 or more")
        if size == 0 and root != Frontier().root():
            raise ValueError("not a tree head: a head of size 0 has the empty tree's root")
        return head


def latest_head(conn: psycopg.Connection) -> TreeHead:
    """The log's newest signed tree head (size 0 has none: an empty root, no signature)."""
    row = conn.execute(
        "SELECT seq, root_hash, signature FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is None:
        return TreeHead(0, Frontier().root(), b"")
    return TreeHead(int(row["seq"]) + 1, bytes(row["root_hash"]), bytes(row["signature"]))


@dataclass(frozen=True)
class _Row:
    seq: int
    entry: bytes
    leaf: bytes
    root: bytes
    signature: bytes
    kind: str
    actor: str
    subject: str | None
    created_at: datetime


def _rows(conn: psycopg.Connection, below: int) -> Iterator[_Row]:
    with conn.cursor(name="audit_verify", row_factory=psycopg.rows.tuple_row) as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT seq, entry, leaf_hash, root_hash, signature, kind, actor, subject, created_at"
            " FROM audit_log WHERE seq < %s ORDER BY seq",
            (below,),
        )
        for seq, entry, leaf, root, sig, kind, actor, subject, created in cur:
            yield _Row(
                int(seq),
                bytes(entry),
                bytes(leaf),
                bytes(root),
                bytes(sig),
                kind,
                actor,
                subject,
                created,
            )


def _columns_differ(row: _Row, body: dict[str, Any]) -> str | None:
    """The first queryable column that says something else than the hashed entry."""
    try:
        hashed_time = datetime.fromisoformat(str(body.get("time")))
    except ValueError:
        return "time"
    for column, stored, hashed in (
        ("kind", row.kind, body.get("kind")),
        ("actor", row.actor, body.get("actor")),
        ("subject", row.subject, body.get("subject")),
        ("created_at", row.created_at, hashed_time),
    ):
        if stored != hashed:
            return column
    return None


def _fail(frontier: Frontier, problem: str, seq: int) -> VerifyResult:
    return VerifyResult(False, frontier.size, frontier.root(), problem, seq)


def verify(
    conn: psycopg.Connection, key: Ed25519PrivateKey, known: TreeHead | None = None
) -> VerifyResult:
    """Recompute the whole tree; name the first entry that was changed, removed or reordered.

    The log is checked as it stood when the check began: its recorded size is read first, and
    entries appended while the check runs (a busy service) are left to the next check. The size
    is updated in the statement that inserts each entry, so every entry below it has committed.
    Each entry's queryable columns (kind, actor, subject, time) must say what its hashed content
    says. ``known``: a tree head kept from an earlier check; the log must still hold it, so
    entries cut from the end since then are found too.
    """
    pub = key.public_key()
    if known is not None and known.size > 0:
        try:
            pub.verify(known.signature, tree_head_message(known.size, known.root))
        except InvalidSignature:
            return VerifyResult(
                False, 0, Frontier().root(), "the tree head given is not signed by this log's key"
            )
    state = conn.execute("SELECT size FROM audit_state WHERE id = 1").fetchone()
    state_size = int(state["size"] if isinstance(state, dict) else state[0])  # type: ignore[index]
    frontier = Frontier()
    nodes: dict[tuple[int, int], bytes] = {}  # the stored-level nodes the entries make
    completed: list[tuple[int, int, bytes]] = []
    for row in _rows(conn, state_size):
        seq, entry, stored_leaf, stored_root, sig = (
            row.seq,
            row.entry,
            row.leaf,
            row.root,
            row.signature,
        )
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
        column = _columns_differ(row, body)
        if column is not None:
            return _fail(
                frontier,
                f"entry {seq} was changed: its {column} column no longer says what the entry says",
                seq,
            )
        completed.clear()
        root = frontier.append(leaf, completed)
        nodes.update(((lv, i), h) for lv, i, h in completed if stored_level(lv))
        if root != stored_root:
            return _fail(frontier, f"entry {seq}: the tree root differs from the one recorded", seq)
        try:
            pub.verify(sig, tree_head_message(seq + 1, root))
        except InvalidSignature:
            return _fail(frontier, f"entry {seq}: the signed tree head does not verify", seq)
        if known is not None and frontier.size == known.size and root != known.root:
            return _fail(
                frontier,
                f"the first {known.size} entries differ from the tree head given: the log was"
                " rewritten",
                seq,
            )
    if state_size != frontier.size:
        return _fail(
            frontier,
            f"entries {frontier.size}..{state_size - 1} were removed from the end of the log",
            frontier.size,
        )
    if known is not None and known.size > frontier.size:
        return _fail(
            frontier,
            f"the log holds {frontier.size} entries but the tree head given covers {known.size}:"
            f" entries {frontier.size}..{known.size - 1} were removed from the end",
            frontier.size,
        )
    bad = _stored_node_differs(conn, nodes, frontier.size)
    if bad is not None:
        level, index = bad
        return _fail(
            frontier,
            f"the stored tree node at level {level}, index {index} (entries {index << level}.."
            f"{((index + 1) << level) - 1}) does not match the entries: proofs through it would"
            " not hold; delete that row of audit_nodes and it is computed again",
            index << level,
        )
    return VerifyResult(True, frontier.size, frontier.root())


def _stored_node_differs(
    conn: psycopg.Connection, nodes: dict[tuple[int, int], bytes], size: int
) -> tuple[int, int] | None:
    """The first stored tree node over the first ``size`` entries that differs from the one
    they make (``nodes``); a missing one is no fault (it is computed when needed)."""
    with conn.cursor(name="audit_verify_nodes", row_factory=psycopg.rows.tuple_row) as cur:
        cur.itersize = 2000
        cur.execute(
            "SELECT level, idx, hash FROM audit_nodes"
            " WHERE (idx + 1) * (1::bigint << level) <= %s ORDER BY level, idx",
            (size,),
        )
        for level, index, digest in cur:
            if nodes.get((int(level), int(index))) != bytes(digest):
                return int(level), int(index)
    return None
