"""Pages of an artist's events at scale, as the portal's activity and work pages and
GET /v1/artists/{id}/events ask for them: a prolific artist's newest events, one of their
works' events, one kind of event, the second page; against a small artist's newest events,
measured in the same run.

A temporary embedded PostgreSQL gets two artists: a small one (10 works, 2 events each) and a
prolific one (``--works`` works, ``--events`` audit entries each: the registration and
moderation matches), then each page is asked for ``--repeats`` times through ``list_events``.

    python bench/artist_events.py --works 20000 --events 10 --out bench/results/artist_events.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID

import psycopg
from detection_report import emit
from psycopg.rows import dict_row

from service.db.migrate import upgrade
from service.registry.events import EventFilter, list_events


def _artist(conn: psycopg.Connection, name: str, works: int, events: int, seq0: int) -> UUID:
    """An artist with ``works`` works of ``events`` audit entries each; returns the id."""
    artist = conn.execute(
        "INSERT INTO artists (display_name, email) VALUES (%s, %s) RETURNING id",
        (name, f"{name}@example.org"),
    ).fetchone()["id"]
    conn.execute(
        "INSERT INTO artworks (artist_id, sha256, media_type, width, height, byte_size,"
        " created_at) SELECT %s, md5(%s || i::text), 'image/jpeg', 600, 400, 1000,"
        " now() - make_interval(days => 400) + make_interval(secs => i)"
        " FROM generate_series(1, %s) i",
        (artist, name, works),
    )
    # Entry k of work w: its registration first, then moderation matches, spread over a year.
    conn.execute(
        "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry, leaf_hash,"
        " root_hash, signature)"
        " SELECT %s + row_number() OVER (ORDER BY t), t, kind, 'bench', 'artwork:' || id,"
        ' convert_to(\'{"actor": "bench", "data": {"score": 0.9}}\', \'UTF8\'),'
        " '\\x00', '\\x00', '\\x00'"
        " FROM (SELECT w.id, CASE WHEN k = 0 THEN 'artwork.registered'"
        "        ELSE 'moderation.matched' END AS kind,"
        "        w.created_at + make_interval(secs => k * 3000 + (hashtext(w.id::text) & 1023))"
        "          AS t"
        "       FROM artworks w, generate_series(0, %s - 1) k WHERE w.artist_id = %s) s",
        (seq0, events, artist),
    )
    return artist


def _append_cost(conn: psycopg.Connection, artist: UUID, repeats: int) -> tuple[float, float]:
    """Milliseconds to insert 1,000 audit entries about works: without and with the trigger."""
    works = [
        r["id"]
        for r in conn.execute(
            "SELECT id FROM artworks WHERE artist_id = %s LIMIT 1000", (artist,)
        ).fetchall()
    ]
    seq = conn.execute("SELECT max(seq) AS m FROM audit_log").fetchone()["m"] + 1
    out = []
    for enabled in (False, True):
        times = []
        for _ in range(repeats):
            with conn.transaction():
                state = "ENABLE" if enabled else "DISABLE"
                conn.execute(f"ALTER TABLE audit_log {state} TRIGGER artist_audit_on_append")
                t = time.perf_counter()
                for work in works:
                    conn.execute(
                        "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry,"
                        " leaf_hash, root_hash, signature) VALUES (%s, now(),"
                        " 'moderation.matched', 'bench', %s, '\\x7b7d', '\\x00', '\\x00',"
                        " '\\x00')",
                        (seq, f"artwork:{work}"),
                    )
                    seq += 1
                times.append((time.perf_counter() - t) * 1e3)
        out.append(statistics.median(times) * 1000 / len(works))
    return out[0], out[1]


def _migration_fill(conn: psycopg.Connection) -> tuple[float, int]:
    """Seconds migration 0016 takes to index the entries already logged (run again here), and
    how many entries the log holds."""
    import service

    sql = (Path(service.__file__).parent / "migrations" / "0016_artist_audit.sql").read_text()
    fill = sql[sql.index("-- The entries logged before") : sql.index("CREATE INDEX artist_audit")]
    with conn.transaction():
        conn.execute(
            "DROP INDEX artist_audit_artist, artist_audit_artist_kind, artist_audit_artwork"
        )
        conn.execute("DELETE FROM artist_audit")
        t = time.perf_counter()
        conn.execute(fill)
        conn.execute(sql[sql.index("CREATE INDEX artist_audit") :])
        seconds = time.perf_counter() - t
    return seconds, conn.execute("SELECT count(*) AS n FROM audit_log").fetchone()["n"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--works", type=int, default=20_000)
    ap.add_argument("--events", type=int, default=10, help="audit entries per work")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import pgserver

    rows = []
    with tempfile.TemporaryDirectory(prefix="chopmark-bench-events-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="stop")
        try:
            upgrade(server.get_uri())
            with psycopg.connect(server.get_uri(), autocommit=True, row_factory=dict_row) as conn:
                small = _artist(conn, "small", 10, 2, 0)
                big = _artist(conn, "prolific", args.works, args.events, 1000)
                conn.execute("ANALYZE")
                one_work = conn.execute(
                    "SELECT id FROM artworks WHERE artist_id = %s ORDER BY created_at"
                    " OFFSET %s LIMIT 1",
                    (big, args.works // 2),
                ).fetchone()["id"]
                first = list_events(conn, big, EventFilter(), 50)
                pages = {
                    "a small artist's newest 50 (baseline)": (small, EventFilter(), 50, None),
                    "the prolific artist's newest 50": (big, EventFilter(), 50, None),
                    "... the second page": (big, EventFilter(), 50, first.next_cursor),
                    "... one work's newest 20 (the portal's work page)": (
                        big,
                        EventFilter(artwork_id=one_work),
                        20,
                        None,
                    ),
                    "... moderation matches only": (
                        big,
                        EventFilter(kinds=("moderation.matched",)),
                        50,
                        None,
                    ),
                    "... registrations only": (
                        big,
                        EventFilter(kinds=("artwork.registered",)),
                        50,
                        None,
                    ),
                }
                for name, (artist, where, limit, cursor) in pages.items():
                    list_events(conn, artist, where, limit, cursor)  # warm
                    times = []
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        page = list_events(conn, artist, where, limit, cursor)
                        times.append((time.perf_counter() - t) * 1e3)
                    rows.append((name, statistics.median(times), max(times), len(page.events)))
                appends = _append_cost(conn, big, args.repeats)
                fill_seconds, logged = _migration_fill(conn)
        finally:
            server.cleanup()
    base = rows[0][1]
    total = args.works * args.events
    emit(
        [
            "# Pages of an artist's events",
            "",
            f"Command: `python bench/artist_events.py --works {args.works}"
            f" --events {args.events} --repeats {args.repeats}`",
            "",
            f"A prolific artist with {args.works:,} works and {total:,} events; a small one"
            f" with 10 works and 20 events. Median and slowest of {args.repeats}.",
            "",
            "| page | p50 ms | max ms | ratio to baseline | events on the page |",
            "|---|---:|---:|---:|---:|",
            *(f"| {n} | {p:.1f} | {m:.1f} | {p / base:.2f}x | {c} |" for n, p, m, c in rows),
            "",
            "What indexing an entry costs the append (the `artist_audit` trigger): 1,000 entries"
            " about the prolific artist's works, inserted one by one in a transaction, median of"
            f" {args.repeats}.",
            "",
            "| appends | ms per 1,000 | ratio |",
            "|---|---:|---:|",
            f"| trigger disabled (baseline) | {appends[0]:.1f} | 1.00x |",
            f"| with the trigger | {appends[1]:.1f} | {appends[1] / appends[0]:.2f}x |",
            "",
            f"Migration 0016's fill for the entries logged before it ({logged:,} entries, the"
            f" appends above among them): {fill_seconds:.1f} s.",
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
