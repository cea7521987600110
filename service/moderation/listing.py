"""Recorded moderation checks, newest first, a page at a time: a platform's review queue
(``verdict=review``), what one of its users uploaded, whether these bytes were checked before.

Pages are cut by keyset ``(created_at, id)``, so a page never repeats or skips a check while
new ones are recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from service.db.keyset import decode_cursor, encode_cursor


@dataclass(frozen=True)
class CheckFilter:
    """Which checks: every field set narrows the list; ``api_key_id`` None means any key's."""

    api_key_id: int | None = None
    verdicts: Sequence[str] = ()
    user: str | None = None
    sha256: str | None = None
    job_id: UUID | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


@dataclass(frozen=True)
class CheckPage:
    checks: list[dict[str, Any]]
    next_cursor: str | None


# The summary of a check: its columns, and from its stored result what a list shows.
_SUMMARY = (
    "SELECT id, created_at, job_id, sha256, platform_user, context, verdict, reasons,"
    " policy_name, policy_version, result->>'media_type' AS media_type,"
    " (result->>'width')::int AS width, (result->>'height')::int AS height,"
    " result#>>'{policy,key_override}' AS key_override,"
    " result#>>'{provenance,ai_generated,status}' AS ai_generated"
    " FROM moderation_checks"
)


def list_checks(
    conn: psycopg.Connection, where: CheckFilter, limit: int, cursor: str | None = None
) -> CheckPage:
    """Up to ``limit`` checks matching ``where``, newest first, after ``cursor`` (the
    ``next_cursor`` of the page before); raises ``CursorError`` (``service.db.keyset``) for
    a cursor not ours."""
    terms: list[str] = []
    args: list[Any] = []
    if where.api_key_id is not None:
        terms.append("api_key_id = %s")
        args.append(where.api_key_id)
    if where.verdicts:
        terms.append("verdict = ANY(%s)")
        args.append(list(where.verdicts))
    if where.user is not None:
        terms.append("platform_user = %s")
        args.append(where.user)
    if where.sha256 is not None:
        terms.append("sha256 = %s")
        args.append(where.sha256.lower())
    if where.job_id is not None:
        terms.append("job_id = %s")
        args.append(where.job_id)
    if where.since is not None:
        terms.append("created_at >= %s")
        args.append(where.since)
    if where.until is not None:
        terms.append("created_at < %s")
        args.append(where.until)
    if cursor is not None:
        terms.append("(created_at, id) < (%s, %s)")
        args.extend(decode_cursor(cursor))
    sql = _SUMMARY + (" WHERE " + " AND ".join(terms) if terms else "")
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    args.append(limit + 1)
    rows = conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    return CheckPage([_summary(r) for r in page], next_cursor)


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "created_at": row["created_at"],
        "job_id": row["job_id"],
        "sha256": row["sha256"],
        "media_type": row["media_type"],
        "width": row["width"],
        "height": row["height"],
        "user": row["platform_user"],
        "context": row["context"],
        "verdict": row["verdict"],
        "reasons": row["reasons"],
        "ai_generated": row["ai_generated"],
        "policy": {
            "name": row["policy_name"],
            "version": row["policy_version"],
            "key_override": row["key_override"],
        },
        "url": f"/v1/moderation/checks/{row['id']}",
    }
