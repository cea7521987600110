"""In-memory FAISS indexes over registered works, keyed by the database id (int64).

Two indexes find candidates: PDQ hashes in a binary index (range search over the query's eight
rotations/flips) and dense views in an inner-product index (the whole picture under its eight
rotations/flips, and the pictures turned back by small angles as they are and mirrored).
A third holds the descriptors of works' edge maps (the dense row `LINES_VIEW`), searched only
for queries that look like line drawings (`line_candidates`, see `similarity.lines`).
Searches may run concurrently; writes take an exclusive lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from similarity import dense as dense_mod
from similarity.dense_store import DenseStore, DenseStoreConfig
from similarity.hash_store import HashStore, HashStoreConfig
from similarity.pdq import DIHEDRAL_NAMES, PDQ_BYTES
from similarity.rwlock import ReadWriteLock
from similarity.signals import LINES_VIEW, SIGNALS_VERSION, ImageSignals, unpack_dense
from similarity.threads import Deferred, one_openmp_thread

VIEW_SLOTS = 8  # dense vector id = work id * VIEW_SLOTS + view number
MAX_ID = (1 << 59) - 1
PDQ_QUALITY_MIN = 50


@dataclass(frozen=True)
class IndexConfig:
    """Candidate search settings."""

    pdq_radius: int = 48  # Hamming distance within which PDQ hits become candidates
    pdq_quality_min: int = PDQ_QUALITY_MIN
    pdq: HashStoreConfig = field(default_factory=HashStoreConfig)
    dense: DenseStoreConfig = field(default_factory=DenseStoreConfig)


@dataclass(frozen=True)
class Candidate:
    """A registered work worth verifying, and why.

    `distance`: Hamming bits for "pdq"; 1 - cosine similarity for "dense" and "lines".
    `variant` names the rotation/flip of the query that hit and, for "dense", the registered
    view.
    """

    id: int
    signal: Literal["pdq", "dense", "lines"]
    distance: float
    variant: str


def _negative(variant: str) -> str:
    """The name of the negative of a rotation/flip (``negative``, ``rotate_90_negative``)."""
    return "negative" if variant == "original" else f"{variant}_negative"


class MatchIndex:
    """PDQ and dense indexes of registered works."""

    def __init__(self, config: IndexConfig | None = None) -> None:
        self.config = config or IndexConfig()
        self._lock = ReadWriteLock()
        self._pdq = HashStore(self.config.pdq)
        self._dense = DenseStore(dense_mod.DIM, self.config.dense)
        self._lines = DenseStore(dense_mod.DIM, self.config.dense)
        self._ids: set[int] = set()

    def set_nprobe(self, nprobe: int) -> None:
        """Search effort of the approximate dense indexes (the pictures' and the edge maps'):
        lists probed per query row, from now on and in an IVF created later."""
        with self._lock.write():
            self._dense.set_nprobe(nprobe)
            self._lines.set_nprobe(nprobe)
            self.config = replace(self.config, dense=self._dense.config)

    # ---- writing -------------------------------------------------------------------------

    def add(self, ids: Sequence[int], signals: Sequence[ImageSignals]) -> None:
        """Register (or replace) works."""
        if len(ids) != len(signals):
            raise ValueError("ids and signals differ in length")
        self.add_packed(
            ids,
            pdq=[s.pdq for s in signals],
            pdq_quality=[s.pdq_quality for s in signals],
            dense=[s.stored_dense for s in signals],
        )

    def add_packed(
        self,
        ids: Sequence[int] | np.ndarray,
        *,
        pdq: Sequence[bytes] | np.ndarray,
        pdq_quality: Sequence[int] | np.ndarray,
        dense: Sequence[bytes | np.ndarray] | np.ndarray,
    ) -> None:
        """Bulk registration from stored columns.

        `pdq`: 32-byte hashes, or a (n, 32) uint8 array. `dense`: packed `dense` column values,
        (views, DIM) arrays, or one (n, views, DIM) array; a row `LINES_VIEW` goes to the index
        of edge maps.
        """
        id_arr = np.asarray(ids, np.int64).reshape(-1)
        n = len(id_arr)
        if n == 0:
            return
        if id_arr.min() < 0 or id_arr.max() > MAX_ID:
            raise ValueError(f"ids must be in 0..{MAX_ID}")
        if len(np.unique(id_arr)) != n:
            raise ValueError("duplicate ids in one call")
        hashes = _hash_matrix(pdq, n)
        quality = np.asarray(pdq_quality, np.int64).reshape(-1)
        vec_ids, vecs = _dense_rows(id_arr, dense)
        is_lines = vec_ids % VIEW_SLOTS == LINES_VIEW
        keep = quality >= self.config.pdq_quality_min
        with self._lock.write():
            present = [int(i) for i in id_arr if int(i) in self._ids]
            if present:
                self._remove_locked(present)
            if keep.any():
                self._pdq.add(id_arr[keep], hashes[keep])
            self._dense.add(vec_ids[~is_lines], vecs[~is_lines])
            if is_lines.any():
                self._lines.add(vec_ids[is_lines], vecs[is_lines])
            self._ids.update(int(i) for i in id_arr)

    def remove(self, ids: Sequence[int]) -> None:
        """Forget works; unknown ids are ignored."""
        with self._lock.write():
            self._remove_locked([int(i) for i in ids if int(i) in self._ids])

    def _remove_locked(self, ids: list[int]) -> None:
        if not ids:
            return
        arr = np.asarray(ids, np.int64)
        self._pdq.remove(arr)
        vec_ids = (arr[:, None] * VIEW_SLOTS + np.arange(VIEW_SLOTS)[None, :]).ravel()
        self._dense.remove(vec_ids)
        self._lines.remove(arr * VIEW_SLOTS + LINES_VIEW)
        self._ids.difference_update(ids)

    # ---- reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, work_id: object) -> bool:
        return work_id in self._ids

    @property
    def needs_rebuild(self) -> bool:
        """True when the dense IVF has outgrown its training; rebuild from the stored rows
        (a new MatchIndex and one `add_packed`) to train it again."""
        return self._dense.needs_rebuild or self._lines.needs_rebuild

    def candidates(self, query: ImageSignals, k: int = 20) -> list[Candidate]:
        """PDQ hits within `pdq_radius` (all of them) and the `k` nearest works by dense views."""
        one_openmp_thread()
        with self._lock.read():
            # A helper may search the PDQ hashes (and part of the dense scan) meanwhile.
            # Both are waited for before the lock is released, whatever fails.
            pdq = Deferred(lambda: self._pdq_candidates(query))
            try:
                found = self._start_dense(query, k)()
            finally:
                pdq_hits = pdq.result()
            return pdq_hits + found

    def line_candidates(self, descriptor: np.ndarray, k: int = 10) -> list[Candidate]:
        """The `k` works whose edge maps are described most like `descriptor` (the strokes of
        a line drawing, `LineMap.describe`), as it is or mirrored."""
        one_openmp_thread()
        with self._lock.read():
            if not self._lines.ntotal or k <= 0:
                return []
            perms = dense_mod.dihedral_permutations()
            variants = np.stack([descriptor[perms[op]] for op in TURNED_OPS])
            sims, vids = self._lines.start_search(variants, k)()
        best: dict[int, tuple[float, int]] = {}
        for row in range(len(variants)):
            for sim, vid in zip(sims[row], vids[row], strict=True):
                wid = int(vid) // VIEW_SLOTS
                if vid >= 0 and (wid not in best or sim > best[wid][0]):
                    best[wid] = (float(sim), row)
        ranked = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
        return [
            Candidate(id=wid, signal="lines", distance=round(1.0 - sim, 6),
                      variant=dense_mod.OP_NAMES[TURNED_OPS[row]])
            for wid, (sim, row) in ranked
        ]

    def _pdq_candidates(self, query: ImageSignals) -> list[Candidate]:
        if query.pdq_quality < self.config.pdq_quality_min or not self._pdq.ntotal:
            return []
        hashes = list(query.pdq_dihedral) or [query.pdq]
        plain = np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), PDQ_BYTES)
        # A negative of a picture hashes to about the complement of its PDQ (every bit is a
        # brighter- or darker-than-the-median test): the complements find negatives.
        q = np.concatenate([plain, ~plain])
        names = [*DIHEDRAL_NAMES[: len(hashes)], *map(_negative, DIHEDRAL_NAMES[: len(hashes)])]
        best: dict[int, tuple[int, int]] = {}
        for qi, hits in enumerate(self._pdq.within(q, self.config.pdq_radius)):
            for wid, d in hits:
                if wid not in best or d < best[wid][0]:
                    best[wid] = (d, qi)
        return [
            Candidate(id=wid, signal="pdq", distance=float(d), variant=names[qi])
            for wid, (d, qi) in sorted(best.items(), key=lambda kv: kv[1][0])
        ]

    @property
    def approximate(self) -> bool:
        """Whether dense searches run on approximate (quantised) vectors: their distances and
        order are then worth working out again from the stored ones (`exact_dense`)."""
        return self._dense.ivf is not None and self._dense.ivf.ntotal > 0

    def _start_dense(self, query: ImageSignals, k: int) -> Callable[[], list[Candidate]]:
        """Begin the dense search; the returned call finishes it (see `DenseStore.start_search`)."""
        if not self._dense.ntotal or k <= 0:
            return list
        rows, variants = dense_query_variants(query)
        finish = self._dense.start_search(variants, k * 2)
        return lambda: self._dense_hits(rows, *finish(), k)

    def _dense_hits(
        self, rows: list[tuple[int, int]], sims: np.ndarray, vids: np.ndarray, k: int
    ) -> list[Candidate]:
        row = np.broadcast_to(np.arange(sims.shape[0])[:, None], sims.shape).ravel()
        sims, vids = sims.ravel(), vids.ravel()
        ok = vids >= 0
        sims, vids, row = sims[ok], vids[ok], row[ok]
        order = np.argsort(-sims, kind="stable")  # best first; ties keep the row order
        wids = vids[order] // VIEW_SLOTS
        _, first = np.unique(wids, return_index=True)  # each work's best hit
        best = order[np.sort(first)][:k]
        return [
            Candidate(
                id=int(vids[i] // VIEW_SLOTS), signal="dense",
                distance=round(1.0 - float(sims[i]), 6),
                variant=_dense_variant_name(*rows[int(row[i])], int(vids[i] % VIEW_SLOTS)),
            )
            for i in best
        ]

    # ---- snapshots -----------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write a snapshot (FAISS files, ids, settings) into `folder`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock.read():
            self._pdq.save(folder)
            self._dense.save(folder)
            self._lines.save(folder, "lines")
            np.save(folder / "ids.npy", np.fromiter(self._ids, np.int64, len(self._ids)))
            meta = {
                "signals_version": SIGNALS_VERSION,
                "count": len(self._ids),
                "pdq_radius": self.config.pdq_radius,
                "pdq_quality_min": self.config.pdq_quality_min,
                "pdq": asdict(self.config.pdq),
                "dense": asdict(self.config.dense),
            }
            (folder / "index.json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: Path) -> MatchIndex:
        """Read a snapshot written by `save`; refuses one from another signals version."""
        folder = Path(folder)
        meta = json.loads((folder / "index.json").read_text())
        if meta.get("signals_version") != SIGNALS_VERSION:
            raise ValueError(
                f"snapshot holds signals {meta.get('signals_version')!r}, "
                f"this code makes {SIGNALS_VERSION!r}"
            )
        config = IndexConfig(
            pdq_radius=int(meta["pdq_radius"]),
            pdq_quality_min=int(meta["pdq_quality_min"]),
            pdq=HashStoreConfig(**meta["pdq"]),
            dense=DenseStoreConfig.from_saved(meta["dense"]),
        )
        index = cls(config)
        index._pdq = HashStore.load(folder)
        index._dense = DenseStore.load(folder)
        index._lines = DenseStore.load(folder, "lines")
        index._ids = set(np.load(folder / "ids.npy").tolist())
        if len(index._ids) != int(meta["count"]):
            raise ValueError("snapshot is inconsistent (id count)")
        return index

    @staticmethod
    def snapshot_dense_config(folder: Path) -> DenseStoreConfig:
        """How a snapshot's dense index is built (read from its description alone)."""
        meta = json.loads((Path(folder) / "index.json").read_text())
        return DenseStoreConfig.from_saved(meta["dense"])

    @staticmethod
    def snapshot_version(folder: Path) -> str | None:
        """The signals version a snapshot was made with, or None when there is none."""
        path = Path(folder) / "index.json"
        if not path.exists():
            return None
        return str(json.loads(path.read_text()).get("signals_version"))


TURNED_OPS = (0, 4)  # identity and mirror: the rotations/flips searched for turned views


def _query_rows(n_views: int) -> list[tuple[int, int]]:
    """(query view, dihedral op) of each searched row: all eight rotations/flips of the whole
    picture, and only itself and its mirror for each turned view (a small rotation on top of a
    quarter turn is rare, and each row costs a scan)."""
    rows = [(0, op) for op in range(8)]
    rows += [(qview, op) for qview in range(1, n_views) for op in TURNED_OPS]
    return rows


def dense_query_variants(query: ImageSignals) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The rows a dense search asks with: (query view, dihedral op) of each, and the vectors."""
    views = query.dense_query if query.dense_query is not None else query.dense[None, :]
    rows = _query_rows(len(views))
    perms = dense_mod.dihedral_permutations()
    return rows, np.stack([views[qview][perms[op]] for qview, op in rows]).astype(np.float32)


def exact_dense(
    query: ImageSignals, found: Sequence[Candidate], vectors: Mapping[int, np.ndarray], k: int
) -> list[Candidate]:
    """Dense candidates ranked again by their stored vectors (``vectors``: each work's views,
    (n, DIM)), at most ``k``: the distance and the variant that hit as an exact search would
    give them. A candidate with no stored vectors (withdrawn since the index last caught up) is
    left out."""
    rows, variants = dense_query_variants(query)
    ranked = []
    for c in found:
        stored = vectors.get(c.id)
        if stored is None or not len(stored):
            continue
        sims = variants @ np.asarray(stored, np.float32).T  # (rows, views)
        row, view = np.unravel_index(int(np.argmax(sims)), sims.shape)
        ranked.append(
            Candidate(
                id=c.id,
                signal="dense",
                distance=round(1.0 - float(sims[row, view]), 6),
                variant=_dense_variant_name(*rows[int(row)], int(view)),
            )
        )
    ranked.sort(key=lambda c: (c.distance, c.id))
    return ranked[:k]


def _dense_variant_name(qview: int, op: int, view: int) -> str:
    turn = "" if qview == 0 else f"/turned{dense_mod.QUERY_ANGLES[qview - 1]:+g}"
    return f"{dense_mod.OP_NAMES[op]}{turn}/view{view}"


def _hash_matrix(pdq: Sequence[bytes] | np.ndarray, n: int) -> np.ndarray:
    if isinstance(pdq, np.ndarray):
        arr = np.ascontiguousarray(pdq, np.uint8).reshape(n, PDQ_BYTES)
    else:
        raw = b"".join(bytes(h) for h in pdq)
        if len(raw) != n * PDQ_BYTES:
            raise ValueError("every pdq hash must be 32 bytes")
        arr = np.frombuffer(raw, np.uint8).reshape(n, PDQ_BYTES)
    return arr


def _dense_rows(
    ids: np.ndarray, dense: Sequence[bytes | np.ndarray] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(vector ids, vectors) for every view of every work (float16 input stays float16)."""
    if isinstance(dense, np.ndarray) and dense.ndim == 3:
        if len(dense) != len(ids) or dense.shape[2] != dense_mod.DIM:
            raise ValueError("dense must be (len(ids), views, DIM)")
        counts = np.full(len(ids), dense.shape[1])
        vecs = dense.reshape(-1, dense_mod.DIM)
    else:
        rows = list(dense)
        if len(rows) != len(ids):
            raise ValueError("ids and dense differ in length")
        if rows and all(isinstance(r, bytes | bytearray | memoryview) for r in rows):
            sizes = {len(r) for r in rows}
            if len(sizes) == 1:  # the usual case: one frombuffer for all rows
                flat = np.frombuffer(b"".join(rows), "<f2").reshape(-1, dense_mod.DIM)
                counts = np.full(len(ids), len(flat) // len(ids))
                return _view_ids(ids, counts), flat
        mats = [r if isinstance(r, np.ndarray) else unpack_dense(r) for r in rows]
        counts = np.array([len(np.atleast_2d(m)) for m in mats])
        vecs = np.concatenate([np.asarray(m, np.float32).reshape(-1, dense_mod.DIM)
                               for m in mats])
    return _view_ids(ids, counts), vecs


def _view_ids(ids: np.ndarray, counts: np.ndarray) -> np.ndarray:
    if counts.max() > VIEW_SLOTS:
        raise ValueError(f"at most {VIEW_SLOTS} dense views per work")
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    view_no = np.arange(int(counts.sum())) - starts
    return (np.repeat(ids, counts) * VIEW_SLOTS + view_no).astype(np.int64)
