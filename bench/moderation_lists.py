"""Pages of recorded moderation checks at scale: the review queue, one user's checks, a verdict
that never occurs, an admin's view of every key, against the plainest page (a key's newest
checks), measured in the same run.

A temporary embedded PostgreSQL is filled with N synthetic checks of one key (1 in 1,000 a
`review` verdict, the rest `allow`, 5,000 platform users) and a few of another key, then each
page is asked for ``--repeats`` times through ``list_checks``, as the route asks.

    python bench/moderation_lists.py --checks 1000000 --out bench/results/moderation_lists.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from detection_report import emit
from psycopg.rows import dict_row

from service.db.migrate import upgrade
from service.moderation.listing import CheckFilter, list_checks

PAGES = {
    "a key's newest checks (baseline)": CheckFilter(api_key_id=1),
    "the review queue (verdict=review, reviewed=false)": CheckFilter(
        api_key_id=1, verdicts=("review",), reviewed=False
    ),
    "one platform user's checks": CheckFilter(api_key_id=1, user="user7"),
    "a verdict that never occurs (block)": CheckFilter(api_key_id=1, verdicts=("block",)),
    "an admin's review queue (every key)": CheckFilter(verdicts=("review",), reviewed=False),
    "an image checked before (sha256)": CheckFilter(api_key_id=1, sha256="0" * 64),
}


def _fill(conn: psycopg.Connection, count: int) -> None:
    for key in (1, 2):
        conn.execute(
            "INSERT INTO api_keys (id, prefix, name, key_hash, scopes)"
            " VALUES (%s, %s, 'bench', %s, '{moderate}')",
            (key, f"bench{key}", f"hash{key}".encode()),
        )
    conn.execute(
        "INSERT INTO moderation_checks (id, api_key_id, actor, platform_user, sha256, verdict,"
        " reasons, result, policy_name, policy_version, created_at)"
        " SELECT gen_random_uuid(), CASE WHEN i %% 100 = 1 THEN 2 ELSE 1 END, 'bench',"
        " 'user' || (i %% 5000), md5(i::text),"
        " CASE WHEN i %% 1000 = 0 THEN 'review' ELSE 'allow' END, '[]',"
        ' \'{"media_type": "image/jpeg", "width": 600, "height": 400}\', \'default\', \'v\','
        " now() - make_interval(secs => i) FROM generate_series(1, %s) i",
        (count,),
    )
    conn.execute("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--checks", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import pgserver

    rows = []
    with tempfile.TemporaryDirectory(prefix="chopmark-bench-lists-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="stop")
        try:
            upgrade(server.get_uri())
            with psycopg.connect(server.get_uri(), autocommit=True, row_factory=dict_row) as conn:
                _fill(conn, args.checks)
                for name, where in PAGES.items():
                    list_checks(conn, where, 50)  # warm
                    times = []
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        page = list_checks(conn, where, 50)
                        times.append((time.perf_counter() - t) * 1e3)
                    rows.append((name, statistics.median(times), max(times), len(page.checks)))
        finally:
            server.cleanup()
    base = rows[0][1]
    emit(
        [
            "# Pages of recorded moderation checks",
            "",
            f"Command: `python bench/moderation_lists.py --checks {args.checks}"
            f" --repeats {args.repeats}`",
            "",
            f"{args.checks:,} checks; pages of 50; median and slowest of {args.repeats}.",
            "",
            "| page | p50 ms | max ms | ratio to baseline | checks on the page |",
            "|---|---:|---:|---:|---:|",
            *(f"| {n} | {p:.1f} | {m:.1f} | {p / base:.2f}x | {c} |" for n, p, m, c in rows),
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
