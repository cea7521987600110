"""An approximate (quantised) dense index at scale ranks near works out of order: its candidates
are ranked again by their stored vectors before the matcher decides what to verify."""

from __future__ import annotations

import numpy as np
import pytest

from similarity import IndexConfig, MatchIndex, Thresholds, match
from similarity.dense import DIM, VIEWS
from similarity.dense_store import DenseStoreConfig
from similarity.index import dense_query_variants, exact_dense
from similarity.local import LocalFeatures
from similarity.signals import ImageSignals

NO_FEATURES = LocalFeatures(
    np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), 256, 256
).pack()

N = 3000


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def works() -> tuple[MatchIndex, np.ndarray]:
    """3,000 works of random views in an index past its exact size, searching one list of 64."""
    rng = np.random.default_rng(8)
    views = _unit(rng.standard_normal((N, len(VIEWS), DIM)))
    index = MatchIndex(
        IndexConfig(dense=DenseStoreConfig(flat_max=500, min_lists=64, max_lists=64, nprobe=1))
    )
    hashes = rng.integers(0, 256, (N, 32), dtype=np.uint8)
    index.add_packed(np.arange(N), pdq=hashes, pdq_quality=np.full(N, 90), dense=views)
    assert index.approximate
    return index, views


def _query(rng: np.random.Generator, view: np.ndarray) -> ImageSignals:
    noisy = _unit(view + 0.09 * rng.standard_normal(DIM))
    return ImageSignals(
        pdq=rng.integers(0, 256, 32, dtype=np.uint8).tobytes(),
        pdq_quality=90,
        dense_views=np.repeat(noisy[None, :], len(VIEWS), axis=0),
        local=NO_FEATURES,
    )


def _exact_distance(query: ImageSignals, views: np.ndarray) -> float:
    _, variants = dense_query_variants(query)
    return float(1.0 - (variants @ views.T).max())


def test_reranking_gives_exact_distances_and_puts_the_nearest_work_first(works):
    index, views = works
    rng = np.random.default_rng(9)
    stored = {i: views[i] for i in range(N)}
    approx_first = exact_first = found = 0
    for target in rng.choice(N, 40, replace=False):
        query = _query(rng, views[target, 0])
        wide = [c for c in index.candidates(query, k=48) if c.signal == "dense"]
        ranked = exact_dense(query, wide, stored, 12)
        assert len(ranked) == min(12, len(wide))
        for c in ranked:
            assert c.distance == pytest.approx(_exact_distance(query, views[c.id]), abs=1e-5)
        assert [c.distance for c in ranked] == sorted(c.distance for c in ranked)
        if target in {c.id for c in wide}:
            found += 1
            approx_first += wide[0].id == target
            exact_first += ranked[0].id == target
    # Among the queries whose work the quantised search found at all, ranking again puts it
    # first every time; the quantised order (4-bit codes) often does not.
    assert found >= 8
    assert exact_first == found > approx_first


def test_a_candidate_without_stored_vectors_is_left_out(works):
    index, views = works
    rng = np.random.default_rng(10)
    query = _query(rng, views[5, 0])
    wide = [c for c in index.candidates(query, k=48) if c.signal == "dense"]
    gone = wide[0].id
    stored = {c.id: views[c.id] for c in wide if c.id != gone}
    assert gone not in {c.id for c in exact_dense(query, wide, stored, 48)}


def test_the_matcher_ranks_again_only_in_an_approximate_index(works):
    index, views = works
    rng = np.random.default_rng(11)
    asked: list[list[int]] = []

    def stored(ids):
        asked.append(list(ids))
        return {i: views[i] for i in ids}

    query = _query(rng, views[17, 0])
    match(query, index, lambda ids: {}, dense_lookup=stored)
    assert asked and 12 < len(asked[0]) <= Thresholds().dense_rerank
    exact = MatchIndex()  # below the exact size: distances are exact already
    exact.add([1, 2], [query, _query(rng, views[18, 0])])
    asked.clear()
    match(query, exact, lambda ids: {}, dense_lookup=stored)
    assert asked == []
