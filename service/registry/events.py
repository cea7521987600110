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


# The audit log's entries about the artist, one of their works or one of their claims, through
# ``artist_audit`` (migration 0016): a page reads its own entries by index, however many the
# artist has. ``key`` is unique and sorts events of the same instant ('audit:' keys before
# 'generation:' ones, audit keys in log order).
_AUDIT = """
SELECT l.created_at AS at, 'audit:' || lpad(l.seq::text, 20, '0') AS key, l.kind,
       x.artwork_id, l.seq AS audit_seq, l.entry, NULL::jsonb AS generation
FROM artist_audit x JOIN audit_log l ON l.seq = x.seq
WHERE x.artist_id = %(artist)s{terms}
ORDER BY x.at DESC, x.seq DESC LIMIT %(limit)s
"""

# Generations whose input (init, mask or control image) matched one of the artist's works.
_GENERATIONS = """
SELECT g.created_at AS at,
       'generation:' || m.generation_id || ':' || m.input_role || ':' || m.artwork_id AS key,
       %(generation_kind)s AS kind, m.artwork_id, NULL::bigint AS audit_seq, NULL::bytea AS entry,
       jsonb_build_object(
           'generation_id', m.generation_id, 'input_role', m.input_role,
           'outcome', m.outcome, 'decision', m.decision, 'score', m.score,
           'license_id', m.license_id, 'status', g.status, 'mode', g.mode,
           'user', g.platform_user) AS generation
FROM generation_matches m JOIN generations g ON g.id = m.generation_id
WHERE m.artist_id = %(artist)s{terms}
ORDER BY 1 DESC, 2 DESC LIMIT %(limit)s
"""

_LAST_SEQ = 2**63 - 1  # after every audit key of an instant: a cursor at a generation event


def list_events(
    conn: psycopg.Connection,
    artist_id: UUID,
    where: EventFilter,
    limit: int,
    cursor: str | None = None,
) -> EventPage:
    """Up to ``limit`` events newest first, after ``cursor``; raises ``CursorError`` for a
    cursor not handed out here."""
    args: dict[str, Any] = {
        "artist": artist_id,
        "generation_kind": GENERATION_MATCHED,
        "artwork": where.artwork_id,
        "kinds": list(where.kinds),
        "since": where.since,
        "until": where.until,
        "limit": limit + 1,
    }
    audit, generations = [], []
    if where.artwork_id is not None:
        audit.append("x.artwork_id = %(artwork)s")
        generations.append("m.artwork_id = %(artwork)s")
    if len(where.kinds) == 1:  # an equality reads the kind's own index in order
        audit.append("x.kind = %(kind)s")
        args["kind"] = where.kinds[0]
    elif where.kinds:
        audit.append("x.kind = ANY(%(kinds)s)")
    if where.since is not None:
        audit.append("x.at >= %(since)s")
        generations.append("g.created_at >= %(since)s")
    if where.until is not None:
        audit.append("x.at < %(until)s")
        generations.append("g.created_at < %(until)s")
    if cursor is not None:
        at, key = decode_event_cursor(cursor)
        after_seq = int(key.removeprefix("audit:")) if key.startswith("audit:") else _LAST_SEQ
        args.update(after_at=at, after_key=key, after_seq=after_seq)
        audit.append("(x.at, x.seq) < (%(after_at)s, %(after_seq)s)")
        generations.append(
            "(g.created_at, 'generation:' || m.generation_id || ':' || m.input_role || ':'"
            " || m.artwork_id) < (%(after_at)s, %(after_key)s)"
        )
    parts = []
    if not where.kinds or set(where.kinds) - {GENERATION_MATCHED}:
        parts.append(_AUDIT.format(terms="".join(f" AND {t}" for t in audit)))
    if not where.kinds or GENERATION_MATCHED in where.kinds:
        parts.append(_GENERATIONS.format(terms="".join(f" AND {t}" for t in generations)))
    union = " UNION ALL ".join(f"({p})" for p in parts)
    sql = f"SELECT * FROM ({union}) ev ORDER BY at DESC, key DESC LIMIT %(limit)s"
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
