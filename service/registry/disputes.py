"""Ownership disputes: a newly registered work that copies another artist's registered work.

Whoever registers a picture first is not always its author, and refusing the later registration
would let a squatter lock the author out. So both works stay registered (the generation gate and
moderation need the permission of every work a picture matches, so neither artist can open the
other's work for reuse) and the pair is put in front of a person: a dispute, opened right after
the later registration (`open_disputes`), decided once by someone with an admin key
(`decide_dispute`): upheld withdraws one of the two works, dismissed lets both stand (the same
artist with two accounts, a picture licensed to both). A dismissed pair is not raised again; a
pair whose dispute was upheld is, if the withdrawn work is registered again.

The new work is matched against the registry as a moderation check's upload is (its kept
original decoded, the query's signals: mirrored, turned, pictures within it): a copy of another
artist's active work opens a dispute; a merely similar work does not. Each opening and
decision is appended to the audit log under both works (``artwork.disputed``,
``artwork.dispute_decided``), so both artists' events show it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from service.audit.log import lock_for_change
from service.db.keyset import Where, decode_cursor, encode_cursor
from service.db.transactions import lock_name
from service.registry.store import Conflict, NotFound
from similarity import ImageSignals, Match, compute_signals, decode_for_matching

if TYPE_CHECKING:
    from service.runtime import Runtime

STATUSES = ("open", "upheld", "dismissed")
CANDIDATES = 20  # registry matches read per registered work: copies rank first
_BATCH = 200  # works whose fingerprints are read at once


class DisputeInvalid(ValueError):
    """A decision that cannot be taken as asked (withdrawing a work outside the dispute)."""


@dataclass(frozen=True)
class DisputeFilter:
    artist_id: UUID | None = None  # on either side
    artwork_id: UUID | None = None  # either work
    statuses: Sequence[str] = ()
    since: datetime | None = None  # opened at or after
    until: datetime | None = None  # opened before


@dataclass(frozen=True)
class DisputePage:
    disputes: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class _Registered:
    id: UUID
    artist_id: UUID
    created_at: datetime
    fingerprint_id: int
    signals: ImageSignals


def open_disputes(
    rt: Runtime,
    actor: str,
    artwork_ids: Sequence[UUID],
    advance: Callable[[int], object] | None = None,
    *,
    query_signals: bool = True,
) -> list[dict[str, Any]]:
    """For each of these works (registered just now, the artwork index caught up with them):
    its picture matched against the registry (with a query's signals, or with its stored
    fingerprints alone: cheaper, but blind to mirrored copies, ``query_signals=False``); a copy
    of another artist's active work opens a dispute between the two. Blocking (one registry
    match a work; ``advance(n)`` is called as works are done). Returns the disputes these
    works are in that are open now, opened here or before."""
    if not artwork_ids:
        return []
    opened: list[UUID] = []
    for start in range(0, len(artwork_ids), _BATCH):
        batch = artwork_ids[start : start + _BATCH]
        with rt.pool.connection() as conn, conn.transaction():
            rows = _registered_rows(conn, batch, stored=not query_signals)
        # No connection is held while a work is decoded and matched (matching takes its own).
        for row in rows:
            opened += _check(rt, actor, _registered(rt, row, query_signals))
        if advance is not None:
            advance(len(batch))
    if not opened:
        return []
    with rt.pool.connection() as conn, conn.transaction():
        found = conn.execute(
            _SELECT + " WHERE d.id = ANY(%s) ORDER BY d.created_at, d.id",
            (list(dict.fromkeys(opened)),),
        ).fetchall()
    return [_public(r) for r in found]


def active_artworks(
    conn: psycopg.Connection, artist_id: UUID | None = None, since: datetime | None = None
) -> list[UUID]:
    """The ids of the active works (one artist's, those registered since), oldest first: what
    ``chopmark disputes scan`` checks."""
    cond = Where("status = 'active'")
    cond.equal("artist_id", artist_id)
    cond.window("created_at", since, None)
    rows = conn.execute(
        "SELECT id FROM artworks" + cond.sql() + " ORDER BY created_at, id", cond.args
    ).fetchall()
    return [r["id"] for r in rows]


def _check(rt: Runtime, actor: str, work: _Registered) -> list[UUID]:
    """The disputes of one work: opened now, or open already."""
    copies = {
        m.id: m
        for m in rt.banks["artwork"].match(work.signals, limit=CANDIDATES)
        if m.decision == "copy" and m.id != work.fingerprint_id
    }
    if not copies:
        return []
    found = []
    with rt.pool.connection() as conn:
        with conn.transaction():
            others = rt.registry.artworks_by_fingerprint(conn, list(copies))
        for fid, (other, _licence) in others.items():
            if other.artist_id == work.artist_id or other.status != "active":
                continue
            dispute_id = _open(
                rt, conn, actor, work, other.id, other.artist_id, other.created_at, copies[fid]
            )
            if dispute_id is not None:
                found.append(dispute_id)
    return found


_FINGERPRINTS = "f.pdq, f.pdq_quality, f.dense, f.local_features"


def _registered_rows(
    conn: psycopg.Connection, artwork_ids: Sequence[UUID], stored: bool
) -> list[dict[str, Any]]:
    """The active works among ``artwork_ids``, oldest first, with their stored fingerprints
    when they are the query (``stored``)."""
    columns = f", {_FINGERPRINTS}" if stored else ""
    return conn.execute(
        "SELECT w.id, w.artist_id, w.created_at, w.sha256, f.id AS fid"
        + columns
        + " FROM artworks w JOIN fingerprints f ON f.id = w.fingerprint_id"
        " WHERE w.id = ANY(%s) AND w.status = 'active' ORDER BY w.created_at, w.id",
        (list(artwork_ids),),
    ).fetchall()


def _registered(rt: Runtime, r: dict[str, Any], query: bool) -> _Registered:
    """A work with its signals: as a query computes them from the kept original (``query``;
    the stored ones when the original is not kept), or as stored."""
    if query and rt.blobs.exists(r["sha256"]):
        signals = compute_signals(decode_for_matching(rt.blobs.get(r["sha256"]), rt.decode_limits))
    else:
        if "pdq" not in r:  # the original is gone: its stored fingerprints after all
            with rt.pool.connection() as conn, conn.transaction():
                r = (
                    conn.execute(
                        f"SELECT {_FINGERPRINTS} FROM fingerprints f WHERE f.id = %s", (r["fid"],)
                    ).fetchone()
                    | r
                )
        signals = ImageSignals.from_packed(
            {
                "pdq": r["pdq"],
                "pdq_quality": r["pdq_quality"],
                "dense": r["dense"],
                "local": r["local_features"],
            }
        )
    return _Registered(r["id"], r["artist_id"], r["created_at"], r["fid"], signals)


def _open(
    rt: Runtime,
    conn: psycopg.Connection,
    actor: str,
    work: _Registered,
    other_id: UUID,
    other_artist: UUID,
    other_created: datetime,
    match: Match,
) -> UUID | None:
    """The pair's open dispute, opened now unless it is open already; None when a person
    dismissed this pair before (both stand: not raised again)."""
    mine, theirs = (work.id, work.artist_id), (other_id, other_artist)
    first = (other_created, other_id) < (work.created_at, work.id)
    (earlier, earlier_artist), (later, later_artist) = (theirs, mine) if first else (mine, theirs)
    with conn.transaction():
        lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
        lock_name(conn, f"dispute:{earlier}:{later}")
        before = conn.execute(
            "SELECT id, status FROM disputes WHERE earlier_artwork_id = %s AND artwork_id = %s"
            " AND status IN ('open', 'dismissed') ORDER BY status = 'open' DESC LIMIT 1",
            (earlier, later),
        ).fetchone()
        if before is not None:
            return before["id"] if before["status"] == "open" else None
        dispute_id = uuid4()
        conn.execute(
            "INSERT INTO disputes (id, artwork_id, artist_id, earlier_artwork_id,"
            " earlier_artist_id, decision, score, evidence, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                dispute_id,
                later,
                later_artist,
                earlier,
                earlier_artist,
                match.decision,
                match.score,
                Jsonb(match.evidence),
                actor,
            ),
        )
        for subject, other, other_artist, role in (
            (later, earlier, earlier_artist, "later"),
            (earlier, later, later_artist, "earlier"),
        ):
            rt.audit.append(
                conn,
                "artwork.disputed",
                actor,
                f"artwork:{subject}",
                {
                    "dispute_id": str(dispute_id),
                    "decision": match.decision,
                    "score": round(match.score, 4),
                    "role": role,
                    "other_artwork_id": str(other),
                    "other_artist_id": str(other_artist),
                },
            )
    return dispute_id


def decide_dispute(
    rt: Runtime,
    dispute_id: UUID,
    *,
    actor: str,
    withdraw: UUID | None,
    note: str | None,
) -> dict[str, Any]:
    """Decide an open dispute, once: ``withdraw`` names the work to withdraw (upheld), None lets
    both stand (dismissed). Raises ``NotFound``, ``Conflict`` (decided already) or
    ``DisputeInvalid`` (a work outside the dispute). A loaded artwork index catches up before
    this returns, so a withdrawn work no longer matches; no connection is held meanwhile (the
    catch-up takes its own)."""
    with rt.pool.connection() as conn, conn.transaction():
        lock_for_change(conn)
        row = conn.execute(
            "SELECT * FROM disputes WHERE id = %s FOR NO KEY UPDATE", (dispute_id,)
        ).fetchone()
        if row is None:
            raise NotFound(f"no dispute {dispute_id}")
        if row["status"] != "open":
            raise Conflict(f"dispute {dispute_id} was decided already ({row['status']})")
        pair = (row["artwork_id"], row["earlier_artwork_id"])
        if withdraw is not None and withdraw not in pair:
            raise DisputeInvalid(
                f"artwork {withdraw} is not in dispute {dispute_id}: withdraw {pair[1]}"
                f" (registered first) or {pair[0]} (registered later), or neither to let both"
                " stand"
            )
        status = "dismissed" if withdraw is None else "upheld"
        conn.execute(
            "UPDATE disputes SET status = %s, withdrawn_artwork_id = %s, decision_note = %s,"
            " decided_by = %s, decided_at = now() WHERE id = %s",
            (status, withdraw, note, actor, dispute_id),
        )
        if withdraw is not None:
            rt.registry.withdraw_artwork(conn, actor, withdraw)
        for subject, other, role in ((pair[0], pair[1], "later"), (pair[1], pair[0], "earlier")):
            rt.audit.append(
                conn,
                "artwork.dispute_decided",
                actor,
                f"artwork:{subject}",
                {
                    "dispute_id": str(dispute_id),
                    "decision": status,
                    "withdrawn_artwork_id": str(withdraw) if withdraw else None,
                    "note": note,
                    "role": role,
                    "other_artwork_id": str(other),
                },
            )
    if withdraw is not None and rt.banks["artwork"].status().loaded:
        rt.banks["artwork"].catch_up()  # (a server's refresher applies it too)
    with rt.pool.connection() as conn:
        found = get_dispute(conn, dispute_id)
    assert found is not None
    return found


_SELECT = (
    "SELECT d.*, l.title AS l_title, l.status AS l_status, l.created_at AS l_created,"
    " e.title AS e_title, e.status AS e_status, e.created_at AS e_created"
    " FROM disputes d JOIN artworks l ON l.id = d.artwork_id"
    " JOIN artworks e ON e.id = d.earlier_artwork_id"
)


def get_dispute(
    conn: psycopg.Connection, dispute_id: UUID, artist_id: UUID | None = None
) -> dict[str, Any] | None:
    """The dispute; None for no such dispute, or for one ``artist_id`` (when given) is not a
    side of."""
    row = conn.execute(_SELECT + " WHERE d.id = %s", (dispute_id,)).fetchone()
    if row is None or (
        artist_id is not None and artist_id not in (row["artist_id"], row["earlier_artist_id"])
    ):
        return None
    return _public(row)


def list_disputes(
    conn: psycopg.Connection, where: DisputeFilter, limit: int, cursor: str | None = None
) -> DisputePage:
    """Disputes newest first, by keyset cursor; raises ``service.db.keyset.CursorError`` for a
    foreign cursor."""
    cond = Where()
    if where.artist_id is not None:
        cond.add("(d.artist_id = %s OR d.earlier_artist_id = %s)", where.artist_id, where.artist_id)
    if where.artwork_id is not None:
        cond.add(
            "(d.artwork_id = %s OR d.earlier_artwork_id = %s)", where.artwork_id, where.artwork_id
        )
    cond.any_of("d.status", where.statuses)
    cond.window("d.created_at", where.since, where.until)
    if cursor is not None:
        cond.add("(d.created_at, d.id) < (%s, %s)", *decode_cursor(cursor))
    rows = conn.execute(
        _SELECT + cond.sql() + " ORDER BY d.created_at DESC, d.id DESC LIMIT %s",
        [*cond.args, limit + 1],
    ).fetchall()
    page, more = rows[:limit], len(rows) > limit
    nxt = encode_cursor(page[-1]["created_at"], str(page[-1]["id"])) if more else None
    return DisputePage([_public(r) for r in page], nxt)


def open_dispute_over(conn: psycopg.Connection, artwork_ids: Sequence[UUID]) -> dict[UUID, UUID]:
    """The open dispute each of these works is in (the latest opened, when more than one), by
    work; works in none are left out."""
    if not artwork_ids:
        return {}
    rows = conn.execute(
        "SELECT id, artwork_id, earlier_artwork_id FROM disputes WHERE status = 'open'"
        " AND (artwork_id = ANY(%s) OR earlier_artwork_id = ANY(%s)) ORDER BY created_at, id",
        (list(artwork_ids), list(artwork_ids)),
    ).fetchall()
    wanted = set(artwork_ids)
    found: dict[UUID, UUID] = {}
    for r in rows:
        for work in (r["artwork_id"], r["earlier_artwork_id"]):
            if work in wanted:
                found[work] = r["id"]
    return found


def disputes_of_artwork(conn: psycopg.Connection, artwork_id: UUID) -> list[dict[str, Any]]:
    """Every dispute the work is in, newest first."""
    rows = conn.execute(
        _SELECT + " WHERE d.artwork_id = %s OR d.earlier_artwork_id = %s"
        " ORDER BY d.created_at DESC, d.id DESC",
        (artwork_id, artwork_id),
    ).fetchall()
    return [_public(r) for r in rows]


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "status": row["status"],
        "earlier": {
            "artwork_id": row["earlier_artwork_id"],
            "artist_id": row["earlier_artist_id"],
            "title": row["e_title"],
            "status": row["e_status"],
            "registered_at": row["e_created"],
        },
        "later": {
            "artwork_id": row["artwork_id"],
            "artist_id": row["artist_id"],
            "title": row["l_title"],
            "status": row["l_status"],
            "registered_at": row["l_created"],
        },
        "match": {
            "decision": row["decision"],
            "score": round(float(row["score"]), 4),
            "evidence": row["evidence"],
        },
        "withdrawn_artwork_id": row["withdrawn_artwork_id"],
        "decision_note": row["decision_note"],
        "decided_by": row["decided_by"],
        "decided_at": row["decided_at"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "url": f"/v1/disputes/{row['id']}",
    }


def drawn_dispute(rt: Runtime, dispute_id: UUID, artist_id: UUID | None = None) -> bytes | None:
    """The dispute's picture (``picture.dispute_picture``); None for no such dispute, or for one
    ``artist_id`` (when given) is not a side of."""
    from service.registry.picture import dispute_picture

    with rt.pool.connection() as conn:
        found = get_dispute(conn, dispute_id, artist_id)
    return None if found is None else dispute_picture(rt, found)
