"""The audit log's stored tree nodes, so a proof reads a few hundred hashes instead of every leaf.

Every complete subtree whose level is a multiple of ``STORED_EVERY`` (256 leaves, 65,536, …) has
its hash in ``audit_nodes``, written by the append that completes it, in the same transaction
(``store_completed``). Any complete subtree's hash is then at most one read away: the 256 hashes
one stored level below it (or the leaf hashes), paired up to it (``StoredSubtrees``). An inclusion
or consistency proof asks for about two subtrees a level, so it reads a handful of such tiles: its
cost grows with the log's height, not its size.

A stored node that is missing (entries appended before migration 0013, or by a process that
predates it) is computed from the tile below and written back; ``chopmark audit verify`` checks
every stored node against the leaves.
"""

from __future__ import annotations

from collections.abc import Iterable

import psycopg
import psycopg.rows

from provenance.merkle import node_hash

STORED_EVERY = 8  # levels: a node is stored every 8 levels (migration 0013 checks the same)
TILE = 1 << STORED_EVERY  # hashes of one stored level under a node of the next


def stored_level(level: int) -> bool:
    return level > 0 and level % STORED_EVERY == 0


def store_completed(conn: psycopg.Connection, completed: Iterable[tuple[int, int, bytes]]) -> None:
    """Keep the subtrees an append completed (``Frontier.append``'s ``completed``) that sit on a
    stored level, inside the caller's transaction."""
    rows = [(level, index, digest) for level, index, digest in completed if stored_level(level)]
    if rows:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO audit_nodes (level, idx, hash) VALUES (%s, %s, %s)", rows)


class MissingEntries(LookupError):
    """The log lacks entries below its size (``chopmark audit verify`` says which)."""


def _perfect_root(hashes: list[bytes]) -> bytes:
    """MTH of a power-of-two run of complete subtrees of equal size."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


class StoredSubtrees:
    """``provenance.merkle.Subtrees`` over the log in ``conn`` (entries below ``size``, all
    committed): each tile read once and kept for the life of this object, so many proofs from
    one object (a report) share their reads. Missing stored nodes are computed and, by
    ``write_back``, stored."""

    def __init__(self, conn: psycopg.Connection, size: int) -> None:
        self.conn = conn
        self.size = size
        self._tiles: dict[tuple[int, int], list[bytes]] = {}
        self._memo: dict[tuple[int, int], bytes] = {}
        self.computed: list[tuple[int, int, bytes]] = []  # stored-level nodes not found
        self.reads = 0

    def subtree(self, level: int, index: int) -> bytes:
        if (index + 1) << level > self.size:
            raise ValueError(f"subtree ({level}, {index}) is not complete in {self.size} leaves")
        found = self._memo.get((level, index))
        if found is not None:
            return found
        if level % STORED_EVERY == 0:  # a leaf, or a stored node: an element of its own tile
            digest = self._tile(level, index >> STORED_EVERY)[index & (TILE - 1)]
        else:
            base = level - level % STORED_EVERY
            span = level - base
            first = index << span
            tile = self._tile(base, first >> STORED_EVERY)
            offset = first & (TILE - 1)
            digest = _perfect_root(tile[offset : offset + (1 << span)])
        self._memo[(level, index)] = digest
        return digest

    def _tile(self, base: int, number: int, keep: bool = True) -> list[bytes]:
        """The hashes on level ``base`` (0: the leaves) under the node ``number`` on level
        ``base + STORED_EVERY``, as far as the tree's complete subtrees go; kept for later
        unless ``keep`` is false (a tile read only to compute a missing node: a log with no
        stored nodes is then read tile by tile, never held whole)."""
        key = (base, number)
        tile = self._tiles.get(key)
        if tile is not None:
            return tile
        first = number * TILE
        count = min(TILE, (self.size >> base) - first)
        self.reads += 1
        if base == 0:
            with self.conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
                rows = cur.execute(
                    "SELECT leaf_hash FROM audit_log WHERE seq >= %s AND seq < %s ORDER BY seq",
                    (first, first + count),
                ).fetchall()
            tile = [bytes(r[0]) for r in rows]
            if len(tile) != count:
                raise MissingEntries(
                    f"the log lacks entries among {first}..{first + count - 1}: run chopmark "
                    "audit verify"
                )
        else:
            with self.conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
                rows = cur.execute(
                    "SELECT idx, hash FROM audit_nodes WHERE level = %s AND idx >= %s AND idx < %s",
                    (base, first, first + count),
                ).fetchall()
            stored = {int(i): bytes(h) for i, h in rows}
            tile = []
            for index in range(first, first + count):
                digest = stored.get(index)
                if digest is None:
                    below = self._tile(base - STORED_EVERY, index, keep=False)
                    digest = _perfect_root(below)
                    self.computed.append((base, index, digest))
                tile.append(digest)
        if keep:
            self._tiles[key] = tile
        return tile

    def prefetch(self, seqs: Iterable[int]) -> None:
        """Read the leaf tiles of these entries in one round trip (a report's many paths each
        read their own)."""
        numbers = sorted(
            {seq >> STORED_EVERY for seq in seqs} - {n for b, n in self._tiles if b == 0}
        )
        if not numbers:
            return
        self.reads += 1
        with self.conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
            rows = cur.execute(
                "SELECT l.seq, l.leaf_hash FROM unnest(%s::bigint[]) AS t(n)"
                " JOIN audit_log l ON l.seq >= t.n * %s AND l.seq < least((t.n + 1) * %s, %s)"
                " ORDER BY l.seq",
                (numbers, TILE, TILE, self.size),
            ).fetchall()
        tiles: dict[int, list[bytes]] = {}
        for seq, digest in rows:
            tiles.setdefault(int(seq) >> STORED_EVERY, []).append(bytes(digest))
        for number in numbers:
            tile = tiles.get(number, [])
            if len(tile) == min(TILE, self.size - number * TILE):  # else read (and refused) alone
                self._tiles[(0, number)] = tile

    def write_back(self) -> None:
        """Store the stored-level nodes that were missing and had to be computed (in the
        connection's transaction; a node another process stored meanwhile is left as is)."""
        if not self.computed:
            return
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO audit_nodes (level, idx, hash) VALUES (%s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                self.computed,
            )
        self.computed = []
