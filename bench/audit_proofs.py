"""Audit-log proofs at scale: an entry's inclusion proof and a consistency proof between two
tree heads, against the floor of reading the log's leaf hashes (which every proof does), in the
same run; and the paths of a thousand entries of one report, from one tree kept in memory.

A temporary embedded PostgreSQL is filled with N synthetic entries (their leaf hashes are real
SHA-256 values, their contents and signatures placeholders: a proof reads only the leaf hashes
and the row of its tree head). Each proof is also checked against the root computed here.

    python bench/audit_proofs.py --sizes 100000,1000000 --out bench/results/audit_proofs.md
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from detection_report import emit
from psycopg.rows import dict_row

from provenance.merkle import (
    MerkleTree,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from service.audit.proofs import consistency, entry_proof, leaf_hashes
from service.db.migrate import upgrade

T = TypeVar("T")
PATHS = 1000  # entries of one report: a work copied a thousand times


def _fill(conn: psycopg.Connection, size: int) -> None:
    conn.execute("TRUNCATE audit_log")
    conn.execute(
        "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry, leaf_hash,"
        " root_hash, signature) SELECT i, now(), 'bench.entry', 'bench', NULL, '\\x7b7d',"
        " sha256(int8send(i)), '\\x00', '\\x00' FROM generate_series(0, %s) i",
        (size - 1,),
    )
    conn.execute("UPDATE audit_state SET size = %s", (size,))
    conn.commit()


def _timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return statistics.median(times) * 1e3, out


def _row(conn: psycopg.Connection, size: int, repeats: int) -> str:
    """One size: the floor, both proofs, each proof checked against the root computed here."""
    _fill(conn, size)
    leaf_hashes(conn, size)  # warm: every measure then reads from PostgreSQL's cache
    floor, leaves = _timed(lambda: leaf_hashes(conn, size), repeats)
    root = root_from_leaf_hashes(leaves)
    seq, half = size // 3, size // 2
    inc_ms, proof = _timed(lambda: entry_proof(conn, seq), repeats)
    assert verify_inclusion(seq, size, leaves[seq], proof.path, root)
    con_ms, con = _timed(lambda: consistency(conn, half, size), repeats)
    assert verify_consistency(half, size, root_from_leaf_hashes(leaves[:half]), root, con.path)
    wanted = range(0, size, max(1, size // PATHS))

    def report_paths() -> list[list[bytes]]:  # as a report proves its many entries
        tree = MerkleTree(leaf_hashes(conn, size))
        return [tree.inclusion_proof(i) for i in wanted]

    many_ms, paths = _timed(report_paths, repeats)
    checked = zip(wanted, paths, strict=True)
    assert all(verify_inclusion(i, size, leaves[i], p, root) for i, p in checked)
    conn.rollback()
    return (
        f"| {size:,} | {floor:.0f} | {inc_ms:.0f} | {inc_ms / floor:.2f}x |"
        f" {con_ms:.0f} | {con_ms / floor:.2f}x | {many_ms:.0f} | {many_ms / floor:.2f}x |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    import pgserver

    sizes = [int(s) for s in args.sizes.split(",")]
    lines = [
        "| entries | read leaf hashes (floor) ms | inclusion proof ms | ratio |"
        f" consistency proof ms | ratio | {PATHS:,} paths (a report) ms | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="chopmark-bench-audit-") as folder:
        server = pgserver.get_server(Path(folder) / "pg", cleanup_mode="stop")
        try:
            url = server.get_uri()
            upgrade(url)
            with psycopg.connect(url, row_factory=dict_row) as conn:
                lines += [_row(conn, size, args.repeats) for size in sizes]
        finally:
            server.cleanup()
    emit(
        [
            "# Audit-log proofs",
            "",
            "Command: `python bench/audit_proofs.py --sizes "
            f"{args.sizes} --repeats {args.repeats}`",
            "",
            f"Median of {args.repeats} runs each; every proof checked against the root"
            " computed here.",
            "",
            *lines,
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
