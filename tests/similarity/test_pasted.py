"""A work pasted into another picture is found by its outline, and matched on its own."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from similarity import MatchIndex, compute_signals, decode_for_matching, match
from similarity.edits import pasted_into
from similarity.embedded import rescaled
from similarity.matcher import LocalFeatureLookup
from similarity.pasted import find_pasted
from similarity.picture import EvidenceRow, _caption
from tests.similarity.conftest import textured_picture
from tests.similarity.test_embedded import iou
from tests.similarity.test_panels import encoded, grey_of, registry_of


def photo(seed: int, size: tuple[int, int] = (1024, 768)) -> Image.Image:
    """A stand-in for a camera's picture: shapes and colour fields whose edges the lens and the
    sensor spread over a few pixels."""
    return textured_picture(seed, size).filter(ImageFilter.GaussianBlur(1.5))


def pasted(
    work: Image.Image, into: Image.Image, box: tuple[int, int, int, int]
) -> Image.Image:
    out = into.copy()
    x0, y0, x1, y1 = box
    out.paste(work.convert("RGB").resize((x1 - x0, y1 - y0), Image.Resampling.LANCZOS), (x0, y0))
    return out


@pytest.mark.parametrize("box", [(300, 200, 812, 584), (40, 400, 440, 700),
                                 (600, 60, 1000, 360), (0, 0, 500, 380), (520, 380, 1024, 768)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_a_picture_pasted_into_a_photo_is_found_by_its_outline(
    box: tuple[int, int, int, int], fmt: str
) -> None:
    """Inside the photo, along one edge, or in a corner (two sides are the frame's)."""
    picture = pasted(textured_picture(21), photo(22), box)
    grey = grey_of(encoded(picture, fmt))  # at half size: decoded as for matching
    found = find_pasted(grey)
    assert found, "nothing found"
    want = rescaled(box, (picture.height, picture.width), grey.shape)
    assert iou(found[0], want) > 0.9, (found, want)


def test_the_outline_is_found_in_a_reduced_decode() -> None:
    """A camera-sized upload is decoded at a fraction of its size, which blends the outline
    into the pixels either side of it: it is found there too, and reported in the file's
    pixels."""
    box = (1201, 803, 2803, 2005)
    picture = pasted(textured_picture(23, (800, 600)), photo(24, (4000, 3000)), box)
    data = encoded(picture, "JPEG")
    decoded = decode_for_matching(data)
    assert decoded.image.width < 4000  # reduced
    query = compute_signals(decoded)
    parts = [p for p in query.parts if p.kind == "pasted"]
    assert parts and iou(parts[0].box, box) > 0.9, [p.box for p in query.parts]


@pytest.mark.parametrize("seed", range(6))
def test_a_photo_holds_no_pasted_picture(seed: int) -> None:
    assert find_pasted(grey_of(encoded(photo(seed), "JPEG"))) == []


def test_a_straight_edge_a_camera_saw_is_no_outline() -> None:
    """A window in a white wall above a horizon: straight, long and strong, but spread over a
    few pixels as a lens draws it (at the decode's own scale: this picture is not reduced). Nor
    is a shape filled with one colour a pasted picture, however sharp its edges; a picture
    pasted in its place (a poster on the wall) is."""
    wall = np.full((384, 512, 3), 235, np.uint8)
    wall[100:280, 150:350] = (40, 60, 90)  # a dark window
    wall[300:] = (90, 120, 60)  # grass below the horizon
    picture = Image.fromarray(wall).filter(ImageFilter.GaussianBlur(1.3))
    noise = np.random.default_rng(3).normal(0, 3, (384, 512, 3))
    picture = Image.fromarray((np.asarray(picture) + noise).clip(0, 255).astype(np.uint8))
    grey = grey_of(encoded(picture, "JPEG"))
    assert grey.shape == (384, 512)
    assert find_pasted(grey) == []
    sharp = np.asarray(picture).copy()
    sharp[100:280, 150:350] = (40, 60, 90)
    assert find_pasted(grey_of(encoded(Image.fromarray(sharp), "JPEG"))) == []
    for seed in range(25, 29):
        poster = pasted(textured_picture(seed, (400, 360)), picture, (150, 100, 350, 280))
        (box,) = find_pasted(grey_of(encoded(poster, "JPEG")))
        assert iou(box, (150, 100, 350, 280)) > 0.9, (seed, box)


def test_the_edit_of_the_benchmark_is_found() -> None:
    """``similarity.edits.pasted_into`` (the match-quality benchmark's edit): the work at a
    quarter of the photo's area, at a random place."""
    for seed in range(4):
        picture = pasted_into(0.25, [photo(30 + seed)])(
            textured_picture(31 + seed), np.random.default_rng(seed)
        )
        assert find_pasted(grey_of(encoded(picture, "JPEG"))), seed


@pytest.fixture(scope="module")
def registry(artwork: Image.Image) -> tuple[MatchIndex, LocalFeatureLookup]:
    return registry_of(artwork)


def test_a_work_pasted_into_a_photo_is_matched_in_its_outline(
    artwork: Image.Image, registry: tuple[MatchIndex, LocalFeatureLookup]
) -> None:
    """The photo as a whole is no copy of the work; the pasted picture is, with its box (in the
    file's pixels) and how it was found in the evidence and its caption."""
    index, lookup = registry
    box = (380, 240, 800, 555)
    picture = pasted(artwork, photo(40), box)
    query = compute_signals(decode_for_matching(encoded(picture, "JPEG")))
    assert [p.kind for p in query.parts].count("pasted") >= 1
    assert not [m for m in match(query, index, lookup, parts=False) if m.decision == "copy"]
    found = [m for m in match(query, index, lookup) if m.decision == "copy"]
    assert [m.id for m in found] == [1]
    assert found[0].evidence["region_kind"] == "pasted"
    assert iou(found[0].evidence["region"], box) > 0.9  # type: ignore[arg-type]
    caption = _caption(EvidenceRow(artwork, found[0], "artwork 1"))
    assert "in a picture pasted into this one" in caption


def test_an_unregistered_picture_pasted_into_a_photo_matches_nothing(
    registry: tuple[MatchIndex, LocalFeatureLookup],
) -> None:
    index, lookup = registry
    picture = pasted(textured_picture(41), photo(42), (300, 200, 812, 584))
    query = compute_signals(decode_for_matching(encoded(picture, "JPEG")))
    assert [p.kind for p in query.parts].count("pasted") >= 1
    assert match(query, index, lookup) == []


@pytest.mark.parametrize("shape", [(100, 100), (127, 4000), (300, 300), (6000, 200), (130, 129)])
def test_degenerate_pictures_yield_nothing(shape: tuple[int, int]) -> None:
    """Too small to hold a pasted picture, plain, or a long strip: no outline, no error."""
    rng = np.random.default_rng(7)
    assert find_pasted(np.zeros(shape, np.uint8)) == []
    assert find_pasted(np.full(shape, 255, np.uint8)) == []
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    assert find_pasted(noise) == []


def test_a_long_caption_is_broken_to_fit_the_picture(artwork: Image.Image) -> None:
    """Every signal and where the work was found, for a long artwork title: the caption breaks
    between its parts and no text runs past the picture's margin."""
    from PIL import ImageDraw, ImageFont

    from similarity.matcher import Match
    from similarity.picture import BACKGROUND, CAPTION, GAP, PANEL, caption_lines, evidence_picture

    evidence = {"fired": ["pdq", "local_features"], "region": [300, 120, 660, 420],
                "region_kind": "pasted", "pdq": {"distance": 4},
                "local_features": {"inliers": 138, "mirrored": True, "rotation_deg": 0.2}}
    row = EvidenceRow(artwork, Match(7, 0.97, "copy", evidence),
                      "artwork 6903c956-9379-4ec9-bf86-96bb668cd93b")
    font = ImageFont.load_default(size=13)
    width = 2 * PANEL + GAP
    lines = caption_lines(_caption(row), font, width)
    assert len(lines) == 3 and "in a picture pasted into this one" in lines[1]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    assert all(measure.textlength(line, font=font) <= width for line in lines)
    sheet = np.asarray(evidence_picture(photo(50, (768, 576)), [row]))
    below = GAP + PANEL * 3 // 4  # both pictures are 4:3, so their panels end here
    caption = sheet[below : below + CAPTION]
    assert (caption[:, -GAP:] == BACKGROUND).all(), "caption text runs into the right margin"
    assert (caption[:, GAP:-GAP] != BACKGROUND).any(axis=2).sum() > 500, "no caption drawn"
