"""A person's decisions on a recorded check: a `review` verdict looked at, a `block` appealed.
Append-only: the latest decision stands, the earlier ones stay; each is audited as
``moderation.reviewed`` beside the check's own entry (subject ``moderation:ID``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg

if TYPE_CHECKING:
    from service.runtime import Runtime

DECISIONS = ("allow", "block")
REVIEWER_MAX_CHARS = 200
NOTE_MAX_CHARS = 2000


def add_review(
    rt: Runtime,
    conn: psycopg.Connection,
    check_id: UUID,
    *,
    actor: str,
    api_key_id: int | None,
    reviewer: str,
    decision: str,
    note: str | None,
    owner: int | None,
) -> dict[str, Any] | None:
    """Record a decision on check ``check_id`` (one made by key ``owner``, or any check when
    ``owner`` is None), audited in the same transaction; None when there is no such check."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}")
    with conn.transaction():
        row = conn.execute(
            "SELECT verdict, api_key_id FROM moderation_checks WHERE id = %s",
            (check_id,),
        ).fetchone()
        if row is None or (owner is not None and row["api_key_id"] != owner):
            return None
        review = {
            "id": uuid4(),
            "check_id": check_id,
            "reviewer": reviewer,
            "decision": decision,
            "note": note,
            "created_at": datetime.now(UTC),
        }
        rt.audit.append(
            conn,
            "moderation.reviewed",
            actor,
            f"moderation:{check_id}",
            {
                "review_id": str(review["id"]),
                "reviewer": reviewer,
                "decision": decision,
                "note": note,
                "verdict": row["verdict"],
            },
        )
        conn.execute(
            "INSERT INTO moderation_reviews (id, check_id, api_key_id, actor, reviewer, decision,"
            " note, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                review["id"],
                check_id,
                api_key_id,
                actor,
                reviewer,
                decision,
                note,
                review["created_at"],
            ),
        )
    return review


def reviews_of(
    conn: psycopg.Connection, check_ids: Sequence[UUID]
) -> dict[UUID, list[dict[str, Any]]]:
    """Each check's decisions, oldest first (checks with none are left out)."""
    if not check_ids:
        return {}
    rows = conn.execute(
        "SELECT id, check_id, reviewer, decision, note, created_at FROM moderation_reviews"
        " WHERE check_id = ANY(%s) ORDER BY created_at, id",
        (list(check_ids),),
    ).fetchall()
    out: dict[UUID, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r["check_id"], []).append(dict(r))
    return out
