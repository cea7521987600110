"""Query signals compute their costly parts only when read, with the same values as at once."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from PIL import Image

from similarity import ImageSignals, MatchIndex, Thresholds, compute_signals, match
from similarity.edits import EDITS_BY_NAME


def test_lazy_parts_equal_eager_ones(artwork: Image.Image) -> None:
    lazy = compute_signals(artwork)
    eager = compute_signals(artwork, for_query=False)
    assert lazy.pdq == eager.pdq and lazy.pdq_quality == eager.pdq_quality
    assert np.allclose(lazy.dense, eager.dense, atol=1e-6)
    assert lazy.local == eager.local
    assert np.allclose(lazy.dense_views, eager.dense_views, atol=1e-6)
    assert lazy.local_mirror and lazy.local_mirror != lazy.local
    assert eager.local_mirror is None


def test_signals_are_read_only_and_pickle_whole(artwork: Image.Image) -> None:
    sig = compute_signals(artwork)
    with pytest.raises(AttributeError):
        sig.pdq = b"x"  # type: ignore[misc]
    back = pickle.loads(pickle.dumps(sig))
    assert back._pixels is None  # every part travelled as a value
    assert back.local == sig.local and back.local_mirror == sig.local_mirror
    assert np.array_equal(back.dense_views, sig.dense_views)
    assert back.pdq_dihedral == sig.pdq_dihedral
    with pytest.raises(ValueError):
        ImageSignals(pdq=sig.pdq, pdq_quality=90)


def test_pdq_copy_needs_no_orb_but_a_crop_does(make_picture, artwork: Image.Image) -> None:
    index = MatchIndex()
    local: dict[int, bytes] = {}
    strict = Thresholds(dense_verify_top=1, dense_verify_max=0.0, dense_verify_ratio=0.0)
    for work_id in range(1, strict.dense_reference_rank + 2):
        sig = compute_signals(make_picture(work_id), for_query=False)
        index.add([work_id], [sig])
        local[work_id] = sig.local
    asked: list[list[int]] = []
    rng = np.random.default_rng(4)

    def lookup(ids: list[int]) -> dict[int, bytes]:
        asked.append(list(ids))
        return {i: local[i] for i in ids}

    jpeg = compute_signals(EDITS_BY_NAME["jpeg_50"].apply(artwork, rng))
    found = match(jpeg, index, lookup, thresholds=strict)
    assert found[0].id == 1 and found[0].decision == "copy"
    assert "pdq" in found[0].evidence["fired"]
    assert jpeg._local is None and jpeg._local_mirror is None  # never computed
    assert all(1 not in ids for ids in asked)  # a PDQ copy is not fetched for verification

    cropped = compute_signals(EDITS_BY_NAME["crop_60"].apply(artwork, rng))
    found = match(cropped, index, lookup, thresholds=strict)
    assert found[0].id == 1 and found[0].decision == "copy"
    assert cropped._local is not None
    assert found[0].evidence["local_features"]["inliers"] >= 18  # type: ignore[index]
