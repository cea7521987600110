"""Line drawings of a work: its stored edge map, and line drawings found by it.

A Canny edge map of a registered work (the control image of a ControlNet), or a pencil tracing
of it, shares no tone and little texture with the work: its PDQ hash, dense descriptor and ORB
features do not agree with the work's. What the two share is where the lines run.

Registration keeps the work's edge map: Canny on the work-size luma (`local.WORK_SIDE`),
reduced to at most `EDGE_SIDE` pixels a side (a block is an edge when any pixel in it is), under
2 KiB packed, and the dense descriptor of that map softened (`describe`). A query that looks
like a line drawing (`line_drawing`: a plain ground, thin strokes) is reduced to a map of its
strokes the same way; its nearest works by the descriptor are its candidates, and a candidate
is confirmed when the query's strokes and the work's edges lie on each other (`overlap`),
as they are or mirrored, fitted to the work the ways front ends fit a control image to the
generation's shape (`fitted_overlaps`): stretched to it, padded with bars (left out of the
comparison), or cut to its centre (compared with the middle of the work).

Works that are themselves line drawings, and works whose edges run mostly along frames, panel
borders, table rules or grids, keep no edge map (`stored_edges`): the tracing of line art is a
copy in the usual sense, and frames and grids are shared by unrelated pictures.

Not found this way: a line drawing cut to a part of the work other than its centre, or to less
than ``CROP_KEEP_MIN`` of its side, turned, or drawn over something else; a tracing of a framed
work or of a comic page.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from similarity import dense as dense_mod
from similarity.local import WORK_SIDE, work_gray

EDGE_SIDE = 128
CANNY_LOW, CANNY_HIGH = 50, 120  # on the work-size luma, after a 3x3 Gaussian
SOFTEN_SIGMA = 0.75  # strokes are softened this much (pixels at EDGE_SIDE) before describing
TOLERANCE = 1.5  # a stroke pixel this close to an edge pixel (at EDGE_SIDE) lies on it
# What a query must look like to be taken for a line drawing: most of it the plain ground, some
# of it strokes, and the strokes thin (an opening with a square of THIN_KERNEL pixels at the
# work size, more on a larger decode, removes at least THIN_SHARE of them).
GROUND_TOLERANCE = 8
GROUND_SHARE_MIN = 0.45
STROKE_SHARE = (0.002, 0.50)
THIN_KERNEL = 5
THIN_SHARE = 0.45
LONG_LINE = 0.25  # of the side: a straight row or column of lines this long is a frame's
FRAMED_SHARE = 0.15  # see `framed`
DENSE_MAP = 0.6  # a stroke map denser than this from the work-size picture is retaken
NULL_SHIFT = 10  # pixels at EDGE_SIDE; see `_beyond_chance`
PAD_BAND = 0.04  # empty bands this share of a side, at both ends: a padded control image
ASPECT_SLACK = 0.1  # shapes further apart than this: a control image may be a centred crop,
CROP_KEEP_MIN = 0.5  # ... of at least this share of the work's side; nor is a query stretched
# to a shape twice as wide (or tall) for its height: a map at most EDGE_SIDE a side, squeezed or
# cut that much, has too few pixels left for its lines to tell works apart
_SHIFTS = tuple((dy * NULL_SHIFT, dx * NULL_SHIFT)
                for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx)
_MAGIC = b"LN1"
_HEADER = struct.Struct("<3sHH")  # magic, height, width


@dataclass(frozen=True)
class LineMap:
    """A picture's lines: (h, w) bool, at most EDGE_SIDE on its longer side."""

    bits: np.ndarray

    def pack(self) -> bytes:
        h, w = self.bits.shape
        return _HEADER.pack(_MAGIC, h, w) + np.packbits(self.bits, axis=None).tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> LineMap:
        """Inverse of `pack`; raises ValueError on foreign or damaged bytes."""
        if len(data) < _HEADER.size:
            raise ValueError("line map: too short")
        magic, h, w = _HEADER.unpack_from(data)
        if magic != _MAGIC or not 0 < h <= EDGE_SIDE or not 0 < w <= EDGE_SIDE:
            raise ValueError("line map: bad header")
        raw = np.frombuffer(data, np.uint8, offset=_HEADER.size)
        if len(raw) != (h * w + 7) // 8:
            raise ValueError("line map: bad length")
        return cls(np.unpackbits(raw, count=h * w).reshape(h, w).astype(bool))

    def describe(self) -> np.ndarray:
        """(DIM,) dense descriptor of the softened lines (see `similarity.dense`)."""
        soft = cv2.GaussianBlur(self.bits.astype(np.float32) * 255, (0, 0), SOFTEN_SIGMA)
        return dense_mod.describe(soft)


def work_edges(gray_work: np.ndarray) -> LineMap:
    """The edge map of a picture, from its work-size luma (uint8)."""
    return LineMap(_reduce_any(_thin_edges(gray_work)))


def _thin_edges(gray_work: np.ndarray) -> np.ndarray:
    """Canny's one-pixel edges (bool) of a work-size luma picture."""
    return cv2.Canny(cv2.GaussianBlur(gray_work, (3, 3), 0), CANNY_LOW, CANNY_HIGH) > 0


def stored_edges(gray: np.ndarray, gray_work: np.ndarray) -> LineMap | None:
    """The edge map a work is registered with (`gray`: its luma as decoded for matching;
    `gray_work`: the same at the work size); None for a work that is itself a line drawing,
    or whose edges run mostly along long straight rows and columns (`framed`).

    A tracing of line art is a copy of it in the usual sense, found by the usual signals. And
    frames, panel borders, table rules and grids are shared by many unrelated pictures: the
    edge maps of two comic pages in one panel layout, or of two photos in one mat, lie on each
    other well beyond chance whatever the panels or the photos hold. Such works are not
    compared line by line."""
    if _looks_like_lines(gray):
        return None
    edges = _thin_edges(gray_work)
    return None if framed(edges) else LineMap(_reduce_any(edges))


def framed(lines: np.ndarray) -> bool:
    """Whether more than FRAMED_SHARE of thin lines (bool) lie on straight rows or columns at
    least LONG_LINE of the picture's side long: frames, panel grids, tables. Edge maps of
    photos and paintings stay under a tenth (at most 0.095 on the evaluation images); comic
    pages, tables and matted photos are at 0.2 to 0.65."""
    total = int(lines.sum())
    if not total:
        return False
    h, w = lines.shape
    b = lines.astype(np.uint8)
    rows = np.ones((1, max(8, round(LONG_LINE * w))), np.uint8)
    cols = np.ones((max(8, round(LONG_LINE * h)), 1), np.uint8)
    long_ = cv2.morphologyEx(b, cv2.MORPH_OPEN, rows) | cv2.morphologyEx(b, cv2.MORPH_OPEN, cols)
    return int(long_.sum()) > FRAMED_SHARE * total


def line_drawing(gray: np.ndarray, gray_work: np.ndarray | None = None) -> LineMap | None:
    """The strokes of a query that looks like a line drawing (dark on light or light on dark);
    None for any other picture, and for line art held by frames, panel borders or grids
    (`framed`), which works keep no edge map of. `gray` is the luma as decoded for matching,
    on which the look is judged (thin strokes stay thin there); `gray_work`, the same at the
    work size, from which the strokes are taken (as works' edges are), is made from it when
    not given. Where thin, close lines average out to grey at the work size and the map comes
    out mostly set (a dense edge map), the strokes are taken from `gray` instead, each block of
    the map set where any stroke pixel falls."""
    if min(gray.shape[:2]) < 16:
        return None
    levels = _Levels(gray)
    if not _looks_like_lines(gray, levels):
        return None
    strokes = levels.strokes(gray)
    if framed(strokes):
        return None
    work = gray_work if gray_work is not None else work_gray(gray)
    reduced = _reduce_any(_Levels(work).strokes(work))
    if reduced.mean() > DENSE_MAP:
        reduced = _reduce_any(strokes)
    return LineMap(reduced) if reduced.any() else None


def _looks_like_lines(gray: np.ndarray, levels: _Levels | None = None) -> bool:
    """Most of the picture the plain ground, some of it strokes, and the strokes thin. Most
    pictures are settled by the histogram alone, before any pass over the pixels."""
    levels = levels or _Levels(gray)
    if levels.ground_share < GROUND_SHARE_MIN:
        return False
    if not STROKE_SHARE[0] <= levels.stroke_share <= STROKE_SHARE[1]:
        return False
    strokes = levels.strokes(gray)
    side = max(THIN_KERNEL, round(THIN_KERNEL * max(gray.shape[:2]) / WORK_SIDE))
    kernel = np.ones((side, side), np.uint8)
    solid = cv2.morphologyEx(strokes.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    # broad shapes on a plain ground (a product shot, a logo) are not strokes
    return 1.0 - solid.sum() / strokes.sum() >= THIN_SHARE


class _Levels:
    """The ground (the median level) of a uint8 picture, how far each level lies from it, and
    the level beyond which a pixel is a stroke, all from the histogram (of every second or fourth
    row and column of a large picture)."""

    def __init__(self, gray: np.ndarray) -> None:
        step = 1 if gray.size <= 1 << 16 else 2 if gray.size <= 1 << 18 else 4
        sample = gray[::step, ::step]  # 16k or more pixels: the same shares as all of them
        hist = np.bincount(sample.ravel(), minlength=256)
        n = int(hist.sum())
        ground = int(np.searchsorted(np.cumsum(hist), (n + 1) / 2))
        self.distance = np.abs(np.arange(256) - ground)
        by_distance = np.bincount(self.distance, weights=hist, minlength=256)
        self.ground_share = float(by_distance[: GROUND_TOLERANCE + 1].sum()) / n
        top = int(np.searchsorted(np.cumsum(by_distance), 0.995 * n))  # 99.5th percentile
        self.level = max(10.0, 0.2 * top)
        self.stroke_share = float(by_distance[int(self.level) + 1 :].sum()) / n

    def strokes(self, gray: np.ndarray) -> np.ndarray:
        return (self.distance > self.level)[gray]


Fit = Literal["stretched", "padded", "cropped"]
FITS: tuple[Fit, ...] = ("stretched", "padded", "cropped")


@dataclass(frozen=True)
class Fitted:
    """How far a query's strokes lie on a work's edges (`overlap`), as they are or mirrored,
    and how the query was fitted to the work: stretched to its shape, with the bars of a
    padded control image left out, or onto the centre part of the work a cropped one shows."""

    score: float
    mirrored: bool
    fit: Fit


def padding_trimmed(query: LineMap) -> LineMap | None:
    """The query without empty bands at both ends of a side (each at least ``PAD_BAND`` of
    it): a control image scaled to fit inside the generation's shape, bars on two sides. None
    when it has no such bands. The bands may take the picture's own empty margins with them;
    `fitted_overlaps` trims the work's edge map the same way."""
    box = _padded_box(query.bits)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    return LineMap(query.bits[y0:y1, x0:x1].copy())


def _padded_box(bits: np.ndarray) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1) of ``bits`` without the empty bands at both ends of a side that are
    each at least ``PAD_BAND`` of it; None when there are none."""
    box = _stroke_box(bits, tall=True, wide=True)
    if box is None:
        return None
    y0, y1, x0, x1 = box
    h, w = bits.shape
    tall = min(y0, h - y1) >= PAD_BAND * h  # bars above and below
    wide = min(x0, w - x1) >= PAD_BAND * w  # bars left and right
    if not (tall or wide):
        return None
    return ((y0, y1) if tall else (0, h)) + ((x0, x1) if wide else (0, w))


def _stroke_box(bits: np.ndarray, *, tall: bool, wide: bool) -> tuple[int, int, int, int] | None:
    """(y0, y1, x0, x1): ``bits`` less its empty rows at the top and bottom (``tall``) and its
    empty columns at either side (``wide``); None when no bit is set."""
    rows, cols = np.flatnonzero(bits.any(axis=1)), np.flatnonzero(bits.any(axis=0))
    if not len(rows):
        return None
    h, w = bits.shape
    y0, y1 = (int(rows[0]), int(rows[-1]) + 1) if tall else (0, h)
    x0, x1 = (int(cols[0]), int(cols[-1]) + 1) if wide else (0, w)
    return y0, y1, x0, x1


def fitted_overlaps(
    query: LineMap, work: LineMap, fits: frozenset[Fit] = frozenset(FITS)
) -> list[Fitted]:
    """`overlap` of the query's strokes with the work's edges under each of ``fits`` that
    applies, the ways control images are fitted to a generation's shape: stretched to it (as
    `overlap`; unless that squeezes a side below ``CROP_KEEP_MIN``); scaled to fit inside it,
    the bars left out (``padded``: `padding_trimmed`, the work's edges trimmed of the same
    empty bands; when the query has bars); or scaled to cover it, the overflow cut off centred
    (``cropped``: the query then shows the work's whole height, or width, and the middle of
    the other side, at the query's shape; when the two shapes differ by more than
    ``ASPECT_SLACK``)."""
    out: list[Fitted] = []
    if "stretched" in fits and _shape_kept(work.bits.shape, query.bits.shape) >= CROP_KEEP_MIN:
        out.append(Fitted(*overlap(query, work), "stretched"))
    box = _padded_box(query.bits) if "padded" in fits else None
    if box is not None:
        y0, y1, x0, x1 = box
        h, w = query.bits.shape
        edges = _stroke_box(work.bits, tall=(y0, y1) != (0, h), wide=(x0, x1) != (0, w))
        if edges is not None:
            wy0, wy1, wx0, wx1 = edges
            out.append(Fitted(*overlap(LineMap(query.bits[y0:y1, x0:x1]),
                                       LineMap(work.bits[wy0:wy1, wx0:wx1])), "padded"))
    centre = _centre_shown(work.bits, query.bits.shape) if "cropped" in fits else None
    if centre is not None:
        out.append(Fitted(*overlap(query, LineMap(centre)), "cropped"))
    return out


def _shape_kept(work: tuple[int, ...], query: tuple[int, ...]) -> float:
    """How far the two shapes (h, w) agree: the smaller of the two ratios of their aspects (1:
    the same shape; 0.5: one is twice as wide for its height as the other). Stretching one to
    the other squeezes a side by that much; cutting one to the other's shape keeps that share
    of a side."""
    a, b = work[1] / work[0], query[1] / query[0]
    return min(a / b, b / a)


def _centre_shown(bits: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The middle part of the work's edge map ``bits`` a picture of ``shape`` (h, w) shows
    when the work was scaled to cover it and cut off centred; None when the shapes agree
    within ``ASPECT_SLACK``, or when that part is under ``CROP_KEEP_MIN`` of the side."""
    h, w = bits.shape
    want = shape[1] / shape[0]  # the query's width over its height
    have = w / h
    kept = _shape_kept(bits.shape, shape)  # the share of the cut side the query shows
    if kept >= 1 / (1 + ASPECT_SLACK) or kept < CROP_KEEP_MIN:
        return None
    if want < have:  # narrower: the whole height, the middle of the width
        keep = max(1, round(h * want))
        x0 = (w - keep) // 2
        return bits[:, x0 : x0 + keep]
    keep = max(1, round(w / want))
    y0 = (h - keep) // 2
    return bits[y0 : y0 + keep, :]


def overlap(query: LineMap, work: LineMap) -> tuple[float, bool]:
    """How far the query's strokes and the work's edges lie on each other, as they are or with
    the query mirrored: (score, mirrored). The score is, of the two shares (strokes near an
    edge; edges near a stroke), the smaller, each beyond what chance gives lines that cover so
    much of the picture (`_beyond_chance`): 0 is chance, 1 is every line on the other."""
    wb = work.bits
    if not wb.any() or not query.bits.any():
        return 0.0, False
    qb = query.bits
    if qb.shape != wb.shape:  # stretched to the work's shape
        qb = cv2.resize(qb.astype(np.uint8), (wb.shape[1], wb.shape[0]),
                        interpolation=cv2.INTER_NEAREST).astype(bool)
    near_work = _distance(wb) <= TOLERANCE
    plain = _agreement(qb, near_work, wb)
    mirrored = _agreement(qb[:, ::-1], near_work, wb)
    return (mirrored, True) if mirrored > plain else (plain, False)


def _agreement(qb: np.ndarray, near_work: np.ndarray, wb: np.ndarray) -> float:
    if not qb.any():
        return 0.0
    near_query = _distance(qb) <= TOLERANCE
    return min(_beyond_chance(qb, near_work), _beyond_chance(wb, near_query))


def _beyond_chance(lines: np.ndarray, near: np.ndarray) -> float:
    """Share of `lines` inside `near`, rescaled so that the share found with `near` moved off
    by NULL_SHIFT pixels (what lines that merely run everywhere score) gives 0 and all of them
    gives 1. A moved map keeps the density and texture of the lines, so busy edges (foliage,
    hatching) that any stroke lies near score no better than sparse ones."""
    y, x = np.nonzero(lines)
    h, w = near.shape
    found = float(near[y, x].mean())
    null = float(np.mean([
        near[np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)].mean() for dy, dx in _SHIFTS
    ]))
    if null >= 1.0:
        return 0.0
    return (found - null) / (1.0 - null)


def _distance(bits: np.ndarray) -> np.ndarray:
    """Distance of every pixel to the nearest line pixel."""
    return cv2.distanceTransform((~bits).astype(np.uint8), cv2.DIST_L2, 3)


def _reduce_any(bits: np.ndarray) -> np.ndarray:
    """At most EDGE_SIDE on the longer side; a pixel of the result is set when any pixel of its
    block is."""
    h, w = bits.shape
    f = EDGE_SIDE / max(h, w)
    if f >= 1:
        return bits.copy()
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(bits.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0
