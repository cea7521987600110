"""Recorded moderation checks and batch jobs, newest first, a page at a time: a platform's
review queue (``verdict=review``), what one of its users uploaded, whether these bytes were
checked before; the jobs it queued, with their items counted.

Pages are cut by keyset ``(created_at, id)``, so a page never repeats or skips a row while
new ones are recorded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg

from service.db.keyset import Where, decode_cursor, encode_cursor
from service.moderation.reviews import reviews_of


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
    reviewed: bool | None = None  # a person decided on it since (or not)


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
    cond = Where()
    cond.equal("api_key_id", where.api_key_id)
    cond.any_of("verdict", where.verdicts)
    cond.equal("platform_user", where.user)
    cond.equal("sha256", where.sha256.lower() if where.sha256 is not None else None)
    cond.equal("job_id", where.job_id)
    cond.window("created_at", where.since, where.until)
    if where.reviewed is not None:
        held = "EXISTS (SELECT 1 FROM moderation_reviews r WHERE r.check_id = moderation_checks.id)"
        cond.add(held if where.reviewed else f"NOT {held}")
    if cursor is not None:
        cond.add("(created_at, id) < (%s, %s)", *decode_cursor(cursor))
    sql = _SUMMARY + cond.sql() + " ORDER BY created_at DESC, id DESC LIMIT %s"
    args = [*cond.args, limit + 1]
    rows = conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    reviews = reviews_of(conn, [r["id"] for r in page])
    return CheckPage([_summary(r, reviews.get(r["id"])) for r in page], next_cursor)


def _summary(row: dict[str, Any], reviews: list[dict[str, Any]] | None) -> dict[str, Any]:
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
        "review": reviews[-1] if reviews else None,
        "url": f"/v1/moderation/checks/{row['id']}",
    }


@dataclass(frozen=True)
class JobFilter:
    """Which batch jobs: ``api_key_id`` None means any key's."""

    api_key_id: int | None = None
    statuses: Sequence[str] = ()
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before


@dataclass(frozen=True)
class JobPage:
    jobs: list[dict[str, Any]]
    next_cursor: str | None


_JOB_SUMMARY = (
    "SELECT j.id, j.status, j.total, j.done, j.platform_user, j.context, j.created_at,"
    " j.started_at, j.finished_at, j.webhook_url, j.webhook_state, j.webhook_attempts, k.*"
    " FROM moderation_jobs j LEFT JOIN LATERAL ("
    "  SELECT count(*) FILTER (WHERE i.status = 'queued') AS queued,"
    "   count(*) FILTER (WHERE i.status = 'checked') AS checked,"
    "   count(*) FILTER (WHERE i.status = 'rejected') AS rejected,"
    "   count(*) FILTER (WHERE i.status = 'failed') AS failed,"
    "   count(*) FILTER (WHERE c.verdict = 'allow') AS allow,"
    "   count(*) FILTER (WHERE c.verdict = 'review') AS review,"
    "   count(*) FILTER (WHERE c.verdict = 'block') AS block"
    "  FROM moderation_job_items i LEFT JOIN moderation_checks c ON c.id = i.check_id"
    "  WHERE i.job_id = j.id) k ON true"
)


def list_jobs(
    conn: psycopg.Connection, where: JobFilter, limit: int, cursor: str | None = None
) -> JobPage:
    """Up to ``limit`` batch jobs matching ``where``, newest first, after ``cursor``, each with
    its items counted by status and by verdict; raises ``CursorError`` for a cursor not ours."""
    cond = Where()
    cond.equal("j.api_key_id", where.api_key_id)
    cond.any_of("j.status", where.statuses)
    cond.window("j.created_at", where.since, where.until)
    if cursor is not None:
        cond.add("(j.created_at, j.id) < (%s, %s)", *decode_cursor(cursor))
    sql = _JOB_SUMMARY + cond.sql() + " ORDER BY j.created_at DESC, j.id DESC LIMIT %s"
    args = [*cond.args, limit + 1]
    rows = conn.execute(sql, args).fetchall()  # type: ignore[arg-type]
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    return JobPage([_job_summary(r) for r in page], next_cursor)


def _job_summary(row: dict[str, Any]) -> dict[str, Any]:
    webhook = None
    if row["webhook_url"]:
        webhook = {"state": row["webhook_state"], "attempts": row["webhook_attempts"]}
    return {
        "id": row["id"],
        "status": row["status"],
        "total": row["total"],
        "done": row["done"],
        "counts": {k: row[k] for k in ("queued", "checked", "rejected", "failed")},
        "verdicts": {k: row[k] for k in ("allow", "review", "block")},
        "user": row["platform_user"],
        "context": row["context"],
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "webhook": webhook,
        "url": f"/v1/moderation/jobs/{row['id']}",
    }
