"""The audit log's stored tree nodes: every 256-leaf subtree's hash kept by the append that
completes it, so a proof reads a few tiles of hashes, not every leaf; a missing node computed
and written back, a changed one refused and named by ``verify``."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from provenance.merkle import (
    MerkleTree,
    inclusion_path,
    range_hash,
    verify_consistency,
    verify_inclusion,
)
from service.audit.log import verify
from service.audit.nodes import StoredSubtrees
from service.audit.proofs import ProofError, consistency, entry_proof

ENTRIES = 1100  # four complete 256-leaf subtrees and a partial fifth


@pytest.fixture
def log(runtime):
    """A log of ENTRIES entries; returns its leaf hashes, oldest first."""
    with runtime.pool.connection() as conn, conn.transaction():
        for i in range(ENTRIES):
            runtime.audit.append(conn, "test.entry", "test", f"thing:{i % 7}", {"i": i})
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT leaf_hash FROM audit_log ORDER BY seq").fetchall()
    return [bytes(r["leaf_hash"]) for r in rows]


def stored_nodes(runtime) -> dict[tuple[int, int], bytes]:
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT level, idx, hash FROM audit_nodes").fetchall()
    return {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}


def root_at(leaves: list[bytes], size: int) -> bytes:
    return MerkleTree(leaves[:size]).root()


def test_appends_keep_each_256_leaf_subtree_and_a_proof_reads_a_few_tiles(runtime, log):
    tree = MerkleTree(log)
    assert stored_nodes(runtime) == {(8, i): tree.subtree(8, i) for i in range(ENTRIES // 256)}
    rng = random.Random(5)
    with runtime.pool.connection() as conn:
        for size in (1, 255, 256, 257, 700, 1024, ENTRIES):
            for seq in {0, size - 1, rng.randrange(size)}:
                proof = entry_proof(conn, seq, size)
                assert verify_inclusion(seq, size, log[seq], proof.path, root_at(log, size))
                assert proof.head.root == root_at(log, size)
        for first, second in ((1, ENTRIES), (256, 1024), (300, 777), (1024, 1100)):
            found = consistency(conn, first, second)
            assert verify_consistency(
                first, second, root_at(log, first), root_at(log, second), found.path
            )
        # One proof under the whole log: the tile of its leaf, the right edge's, the nodes'.
        tree_db = StoredSubtrees(conn, ENTRIES)
        assert range_hash(tree_db, 0, ENTRIES) == tree.root()
        fresh = StoredSubtrees(conn, ENTRIES)
        path = inclusion_path(fresh, 3, ENTRIES)
        assert verify_inclusion(3, ENTRIES, log[3], path, tree.root())
        assert fresh.reads <= 3 < -(-ENTRIES // 256), "a few tiles, not every leaf"


def test_missing_nodes_are_computed_and_written_back(runtime, log):
    kept = stored_nodes(runtime)
    with runtime.pool.connection() as conn:
        conn.execute("DELETE FROM audit_nodes")
    with runtime.pool.connection() as conn:
        proof = entry_proof(conn, 10, ENTRIES)
        assert verify_inclusion(10, ENTRIES, log[10], proof.path, root_at(log, ENTRIES))
    assert stored_nodes(runtime) == kept, "the nodes the proof needed are stored again"
    with runtime.pool.connection() as conn:
        assert verify(conn, runtime.audit.key).ok


def test_a_changed_node_is_refused_and_verify_names_it(runtime, log):
    with runtime.pool.connection() as conn:
        conn.execute("UPDATE audit_nodes SET hash = %s WHERE level = 8 AND idx = 1", (b"\0" * 32,))
    with runtime.pool.connection() as conn:
        with pytest.raises(ProofError, match="audit verify"):
            entry_proof(conn, 10, ENTRIES)  # its path goes through node (8, 1)
        with pytest.raises(ProofError, match="audit verify"):
            consistency(conn, 256, ENTRIES)  # [256:512] is one of its hashes
        result = verify(conn, runtime.audit.key)
    assert not result.ok and result.first_bad_seq == 256
    assert "level 8, index 1" in (result.problem or "")


def test_the_migration_fills_in_the_nodes_of_an_existing_log(runtime, log):
    """Migration 0013 computes, in SQL, the nodes of the entries logged before it."""
    import service

    sql = (Path(service.__file__).parent / "migrations" / "0013_audit_nodes.sql").read_text()
    fill = sql[sql.index("DO $$") :]
    kept = stored_nodes(runtime)
    with runtime.pool.connection() as conn:
        conn.execute("DELETE FROM audit_nodes")
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute(fill)
    assert stored_nodes(runtime) == kept and len(kept) == ENTRIES // 256


def test_a_reports_paths_share_their_reads_or_take_one_pass(runtime, log):
    """A few entries' paths come from the stored nodes, their leaf tiles read in one round
    trip; as many entries as a pass over the leaves would read come from that one pass."""
    from service.audit.proofs import head_at, inclusion_paths

    tree = MerkleTree(log)
    with runtime.pool.connection() as conn:
        head = head_at(conn, ENTRIES)
        few = [5, 300, 301, 1099]
        assert inclusion_paths(conn, few, head) == [tree.inclusion_proof(s) for s in few]
        many = list(range(0, ENTRIES, 200))  # 6 entries: 6 tiles of 256 cover the log
        assert inclusion_paths(conn, many, head) == [tree.inclusion_proof(s) for s in many]
        shared = StoredSubtrees(conn, ENTRIES)
        shared.prefetch(few)
        assert shared.reads == 1
        for seq in few:
            inclusion_path(shared, seq, ENTRIES)
        assert shared.reads <= 3, "the leaf tiles in one read, then the nodes' tile(s)"
