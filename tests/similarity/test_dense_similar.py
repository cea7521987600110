"""Dense descriptors alone make a `similar` match only when the work stands apart from the crowd
of nearest works, or is close in absolute terms: a picture's nearest works by layout are not
evidence by themselves (with 82 real works, 13% of unrelated photos had such a match)."""

from __future__ import annotations

import numpy as np

from similarity import ImageSignals, MatchIndex, Thresholds, match
from similarity.dense import DIM, VIEWS
from similarity.local import LocalFeatures

NO_FEATURES = LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), 256,
                            256).pack()


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _at_distance(q: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine distance (1 - cosine) to the unit vector `q` is `distance`."""
    u = rng.standard_normal(DIM)
    u = _unit(u - (u @ q) * q)
    cos = 1.0 - distance
    return _unit(cos * q + np.sqrt(1.0 - cos * cos) * u)


def _index(q: np.ndarray, distances: dict[int, float], rng: np.random.Generator) -> MatchIndex:
    """Works whose first view is at the given distance from `q`; other views and PDQ far away."""
    index = MatchIndex()
    ids = sorted(distances)
    views = _unit(rng.standard_normal((len(ids), len(VIEWS), DIM)))
    for row, wid in enumerate(ids):
        views[row, 0] = _at_distance(q, distances[wid], rng)
    # Random hashes: about half the bits differ from the query's hash and from its complement
    # (an all-zero hash would be the complement of the query's all-ones: its negative).
    hashes = rng.integers(0, 256, (len(ids), 32), dtype=np.uint8)
    index.add_packed(ids, pdq=hashes, pdq_quality=np.full(len(ids), 90), dense=views)
    return index


def _query(q: np.ndarray) -> ImageSignals:
    views = np.repeat(q[None, :], len(VIEWS), axis=0)
    return ImageSignals(pdq=b"\xff" * 32, pdq_quality=90, dense_views=views, local=NO_FEATURES)


def _found(index: MatchIndex, q: np.ndarray) -> dict[int, object]:
    return {m.id: m for m in match(_query(q), index, lambda ids: {})}


def test_a_crowd_of_nearest_works_is_not_evidence() -> None:
    rng = np.random.default_rng(0)
    q = _unit(np.abs(rng.standard_normal(DIM)))
    crowd = {100 + i: 0.040 + 0.001 * i for i in range(20)}  # all within `dense_similar`
    assert max(crowd.values()) <= Thresholds().dense_similar
    assert _found(_index(q, crowd, rng), q) == {}


def test_a_work_apart_from_the_crowd_is_similar_with_the_crowd_as_evidence() -> None:
    rng = np.random.default_rng(1)
    q = _unit(np.abs(rng.standard_normal(DIM)))
    works = {100 + i: 0.080 + 0.001 * i for i in range(20)} | {7: 0.035}
    found = _found(_index(q, works, rng), q)
    assert list(found) == [7]
    m = found[7]
    assert m.decision == "similar" and m.evidence["fired"] == ["dense"]
    dense = m.evidence["dense"]
    assert abs(dense["distance"] - 0.035) < 2e-3
    assert dense["crowd_distance"] is not None and dense["crowd_distance"] > 0.08

    # The same distance inside a closer crowd (more than half its distance) is no evidence.
    rng = np.random.default_rng(2)
    closer = {100 + i: 0.050 + 0.001 * i for i in range(20)} | {7: 0.035}
    assert _found(_index(q, closer, rng), q) == {}


def test_with_few_works_only_a_close_dense_hit_is_similar() -> None:
    rng = np.random.default_rng(3)
    q = _unit(np.abs(rng.standard_normal(DIM)))
    found = _found(_index(q, {1: 0.015, 2: 0.045, 3: 0.055}, rng), q)
    assert list(found) == [1] and found[1].decision == "similar"
    assert found[1].evidence["dense"]["crowd_distance"] is None
