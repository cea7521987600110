"""The index at larger sizes: the move from exact to IVF search, removal and snapshots there."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from similarity import IndexConfig, MatchIndex
from similarity.dense import DIM
from similarity.dense_store import DenseStore, DenseStoreConfig
from similarity.index import VIEW_SLOTS


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_dense_store_moves_to_ivf_and_finds_neighbours() -> None:
    rng = np.random.default_rng(0)
    store = DenseStore(DIM, DenseStoreConfig(flat_max=2000, min_lists=16, max_lists=16,
                                             nprobe=16))
    data = _unit(rng, 5000)
    ids = np.arange(5000, dtype=np.int64) * 8
    store.add(ids[:1500], data[:1500])
    assert store.ivf is None
    store.add(ids[1500:], data[1500:])
    assert store.ivf is not None and store.ntotal == 5000 and store.flat.ntotal == 0
    noisy = data[[10, 2500, 4999]] + 0.01 * rng.standard_normal((3, DIM)).astype(np.float32)
    _, found = store.search(noisy, 3)
    assert list(found[:, 0]) == [80, 20000, 39992]
    store.remove(np.array([20000]))
    _, found = store.search(noisy, 3)
    assert 20000 not in found and store.ntotal == 4999


def test_packed_bulk_load_save_load_and_concurrent_reads(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 4000
    config = IndexConfig(dense=DenseStoreConfig(flat_max=5000, min_lists=16, max_lists=16,
                                                nprobe=16))
    index = MatchIndex(config)
    views = np.stack([_unit(rng, 3) for _ in range(n)])
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    index.add_packed(np.arange(n) + 10, pdq=hashes, pdq_quality=np.full(n, 90), dense=views)
    assert len(index) == n
    index.remove([10, 11])
    assert len(index) == n - 2 and 10 not in index
    index.save(tmp_path / "snap")
    loaded = MatchIndex.load(tmp_path / "snap")
    assert len(loaded) == n - 2 and 12 in loaded and 10 not in loaded

    from similarity.signals import ImageSignals

    query = ImageSignals(pdq=hashes[100].tobytes(), pdq_quality=90, dense_views=views[100],
                         local=b"")
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(20):
                found = loaded.candidates(query, k=5)
                assert found[0].id == 110 and found[0].signal == "pdq"
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    loaded.add_packed([99_999], pdq=hashes[:1], pdq_quality=[90], dense=views[:1])
    for t in threads:
        t.join()
    assert not errors
    assert {c.id for c in loaded.candidates(query, k=5) if c.signal == "dense"} >= {110}


def test_hash_store_moves_to_ivf_and_keeps_near_duplicates() -> None:
    from similarity.hash_store import HashStore, HashStoreConfig

    rng = np.random.default_rng(2)
    store = HashStore(HashStoreConfig(flat_max=1000, min_lists=8, max_lists=8, nprobe=8))
    hashes = rng.integers(0, 256, (3000, 32), dtype=np.uint8)
    store.add(np.arange(1000), hashes[:1000])
    assert not store.is_ivf
    store.add(np.arange(1000, 3000), hashes[1000:])
    assert store.is_ivf and store.ntotal == 3000
    bits = np.unpackbits(hashes[1234])
    bits[rng.choice(256, 20, replace=False)] ^= 1  # a near duplicate, 20 bits away
    hits = store.within(np.packbits(bits)[None, :], 31)[0]
    assert hits == [(1234, 20)]
    store.remove(np.array([1234]))
    assert store.within(np.packbits(bits)[None, :], 31)[0] == []


def test_a_snapshot_keeps_its_structure_and_is_searched_with_this_codes_effort(
    tmp_path: Path,
) -> None:
    """The lists a search probes are effort, not structure: a snapshot saved with fewer is
    searched with as many as this code's default (more probed lists find more near ones)."""
    rng = np.random.default_rng(3)
    config = IndexConfig(dense=DenseStoreConfig(flat_max=500, min_lists=64, max_lists=64, nprobe=1))
    index = MatchIndex(config)
    n = 3000
    views = np.stack([_unit(rng, 3) for _ in range(n)])
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    index.add_packed(np.arange(n), pdq=hashes, pdq_quality=np.full(n, 90), dense=views)
    assert index._dense.ivf is not None and index._dense.ivf.nprobe == 1
    index.save(tmp_path / "snap")
    loaded = MatchIndex.load(tmp_path / "snap")
    dense = loaded._dense
    assert dense.ivf is not None and dense.ivf.nprobe == DenseStoreConfig().nprobe > 1
    assert dense.config.nprobe == loaded.config.dense.nprobe == DenseStoreConfig().nprobe
    assert (dense.config.min_lists, dense.config.max_lists, dense.config.flat_max) == (64, 64, 500)
    assert dense.ivf.nlist == index._dense.ivf.nlist
    # More lists probed: the nearest stored view of noisy queries is found more often.
    queries = views[:200, 0] + 0.08 * rng.standard_normal((200, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    want = np.arange(200) * VIEW_SLOTS  # each work's first view
    _, one = index._dense.search(queries, 1)
    _, many = dense.search(queries, 1)
    assert (many[:, 0] == want).sum() > (one[:, 0] == want).sum()


def _clustered(rng: np.random.Generator, n: int, clusters: int, spread: float) -> np.ndarray:
    """Unit vectors near ``clusters`` centres, as descriptors of pictures gather by kind."""
    centres = _unit(rng, clusters)
    x = centres[rng.integers(0, clusters, n)] + spread * _unit(rng, n)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_codes_of_offsets_from_the_centroid_rank_near_vectors_better() -> None:
    """Codes of each vector's offset from its list's centroid order near vectors better than
    codes of the whole vectors, in the same 32 bytes (every list probed: quantisation alone)."""
    rng = np.random.default_rng(4)
    data = _clustered(rng, 6000, 32, 0.35)
    ids = np.arange(len(data), dtype=np.int64)
    picked = rng.choice(len(data), 300, replace=False)
    queries = data[picked] + 0.02 * _unit(rng, 300)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    found = {}
    for residual in (False, True):
        config = DenseStoreConfig(flat_max=1000, min_lists=32, max_lists=32, nprobe=32,
                                  residual=residual)
        store = DenseStore(DIM, config)
        store.add(ids, data)
        assert store.ivf is not None and store.ivf.by_residual is residual
        _, top = store.search(queries, 1)
        found[residual] = int((top[:, 0] == picked).sum())
    assert found[True] > found[False] + 60, found  # 273 against 149 of 300 when written


def test_a_store_saved_before_offsets_were_coded_loads_as_it_was(tmp_path: Path) -> None:
    """A snapshot whose configuration does not say `residual` holds codes of whole vectors: it
    is searched as such, and keeps saying so when saved again."""
    import json

    rng = np.random.default_rng(5)
    data = _unit(rng, 3000)
    old = DenseStore(DIM, DenseStoreConfig(flat_max=500, min_lists=16, max_lists=16,
                                           residual=False))
    old.add(np.arange(3000, dtype=np.int64), data)
    old.save(tmp_path)
    meta = json.loads((tmp_path / "dense.json").read_text())
    del meta["config"]["residual"]  # as written before the field existed
    (tmp_path / "dense.json").write_text(json.dumps(meta))
    loaded = DenseStore.load(tmp_path)
    assert loaded.config.residual is False and loaded.ivf is not None
    assert loaded.ivf.by_residual is False
    _, top = loaded.search(data[[7, 2900]], 1)
    assert list(top[:, 0]) == [7, 2900]
    loaded.save(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "dense.json").read_text())
    assert again["config"]["residual"] is False
    assert DenseStore(DIM).config.residual is True


def test_a_store_with_fewer_lists_than_it_would_probe_searches_them_all(tmp_path: Path) -> None:
    """Probing more lists than the index has means probing every list: built or loaded, a
    store of 16 lists configured to probe more still finds each stored vector."""
    rng = np.random.default_rng(6)
    data = _unit(rng, 6000)
    store = DenseStore(DIM, DenseStoreConfig(flat_max=1000, min_lists=16, max_lists=16,
                                             nprobe=DenseStoreConfig().nprobe + 8))
    store.add(np.arange(6000, dtype=np.int64), data)
    assert store.ivf is not None and store.ivf.nlist == 16 and store.ivf.nprobe == 16
    store.save(tmp_path)
    for searched in (store, DenseStore.load(tmp_path)):
        _, top = searched.search(data[:100], 1)
        assert (top[:, 0] == np.arange(100)).all()


def test_search_effort_is_set_on_the_index_and_on_an_ivf_made_later() -> None:
    """`set_nprobe` (the service's CHOPMARK_INDEX_NPROBE) reaches both dense stores, an IVF
    created after it, and never probes more lists than there are."""
    import pytest

    rng = np.random.default_rng(7)
    index = MatchIndex(IndexConfig(dense=DenseStoreConfig(flat_max=1500, min_lists=16,
                                                          max_lists=16)))
    index.set_nprobe(5)
    assert index._dense.ivf is None and index.config.dense.nprobe == 5
    n = 1000
    views = np.stack([_unit(rng, 3) for _ in range(n)])
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    index.add_packed(np.arange(n), pdq=hashes, pdq_quality=np.full(n, 90), dense=views)
    dense = index._dense
    assert dense.ivf is not None and dense.ivf.nprobe == 5 and index._lines.config.nprobe == 5
    index.set_nprobe(40)
    assert dense.ivf.nprobe == 16 and index.config.dense.nprobe == dense.config.nprobe == 40
    with pytest.raises(ValueError, match="1 or more"):
        index.set_nprobe(0)
