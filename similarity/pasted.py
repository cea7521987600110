"""Pictures pasted into another picture: a work set into a photo or a meme template, a picture
on a page, the cells of a collage of unequal cells.

A copy pasted into a larger picture is missed by the whole-picture signals (the picture around
it moves the fingerprints and takes most of the local features), by `similarity.embedded`
(there is no plain ground round it) and by `similarity.panels` (it fills no cell of an equal
grid). What gives it away is its outline: pasting puts two unrelated pictures next to each
other along straight lines, and there, row after row, the step from one pixel to the next is
much larger than the steps beside it. A *sharp seam pixel* is one where the step across a line
is at least ``MIN_STEP`` grey levels and at least ``SHARPNESS`` times the larger step beside it
(plus one), or the same over two pixels, where a reduced decode or a resampling blends the
outline into one pixel. An edge a camera saw (a window frame, a horizon, a door) is spread over
two or three pixels by the lens and the sensor: the steps beside its middle are about as large
as the step across it.

The seam masks are read on every ``SAMPLE``-th row (for the upright sides) and column (for the
level ones). Candidate sides are the lines with a stretch of ``MIN_RUN`` of the frame's shorter
side where at least ``COVERAGE`` of the pixels are sharp seam, at most ``MAX_LINES`` of each
kind (those with the most seam pixels, a line within ``SUPPRESS_PX`` of a stronger one left
out), and the frame's own edges. A rectangle between candidate sides holds a pasted picture
when each of its sides that is not the frame's edge is sharp seam along ``COVERAGE`` of its
length (``LONE_COVERAGE`` when it is the only one: a frame cut in two) and, at the median of
its length, ``SIDE_SHARPNESS`` times the steps beside it; its sides are at least
``MIN_SIDE_PX`` long; it covers ``MIN_SHARE`` to ``MAX_SHARE`` of the frame; and it holds a
picture (``MIN_BUSY`` of it varies from pixel to pixel, where a window or a drawn box filled
with one colour does not). Those with the most seam sides come first, then those whose weakest
side is best covered; a rectangle mostly inside or round one taken already (a picture's outline
run on past a corner to another line) is left out; at most ``MAX_PARTS``.

Not found: an outline along which the pasted picture's edge has about the tone of the picture
round it (only the luma is read), or whose own edge is busier than the step across it; a paste
turned, in perspective or feathered. A flat-coloured, straight-edged shape that a downscale has
sharpened to under a pixel, with a picture inside it, can pass for one (an extra query, not a
wrong match: the part must still be verified as a copy).
`bench/results/pasted_detection.md` has the figures: how many plain photos and paintings yield a
rectangle (each one an extra query), how many pasted pictures are found with the right outline,
and the cost next to the decode.
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from similarity.embedded import Box, busy_pixels
from similarity.jit import compiled, frozen, warms_up

MIN_STEP = 4  # grey levels
SHARPNESS = 2.0  # a seam pixel's step: at least this times (the larger step beside it + 1)
MIN_RUN = 0.15  # a candidate side: a stretch this share of the frame's shorter side long ...
COVERAGE = 0.45  # ... where at least this share are sharp seam pixels (so too a rectangle's side)
LONE_COVERAGE = 0.7  # ... a rectangle's only side that is no edge of the frame: this share
SIDE_SHARPNESS = 1.5  # the step across a side over the larger step beside it, at its median
MAX_LINES = 8  # candidate sides of each kind (upright, level), besides the frame's edges
SUPPRESS_PX = 3  # a candidate line this near a stronger one is left out
MIN_SIDE_PX = 64  # in the decode's pixels
MIN_SHARE = 0.03
MAX_SHARE = 0.85
SAME_BOX = 0.8  # a rectangle this much inside a better one (of its own area) is left out
MAX_PARTS = 2
BUSY_SIDE = 128  # a rectangle is judged busy or plain at this size ...
MIN_BUSY = 0.3  # ... and holds a picture when at least this share of it is busy
SAMPLE = 4  # the seam masks are read on every SAMPLE-th line across the sides


def find_pasted(full: np.ndarray) -> list[Box]:
    """Boxes (in ``full``'s pixels) of pictures pasted into the uint8 luma ``full``: those with
    the most sides that are seams first, then those whose weakest side is the most covered;
    empty for a plain picture."""
    h, w = full.shape
    if min(h, w) < 2 * MIN_SIDE_PX:
        return []
    full = frozen(full)
    window = max(2, round(MIN_RUN * min(h, w) / SAMPLE))
    upright = _sharp_seams(full[::SAMPLE])  # (h / SAMPLE, w): seams between columns
    xs, x_sums = _candidate_lines(upright, window)
    level = _sharp_seams(cv2.transpose(np.ascontiguousarray(full[:, ::SAMPLE])))
    ys, y_sums = _candidate_lines(level, window)
    if not len(xs) and not len(ys):
        return []  # most pictures: no line holds a long stretch of sharp seam
    xs_all, ys_all = _with_edges(xs, w), _with_edges(ys, h)
    # The share of each candidate line that is sharp seam between each pair of the other kind.
    up_share = _share_between(x_sums, xs, xs_all, ys_all, w)  # (len(xs_all), ny, ny)
    level_share = _share_between(y_sums, ys, ys_all, xs_all, h)  # (len(ys_all), nx, nx)
    xi, xj = _pairs(len(xs_all))  # left and right sides
    ya, yb = _pairs(len(ys_all))  # top and bottom
    wide = xs_all[xj] - xs_all[xi] >= MIN_SIDE_PX
    tall = ys_all[yb] - ys_all[ya] >= MIN_SIDE_PX
    xi, xj, ya, yb = xi[wide], xj[wide], ya[tall], yb[tall]
    area = np.outer(xs_all[xj] - xs_all[xi], ys_all[yb] - ys_all[ya])
    inner_x, inner_y = (xs_all > 0) & (xs_all < w), (ys_all > 0) & (ys_all < h)
    sides = (inner_x[xi].astype(int) + inner_x[xj])[:, None] + (inner_y[ya].astype(int)
                                                                 + inner_y[yb])[None, :]
    weakest = np.minimum.reduce([  # the frame's edges count as whole
        up_share[xi][:, ya, yb], up_share[xj][:, ya, yb],
        level_share[ya][:, xi, xj].T, level_share[yb][:, xi, xj].T,
    ])
    ok = (
        (area >= MIN_SHARE * w * h) & (area <= MAX_SHARE * w * h)
        & (((sides >= 2) & (weakest >= COVERAGE)) | ((sides == 1) & (weakest >= LONE_COVERAGE)))
    )
    if not ok.any():
        return []
    px, py = np.nonzero(ok)
    boxes = np.stack([xs_all[xi[px]], ys_all[ya[py]], xs_all[xj[px]], ys_all[yb[py]]], axis=1)
    order = np.lexsort((-area[px, py], -weakest[px, py], -sides[px, py]))
    kept: list[Box] = []
    sharp: dict[tuple[bool, int, int, int], bool] = {}
    for k in order:
        box: Box = tuple(int(v) for v in boxes[k])  # type: ignore[assignment]
        if any(_nested(box, other) for other in kept):
            continue
        if all(_sharp_side(full, side, sharp) for side in _inner_sides(box, w, h)) and _busy(
            full[box[1] : box[3], box[0] : box[2]]
        ):
            kept.append(box)
            if len(kept) == MAX_PARTS:
                break
    return kept


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of ``n`` lines (as ``np.triu_indices(n, 1)``, read-only)."""
    i, j = np.triu_indices(n, 1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _busy(region: np.ndarray) -> bool:
    """Whether a rectangle holds a picture: at least ``MIN_BUSY`` of it varies from pixel to
    pixel (seen at about ``BUSY_SIDE`` pixels), where a shape filled with one colour (a
    window, a drawn box) does not."""
    h, w = region.shape
    f = min(1.0, BUSY_SIDE / max(h, w))
    small = cv2.resize(region, (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    return float(busy_pixels(small).mean()) >= MIN_BUSY


def _nested(a: Box, b: Box) -> bool:
    """Whether the smaller of two boxes lies mostly (``SAME_BOX`` of its area) in the other: one
    picture's outline and a rectangle that runs on past one of its corners to another line."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return ix * iy > SAME_BOX * smaller


def _inner_sides(box: Box, w: int, h: int) -> list[tuple[bool, int, int, int]]:
    """The sides of ``box`` that are not the frame's edges: (upright, line, start, end)."""
    x0, y0, x1, y1 = box
    sides = [(True, x, y0, y1) for x in (x0, x1) if 0 < x < w]
    return sides + [(False, y, x0, x1) for y in (y0, y1) if 0 < y < h]


def _sharp_side(
    full: np.ndarray, side: tuple[bool, int, int, int], seen: dict[tuple[bool, int, int, int], bool]
) -> bool:
    """Whether the step across the side is, at the median of its length, ``SIDE_SHARPNESS``
    times the larger step beside it (plus one), over one pixel or over two."""
    if side in seen:
        return seen[side]
    upright, line, start, end = side
    limit = full.shape[1] if upright else full.shape[0]
    if line < 3 or line > limit - 4:
        seen[side] = True  # too near the frame's edge to read the steps beside: the mask decided
        return True
    seen[side] = _side_sharpness(full, upright, line, start, end, SAMPLE) >= SIDE_SHARPNESS
    return seen[side]


@compiled
def _side_sharpness(full, upright, line, start, end, sample):  # type: ignore[no-untyped-def]
    """The larger of the medians, along the side, of the step across it over the larger step
    beside it (plus one), over one pixel (line - 1 to line) and over two (line - 1 to
    line + 1)."""
    count = len(range(start, end, sample))
    one = np.empty(count)
    two = np.empty(count)
    px = np.empty(7, np.int32)  # line - 3 .. line + 3
    for k in range(count):
        at = start + k * sample
        for d in range(7):
            px[d] = full[at, line - 3 + d] if upright else full[line - 3 + d, at]
        one[k] = abs(px[3] - px[2]) / (max(abs(px[2] - px[1]), abs(px[4] - px[3])) + 1.0)
        two[k] = abs(px[4] - px[2]) / (max(abs(px[2] - px[0]), abs(px[6] - px[4])) + 1.0)
    return max(np.median(one), np.median(two))


def _sharp_seams(p: np.ndarray) -> np.ndarray:
    """Sharp seam pixels (uint8 0 or 1, the shape of the uint8 ``p``): entry (r, c) tells
    whether the seam between columns c - 1 and c is sharp at row r (over one pixel, or over
    two: c - 1 to c + 1)."""
    return _seam_kernel(frozen(p), SHARPNESS, MIN_STEP)


@compiled
def _seam_kernel(p, sharpness, min_step):  # type: ignore[no-untyped-def]
    rows, cols = p.shape
    out = np.zeros((rows, cols), np.uint8)
    for r in range(rows):
        line = p[r]
        for c in range(2, cols - 1):  # over one pixel: c - 1 to c, beside it c - 2 and c + 1
            across = abs(np.int32(line[c]) - np.int32(line[c - 1]))
            beside = max(abs(np.int32(line[c - 1]) - np.int32(line[c - 2])),
                         abs(np.int32(line[c + 1]) - np.int32(line[c])))
            if across >= _needed(beside, sharpness, min_step):
                out[r, c] = 1
        for c in range(3, cols - 3):  # over two: c - 1 to c + 1, beside it c - 3 and c + 3
            if out[r, c]:
                continue
            across = abs(np.int32(line[c + 1]) - np.int32(line[c - 1]))
            beside = max(abs(np.int32(line[c - 1]) - np.int32(line[c - 3])),
                         abs(np.int32(line[c + 3]) - np.int32(line[c + 1])))
            if across >= _needed(beside, sharpness, min_step):
                out[r, c] = 1
    return out


@compiled
def _needed(beside, sharpness, min_step):  # type: ignore[no-untyped-def]
    """The step a seam pixel needs: ``sharpness`` times (the larger step beside it + 1), at
    most 255 (a step can be no larger) and at least ``min_step``."""
    return max(min(np.rint(sharpness * beside + sharpness), 255.0), min_step)


def _candidate_lines(seams: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Lines (columns of ``seams``) with a stretch of ``window`` rows at least ``COVERAGE`` sharp
    seam pixels: the ``MAX_LINES`` with the most seam pixels, none within ``SUPPRESS_PX`` of one
    with more; and their running sums of seam pixels (a zero row first, one column each)."""
    rows = seams.shape[0]
    if rows < window:
        return np.zeros(0, np.int64), np.zeros((rows + 1, 0), np.int32)
    longest, total = _column_runs(frozen(seams), window)
    strong = np.flatnonzero(longest >= COVERAGE * window)
    chosen: list[int] = []
    for line in strong[np.argsort(-total[strong], kind="stable")]:  # the longest seams first
        if all(abs(int(line) - c) > SUPPRESS_PX for c in chosen):
            chosen.append(int(line))
            if len(chosen) == MAX_LINES:
                break
    lines = np.array(sorted(chosen), np.int64)
    sums = np.zeros((rows + 1, len(lines)), np.int32)
    np.cumsum(seams[:, lines], axis=0, out=sums[1:])
    return lines, sums


@compiled
def _column_runs(seams, window):  # type: ignore[no-untyped-def]
    """Per column of the 0/1 ``seams``: the most set pixels in ``window`` rows running, and the
    set pixels in all."""
    rows, cols = seams.shape
    longest = np.zeros(cols, np.int64)
    total = np.zeros(cols, np.int64)
    run = np.zeros(cols, np.int64)
    for r in range(rows):
        for c in range(cols):
            run[c] += seams[r, c]
            if r >= window:
                run[c] -= seams[r - window, c]
            if r >= window - 1 and run[c] > longest[c]:
                longest[c] = run[c]
            total[c] += seams[r, c]
    return longest, total


def _with_edges(lines: np.ndarray, side: int) -> np.ndarray:
    return np.unique(np.concatenate([[0, side], lines])).astype(np.int64)


def _share_between(
    sums: np.ndarray, lines: np.ndarray, lines_all: np.ndarray, across: np.ndarray, side: int
) -> np.ndarray:
    """(len(lines_all), len(across), len(across)): the share of the line ``lines_all[k]`` from
    ``across[a]`` to ``across[b]`` that is sharp seam (1 for the frame's own edges)."""
    n = len(across)
    out = np.ones((len(lines_all), n, n), np.float32)
    if not len(lines):
        return out
    last = sums.shape[0] - 1
    lo = np.minimum(across // SAMPLE, last)[:, None]
    hi = np.minimum(np.maximum((across // SAMPLE)[None, :], lo + 1), last)
    share = (sums[hi] - sums[lo]) / np.maximum(hi - lo, 1)[:, :, None]  # (n, n, len(lines))
    out[np.searchsorted(lines_all, lines)] = np.moveaxis(share, 2, 0)
    return out


@warms_up
def _compile() -> None:
    picture = np.zeros((2 * MIN_SIDE_PX, 2 * MIN_SIDE_PX), np.uint8)
    picture[:, MIN_SIDE_PX:] = 200  # a seam down the middle
    find_pasted(picture)
    _side_sharpness(frozen(picture), True, MIN_SIDE_PX, 0, MIN_SIDE_PX, SAMPLE)
