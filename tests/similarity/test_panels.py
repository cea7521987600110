"""A work set in a grid of other pictures (a collage) is found cell by cell."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from similarity import MatchIndex, compute_signals, decode_for_matching, match
from similarity.edits import grid
from similarity.matcher import LocalFeatureLookup
from similarity.panels import find_panels
from tests.similarity.conftest import textured_picture
from tests.similarity.test_embedded import iou


def collage(
    cells: list[Image.Image], cols: int, rows: int, side: int, gutter: int = 0, border: int = 0
) -> Image.Image:
    """``cells`` (row by row) resized to ``side`` square, ``gutter`` white pixels apart, with a
    white border of ``border`` pixels round them."""
    step = side + gutter
    out = Image.new("RGB", (cols * step - gutter + 2 * border, rows * step - gutter + 2 * border),
                    (255, 255, 255))
    for k, cell in enumerate(cells):
        at = (border + (k % cols) * step, border + (k // cols) * step)
        out.paste(cell.convert("RGB").resize((side, side)), at)
    return out


def cells_of(width: int, height: int, cols: int, rows: int) -> list[tuple[int, int, int, int]]:
    return [
        (width * c // cols, height * r // rows, width * (c + 1) // cols, height * (r + 1) // rows)
        for r in range(rows)
        for c in range(cols)
    ]


def spaced_cells(
    cols: int, rows: int, side: int, gutter: int, border: int
) -> list[tuple[int, ...]]:
    step = side + gutter
    return [
        (border + c * step, border + r * step, border + c * step + side, border + r * step + side)
        for r in range(rows)
        for c in range(cols)
    ]


def grey_of(data: bytes) -> np.ndarray:
    return np.asarray(decode_for_matching(data).image)


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **({"quality": 85} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize(("cols", "rows", "side"), [(2, 1, 300), (1, 2, 300), (2, 2, 300),
                                                    (3, 3, 257), (3, 1, 331), (2, 3, 290)])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_the_cells_of_a_grid_are_found(cols: int, rows: int, side: int, fmt: str) -> None:
    """Equal cells edge to edge, also from a reduced decode (a 3x3 grid of 257-px cells is
    decoded at half size, its seams falling between pixels)."""
    pictures = [textured_picture(100 + k, (400, 320)) for k in range(cols * rows)]
    grey = grey_of(encoded(collage(pictures, cols, rows, side), fmt))
    found = find_panels(grey)
    want = cells_of(grey.shape[1], grey.shape[0], cols, rows)
    assert len(found) == len(want), found
    for box, cell in zip(found, want, strict=True):
        assert iou(box, cell) > 0.9, (box, cell)


@pytest.mark.parametrize(("cols", "rows", "gutter", "border"), [(2, 2, 8, 0), (3, 1, 6, 0),
                                                                (3, 3, 10, 24), (2, 1, 0, 30)])
def test_cells_apart_or_in_a_border_are_found(
    cols: int, rows: int, gutter: int, border: int
) -> None:
    """Cells set apart by plain gutters, and a grid inside a plain border."""
    pictures = [textured_picture(150 + k, (400, 320)) for k in range(cols * rows)]
    picture = collage(pictures, cols, rows, 280, gutter, border)
    found = find_panels(grey_of(encoded(picture, "JPEG")))
    want = spaced_cells(cols, rows, 280, gutter, border)
    assert len(found) == len(want), found
    for box, cell in zip(found, want, strict=True):
        assert iou(box, cell) > 0.9, (box, cell)


@pytest.mark.parametrize("seed", range(6))
def test_a_single_picture_is_no_grid(seed: int) -> None:
    assert find_panels(grey_of(encoded(textured_picture(seed), "JPEG"))) == []


def test_a_straight_edge_off_the_equal_splits_is_no_seam() -> None:
    """Two pictures meeting at 40% of the width, or a horizon there, are not a grid: seams are
    looked for where equal cells put them."""
    left, right = textured_picture(11, (240, 400)), textured_picture(12, (360, 400))
    pair = Image.new("RGB", (600, 400))
    pair.paste(left, (0, 0))
    pair.paste(right, (240, 0))
    assert find_panels(grey_of(encoded(pair, "PNG"))) == []
    sky = np.linspace(230, 150, 400)[:, None, None] * np.ones((1, 600, 3))
    landscape = Image.fromarray(sky.astype(np.uint8), "RGB")
    landscape.paste(textured_picture(13, (600, 240)), (0, 160))
    assert find_panels(grey_of(encoded(landscape, "PNG"))) == []


def registry_of(artwork: Image.Image) -> tuple[MatchIndex, LocalFeatureLookup]:
    """An index of ``artwork`` (id 1) among 15 other works, so that candidates are verified only
    when they stand out from a crowd, as in a real registry."""
    works = [artwork] + [textured_picture(300 + k) for k in range(15)]
    signals = [compute_signals(w, for_query=False) for w in works]
    index = MatchIndex()
    index.add(list(range(1, len(works) + 1)), signals)
    stored = {i: s.pack()["local"] for i, s in enumerate(signals, start=1)}
    return index, lambda ids: {i: stored[i] for i in ids if i in stored}  # type: ignore[misc]


@pytest.fixture(scope="module")
def registry(artwork: Image.Image) -> tuple[MatchIndex, LocalFeatureLookup]:
    return registry_of(artwork)


def test_a_work_in_a_collage_is_matched_in_its_cell(
    artwork: Image.Image, registry: tuple[MatchIndex, LocalFeatureLookup]
) -> None:
    """The collage as a whole is no copy of the work; the cell holding it is, with the cell's
    box (in the file's pixels) and how it was found in the evidence."""
    index, lookup = registry
    others = [textured_picture(200 + k) for k in range(3)]
    picture = grid(2, 2, others)(artwork, np.random.default_rng(5))
    query = compute_signals(decode_for_matching(encoded(picture, "JPEG")))
    assert [p.kind for p in query.parts].count("grid_cell") == 4
    assert not [m for m in match(query, index, lookup, parts=False) if m.decision == "copy"]
    found = [m for m in match(query, index, lookup) if m.decision == "copy"]
    assert [m.id for m in found] == [1]
    region = found[0].evidence["region"]
    assert found[0].evidence["region_kind"] == "grid_cell"
    cells = cells_of(picture.width, picture.height, 2, 2)
    assert max(iou(region, c) for c in cells) > 0.9  # type: ignore[arg-type]


def test_a_collage_of_unregistered_pictures_matches_nothing(
    registry: tuple[MatchIndex, LocalFeatureLookup],
) -> None:
    index, lookup = registry
    picture = grid(3, 3, [textured_picture(400 + k) for k in range(9)])(
        textured_picture(399), np.random.default_rng(1)
    )
    query = compute_signals(decode_for_matching(encoded(picture, "JPEG")))
    assert [p.kind for p in query.parts].count("grid_cell") == 9
    assert match(query, index, lookup) == []


def test_the_evidence_caption_says_the_work_was_found_in_a_cell() -> None:
    from similarity.matcher import Match
    from similarity.picture import EvidenceRow, _caption

    evidence = {"fired": ["local_features"], "region": [6, 518, 506, 1018],
                "region_kind": "grid_cell",
                "local_features": {"inliers": 138, "rotation_deg": -0.3}}
    row = EvidenceRow(textured_picture(1), Match(7, 1.0, "copy", evidence), "artwork 7")
    caption = _caption(row)
    assert "in a cell of a grid" in caption and "rotated 0 deg" in caption
    whole = EvidenceRow(textured_picture(1), Match(7, 1.0, "copy", {"fired": ["pdq"]}), "w")
    assert "grid" not in _caption(whole) and "frame" not in _caption(whole)
