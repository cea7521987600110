"""Audit-log entries, newest first, a page at a time: all of them, or those about one subject
(``artwork:ID``, ``moderation:ID``, ``generation:ID``, ``artist:ID``, ``key:PREFIX`` ...), of
some kinds, within a time window. Pages are cut by the entries' sequence numbers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from service.db.keyset import CursorError, Where, decode_cursor_key, encode_cursor


@dataclass(frozen=True)
class EntryFilter:
    subject: str | None = None
    kinds: Sequence[str] = ()
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


@dataclass(frozen=True)
class EntryPage:
    entries: list[dict[str, Any]]
    next_cursor: str | None


def list_entries(
    conn: psycopg.Connection, where: EntryFilter, limit: int, cursor: str | None = None
) -> EntryPage:
    """Up to ``limit`` entries newest first, after ``cursor``; raises ``CursorError`` for a
    cursor not handed out here. Only committed entries are seen (below the log's size)."""
    cond = Where("seq < (SELECT size FROM audit_state WHERE id = 1)")
    cond.equal("subject", where.subject)
    cond.any_of("kind", where.kinds)
    cond.window("created_at", where.since, where.until)
    if cursor is not None:
        _, key = decode_cursor_key(cursor)
        if not key.isdigit():
            raise CursorError("cursor is not one this API handed out")
        cond.add("seq < %s", int(key))
    rows = conn.execute(
        "SELECT seq, created_at, kind, actor, subject, entry, leaf_hash FROM audit_log"
        + cond.sql()
        + " ORDER BY seq DESC LIMIT %s",
        [*cond.args, limit + 1],
    ).fetchall()
    page, more = rows[:limit], len(rows) > limit
    nxt = encode_cursor(page[-1]["created_at"], str(page[-1]["seq"])) if more else None
    return EntryPage([_entry(r) for r in page], nxt)


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": row["seq"],
        "at": row["created_at"],
        "kind": row["kind"],
        "actor": row["actor"],
        "subject": row["subject"],
        "data": json.loads(bytes(row["entry"]))["data"],
        "leaf_hash": bytes(row["leaf_hash"]).hex(),
        "proof_url": f"/v1/audit/entries/{row['seq']}/proof",
    }
