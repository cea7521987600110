"""Everything that touched an artist or their works, newest first: what the audit log holds
about them (registrations, preference and licence changes, withdrawals, moderation matches,
stamps refused, match decisions), every generation whose input matched one of their works
(blocked img2img attempts among them, with the licence that let one through), their claims
against style adapters and against our outputs, with the decisions on them.

Pages are cut by keyset ``(at, key)``: ``key`` orders events of the same instant and stays the
same for an event, so a page never repeats or skips one while new events arrive."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from service.db.keyset import CursorError, decode_cursor_key, encode_cursor

GENERATION_MATCHED = "generation.input_matched"


@dataclass(frozen=True)
class EventFilter:
    kinds: Sequence[str] = ()
    artwork_id: UUID | None = None
    since: datetime | None = None  # at or after
    until: datetime | None = None  # before


@dataclass(frozen=True)
class EventPage:
    events: list[dict[str, Any]]
    next_cursor: str | None


# Audit entries about the artist or one of their works, and generation inputs that matched one
# of their works; ``key`` is unique and sorts events of the same instant.
_EVENTS = """
WITH subjects AS (
    SELECT 'artist:' || %(artist)s AS subject WHERE %(artwork)s::uuid IS NULL
    UNION ALL
    SELECT 'artwork:' || a.id FROM artworks a
    WHERE a.artist_id = %(artist)s AND (%(artwork)s::uuid IS NULL OR a.id = %(artwork)s)
), ev AS (
    SELECT l.created_at AS at, 'audit:' || lpad(l.seq::text, 20, '0') AS key, l.kind,
           CASE WHEN l.subject LIKE 'artwork:%%' THEN substr(l.subject, 9)::uuid END
               AS artwork_id,
           l.seq AS audit_seq, l.entry, NULL::jsonb AS generation
    FROM subjects s JOIN audit_log l ON l.subject = s.subject  -- by audit_log_subject
    UNION ALL
    SELECT g.created_at, 'generation:' || m.generation_id || ':' || m.input_role || ':'
           || m.artwork_id, %(generation_kind)s, m.artwork_id, NULL, NULL,
           jsonb_build_object(
               'generation_id', m.generation_id, 'input_role', m.input_role,
               'outcome', m.outcome, 'decision', m.decision, 'score', m.score,
               'license_id', m.license_id, 'status', g.status, 'mode', g.mode,
               'user', g.platform_user)
    FROM generation_matches m JOIN generations g ON g.id = m.generation_id
    WHERE m.artist_id = %(artist)s AND (%(artwork)s::uuid IS NULL OR m.artwork_id = %(artwork)s)
    UNION ALL
    SELECT l.created_at, 'audit:' || lpad(l.seq::text, 20, '0'), l.kind, NULL, l.seq, l.entry,
           NULL
    FROM adapter_claims c JOIN audit_log l ON l.subject = 'adapter:' || c.adapter_id
    WHERE c.artist_id = %(artist)s AND %(artwork)s::uuid IS NULL
      AND l.kind IN ('adapter.claim_filed', 'adapter.claim_decided')
      AND convert_from(l.entry, 'UTF8')::jsonb #>> '{data,claim_id}' = c.id::text
    UNION ALL
    SELECT l.created_at, 'audit:' || lpad(l.seq::text, 20, '0'), l.kind, c.artwork_id, l.seq,
           l.entry, NULL
    FROM claims c JOIN audit_log l ON l.subject = 'claim:' || c.id  -- by audit_log_subject
    WHERE c.artist_id = %(artist)s AND (%(artwork)s::uuid IS NULL OR c.artwork_id = %(artwork)s)
)
SELECT at, key, kind, artwork_id, audit_seq, entry, generation FROM ev
"""


def list_events(
    conn: psycopg.Connection,
    artist_id: UUID,
    where: EventFilter,
    limit: int,
    cursor: str | None = None,
) -> EventPage:
    """Up to ``limit`` events newest first, after ``cursor``; raises ``CursorError`` for a
    cursor not handed out here."""
    # One work's events are read from that work's rows alone (the portal's work page), not
    # picked out of all of the artist's (bench/artist_events.py).
    args: dict[str, Any] = {
        "artist": artist_id,
        "generation_kind": GENERATION_MATCHED,
        "artwork": where.artwork_id,
    }
    terms: list[str] = []
    if where.kinds:
        terms.append("kind = ANY(%(kinds)s)")
        args["kinds"] = list(where.kinds)
    if where.since is not None:
        terms.append("at >= %(since)s")
        args["since"] = where.since
    if where.until is not None:
        terms.append("at < %(until)s")
        args["until"] = where.until
    if cursor is not None:
        terms.append("(at, key) < (%(after_at)s, %(after_key)s)")
        args["after_at"], args["after_key"] = decode_event_cursor(cursor)
    sql = _EVENTS + (" WHERE " + " AND ".join(terms) if terms else "")
    sql += " ORDER BY at DESC, key DESC LIMIT %(limit)s"
    args["limit"] = limit + 1
    rows = conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
    page, more = rows[:limit], len(rows) > limit
    nxt = encode_cursor(page[-1]["at"], page[-1]["key"]) if more else None
    return EventPage([_event(r) for r in page], nxt)


def _event(row: dict[str, Any]) -> dict[str, Any]:
    if row["entry"] is not None:
        entry = json.loads(bytes(row["entry"]))
        data, actor = entry["data"], entry["actor"]
    else:
        data, actor = row["generation"], None
    return {
        "at": row["at"],
        "kind": row["kind"],
        "artwork_id": row["artwork_id"],
        "audit_seq": row["audit_seq"],
        "actor": actor,
        "data": data,
    }


def decode_event_cursor(cursor: str) -> tuple[datetime, str]:
    at, key = decode_cursor_key(cursor)
    if not key.startswith(("audit:", "generation:")):
        raise CursorError("cursor is not one this API handed out")
    return at, key
