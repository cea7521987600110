"""Pictures set side by side in a regular grid: a collage, an "art dump", a 2x2 post, a 3x3
"art vs artist" grid.

A work in one cell of such a grid is missed by the whole-picture signals (the other cells move
the fingerprints and take most of the local features) and by `similarity.embedded`, which looks
for pictures on a plain ground: cells that meet edge to edge have none. This finds the grid, so
that each cell can be matched on its own as well.

Cells meet at seams or are set apart by gutters. A seam between two pictures is a line across
the whole frame where, line after line, the step from one pixel to the next is larger than
either step beside it: pictures that merely meet there have no reason to continue each other.
Its *strength* is the share of its length where that holds, on the full decode (at work size a
seam blurs into its neighbours); a step over two pixels counts too, where a reduced decode
blends a seam into one pixel. Cells of one grid are equal, so seams are looked for only where an
equal split puts them (1/2, 1/3 and 2/3 of a side, within ``SLACK_PX``), which keeps the lines
a photo or a painting may hold (a horizon, a door frame) from passing for seams wherever they
lie. A split of a side into n equal cells is taken when every one of its seams reaches
``MIN_STRENGTH``, and ``MIN_QUARTER_STRENGTH`` in each quarter of its length (the edge of a
logo or a banner runs along part of it), and stands ``MIN_CONTRAST`` above the lines near it
and above those in step with it where a JPEG's blocks put edges every 8, 4 or 2 pixels (a
heavily compressed, smooth picture has a "seam" at every block edge); or else when a gutter, a
run of flat lines (one colour, within ``FLAT_DEVIATION``) bounded by lines that are not, lies
across each equal split, the cells between the gutters are equal and each is busy (a page's
columns of text have gutters too). Each side is split on its own (3 before 2), so a 2x3 or a
3x1 grid is found as well as a 2x2; a plain border round the whole collage is left out. Cells
under ``MIN_CELL_PX`` are not looked for.

`bench/results/grid_detection.md` has the figures: on the 200 evaluation photos and paintings,
one yields a grid (an extra query per cell; the search costs about 0.4 ms a picture); nearly
all collages of them, edge to edge or with gutters, are found with the right cells. Not found:
cells of unequal sizes, a grid that was cropped afterwards, a work pasted into another picture.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import cv2
import numpy as np

from similarity.embedded import Box, busy_pixels
from similarity.jit import compiled, frozen, warms_up

SPLITS = (3, 2)  # cells per side looked for, finest first
SLACK_PX = 2  # a seam may lie this far from the equal split (rounding, a reduced decode)
NEAR_PX = (3, 16)  # the lines compared with a seam lie this far from it, either side:
NEAR_MEDIAN_PX = 12  # ... its neighbours up to this far, and those in step with it where a
JPEG_PERIODS = (8, 4, 2)  # JPEG's blocks (a reduced decode's too) would put edges every so often
MIN_STEP = 4  # grey levels: a smaller step across a seam does not count
QUARTERS = 4  # a seam's strength in each of this many stretches of it ...
MIN_QUARTER_STRENGTH = 0.3  # ... reaches this
MIN_STRENGTH = 0.5
MIN_CONTRAST = 0.2
MIN_CELL_PX = 96  # in the decode's pixels (smaller cells are too small to match anyway)
INSET = 0.01  # each cell's box is inset by this share of its side (the seam's own pixels)
MAX_GUTTER = 0.05  # gutters between cells: at most this share of the side ...
MIN_GUTTER_PX = 2  # ... and at least this wide
FLAT_DEVIATION = 3.0  # grey levels: a gutter's (or border's) mean deviation from its mean
MAX_BORDER = 0.25  # a border round the whole collage: at most this share of a side
BUSY_SIDE = 128  # cells are judged busy or plain (`embedded.busy_pixels`) at this size ...
MIN_BUSY = 0.3  # ... and a cell is a picture when at least this share of it is busy
LINE_SAMPLES = 256  # a line is read at about this many evenly spaced pixels, or all of them

Span = tuple[int, int]  # first line, end (exclusive)


@dataclass(frozen=True)
class Lines:
    """The columns (``upright``) or the rows of ``picture``, each read at every ``step``-th
    pixel along it."""

    picture: np.ndarray
    upright: bool
    step: int


def find_panels(full: np.ndarray) -> list[Box]:
    """Boxes (in ``full``'s pixels, row by row) of the cells of a grid of pictures in the
    uint8 luma ``full``; empty when it is not such a grid. A picture with flat lines along its
    edges is also looked at without them: first, where they run round all four sides (a
    border round the whole collage), else after the whole frame (a picture in a cell may have
    a flat edge of its own)."""
    if min(full.shape) < MIN_CELL_PX:
        return []
    h, w = full.shape
    whole = (0, 0, w, h)
    inner = _inside_border(full)
    framed = inner[0] > 0 and inner[1] > 0 and inner[2] < w and inner[3] < h
    frames = [inner, whole] if framed else [whole, inner] if inner != whole else [whole]
    for frame in frames:
        boxes, gutters = _grid(full, frame)
        if boxes and gutters and not all(_busy(full[y0:y1, x0:x1]) for x0, y0, x1, y1 in boxes):
            return []  # plain gutters round plain cells: a page's columns, not pictures
        if boxes:
            return boxes
    return []


def _busy(cell: np.ndarray) -> bool:
    """Whether a cell is a picture: much of it varies from pixel to pixel (seen at about
    ``BUSY_SIDE`` pixels), where a page's cells (text on a plain ground) are mostly plain."""
    h, w = cell.shape
    f = min(1.0, BUSY_SIDE / max(h, w))
    small = cv2.resize(cell, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    return float(busy_pixels(small).mean()) >= MIN_BUSY


def _grid(full: np.ndarray, frame: Box) -> tuple[list[Box], bool]:
    """The cells of a grid filling ``frame`` of ``full``, in ``full``'s pixels, and whether
    gutters set any of them apart."""
    x0, y0, x1, y1 = frame
    inner = full[y0:y1, x0:x1]
    h, w = inner.shape
    if min(h, w) < MIN_CELL_PX:
        return [], False
    cols, col_gutters = _cells(_columns_of(inner), w)
    rows, row_gutters = _cells(_rows_of(inner), h)
    if len(cols) == 1 and len(rows) == 1:
        return [], False
    boxes: list[Box] = []
    for top, bottom in rows:
        for left, right in cols:
            dx, dy = max(1, round((right - left) * INSET)), max(1, round((bottom - top) * INSET))
            boxes.append((x0 + left + dx, y0 + top + dy, x0 + right - dx, y0 + bottom - dy))
    return boxes, col_gutters or row_gutters


def _columns_of(picture: np.ndarray) -> Lines:
    return Lines(frozen(picture), True, max(1, picture.shape[0] // LINE_SAMPLES))


def _rows_of(picture: np.ndarray) -> Lines:
    return Lines(frozen(picture), False, max(1, picture.shape[1] // LINE_SAMPLES))


def _inside_border(full: np.ndarray) -> Box:
    """``full`` less the flat lines along its edges (a border round the whole collage), at
    most ``MAX_BORDER`` of a side from each edge."""
    h, w = full.shape
    cols, rows = _columns_of(full), _rows_of(full)
    left = _leading_flat(cols, np.arange(0, int(w * MAX_BORDER)))
    right = _leading_flat(cols, np.arange(w - 1, w - 1 - int(w * MAX_BORDER), -1))
    top = _leading_flat(rows, np.arange(0, int(h * MAX_BORDER)))
    bottom = _leading_flat(rows, np.arange(h - 1, h - 1 - int(h * MAX_BORDER), -1))
    return left, top, w - right, h - bottom


def _leading_flat(lines: Lines, order: np.ndarray) -> int:
    """How many of the lines ``order`` names are flat before the first that is not (read a
    few at a time: most pictures have no border, and the first line says so)."""
    count, step = 0, 1
    while count < len(order):
        flat = _flat(lines, order[count : count + step])
        if not flat.all():
            return count + int(np.argmin(flat))
        count += len(flat)
        step = min(2 * step, 64)
    return count


def _cells(lines: Lines, side: int) -> tuple[list[Span], bool]:
    """The spans of the equal cells a side of ``side`` lines (read by ``lines``) splits into:
    the finest of ``SPLITS`` whose every seam, or every gutter, is found, else the whole; and
    whether gutters split it.

    The lines round every equal split are read in one go, which settles most pictures (no
    line there is strong enough for a seam, and the splits themselves are not flat)."""
    splits = [n for n in SPLITS if side // n >= MIN_CELL_PX]
    lo, hi = 3, side - 4  # a line's strength reads three lines before it and three after
    splits_at = {n: [round(side * k / n) for k in range(1, n)] for n in splits}
    wanted = sorted({c for ats in splits_at.values() for at in ats
                     for c in range(at - SLACK_PX, at + SLACK_PX + 1) if lo <= c <= hi})
    if not wanted:
        return [(0, side)], False
    strength, weakest, flat = _strength_and_flat(lines, np.array(wanted))
    at_line = {c: (float(s), float(q), bool(f))
               for c, s, q, f in zip(wanted, strength, weakest, flat, strict=True)}
    for n in splits:
        cuts: list[Span] = []
        for at in splits_at[n]:
            c = _seam(lines, side, at, at_line)
            if c is None:
                break
            cuts.append((c, c))
        else:
            return _between(cuts, side), False
        if all(at_line.get(at, (0.0, 0.0, False))[2] for at in splits_at[n]):
            gutters = _gutters(lines, side, n)
            if gutters is not None:
                return _between(gutters, side), True
    return [(0, side)], False


def _between(cuts: list[Span], side: int) -> list[Span]:
    """The spans between cuts (each a seam, as an empty span, or a gutter)."""
    edges = [0] + [x for cut in cuts for x in cut] + [side]
    return list(itertools.pairwise(edges))[::2]


def _seam(
    lines: Lines, side: int, at: int, at_line: dict[int, tuple[float, float, bool]]
) -> int | None:
    """``c`` within ``SLACK_PX`` of ``at`` where a seam lies between lines ``c - 1`` and ``c``,
    or None (``at_line``: the strength of those lines, and of their weakest quarter, read
    already)."""
    found = [(at_line[c][0], at_line[c][1], c)
             for c in range(at - SLACK_PX, at + SLACK_PX + 1) if c in at_line]
    if not found:
        return None
    strength, weakest, c = max(found)
    if strength < MIN_STRENGTH or weakest < MIN_QUARTER_STRENGTH:
        return None
    lo, hi = 3, side - 4
    offsets = [s * d for d in range(NEAR_PX[0], NEAR_PX[1] + 1) for s in (-1, 1)]
    near = {d: c + d for d in offsets if lo <= c + d <= hi}
    if not near:
        return None
    strengths = dict(zip(near, _strength_and_flat(lines, np.array(list(near.values())))[0],
                         strict=True))
    nearest = [strengths[d] for d in near if abs(d) <= NEAR_MEDIAN_PX]
    background = float(np.median(nearest)) if nearest else 0.0
    for period in JPEG_PERIODS:  # a JPEG's block edges: a line every 8 pixels, or 4 or 2
        same_phase = [strengths[d] for d in near if d % period == 0]
        if same_phase:
            background = max(background, float(np.median(same_phase)))
    return c if strength - background >= MIN_CONTRAST else None


def _gutters(lines: Lines, side: int, n: int) -> list[Span] | None:
    """The gutters between ``n`` equal cells: at each equal split, the run of flat lines
    nearest to it, bounded by lines that are not flat (the cells' edges), all of about one
    width; None unless every one is found and the cells between them are equal (within
    ``SLACK_PX`` or 2% of their length)."""
    reach = round(MAX_GUTTER * side) + SLACK_PX
    runs: list[Span] = []
    for k in range(1, n):
        centre = side * k / n  # a gutter covers it (it lies within half its width)
        first, end = max(1, round(centre - reach)), min(side - 1, round(centre + reach) + 1)
        flat = _flat(lines, np.arange(first, end))
        best: Span | None = None
        for a, b in _runs(flat):
            if a == 0 or b == len(flat) or not MIN_GUTTER_PX <= b - a <= MAX_GUTTER * side:
                continue  # not bounded inside the window, too thin or too wide
            run = (first + a, first + b)
            if best is None or abs(sum(run) / 2 - centre) < abs(sum(best) / 2 - centre):
                best = run
        if best is None:
            return None
        runs.append(best)
    widths = [b - a for a, b in runs]
    cells = [b - a for a, b in _between(runs, side)]
    if max(widths) - min(widths) > SLACK_PX:
        return None
    if max(cells) - min(cells) > max(SLACK_PX, 0.02 * max(cells)):
        return None
    return runs


def _runs(flags: np.ndarray) -> list[Span]:
    """Runs of true values in ``flags``, as spans."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(change[::2], change[1::2], strict=True)]


def _flat(lines: Lines, at: np.ndarray) -> np.ndarray:
    """Whether each line stays within ``FLAT_DEVIATION`` grey levels of its mean, on average
    (a gutter of one colour, its JPEG noise and the ringing at its edges included)."""
    at = frozen(np.asarray(at, np.int64))
    return _flat_kernel(lines.picture, lines.upright, lines.step, at, FLAT_DEVIATION)


def _strength_and_flat(
    lines: Lines, at: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each line between ``c - 1`` and ``c`` (``c`` in ``at``): its strength, the share of
    its length where the step across it is at least ``MIN_STEP`` and larger than the steps
    beside it, or, where more, the same for a step over two pixels (``c - 1`` to ``c + 1``: a
    reduced decode, a JPEG's DCT scaling, blends a seam that falls between its pixels into one
    of them); that share in the weakest of ``QUARTERS`` stretches of its length (a seam runs
    the whole length; the edge of a logo or a banner, part of it); and whether line ``c`` is
    flat (see `_flat`)."""
    at = frozen(np.asarray(at, np.int64))
    strength, weakest = _strength_kernel(lines.picture, lines.upright, lines.step, at,
                                         MIN_STEP, QUARTERS)
    return strength, weakest, _flat(lines, at)


@compiled
def _read(picture, upright, step, line, k):  # type: ignore[no-untyped-def]
    """Pixel ``k`` (every ``step``-th) along column or row ``line``."""
    return np.int32(picture[k * step, line] if upright else picture[line, k * step])


@compiled
def _flat_kernel(picture, upright, step, at, deviation):  # type: ignore[no-untyped-def]
    length = picture.shape[0] if upright else picture.shape[1]
    n = (length + step - 1) // step
    out = np.empty(len(at), np.bool_)
    for i in range(len(at)):
        # float32 sums in pixel order, as the array expressions this replaces
        total = np.float32(0.0)
        for k in range(n):
            total += np.float32(_read(picture, upright, step, at[i], k))
        mean = total / np.float32(n)
        spread = np.float32(0.0)
        for k in range(n):
            spread += abs(np.float32(_read(picture, upright, step, at[i], k)) - mean)
        out[i] = spread / np.float32(n) <= deviation
    return out


@compiled
def _strength_kernel(picture, upright, step, at, min_step, quarters):  # type: ignore[no-untyped-def]
    length = picture.shape[0] if upright else picture.shape[1]
    n = (length + step - 1) // step
    lines = len(at)
    counts = np.zeros((lines, 2, quarters), np.int64)  # steps over one pixel, over two
    q, q_end = 0, n // quarters
    for k in range(n):
        while k >= q_end:
            q += 1
            q_end = ((q + 1) * n) // quarters
        y = k * step
        for i in range(lines):
            c = at[i]
            if upright:  # lines c - 3 .. c + 3 at one pixel along them
                m3, m2, m1 = (np.int32(picture[y, c - 3]), np.int32(picture[y, c - 2]),
                              np.int32(picture[y, c - 1]))
                p0, p1, p3 = (np.int32(picture[y, c]), np.int32(picture[y, c + 1]),
                              np.int32(picture[y, c + 3]))
            else:
                m3, m2, m1 = (np.int32(picture[c - 3, y]), np.int32(picture[c - 2, y]),
                              np.int32(picture[c - 1, y]))
                p0, p1, p3 = (np.int32(picture[c, y]), np.int32(picture[c + 1, y]),
                              np.int32(picture[c + 3, y]))
            across = abs(p0 - m1)  # over one pixel: c - 1 to c, beside it c - 2 and c + 1
            if across >= min_step and across > abs(m1 - m2) and across > abs(p1 - p0):
                counts[i, 0, q] += 1
            across = abs(p1 - m1)  # over two: c - 1 to c + 1, beside it c - 3 and c + 3
            if across >= min_step and across > abs(m1 - m3) and across > abs(p3 - p1):
                counts[i, 1, q] += 1
    strength = np.empty(lines)
    weakest = np.empty(lines)
    for i in range(lines):
        best, best_weakest = -1.0, 0.0
        for w in range(2):
            least = np.inf
            for q in range(quarters):
                size = ((q + 1) * n) // quarters - (q * n) // quarters
                least = min(least, counts[i, w, q] / size)
            share = counts[i, w].sum() / n
            if w == 0 or share > best:  # the step over two pixels where it is more
                best, best_weakest = share, least
        strength[i] = best
        weakest[i] = best_weakest
    return strength, weakest


@warms_up
def _compile() -> None:
    picture = np.zeros((2 * MIN_CELL_PX, 2 * MIN_CELL_PX), np.uint8)
    picture[:, MIN_CELL_PX:] = 200
    find_panels(picture)
    _strength_and_flat(_rows_of(picture), np.array([MIN_CELL_PX]))
