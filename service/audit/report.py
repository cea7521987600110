"""An audit report on one subject (a moderation check, an artwork, a generation, ...): its
record as the service holds it, every audit entry about it with its inclusion proof under one
signed tree head, and the log's public key. As JSON it is checked with no database
(``chopmark audit check-proof``); ``report_pdf`` renders it for people."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from service.audit.log import TreeHead
from service.audit.proofs import (
    EntryProof,
    check_entry_in,
    check_signed,
    committed_size,
    head_at,
    inclusion_paths,
)

REPORT_FORMAT = "chopmark-audit-report/1"


@dataclass(frozen=True)
class Evidence:
    """A picture a person looks at beside the record (PNG bytes), and what it shows."""

    caption: str
    png: bytes


@dataclass(frozen=True)
class Report:
    subject: str
    generated_at: datetime
    record_kind: str | None
    record: dict[str, Any] | None
    head: TreeHead
    entries: list[EntryProof]
    evidence: list[Evidence] = field(default_factory=list)

    def to_json(self, public_key_pem: str) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "subject": self.subject,
            "generated_at": self.generated_at.isoformat(),
            "record_kind": self.record_kind,
            "record": self.record,
            "tree_head": self.head.to_json(),
            "public_key": public_key_pem,
            "entries": [
                {k: v for k, v in e.to_json(public_key_pem).items() if k in _ENTRY_KEYS}
                for e in self.entries
            ],
        }


_ENTRY_KEYS = ("leaf_index", "entry", "entry_json", "leaf_hash", "inclusion_proof")


def build_report(
    conn: psycopg.Connection,
    subject: str,
    record_kind: str | None,
    record: dict[str, Any] | None,
    evidence: list[Evidence] | None = None,
) -> Report:
    """The report on ``subject`` under the log's newest head; ``LookupError`` when the log has
    no entry about it and there is no record either."""
    size = committed_size(conn)
    rows = conn.execute(
        "SELECT seq, entry FROM audit_log WHERE subject = %s AND seq < %s ORDER BY seq",
        (subject, size),
    ).fetchall()
    if not rows and record is None:
        raise LookupError(f"nothing is recorded about {subject}")
    if size == 0:
        raise LookupError(f"the audit log holds no entry about {subject}")
    head = head_at(conn, size, size)
    paths = inclusion_paths(conn, [int(r["seq"]) for r in rows], head)
    entries = [
        EntryProof(int(r["seq"]), bytes(r["entry"]), path, head)
        for r, path in zip(rows, paths, strict=True)
    ]
    return Report(
        subject, datetime.now(UTC), record_kind, record, head, entries, list(evidence or [])
    )


def check_report(bundle: Any, key: Ed25519PublicKey) -> list[dict[str, Any]]:
    """Check every entry of a report made by ``Report.to_json`` under its signed head, and that
    each is about the report's subject; returns the entries' contents, oldest first. Raises
    ``ValueError`` saying what does not hold."""
    if not isinstance(bundle, dict) or bundle.get("format") != REPORT_FORMAT:
        raise ValueError(f"not a {REPORT_FORMAT} bundle")
    entries = bundle.get("entries")
    if not isinstance(entries, list):
        raise ValueError("entries must be a list")
    head = TreeHead.from_json(bundle.get("tree_head"))
    check_signed(head, key)  # once, for every entry
    out = []
    for item in entries:
        if not isinstance(item, dict):
            raise ValueError("each entry must be an object")
        content = check_entry_in(item, head)
        if content.get("subject") != bundle.get("subject"):
            raise ValueError(f"entry {content['seq']} is not about {bundle.get('subject')}")
        out.append(content)
    return out
