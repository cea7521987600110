"""Artists' claims against our outputs: "this generation copies my work".

A claim names one output of ours (a generation, or a platform's generation stamped here), the
artist and, optionally, which of their works; the matcher's view of the output against the
registry is kept with it (the artist's works it copies or resembles, with scores and evidence),
so the decision rests on what was seen when it was filed. A person with an admin key upholds or
rejects it. Filings and decisions are audited under ``claim:ID``; the artist's events show them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from service.audit.log import lock_for_change
from service.db.keyset import CursorError, Where, decode_cursor_key, encode_cursor
from service.db.transactions import lock_name
from service.registry.matching import match_registry
from service.registry.store import Conflict, NotFound
from similarity import compute_signals, decode_for_matching

if TYPE_CHECKING:
    from service.runtime import Runtime

STATUSES = ("open", "upheld", "rejected")


class ClaimInvalid(ValueError):
    """A claim that cannot be filed as asked (an artwork of another artist, say)."""


@dataclass(frozen=True)
class ClaimFilter:
    artist_id: UUID | None = None
    output_id: UUID | None = None
    statuses: Sequence[str] = ()
    since: datetime | None = None  # filed at or after
    until: datetime | None = None  # filed before


@dataclass(frozen=True)
class ClaimPage:
    claims: list[dict[str, Any]]
    next_cursor: str | None


def output_matches(rt: Runtime, sha256: str, artist_id: UUID) -> list[dict[str, Any]]:
    """The artist's works the output's bytes copy or resemble, as the registry matcher sees
    them now (blocking: decode, fingerprints, search)."""
    decoded = decode_for_matching(rt.blobs.get(sha256), rt.decode_limits)
    found = match_registry(rt, compute_signals(decoded))
    return [
        {
            "artwork_id": str(m.artwork.id),
            "title": m.artwork.title,
            "decision": m.match.decision,
            "score": round(m.match.score, 4),
            "evidence": m.match.evidence,
        }
        for m in found.matches
        if m.artwork.artist_id == artist_id
    ]


def file_claim(
    rt: Runtime,
    *,
    actor: str,
    output_id: UUID,
    artist_id: UUID,
    artwork_id: UUID | None,
    reason: str,
) -> dict[str, Any]:
    """Record a claim with the matcher's view of the output against the artist's works.

    Raises ``NotFound`` (no such output, artist or artwork), ``ClaimInvalid`` (the artwork is
    another artist's) or ``Conflict`` (the same claim is open already).

    Takes its connections from the pool itself and holds none while the output is matched
    (matching takes its own): as many claims at once as the pool has connections would
    otherwise each hold one and wait for a second."""
    # The same claim twice while it is open (a retried request) would only wait for the same
    # decision; another reason or another work is another claim. Asked before the matching
    # (a retry costs no match) and again under the lock (two at once: one is recorded).
    same = (output_id, artist_id, artwork_id, reason)
    with rt.pool.connection() as conn:
        output = rt.outputs.get(conn, output_id)
        if output is None:
            raise NotFound(f"no output {output_id}")
        rt.registry.get_artist(conn, artist_id)
        if (
            artwork_id is not None
            and rt.registry.get_artwork(conn, artwork_id).artist_id != artist_id
        ):
            raise ClaimInvalid(f"artwork {artwork_id} is not one of artist {artist_id}'s works")
        _refuse_if_open(conn, *same)
    matches = output_matches(rt, output.sha256, artist_id)
    claim_id = uuid4()
    with rt.pool.connection() as conn:
        _record_claim(rt, conn, claim_id, same, output.sha256, matches, actor)
        found = get_claim(conn, claim_id)
    assert found is not None
    return found


def _record_claim(
    rt: Runtime,
    conn: psycopg.Connection,
    claim_id: UUID,
    same: tuple[UUID, UUID, UUID | None, str],
    output_sha256: str,
    matches: list[dict[str, Any]],
    actor: str,
) -> None:
    output_id, artist_id, artwork_id, reason = same
    with conn.transaction():
        lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
        lock_name(conn, f"claim:{output_id}:{artist_id}")
        _refuse_if_open(conn, *same)
        conn.execute(
            "INSERT INTO claims (id, output_id, artist_id, artwork_id, reason, matches,"
            " created_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (claim_id, output_id, artist_id, artwork_id, reason, Jsonb(matches), actor),
        )
        rt.audit.append(
            conn,
            "claim.filed",
            actor,
            f"claim:{claim_id}",
            {
                "claim_id": str(claim_id),
                "output_id": str(output_id),
                "output_sha256": output_sha256,
                "artist_id": str(artist_id),
                "artwork_id": str(artwork_id) if artwork_id else None,
                "reason": reason,
                "matches": [
                    {k: m[k] for k in ("artwork_id", "decision", "score")} for m in matches
                ],
            },
        )


def _refuse_if_open(
    conn: psycopg.Connection,
    output_id: UUID,
    artist_id: UUID,
    artwork_id: UUID | None,
    reason: str,
) -> None:
    same = conn.execute(
        "SELECT id FROM claims WHERE output_id = %s AND artist_id = %s AND status = 'open'"
        " AND artwork_id IS NOT DISTINCT FROM %s AND reason = %s",
        (output_id, artist_id, artwork_id, reason),
    ).fetchone()
    if same is not None:
        raise Conflict(f"this claim is open already ({same['id']}); it awaits a decision")


def decide_claim(
    rt: Runtime,
    conn: psycopg.Connection,
    claim_id: UUID,
    *,
    actor: str,
    uphold: bool,
    note: str | None,
) -> dict[str, Any]:
    """Uphold or reject an open claim. Raises ``NotFound`` or ``Conflict`` (decided already)."""
    with conn.transaction():
        lock_for_change(conn)
        row = conn.execute(
            "SELECT status, artist_id, output_id FROM claims WHERE id = %s FOR NO KEY UPDATE",
            (claim_id,),
        ).fetchone()
        if row is None:
            raise NotFound(f"no claim {claim_id}")
        if row["status"] != "open":
            raise Conflict(f"claim {claim_id} was decided already ({row['status']})")
        status = "upheld" if uphold else "rejected"
        conn.execute(
            "UPDATE claims SET status = %s, decision_note = %s, decided_by = %s,"
            " decided_at = now() WHERE id = %s",
            (status, note, actor, claim_id),
        )
        rt.audit.append(
            conn,
            "claim.decided",
            actor,
            f"claim:{claim_id}",
            {
                "claim_id": str(claim_id),
                "decision": status,
                "note": note,
                "artist_id": str(row["artist_id"]),
                "output_id": str(row["output_id"]),
            },
        )
    found = get_claim(conn, claim_id)
    assert found is not None
    return found


def upheld_against(conn: psycopg.Connection, output_ids: Sequence[UUID]) -> list[dict[str, Any]]:
    """The upheld claims against any of these outputs, oldest decision first."""
    if not output_ids:
        return []
    return conn.execute(
        "SELECT id, output_id, artist_id, artwork_id, decided_at FROM claims"
        " WHERE output_id = ANY(%s) AND status = 'upheld' ORDER BY decided_at, id",
        (list(output_ids),),
    ).fetchall()


_SELECT = (
    "SELECT c.*, o.origin AS output_origin, o.sha256 AS output_sha256 FROM claims c"
    " JOIN outputs o ON o.id = c.output_id"
)


def drawn_claim(rt: Runtime, claim_id: UUID, artist_id: UUID | None = None) -> bytes | None:
    """The claim's picture (``picture.claim_picture``); None for no such claim, or for one of
    another artist than ``artist_id`` when that is given."""
    from service.registry.picture import claim_picture

    with rt.pool.connection() as conn:
        found = get_claim(conn, claim_id, artist_id)
    return None if found is None else claim_picture(rt, found)


def get_claim(
    conn: psycopg.Connection, claim_id: UUID, artist_id: UUID | None = None
) -> dict[str, Any] | None:
    """The claim; None for no such claim, or for one of another artist than ``artist_id`` when
    that is given."""
    row = conn.execute(_SELECT + " WHERE c.id = %s", (claim_id,)).fetchone()
    if row is None or (artist_id is not None and row["artist_id"] != artist_id):
        return None
    return _public(row)


def list_claims(
    conn: psycopg.Connection, where: ClaimFilter, limit: int, cursor: str | None = None
) -> ClaimPage:
    """Claims newest first, by keyset cursor; raises ``CursorError`` for a foreign cursor."""
    cond = Where()
    cond.equal("c.artist_id", where.artist_id)
    cond.equal("c.output_id", where.output_id)
    cond.any_of("c.status", where.statuses)
    if where.since is not None:
        cond.add("c.created_at >= %s", where.since)
    if where.until is not None:
        cond.add("c.created_at < %s", where.until)
    if cursor is not None:
        at, key = decode_cursor_key(cursor)
        try:
            after = UUID(key)
        except ValueError:
            raise CursorError("cursor is not one this API handed out") from None
        cond.add("(c.created_at, c.id) < (%s, %s)", at, after)
    rows = conn.execute(
        _SELECT + cond.sql() + " ORDER BY c.created_at DESC, c.id DESC LIMIT %s",
        [*cond.args, limit + 1],
    ).fetchall()
    page, more = rows[:limit], len(rows) > limit
    nxt = encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if more else None
    return ClaimPage([_public(r) for r in page], nxt)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "output_id": row["output_id"],
        "output_origin": row["output_origin"],
        "output_sha256": row["output_sha256"],
        "artist_id": row["artist_id"],
        "artwork_id": row["artwork_id"],
        "reason": row["reason"],
        "matches": row["matches"],
        "status": row["status"],
        "decision_note": row["decision_note"],
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "url": f"/v1/claims/{row['id']}",
    }
