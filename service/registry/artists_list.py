"""Artists a page at a time, oldest first, or the one with an address: for a platform that
registers artists for them (and must find the one a 409 said is there) and for the operator
who sends portal invitations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from service.db.keyset import decode_cursor, encode_cursor


@dataclass(frozen=True)
class ArtistPage:
    artists: list[dict[str, Any]]
    next_cursor: str | None


def list_artists(
    conn: psycopg.Connection, *, email: str | None, limit: int, cursor: str | None
) -> ArtistPage:
    """Raises ``CursorError`` for a cursor not handed out here."""
    terms, args = [], []
    if email is not None:
        terms.append("lower(a.email) = lower(%s)")  # by artists_email_key
        args.append(email.strip())
    if cursor is not None:
        terms.append("(a.created_at, a.id) > (%s, %s)")
        args.extend(decode_cursor(cursor))
    where = (" WHERE " + " AND ".join(terms)) if terms else ""
    rows = conn.execute(
        "SELECT a.id, a.display_name, a.email, a.default_preferences, a.created_at,"
        " (SELECT count(*) FROM artworks w WHERE w.artist_id = a.id AND w.status = 'active')"
        "   AS works,"
        " EXISTS (SELECT 1 FROM portal_accounts p WHERE p.artist_id = a.id) AS portal_login"
        f" FROM artists a{where} ORDER BY a.created_at, a.id LIMIT %s",
        [*args, limit + 1],
    ).fetchall()
    page, more = rows[:limit], len(rows) > limit
    nxt = encode_cursor(page[-1]["created_at"], page[-1]["id"]) if more else None
    return ArtistPage([dict(r) for r in page], nxt)
