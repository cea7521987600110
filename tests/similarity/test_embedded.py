"""A picture shown inside a screenshot is found, matched on its own, and drawn boxed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from similarity import MatchIndex, compute_signals, match
from similarity.edits import EDITS_BY_NAME
from similarity.embedded import find_embedded
from similarity.local import work_gray
from similarity.matcher import Match
from similarity.picture import EvidenceRow, evidence_picture


def page_with(picture: Image.Image, box: tuple[int, int, int, int], seed: int = 0) -> Image.Image:
    """A 1600 x 1000 page with ``picture`` shown at ``box``, lines of text and icons around it
    (kept 40 px away from it, as a page's margins keep them)."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (1600, 1000), (238, 236, 230))
    draw = ImageDraw.Draw(page)
    draw.rectangle((0, 0, 1599, 39), fill=(30, 40, 60))
    font = ImageFont.load_default(size=14)
    x0, y0, x1, y1 = box

    def clear(left: int, top: int, right: int, bottom: int) -> bool:
        return right < x0 - 40 or left > x1 + 40 or bottom < y0 - 40 or top > y1 + 40

    line = "repost daily art @artfan " * 3
    width = int(draw.textlength(line, font=font))
    for row in range(45):
        x, y = int(rng.integers(10, 1590 - width)), 50 + 21 * row
        if clear(x, y, x + width, y + 16):
            draw.text((x, y), line, font=font, fill=(20, 20, 20))
    for _ in range(10):
        x, y = int(rng.integers(0, 1560)), int(rng.integers(40, 960))
        if clear(x, y, x + 31, y + 31):
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            draw.rectangle((x, y, x + 31, y + 31), fill=colour)
    page.paste(picture.convert("RGB").resize((x1 - x0, y1 - y0)), (x0, y0))
    return page


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"))


def parts(picture: Image.Image) -> list[tuple[int, int, int, int]]:
    full = grey(picture)
    return find_embedded(full, work_gray(full))


def iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.mark.parametrize("box", [(300, 200, 1100, 800), (900, 500, 1300, 800), (0, 40, 1600, 700)])
def test_the_picture_in_a_page_is_found(artwork: Image.Image, box: tuple[int, ...]) -> None:
    page = grey(page_with(artwork, box))
    found = find_embedded(page, work_gray(page))
    assert found, "no embedded picture found"
    assert iou(found[0], box) > 0.8, (found, box)


def test_a_parts_box_is_in_the_files_pixels_when_the_decode_is_reduced(
    artwork: Image.Image,
) -> None:
    import io

    from similarity import decode_image

    box = (300, 200, 1100, 800)
    buf = io.BytesIO()
    page_with(artwork, box).save(buf, "PNG")
    reduced = decode_image(buf.getvalue(), target_side=512)
    assert max(reduced.image.size) < 1600 and (reduced.width, reduced.height) == (1600, 1000)
    (part,) = compute_signals(reduced).parts
    assert iou(part.box, box) > 0.8, part.box


def test_a_plain_picture_has_no_parts(artwork: Image.Image, make_picture) -> None:
    for picture in (artwork, make_picture(5, (480, 640)), make_picture(6, (1200, 500))):
        assert parts(picture) == []
        assert compute_signals(picture).parts == ()


def grass(width: int, height: int) -> Image.Image:
    """Fine texture everywhere, as in most of a photo."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.normal(120, 120, (height, width)).astype(np.float32), (0, 0), 1.5)
    return Image.fromarray(noise.clip(0, 255).astype(np.uint8))


def test_parts_survive_pickling(artwork: Image.Image) -> None:
    import pickle

    signals = compute_signals(page_with(artwork, (300, 200, 1100, 800)))
    back = pickle.loads(pickle.dumps(signals))
    assert [p.box for p in back.parts] == [p.box for p in signals.parts] != []
    assert back.parts[0].signals.local == signals.parts[0].signals.local
    assert back.parts[0].signals.pdq == signals.parts[0].signals.pdq


def test_textured_ground_under_a_flat_sky_is_not_a_part() -> None:
    """A photo's busy lower half touches three sides of the frame: not an embedded picture."""
    sky = Image.new("L", (800, 600), 170)
    sky.paste(grass(800, 300), (0, 300))
    assert parts(sky) == []


def test_too_small_or_too_large_is_not_a_part(artwork: Image.Image) -> None:
    tiny = grey(page_with(artwork, (700, 400, 900, 520)))  # 1.5% of a page of text
    assert find_embedded(tiny, work_gray(tiny)) == []
    border = Image.new("L", (1000, 700), 240)
    border.paste(grass(980, 680), (10, 10))  # 95% of the frame
    assert parts(border) == []


def test_a_long_capture_is_searched_at_a_finer_scale() -> None:
    page = Image.new("L", (1000, 20000), 245)
    page.paste(grass(1000, 700), (0, 9000))  # across the width of a full-page capture
    (box,) = parts(page)
    assert iou(box, (0, 9000, 1000, 9700)) > 0.8, box


def test_a_bilevel_picture_is_not_taken_for_text(artwork: Image.Image) -> None:
    """Black and white alone (a 1-bit scan or fax of a page): all of a dithered picture's
    pixels lie at the two tones, which must not read as paper between strokes."""
    box = (300, 200, 1100, 800)
    page = Image.new("RGB", (1600, 1000), (255, 255, 255))
    page.paste(artwork.resize((800, 600)), box[:2])
    dithered = page.convert("1").convert("L")
    found = parts(dithered)
    assert found and iou(found[0], box) > 0.8, found


class Registry:
    def __init__(self) -> None:
        self.index = MatchIndex()
        self.local: dict[int, bytes] = {}

    def register(self, work_id: int, picture: Image.Image) -> None:
        signals = compute_signals(picture, for_query=False)
        self.index.add([work_id], [signals])
        self.local[work_id] = signals.local

    def lookup(self, ids: list[int]) -> dict[int, bytes]:
        return {i: self.local[i] for i in ids if i in self.local}


@pytest.fixture(scope="module")
def registry(make_picture) -> Registry:  # type: ignore[no-untyped-def]
    reg = Registry()
    for work_id, seed in ((101, 1), (102, 2), (103, 3), (104, 4)):
        reg.register(work_id, make_picture(seed))
    return reg


@pytest.mark.parametrize("edit", ["page_screenshot_40", "page_screenshot_10"])
def test_a_work_in_a_page_screenshot_is_a_copy(
    registry: Registry, artwork: Image.Image, edit: str
) -> None:
    shot = EDITS_BY_NAME[edit].apply(artwork, np.random.default_rng(3))
    signals = compute_signals(shot)
    assert signals.parts
    whole_only = match(compute_signals(shot), registry.index, registry.lookup)
    found = match(signals, registry.index, registry.lookup)
    assert found and found[0].id == 101 and found[0].decision == "copy", found[:1]
    region = found[0].evidence["region"]
    assert isinstance(region, list) and len(region) == 4
    assert any(p.box == tuple(region) for p in signals.parts)
    # the page as a whole is no evidence: the part is what found it
    assert not [m for m in whole_only if m.id == 101 and "region" not in m.evidence]


def test_a_work_padded_to_a_small_share_of_a_white_frame_is_a_copy(
    registry: Registry, artwork: Image.Image
) -> None:
    frame = Image.new("RGB", (6400, 4800), (255, 255, 255))  # the work at 1% of it
    frame.paste(artwork, (2900, 2100))
    signals = compute_signals(frame)
    (part,) = signals.parts
    x0, y0, x1, y1 = part.box
    work_area = 640 * 480
    inside = max(0, min(x1, 3540) - max(x0, 2900)) * max(0, min(y1, 2580) - max(y0, 2100))
    assert inside / work_area > 0.95 and (x1 - x0) * (y1 - y0) < 1.6 * work_area, part.box
    found = match(signals, registry.index, registry.lookup)
    assert found and found[0].id == 101 and found[0].decision == "copy", found[:1]


def test_the_work_is_found_among_larger_pictures(registry: Registry, make_picture) -> None:
    """Two unregistered pictures larger than the work share the page with it."""
    page = Image.new("RGB", (1600, 1000), (240, 240, 236))
    page.paste(make_picture(21, (600, 440)), (20, 20))
    page.paste(make_picture(22, (600, 440)), (20, 540))
    page.paste(make_picture(1, (480, 360)), (1000, 300))  # work 101, the smallest of the three
    signals = compute_signals(page)
    assert len(signals.parts) >= 3
    found = match(signals, registry.index, registry.lookup)
    assert [m.id for m in found if m.decision == "copy"] == [101], found


def test_an_unregistered_picture_in_a_page_is_not_a_copy(
    registry: Registry, make_picture
) -> None:  # type: ignore[no-untyped-def]
    shot = EDITS_BY_NAME["page_screenshot_40"].apply(make_picture(9), np.random.default_rng(4))
    found = match(compute_signals(shot), registry.index, registry.lookup)
    assert not [m for m in found if m.decision == "copy"], found


def test_the_evidence_picture_boxes_the_part(artwork: Image.Image) -> None:
    box = [800, 300, 1400, 750]
    shot = page_with(artwork, tuple(box))  # type: ignore[arg-type]
    m = Match(101, 0.9, "copy", {"fired": ["local_features"], "region": box,
                                 "local_features": {"inliers": 40, "transform_query_to_reference":
                                                    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]}})
    small = shot.resize((400, 250))  # a reduced decode: the region stays in the file's pixels
    picture = np.asarray(
        evidence_picture(small, [EvidenceRow(artwork, m, "work")], query_size=shot.size)
    )
    scale = 320 / 1600
    red = np.array([200, 30, 30])
    # the box's left edge, drawn on the query panel (which starts at 12, 12)
    x = round(12 + box[0] * scale)
    column = picture[round(12 + box[1] * scale) + 5 : round(12 + box[3] * scale) - 5, x]
    assert (np.abs(column.astype(int) - red).sum(axis=1) < 40).mean() > 0.9
