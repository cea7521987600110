"""Line drawings of registered works: edge maps stored, found by a control image or a tracing."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from similarity import MatchIndex, compute_signals, decode_image, match
from similarity.edits import EDITS_BY_NAME, hflip
from similarity.lines import LineMap, line_drawing, overlap, work_edges
from similarity.local import LocalFeatures, extra_of, with_extra, work_gray
from similarity.signals import LINES_VIEW, ImageSignals, _grey_array
from tests.similarity.conftest import jpeg_bytes, textured_picture
from tests.support import photo_like

WORKS = 12


def _upload(img: Image.Image, fmt: str = "PNG") -> Image.Image:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt)
    return decode_image(buf.getvalue()).image


def _edit(name: str, img: Image.Image, seed: int = 0) -> Image.Image:
    return EDITS_BY_NAME[name].apply(img, np.random.default_rng(seed))


@pytest.fixture(scope="module")
def registry() -> tuple[MatchIndex, dict[int, bytes], dict[int, Image.Image]]:
    """WORKS registered pictures (half textured artwork, half synthetic photos)."""
    pictures = {
        i: textured_picture(100 + i) if i % 2 else photo_like(100 + i, (600, 450))
        for i in range(WORKS)
    }
    index = MatchIndex()
    stored: dict[int, bytes] = {}
    for i, img in pictures.items():
        row = compute_signals(img, for_query=False).pack()
        index.add_packed([i], pdq=[row["pdq"]], pdq_quality=[row["pdq_quality"]],
                         dense=[row["dense"]])
        stored[i] = bytes(row["local"])  # type: ignore[arg-type]
    return index, stored, pictures


def _lookup(stored: dict[int, bytes]):
    return lambda ids: {i: stored[i] for i in ids if i in stored}


def test_a_line_map_packs_small_and_refuses_damaged_bytes() -> None:
    edges = work_edges(work_gray(_grey_array(textured_picture(3))))
    assert max(edges.bits.shape) == 128 and edges.bits.any()
    packed = edges.pack()
    assert len(packed) < 2100
    assert np.array_equal(LineMap.unpack(packed).bits, edges.bits)
    for bad in (b"", packed[:-1], b"XX1" + packed[3:], packed + b"\0"):
        with pytest.raises(ValueError):
            LineMap.unpack(bad)


def test_the_edge_map_travels_after_the_local_features() -> None:
    signals = compute_signals(textured_picture(4), for_query=False)
    row = signals.pack()
    local = bytes(row["local"])  # type: ignore[arg-type]
    own = LocalFeatures.unpack(local)
    assert len(own) > 50
    assert np.array_equal(LineMap.unpack(extra_of(local)).bits, signals.lines.bits)
    plain = LocalFeatures.unpack(local).pack()
    assert extra_of(plain) == b"" and with_extra(plain, b"") == plain
    with pytest.raises(ValueError):
        with_extra(local, b"more")  # one section only
    with pytest.raises(ValueError):
        LocalFeatures.unpack(plain + b"trailing")  # not announced by the header
    # the descriptor of the edge map is the stored dense row LINES_VIEW
    stored = np.frombuffer(row["dense"], "<f2").reshape(-1, 128)  # type: ignore[arg-type]
    assert stored.shape[0] == LINES_VIEW + 1
    assert np.allclose(stored[LINES_VIEW], signals.lines.describe(), atol=2e-3)
    again = ImageSignals.from_packed(row)
    assert again.dense_views.shape[0] == LINES_VIEW and again.local == signals.local
    assert np.array_equal(again.lines.bits, signals.lines.bits)
    assert again.pack() == row
    # an index reads pdq and dense alone: the edge map's descriptor still reaches it
    no_local = ImageSignals.from_packed({**row, "local": b""})
    assert no_local.lines is None
    assert np.allclose(no_local.stored_dense, again.stored_dense)
    # query-side signals store the same columns (a stamped output is registered from them)
    query_row = compute_signals(textured_picture(4)).pack()
    assert query_row["dense"] == row["dense"]
    assert LineMap.unpack(extra_of(query_row["local"])).bits.tolist() == signals.lines.bits.tolist()  # type: ignore[arg-type]


@pytest.mark.parametrize("edit", ["canny_control", "canny_control_square", "pencil_tracing"])
def test_line_drawings_are_taken_for_line_drawings(edit: str) -> None:
    for seed in range(3):
        drawing = _upload(_edit(edit, textured_picture(200 + seed), seed))
        assert line_drawing(_grey_array(drawing)) is not None


def test_pictures_are_not_taken_for_line_drawings() -> None:
    flat = Image.new("RGB", (400, 300), (240, 240, 240))
    product = Image.new("RGB", (400, 300), "white")
    product.paste((200, 30, 30), (120, 80, 280, 220))  # a broad shape on a plain ground
    for img in [textured_picture(5), photo_like(6), flat, product]:
        assert line_drawing(_grey_array(_upload(img))) is None


@pytest.mark.parametrize(
    ("edit", "fit"),
    [("canny_control", "stretched"), ("canny_control_square", "stretched"),
     ("canny_control_padded", "padded"), ("canny_control_cropped", "cropped")],
)
def test_an_edge_map_of_a_registered_work_is_a_copy_of_it(registry, edit: str, fit: str) -> None:
    """As made for a control image: at the work's shape, or at a square one the three ways
    front ends fit a picture to it (stretched, padded with bars, cut to its centre)."""
    index, stored, pictures = registry
    for work_id in (2, 4, 6):  # 4:3 pictures: a square control image of them is refitted
        control = _upload(_edit(edit, pictures[work_id], work_id))
        signals = compute_signals(control)
        assert signals.strokes is not None
        found = match(signals, index, _lookup(stored))
        assert found, f"work {work_id} not found by its {edit}"
        best = found[0]
        assert (best.id, best.decision) == (work_id, "copy")
        assert best.evidence["fired"] == ["lines"]
        lines = best.evidence["lines"]
        assert lines["overlap"] >= best.evidence["thresholds"]["lines_copy"]
        assert lines["mirrored"] is False and lines["fit"] == fit
        assert [m.id for m in found if m.decision == "copy"] == [work_id]


def test_a_mirrored_tracing_is_found_and_said_mirrored(registry) -> None:
    index, stored, pictures = registry
    control = _upload(_edit("canny_control", hflip(pictures[7], np.random.default_rng(0))))
    found = match(compute_signals(control), index, _lookup(stored))
    assert (found[0].id, found[0].decision) == (7, "copy")
    assert found[0].evidence["lines"]["mirrored"] is True


def test_line_drawings_of_unregistered_pictures_match_nothing(registry) -> None:
    index, stored, _ = registry
    for seed in range(6):
        source = textured_picture(300 + seed) if seed % 2 else photo_like(300 + seed, (600, 450))
        for edit in ("canny_control", "canny_control_square", "pencil_tracing",
                     "canny_control_padded", "canny_control_cropped"):
            query = compute_signals(_upload(_edit(edit, source, seed)))
            assert match(query, index, _lookup(stored)) == [], (seed, edit)


def test_works_stored_without_an_edge_map_still_match_but_not_by_lines(registry) -> None:
    """Rows of the version before edge maps: matched by every other signal, skipped by lines."""
    _, _, pictures = registry
    signals = compute_signals(pictures[4], for_query=False)
    row = signals.pack()
    old_dense = np.frombuffer(row["dense"], "<f2").reshape(-1, 128)[:LINES_VIEW]  # type: ignore[arg-type]
    old_local = LocalFeatures.unpack(row["local"]).pack()  # type: ignore[arg-type]
    index = MatchIndex()
    index.add_packed([4], pdq=[row["pdq"]], pdq_quality=[row["pdq_quality"]],
                     dense=[old_dense.tobytes()])
    stored = {4: old_local}
    copy = compute_signals(decode_image(jpeg_bytes(pictures[4].resize((400, 300)), 60)))
    assert [(m.id, m.decision) for m in match(copy, index, _lookup(stored))] == [(4, "copy")]
    control = compute_signals(_upload(_edit("canny_control", pictures[4])))
    assert index.line_candidates(control.strokes.describe()) == []
    assert match(control, index, _lookup(stored)) == []


def test_the_edge_index_follows_removals_and_snapshots(registry, tmp_path) -> None:
    _, stored, pictures = registry
    copy = MatchIndex()
    for i in range(WORKS):
        row = compute_signals(pictures[i], for_query=False).pack()
        copy.add_packed([i], pdq=[row["pdq"]], pdq_quality=[row["pdq_quality"]],
                        dense=[row["dense"]])
    control = compute_signals(_upload(_edit("canny_control", pictures[3])))
    assert copy.line_candidates(control.strokes.describe())[0].id == 3
    copy.save(tmp_path / "snap")
    loaded = MatchIndex.load(tmp_path / "snap")
    assert [m.id for m in match(control, loaded, _lookup(stored))] == [3]
    loaded.remove([3])
    assert 3 not in [c.id for c in loaded.line_candidates(control.strokes.describe())]
    assert match(control, loaded, _lookup(stored)) == []


def test_overlap_is_near_zero_for_unrelated_lines_and_high_for_the_same() -> None:
    a = work_edges(work_gray(_grey_array(textured_picture(8))))
    b = work_edges(work_gray(_grey_array(textured_picture(9))))
    assert overlap(a, a)[0] > 0.95
    assert overlap(a, b)[0] < 0.2
    assert overlap(LineMap(np.zeros_like(a.bits)), a) == (0.0, False)


def _comic_page(seed: int) -> Image.Image:
    """Line art: a page of four panels in one fixed layout, each holding random strokes."""
    rng = np.random.default_rng(seed)
    page = Image.new("L", (600, 900), 255)
    draw = ImageDraw.Draw(page)
    for x0, y0, x1, y1 in [(20, 20, 580, 300), (20, 310, 295, 600), (305, 310, 580, 600),
                           (20, 610, 580, 880)]:
        draw.rectangle((x0, y0, x1, y1), outline=0, width=4)
        for _ in range(40):
            x, y = rng.uniform(x0 + 10, x1 - 10), rng.uniform(y0 + 10, y1 - 10)
            r = rng.uniform(5, 40)
            if rng.integers(2):
                draw.ellipse((x - r, y - r * rng.uniform(0.4, 1), x + r, y + r), outline=0,
                             width=2)
            else:
                draw.line([(x, y), (x + rng.uniform(-60, 60), y + rng.uniform(-60, 60))],
                          fill=0, width=2)
    return page.convert("RGB")


def test_line_art_keeps_no_edge_map_and_pages_of_one_layout_are_not_each_others_copies() -> None:
    """Panel borders lie on each other in every page of a layout: line art is matched by the
    usual signals, never stroke by stroke."""
    index = MatchIndex()
    stored: dict[int, bytes] = {}
    for i in range(6):
        signals = compute_signals(_comic_page(i), for_query=False)
        assert signals.lines is None
        row = signals.pack()
        assert len(ImageSignals.from_packed(row).stored_dense) == LINES_VIEW
        index.add_packed([i], pdq=[row["pdq"]], pdq_quality=[row["pdq_quality"]],
                         dense=[row["dense"]])
        stored[i] = bytes(row["local"])  # type: ignore[arg-type]
    for j in range(50, 56):
        query = compute_signals(_upload(_comic_page(j)))
        assert query.strokes is None and query.lines is None  # held by panel borders
        assert [m for m in match(query, index, _lookup(stored)) if m.decision == "copy"] == []
    again = compute_signals(decode_image(jpeg_bytes(_comic_page(3).resize((400, 600)), 70)))
    best = match(again, index, _lookup(stored))[0]
    assert (best.id, best.decision) == (3, "copy")  # a copy of the page, by the usual signals


def _coloured_grid_page(seed: int) -> Image.Image:
    """A coloured comic page in a 3 x 3 panel grid: not line art, but edges mostly borders."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", (600, 900), "white")
    draw = ImageDraw.Draw(page)
    for row in range(3):
        for col in range(3):
            x0, y0 = 20 + col * 190, 20 + row * 290
            box = (x0, y0, x0 + 180, y0 + 280)
            draw.rectangle(box, fill=tuple(int(v) for v in rng.integers(60, 230, 3)),
                           outline=(0, 0, 0), width=4)
            for _ in range(3):
                cx, cy = rng.uniform(x0 + 30, x0 + 150), rng.uniform(y0 + 30, y0 + 250)
                r = rng.uniform(10, 40)
                draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(0, 0, 0), width=2,
                             fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return page


def _matted(picture: Image.Image) -> Image.Image:
    """A photo on a light mat inside a thin dark keyline."""
    mat = Image.new("RGB", (900, 900), (250, 250, 250))
    inner = picture.copy()
    inner.thumbnail((720, 720))
    mat.paste(inner, ((900 - inner.width) // 2, (900 - inner.height) // 2))
    ImageDraw.Draw(mat).rectangle((20, 20, 879, 879), outline=(30, 30, 30), width=3)
    return mat


def test_works_held_by_frames_or_grids_keep_no_edge_map() -> None:
    """Edges that run along panel borders or a mat's keyline are what unrelated pictures share:
    such works are not compared line by line, and their neighbours' edge maps are no copies."""
    works = [_coloured_grid_page(1), _matted(photo_like(401)), _matted(textured_picture(402))]
    index = MatchIndex()
    stored: dict[int, bytes] = {}
    for i, work in enumerate(works):
        signals = compute_signals(work, for_query=False)
        assert signals.lines is None, i
        assert compute_signals(_upload(work)).lines is None, i  # a stamped output the same
        row = signals.pack()
        index.add_packed([i], pdq=[row["pdq"]], pdq_quality=[row["pdq_quality"]],
                         dense=[row["dense"]])
        stored[i] = bytes(row["local"])  # type: ignore[arg-type]
    edge_map = EDITS_BY_NAME["canny_control"]
    for seed in range(4):
        for other in (_coloured_grid_page(100 + seed), _matted(photo_like(410 + seed))):
            query = compute_signals(_upload(edge_map.apply(other, np.random.default_rng(seed))))
            assert [m for m in match(query, index, _lookup(stored)) if m.decision == "copy"] == []
    # the photo itself, without its mat, still keeps one
    assert compute_signals(photo_like(401), for_query=False).lines is not None
