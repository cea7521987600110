"""Hamming-radius search over 256-bit hashes: exact while small, binary IVF once large.

Up to `flat_max` hashes sit in an exact binary index. Beyond that everything moves to a binary
inverted-file index (k-means on a sample of the hashes), searched in the `nprobe` nearest lists;
near-duplicate hashes share a list almost always, so the few hits that matter survive while a
query touches a small share of the collection. Retrained when the collection has grown
`retrain_growth` times. Not thread-safe by itself.

Sixteen of up to 1024 lists are probed (it was 32): a query's eight rotations/flips each scan
about 1.5% of a large collection, about 0.8 ms in all at 1M hashes. Its effect on recall is in
the approximate-index quality benchmark (`bench/results/match_quality_ivf.md`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

BITS = 256


@dataclass(frozen=True)
class HashStoreConfig:
    """Sizes and search effort of the hash index."""

    flat_max: int = 200_000
    nprobe: int = 16
    min_lists: int = 64
    max_lists: int = 1024
    train_points_per_list: int = 64
    retrain_growth: float = 8.0
    seed: int = 4321


class HashStore:
    """256-bit hashes keyed by int64 ids."""

    def __init__(self, config: HashStoreConfig = HashStoreConfig()) -> None:
        self.config = config
        self.index: faiss.IndexBinary = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(BITS))
        self.is_ivf = False
        self.trained_on = 0

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        ids = np.ascontiguousarray(ids, np.int64)
        hashes = np.ascontiguousarray(hashes, np.uint8)
        if not len(ids):
            return
        total = self.ntotal + len(ids)
        if not self.is_ivf and total <= self.config.flat_max:
            self.index.add_with_ids(hashes, ids)
        elif not self.is_ivf or total > self.trained_on * self.config.retrain_growth:
            self._rebuild(ids, hashes)
        else:
            self.index.add_with_ids(hashes, ids)

    def _rebuild(self, ids: np.ndarray, hashes: np.ndarray) -> None:
        old_ids, old_codes = self._contents()
        ids = np.concatenate([old_ids, ids])
        codes = np.ascontiguousarray(np.concatenate([old_codes, hashes]))
        c = self.config
        nlist = int(min(c.max_lists, max(c.min_lists, 2 * math.sqrt(len(ids)))))
        rng = np.random.default_rng(c.seed)
        n_train = min(len(ids), nlist * c.train_points_per_list)
        sample = codes[np.sort(rng.choice(len(ids), n_train, replace=False))]
        ivf = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(BITS), BITS, nlist)
        ivf.cp.seed = c.seed
        ivf.cp.niter = 8
        ivf.cp.min_points_per_centroid = 1
        ivf.train(sample)
        ivf.nprobe = c.nprobe
        ivf.add_with_ids(codes, ids)
        self.index = ivf
        self.is_ivf = True
        self.trained_on = len(ids)

    def _contents(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.ntotal
        if not n:
            return np.zeros(0, np.int64), np.zeros((0, BITS // 8), np.uint8)
        if not self.is_ivf:
            ids = faiss.vector_to_array(self.index.id_map).astype(np.int64)
            return ids, self.index.index.reconstruct_n(0, n)
        invlists = self.index.invlists
        id_parts, code_parts = [], []
        for list_no in range(self.index.nlist):
            size = invlists.list_size(list_no)
            if not size:
                continue
            id_parts.append(faiss.rev_swig_ptr(invlists.get_ids(list_no), size).copy())
            codes = faiss.rev_swig_ptr(invlists.get_codes(list_no), size * BITS // 8).copy()
            code_parts.append(codes.reshape(size, BITS // 8))
        return np.concatenate(id_parts).astype(np.int64), np.concatenate(code_parts)

    def remove(self, ids: np.ndarray) -> None:
        if len(ids) and self.ntotal:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(ids, np.int64)))

    def within(self, queries: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
        """For each query, (id, distance) of every stored hash at distance <= radius."""
        out: list[list[tuple[int, int]]] = [[] for _ in range(len(queries))]
        if not self.ntotal:
            return out
        lims, dist, labels = self.index.range_search(
            np.ascontiguousarray(queries, np.uint8), radius + 1
        )
        for qi in range(len(queries)):
            for j in range(int(lims[qi]), int(lims[qi + 1])):
                out[qi].append((int(labels[j]), int(dist[j])))
        return out

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index_binary(self.index, str(folder / "pdq.faiss"))
        meta = {"is_ivf": self.is_ivf, "trained_on": self.trained_on, "config": asdict(self.config)}
        (folder / "pdq.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path) -> HashStore:
        meta = json.loads((folder / "pdq.json").read_text())
        store = cls(HashStoreConfig(**meta["config"]))
        store.index = faiss.read_index_binary(str(folder / "pdq.faiss"))
        store.is_ivf = bool(meta["is_ivf"])
        store.trained_on = int(meta["trained_on"])
        if store.is_ivf:
            store.index.nprobe = store.config.nprobe
        return store
