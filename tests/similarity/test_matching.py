"""Copies survive the listed edits; unrelated pictures are not copies; the index behaves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from similarity import ImageSignals, MatchIndex, Thresholds, compute_signals, match
from similarity.edits import EDITS_BY_NAME, combine


class Registry:
    """Registered works: an index plus the stored `local` column, as the service keeps them."""

    def __init__(self) -> None:
        self.index = MatchIndex()
        self.local: dict[int, bytes] = {}

    def register(self, work_id: int, signals: ImageSignals) -> None:
        self.index.add([work_id], [signals])
        self.local[work_id] = signals.local

    def lookup(self, ids: list[int]) -> dict[int, bytes]:
        return {i: self.local[i] for i in ids if i in self.local}


@pytest.fixture(scope="module")
def registry(make_picture) -> Registry:
    reg = Registry()
    for work_id, seed in ((101, 1), (102, 2), (103, 3), (104, 4)):
        reg.register(work_id, compute_signals(make_picture(seed)))
    return reg


COPY_EDITS = [
    "crop_60",
    "scale_25",
    "jpeg_30",
    "hflip",
    "rotate_15",
    "rotate_90",
    "saturation_-30",
    "grayscale",
    "blur",
    "text_20",
    "logo_20",
    "screenshot_border",
]


@pytest.mark.parametrize("edit", COPY_EDITS)
def test_edited_copy_is_copy(registry: Registry, artwork: Image.Image, edit: str) -> None:
    edited = EDITS_BY_NAME[edit].apply(artwork, np.random.default_rng(7))
    found = match(compute_signals(edited), registry.index, registry.lookup)
    assert found and found[0].id == 101 and found[0].decision == "copy", found[:1]
    assert 0.0 <= found[0].score <= 1.0
    json.dumps(found[0].evidence)
    assert found[0].evidence["fired"]


def test_two_edits_combined_is_copy(registry: Registry, artwork: Image.Image) -> None:
    edit = combine(EDITS_BY_NAME["crop_80"], EDITS_BY_NAME["rotate_90"])
    found = match(
        compute_signals(edit.apply(artwork, np.random.default_rng(3))),
        registry.index,
        registry.lookup,
    )
    assert found and found[0].id == 101 and found[0].decision == "copy"
    lf = found[0].evidence["local_features"]
    assert isinstance(lf, dict) and lf["inliers"] >= 18


def test_unrelated_picture_is_not_a_copy(registry: Registry, make_picture) -> None:
    for seed in (11, 12):
        found = match(compute_signals(make_picture(seed)), registry.index, registry.lookup)
        assert not [m for m in found if m.decision == "copy"]


@pytest.mark.parametrize(
    ("edit", "variant"),
    [
        (ImageOps.invert, "negative"),
        (lambda im: ImageOps.invert(ImageOps.mirror(im)), "flip_y_negative"),
        (lambda im: ImageOps.invert(im.convert("L")), "negative"),
    ],
)
def test_a_negative_is_a_copy(registry: Registry, artwork: Image.Image, edit, variant) -> None:
    """A negative (inverting every pixel, in colour or in luma alone, mirrored or not) is a
    copy: its PDQ is about the complement of the work's."""
    found = match(compute_signals(edit(artwork.convert("RGB"))), registry.index, registry.lookup)
    assert found and found[0].id == 101 and found[0].decision == "copy", found[:1]
    pdq = found[0].evidence["pdq"]
    assert isinstance(pdq, dict) and pdq["query_variant"] == variant and pdq["distance"] <= 24


def test_a_mirrored_negative_under_a_caption_is_verified_with_the_negatives_features(
    registry: Registry, artwork: Image.Image
) -> None:
    """PDQ alone is short of a copy here; the local features of the query's negative (not of
    the query, whose intensities are inverted) agree with the work's."""
    edited = EDITS_BY_NAME["text_20"].apply(artwork, np.random.default_rng(7))
    query = ImageOps.invert(ImageOps.mirror(edited.convert("RGB")))
    found = match(compute_signals(query), registry.index, registry.lookup)
    assert found and found[0].id == 101 and found[0].decision == "copy", found[:1]
    pdq, local = found[0].evidence["pdq"], found[0].evidence["local_features"]
    assert isinstance(pdq, dict) and pdq["query_variant"].endswith("negative")
    assert pdq["distance"] > Thresholds().pdq_copy
    assert isinstance(local, dict) and local["inliers"] >= Thresholds().inliers_copy


def test_the_negative_of_an_unrelated_picture_is_not_a_copy(registry, make_picture) -> None:
    for seed in (11, 12):
        negative = ImageOps.invert(make_picture(seed).convert("RGB"))
        found = match(compute_signals(negative), registry.index, registry.lookup)
        assert not found, found


def test_remove_stops_matching_and_readd_works(make_picture, artwork: Image.Image) -> None:
    reg = Registry()
    sig = compute_signals(artwork)
    reg.register(7, sig)
    reg.register(8, compute_signals(make_picture(5)))
    assert match(sig, reg.index, reg.lookup)[0].id == 7
    reg.index.remove([7])
    assert len(reg.index) == 1 and 7 not in reg.index
    assert all(m.id != 7 for m in match(sig, reg.index, reg.lookup))
    assert all(c.id != 7 for c in reg.index.candidates(sig))
    reg.index.add([7], [sig])
    assert match(sig, reg.index, reg.lookup)[0].id == 7
    reg.index.add([7], [sig])  # adding again replaces, never duplicates
    assert len(reg.index) == 2
    assert sum(c.id == 7 and c.signal == "pdq" for c in reg.index.candidates(sig)) == 1


def test_save_load_round_trip(registry: Registry, artwork: Image.Image, tmp_path: Path) -> None:
    query = compute_signals(EDITS_BY_NAME["crop_80"].apply(artwork, np.random.default_rng(1)))
    before = registry.index.candidates(query)
    registry.index.save(tmp_path / "snap")
    loaded = MatchIndex.load(tmp_path / "snap")
    assert len(loaded) == len(registry.index)
    after = loaded.candidates(query)
    assert [(c.id, c.signal, c.variant) for c in after] == [
        (c.id, c.signal, c.variant) for c in before
    ]
    assert [c.distance for c in after] == pytest.approx([c.distance for c in before], abs=1e-4)
    assert MatchIndex.snapshot_version(tmp_path / "snap") is not None


def test_missing_or_damaged_local_features_fall_back_to_pdq(
    registry: Registry, artwork: Image.Image
) -> None:
    query = compute_signals(EDITS_BY_NAME["jpeg_30"].apply(artwork, np.random.default_rng(2)))
    for lookup in (lambda ids: {}, lambda ids: {i: b"garbage" for i in ids}):
        found = match(query, registry.index, lookup)
        top = found[0]
        assert top.id == 101 and top.decision == "copy"
        assert top.evidence["fired"] == ["pdq"] and top.evidence["local_features"] is None
