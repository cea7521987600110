"""Inner-product search over dense descriptors: exact while small, IVF fast-scan PQ once large.

New vectors land in an exact flat index. When that outgrows `flat_max`, its content and all later
vectors go to an inverted-file index over a lower-dimensional projection (the leading
eigenvectors of the vectors' second-moment matrix, so inner products stay comparable with the
exact part), each vector's offset from its list's centroid coded with 4-bit product
quantisation scanned with SIMD ("fast scan"): 32 bytes a vector (one 4-bit code per projected
dimension), tens of thousands of codes per query in a few milliseconds. Coarser settings (48
dimensions, two dimensions per code) lost about a fifth of the true matches at retrieval in the
quality benchmark; 96 dimensions recovered a little more than 64 but tripled the build time.

Lists: about 2 x sqrt(vectors), at most 1024; 16 are probed per query row (`nprobe`). At 1M
works (6M vectors) a list holds about 6000 codes. Earlier settings: 256 lists with three probed
(a list then held 23000 codes at 1M works; 7.2 ms of candidate search), then 1024 lists with six
probed (4.4 ms), then four. The approximate-index quality benchmark
(`bench/results/match_quality_ivf.md`) and the recall benchmark at 1M
(`bench/results/match_recall_at_scale.md`) give their recall.

The IVF is trained once, on the vectors present when it is created. `needs_rebuild` turns true
once the collection has grown `rebuild_growth` times since then; rebuilding from the stored rows
(a fresh index and one bulk add) trains it again. Searches look at both parts and merge by
similarity. Not thread-safe by itself.

A search of many rows in a large index is split in two: a helper thread scans one half while the
caller scans the other (`start_search`; see `similarity.threads`). Rows are independent: the
neighbours are the same either way (fast-scan similarities may differ in the sixth decimal, as
its lookup tables are rescaled per batch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from similarity.threads import Deferred, helper_threads


@dataclass(frozen=True)
class DenseStoreConfig:
    """Sizes and search effort of the dense index."""

    flat_max: int = 50_000
    projected_dim: int = 64
    pq_subquantizers: int = 64  # one 4-bit code per projected dimension: 32 bytes a vector
    # The codes describe each vector's offset from its list's centroid, not the vector itself:
    # the offsets spread far less, so the same 32 bytes order near works far better. Among 1M
    # works, 234 of 240 edited copies found against 229 with codes of whole vectors, at the
    # same search time (bench/results/match_recall_at_scale.md). Stores saved before this
    # field existed hold codes of whole vectors (`from_saved`).
    residual: bool = True
    # Lists searched: search effort, not structure, so a snapshot is searched with this code's
    # (`from_saved`), or as the service is told (`CHOPMARK_INDEX_NPROBE`, `set_nprobe`). Among
    # 1M works, with the 48 nearest ranked again by their stored vectors
    # (bench/results/match_recall_at_scale.md): 16 lists find 234 of 240 edited copies, 24 find
    # 237 for about 0.5 ms more a match, 48 find 238 (as many as among the real works alone)
    # for about 1.5 ms more than 24.
    nprobe: int = 16
    min_lists: int = 32
    max_lists: int = 1024
    train_points_per_list: int = 40
    rebuild_growth: float = 8.0
    seed: int = 1234
    add_chunk: int = 262_144
    split_min: int = 200_000  # vectors below which a search is too short to share with a helper


    def codes_like(self, other: DenseStoreConfig) -> bool:
        """Whether a store built with ``other`` codes its vectors as one built with this
        configuration does (what a search can find, not how hard it looks)."""
        return (self.projected_dim, self.pq_subquantizers, self.residual) == (
            other.projected_dim,
            other.pq_subquantizers,
            other.residual,
        )

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> DenseStoreConfig:
        """A saved store's configuration: its structure as saved, this code's search effort."""
        return cls(**{"residual": False, **saved, "nprobe": cls.nprobe})


class DenseStore:
    """Vectors keyed by int64 ids, searched by inner product."""

    def __init__(self, dim: int, config: DenseStoreConfig = DenseStoreConfig()) -> None:
        self.dim = dim
        self.config = config
        self.flat = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self.ivf: faiss.IndexIVFPQFastScan | None = None
        self.projection: np.ndarray | None = None  # (dim, projected_dim)
        self.trained_on = 0

    @property
    def ntotal(self) -> int:
        return int(self.flat.ntotal) + (int(self.ivf.ntotal) if self.ivf is not None else 0)

    def set_nprobe(self, nprobe: int) -> None:
        """Probe ``nprobe`` lists from now on (never more than the index has)."""
        if nprobe < 1:
            raise ValueError(f"nprobe must be 1 or more, not {nprobe}")
        self.config = replace(self.config, nprobe=nprobe)
        if self.ivf is not None:
            self.ivf.nprobe = min(nprobe, self.ivf.nlist)

    @property
    def needs_rebuild(self) -> bool:
        """True once the IVF holds many times what it was trained on."""
        return self.ivf is not None and self.ntotal > self.trained_on * self.config.rebuild_growth

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors (float32 or float16; converted chunk by chunk when large)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if not len(ids):
            return
        if self.ivf is None and self.flat.ntotal + len(ids) <= self.config.flat_max:
            self.flat.add_with_ids(np.ascontiguousarray(vectors, np.float32), ids)
            return
        if self.ivf is None:
            self._create_ivf(ids, vectors)
        self._add_ivf(ids, vectors)
        if self.flat.ntotal:
            flat_ids = faiss.vector_to_array(self.flat.id_map).astype(np.int64)
            self._add_ivf(flat_ids, self.flat.index.reconstruct_n(0, self.flat.ntotal))
            self.flat = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))

    def _project(self, vectors: np.ndarray) -> np.ndarray:
        assert self.projection is not None
        return np.ascontiguousarray(vectors.astype(np.float32, copy=False) @ self.projection)

    def _add_ivf(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        assert self.ivf is not None
        step = self.config.add_chunk
        for i in range(0, len(ids), step):
            self.ivf.add_with_ids(self._project(vectors[i : i + step]), ids[i : i + step])

    def _create_ivf(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Train projection and IVF on a sample of the flat part and the incoming vectors."""
        c = self.config
        rng = np.random.default_rng(c.seed)
        total = len(ids) + int(self.flat.ntotal)
        nlist = int(min(c.max_lists, max(c.min_lists, 2 * math.sqrt(total))))
        n_new = min(len(ids), max(1, nlist * c.train_points_per_list))
        parts = [np.asarray(vectors[np.sort(rng.choice(len(ids), n_new, replace=False))],
                            np.float32)]
        if self.flat.ntotal:
            parts.append(self.flat.index.reconstruct_n(0, self.flat.ntotal))
        sample = np.concatenate(parts)
        self.projection = _leading_directions(sample, c.projected_dim)
        projected = self._project(sample)
        d = c.projected_dim
        ivf = faiss.IndexIVFPQFastScan(
            faiss.IndexFlatIP(d), d, nlist, c.pq_subquantizers, 4, faiss.METRIC_INNER_PRODUCT
        )
        ivf.by_residual = c.residual
        ivf.cp.seed = c.seed
        ivf.cp.niter = 10
        ivf.cp.min_points_per_centroid = 1
        ivf.train(projected)
        ivf.nprobe = min(c.nprobe, nlist)  # more than there are: missing lists, wrong answers
        self.ivf = ivf
        self.trained_on = total

    def remove(self, ids: np.ndarray) -> None:
        if not len(ids):
            return
        sel = faiss.IDSelectorBatch(np.ascontiguousarray(ids, np.int64))
        self.flat.remove_ids(sel)
        if self.ivf is not None:
            self.ivf.remove_ids(sel)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) each (nq, k'), best first, -1 ids for empty slots."""
        return self.start_search(queries, k)()

    def start_search(
        self, queries: np.ndarray, k: int
    ) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
        """Begin `search`: with many rows in a large index, a helper thread takes half of them
        now. The returned call scans the rest and gives the same result as `search`."""
        queries = np.ascontiguousarray(queries, np.float32)
        if len(queries) < 2 or self.ntotal < self.config.split_min or not helper_threads():
            return lambda: self._search(queries, k)
        half = len(queries) // 2
        first = Deferred(lambda: self._search(queries[:half], k))

        def finish() -> tuple[np.ndarray, np.ndarray]:
            try:
                rest = self._search(queries[half:], k)
            finally:
                head = first.result()  # never left scanning after the caller has moved on
            return np.concatenate([head[0], rest[0]]), np.concatenate([head[1], rest[1]])

        return finish

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        results = []
        if self.flat.ntotal:
            results.append(self.flat.search(queries, min(k, int(self.flat.ntotal))))
        if self.ivf is not None and self.ivf.ntotal:
            results.append(self.ivf.search(self._project(queries), min(k, int(self.ivf.ntotal))))
        if not results:
            nq = len(queries)
            return np.zeros((nq, 0), np.float32), np.zeros((nq, 0), np.int64)
        sims = np.concatenate([r[0] for r in results], axis=1)
        ids = np.concatenate([r[1] for r in results], axis=1)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)

    def save(self, folder: Path, name: str = "dense") -> None:
        """Write the store's files into `folder`, each named starting with `name`."""
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.flat, str(folder / f"{name}_flat.faiss"))
        ivf_path = folder / f"{name}_ivf.faiss"
        if self.ivf is not None and self.projection is not None:
            faiss.write_index(self.ivf, str(ivf_path))
            np.save(folder / f"{name}_projection.npy", self.projection)
        elif ivf_path.exists():
            ivf_path.unlink()
        meta = {"dim": self.dim, "trained_on": self.trained_on, "config": asdict(self.config)}
        (folder / f"{name}.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path, name: str = "dense") -> DenseStore:
        meta = json.loads((folder / f"{name}.json").read_text())
        store = cls(int(meta["dim"]), DenseStoreConfig.from_saved(meta["config"]))
        store.flat = faiss.read_index(str(folder / f"{name}_flat.faiss"))
        ivf_path = folder / f"{name}_ivf.faiss"
        if ivf_path.exists():
            store.ivf = faiss.read_index(str(ivf_path))
            store.ivf.nprobe = min(store.config.nprobe, store.ivf.nlist)
            store.projection = np.load(folder / f"{name}_projection.npy")
        store.trained_on = int(meta["trained_on"])
        return store


def _leading_directions(sample: np.ndarray, k: int) -> np.ndarray:
    """(d, k): leading eigenvectors of the (uncentred) second-moment matrix of `sample`."""
    x = sample.astype(np.float64)
    moment = x.T @ x / max(1, len(x))
    _, vecs = np.linalg.eigh(moment)
    return np.ascontiguousarray(vecs[:, ::-1][:, :k], np.float32)
