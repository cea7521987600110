"""Audit-log proofs at scale: an entry's inclusion proof, a consistency proof between two tree
heads and the paths of a thousand entries of one report, from the log's stored tree nodes
(``service.audit.nodes``), against the same proofs computed from every leaf hash (the way they
were made before the nodes were stored), in the same run; and the time migration 0013 takes to
compute the nodes of a log that has none.

A temporary embedded PostgreSQL is filled with N synthetic entries (their leaf hashes are real
SHA-256 values, their contents and signatures placeholders: a proof reads only the leaf hashes,
the stored nodes and the row of its tree head). Each proof is also checked against the root
computed here.

    python bench/audit_proofs.py --sizes 100000,1000000 --out bench/results/audit_proofs.md
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psycopg
from detection_report import emit
from psycopg.rows import dict_row

import service
from provenance.merkle import (
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from service.audit.proofs import (
    consistency,
    entry_proof,
    head_at,
    inclusion_paths,
    leaf_hashes,
)
from service.db.migrate import upgrade

T = TypeVar("T")
PATHS = 1000  # entries of one report: a work copied a thousand times
_MIGRATION = Path(service.__file__).parent / "migrations" / "0013_audit_nodes.sql"


def _fill(conn: psycopg.Connection, size: int, root: bytes, half_root: bytes) -> float:
    """N entries (leaf ``i`` hashes ``int8send(i)``), then their nodes as migration 0013
    computes them; returns the time the nodes took (s). The heads a proof reads (the last
    entry's row, and the middle one's for the consistency proof) hold ``root`` and
    ``half_root``, the roots of all and of the first half of those leaves."""
    conn.execute("TRUNCATE audit_log, audit_nodes")
    conn.execute(
        "INSERT INTO audit_log (seq, created_at, kind, actor, subject, entry, leaf_hash,"
        " root_hash, signature) SELECT i, now(), 'bench.entry', 'bench', NULL, '\\x7b7d',"
        " sha256(int8send(i)), CASE i WHEN %s THEN %s::bytea WHEN %s THEN %s::bytea"
        " ELSE '\\x00' END, '\\x00' FROM generate_series(0, %s) i",
        (size - 1, root, size // 2 - 1, half_root, size - 1),
    )
    conn.execute("UPDATE audit_state SET size = %s", (size,))
    conn.commit()
    sql = _MIGRATION.read_text()
    t = time.perf_counter()
    conn.execute(sql[sql.index("DO $$") :])  # type: ignore[arg-type]
    conn.commit()
    return time.perf_counter() - t


def _timed(fn: Callable[[], T], repeats: int) -> tuple[float, T]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    assert out is not None
    return statistics.median(times) * 1e3, out


def _row(conn: psycopg.Connection, size: int, repeats: int) -> str:
    """One size: every proof from the stored nodes and from all the leaves, each checked."""
    leaves = [hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(size)]
    root = root_from_leaf_hashes(leaves)
    half_root = root_from_leaf_hashes(leaves[: size // 2])
    fill_s = _fill(conn, size, root, half_root)
    leaf_hashes(conn, size)  # warm: every measure then reads from PostgreSQL's cache
    floor, stored = _timed(lambda: leaf_hashes(conn, size), repeats)
    assert stored == leaves
    seq, half = size // 3, size // 2

    old_inc, old_path = _timed(lambda: inclusion_proof(seq, leaf_hashes(conn, size)), repeats)
    inc_ms, proof = _timed(lambda: entry_proof(conn, seq), repeats)
    assert proof.path == old_path and verify_inclusion(seq, size, leaves[seq], proof.path, root)

    old_con, old_cpath = _timed(lambda: consistency_proof(half, leaf_hashes(conn, size)), repeats)
    con_ms, con = _timed(lambda: consistency(conn, half, size), repeats)
    assert con.path == old_cpath
    assert verify_consistency(half, size, half_root, root, con.path)

    wanted = range(0, size, max(1, size // PATHS))

    def old_report() -> list[list[bytes]]:  # one tree from every leaf, then a lookup a path
        tree = MerkleTree(leaf_hashes(conn, size))
        return [tree.inclusion_proof(i) for i in wanted]

    def report() -> list[list[bytes]]:  # as build_report proves its entries
        return inclusion_paths(conn, wanted, head_at(conn, size))

    old_many, old_paths = _timed(old_report, repeats)
    many_ms, paths = _timed(report, repeats)
    assert paths == old_paths
    checked = zip(wanted, paths, strict=True)
    assert all(verify_inclusion(i, size, leaves[i], p, root) for i, p in checked)
    conn.rollback()
    return (
        f"| {size:,} | {fill_s:.1f} | {floor:.0f} | {old_inc:.0f} | {inc_ms:.1f} |"
        f" {old_inc / inc_ms:.0f}x | {old_con:.0f} | {con_ms:.1f} | {old_con / con_ms:.0f}x |"
        f" {old_many:.0f} | {many_ms:.0f} | {old_many / many_ms:.1f}x |"
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
        "| entries | nodes filled by migration 0013, s | read every leaf hash, ms |"
        " inclusion proof from the leaves, ms | from stored nodes, ms | leaves / nodes |"
        " consistency proof from the leaves, ms | from stored nodes, ms | leaves / nodes |"
        f" {PATHS:,} paths (a report) from the leaves, ms | from stored nodes, ms |"
        " leaves / nodes |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
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
            f"Median of {args.repeats} runs each; every proof from the stored nodes is the one"
            " the leaves give, and checked against the root computed here.",
            "",
            *lines,
        ],
        args.out,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
