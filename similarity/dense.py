"""A weight-free global descriptor for candidate retrieval.

The picture's flat margins are trimmed, the rest is squeezed to a small square of luma, and
soft-binned gradient orientation histograms on a 4x4 cell grid are taken, Hellinger-normalised
(square root of the share of gradient energy). The vector ignores colour, brightness and contrast,
survives blur, JPEG and rescaling, is little moved by an opaque overlay (flat inside), and
permutes exactly under the eight rotations/flips, so the query's eight variants come from index
shuffles rather than eight extractions. (A coarse luma layout was tried beside it and made
retrieval under logos worse.)

Registration also describes sub-windows (corners and centre) so crops retrieve their source.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import cv2
import numpy as np

SIDE = 32  # the square the region is squeezed to
GRAD_CELLS = 4  # gradient histogram grid
BINS = 8  # signed orientation bins, centres at multiples of 45 degrees
DIM = GRAD_CELLS * GRAD_CELLS * BINS
TRIM_SIDE = 128  # size at which margins are found and views are cut

# Sub-windows described at registration, as (x0, y0, x1, y1) fractions of the trimmed picture.
VIEWS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.0, 1.0, 1.0),
    (0.0, 0.0, 0.8, 0.8),
    (0.2, 0.0, 1.0, 0.8),
    (0.0, 0.2, 0.8, 1.0),
    (0.2, 0.2, 1.0, 1.0),
    (0.1, 0.1, 0.9, 0.9),
)


def trim_margins(gray: np.ndarray, tolerance: float = 6.0) -> tuple[int, int, int, int]:
    """Box (x0, y0, x1, y1) left after dropping flat rows/columns at each edge.

    A row or column is flat when nearly all its pixels stay within `tolerance` grey levels of
    its median, as in screenshot padding, a title bar or a solid border. Rows and columns are
    trimmed in turns, so a bar across the top does not hide the side margins. Never trims more
    than 45% of the picture from one side.
    """
    h, w = gray.shape
    x0, y0, x1, y1 = 0, 0, w, h
    if not _any_flat_edge(gray, tolerance):
        return x0, y0, x1, y1  # the usual case, settled by four lines
    for _ in range(3):
        box = gray[y0:y1, x0:x1]
        row_flat = _flat(box, axis=1, tolerance=tolerance)
        ny0 = y0 + _run(row_flat, int(h * 0.45) - y0)
        ny1 = y1 - _run(row_flat[::-1], y1 - int(h * 0.55))
        if ny1 - ny0 < 4:
            break
        box = gray[ny0:ny1, x0:x1]
        col_flat = _flat(box, axis=0, tolerance=tolerance)
        nx0 = x0 + _run(col_flat, int(w * 0.45) - x0)
        nx1 = x1 - _run(col_flat[::-1], x1 - int(w * 0.55))
        if nx1 - nx0 < 4:
            break
        if (nx0, ny0, nx1, ny1) == (x0, y0, x1, y1):
            break
        x0, y0, x1, y1 = nx0, ny0, nx1, ny1
    return x0, y0, x1, y1


def _any_flat_edge(gray: np.ndarray, tolerance: float) -> bool:
    """Whether the top or bottom row or the left or right column is flat: trimming starts at
    an edge, so with none of them flat nothing is trimmed."""
    rows = _flat(gray[[0, -1], :], axis=1, tolerance=tolerance)
    cols = _flat(gray[:, [0, -1]], axis=0, tolerance=tolerance)
    return bool(rows.any() or cols.any())


def _flat(gray: np.ndarray, axis: int, tolerance: float) -> np.ndarray:
    """Lines (rows for axis=1) whose pixels nearly all lie within `tolerance` of the median."""
    med = np.median(gray, axis=axis, keepdims=True)
    outside = np.abs(gray - med) > tolerance
    return outside.mean(axis=axis) <= 0.02


def _run(flags: np.ndarray, cap: int) -> int:
    if cap <= 0 or not flags.size or not flags[0]:
        return 0
    stop = np.flatnonzero(~flags)
    n = int(stop[0]) if stop.size else flags.size
    return min(n, cap)


def _squeeze(gray: np.ndarray) -> np.ndarray:
    h, w = gray.shape
    interp = cv2.INTER_AREA if h >= SIDE and w >= SIDE else cv2.INTER_LINEAR
    return cv2.resize(gray, (SIDE, SIDE), interpolation=interp)


_CELL = np.arange(SIDE) // (SIDE // GRAD_CELLS)
_CELL_BASE = (_CELL[:, None] * GRAD_CELLS + _CELL[None, :]) * BINS  # first bin of each pixel's cell


def _histograms(squares: np.ndarray) -> np.ndarray:
    """Soft-binned gradient orientation histograms (n, GRAD_CELLS, GRAD_CELLS, BINS) of
    (n, SIDE, SIDE) squares, worked out together (one pass of array operations for all)."""
    n = squares.shape[0]
    padded = np.pad(squares, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]) * 0.5
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]) * 0.5
    mag = np.hypot(gx, gy)
    pos = (np.arctan2(gy, gx) % (2 * np.pi)) / (2 * np.pi / BINS)
    lo = np.floor(pos).astype(np.int64) % BINS
    hi = (lo + 1) % BINS
    frac = pos - np.floor(pos)
    per = GRAD_CELLS * GRAD_CELLS * BINS
    base = _CELL_BASE[None] + (np.arange(n) * per)[:, None, None]  # each square its own bins
    total = n * per
    hist = np.bincount((base + lo).ravel(), (mag * (1 - frac)).ravel(), minlength=total)
    hist += np.bincount((base + hi).ravel(), (mag * frac).ravel(), minlength=total)
    return hist.reshape(n, GRAD_CELLS, GRAD_CELLS, BINS)


def _finish(hist: np.ndarray) -> np.ndarray:
    """Hellinger-normalised histograms (n, ...), each L2 unit length: (n, DIM)."""
    flat = hist.reshape(len(hist), -1)
    hv = np.sqrt(flat / (flat.sum(axis=1, keepdims=True) + 1e-6))
    return (hv / (np.linalg.norm(hv, axis=1, keepdims=True) + 1e-6)).astype(np.float32)


def describe(gray: np.ndarray) -> np.ndarray:
    """Descriptor (DIM,) of a float32 grey region (any size), L2-normalised."""
    return describe_many([gray])[0]


def describe_many(regions: Sequence[np.ndarray]) -> np.ndarray:
    """Descriptors (len(regions), DIM) of float32 grey regions, as `describe` gives each."""
    squares = np.stack([_squeeze(r.astype(np.float32, copy=False)) for r in regions])
    return _finish(_histograms(squares))


def reduce_for_views(gray: np.ndarray) -> np.ndarray:
    """The grey picture at about TRIM_SIDE on its longer side, margins trimmed."""
    h, w = gray.shape
    f = TRIM_SIDE / max(h, w)
    if f < 1:
        gray = cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=cv2.INTER_AREA)
    x0, y0, x1, y1 = trim_margins(gray)
    return gray[y0:y1, x0:x1]


QUERY_ANGLES: tuple[float, ...] = (11.0, -11.0)


def describe_query(gray: np.ndarray) -> np.ndarray:
    """Query-side descriptors (1 + len(QUERY_ANGLES), DIM): the whole picture, then the picture
    turned back by each angle and cut to the box an original rotated by it would occupy."""
    return describe_query_region(reduce_for_views(gray.astype(np.float32, copy=False)))


def describe_query_region(region: np.ndarray) -> np.ndarray:
    """`describe_query` of a region already made by `reduce_for_views`."""
    h, w = region.shape
    return describe_many([region] + [_derotate(region, a, w, h) for a in QUERY_ANGLES])


def _derotate(region: np.ndarray, angle: float, w: int, h: int) -> np.ndarray:
    """Undo a rotation by `angle` degrees made on an expanded canvas and keep the original box."""
    c, s = np.cos(np.radians(angle)), abs(np.sin(np.radians(angle)))
    det = c * c - s * s
    ow = (w * c - h * s) / det
    oh = (h * c - w * s) / det
    if ow < 8 or oh < 8:  # the canvas cannot hold such a rotation; fall back to the centre
        ow, oh = 0.7 * w, 0.7 * h
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), -angle, 1.0)
    turned = cv2.warpAffine(region, m, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_REPLICATE)
    bw, bh = max(4, int(ow * 0.96)), max(4, int(oh * 0.96))
    x0, y0 = (w - bw) // 2, (h - bh) // 2
    return turned[y0 : y0 + bh, x0 : x0 + bw]


def describe_views(gray: np.ndarray) -> np.ndarray:
    """Descriptors (len(VIEWS), DIM) of the whole picture and its sub-windows."""
    return describe_views_region(reduce_for_views(gray.astype(np.float32, copy=False)))


def describe_views_region(region: np.ndarray) -> np.ndarray:
    """`describe_views` of a region already made by `reduce_for_views`."""
    h, w = region.shape
    windows = []
    for fx0, fy0, fx1, fy1 in VIEWS:
        x0, x1 = round(fx0 * w), max(round(fx0 * w) + 1, round(fx1 * w))
        y0, y1 = round(fy0 * h), max(round(fy0 * h) + 1, round(fy1 * h))
        windows.append(region[y0:y1, x0:x1])
    return describe_many(windows)


# ---- the eight rotations/flips as index permutations -------------------------------------

OP_NAMES: tuple[str, ...] = (
    "identity", "rotate_90", "rotate_180", "rotate_270",
    "mirror", "mirror_rotate_90", "mirror_rotate_180", "mirror_rotate_270",
)


def _spatial(op: int, a: np.ndarray) -> np.ndarray:
    """Apply dihedral op (0..7: identity, rot90 x1..3, then the same after a left-right flip)."""
    if op >= 4:
        a = a[:, ::-1]
    return np.rot90(a, op % 4, axes=(0, 1))


def _bin_map(op: int) -> np.ndarray:
    """Where each orientation bin goes under `op` (array rotation/flip as in `_spatial`)."""
    b = np.arange(BINS)
    if op >= 4:  # left-right flip: gx -> -gx, angle t -> pi - t
        b = (BINS // 2 - b) % BINS
    # np.rot90 (counter-clockwise on screen, y down) turns a gradient angle t into t - 90 deg.
    return (b - (op % 4) * (BINS // 4)) % BINS


@cache
def dihedral_permutations() -> np.ndarray:
    """(8, DIM) int array P with describe(T_op(img)) == describe(img)[P[op]] (up to rounding)."""
    perms = np.empty((8, DIM), np.int64)
    hist_idx = np.arange(DIM).reshape(GRAD_CELLS, GRAD_CELLS, BINS)
    for op in range(8):
        moved = _spatial(op, hist_idx)
        new_hist = np.empty_like(moved)
        new_hist[..., _bin_map(op)] = moved
        perms[op] = new_hist.ravel()
    return perms


def dihedral_variants(vec: np.ndarray) -> np.ndarray:
    """(8, DIM): the descriptor of the picture under each rotation/flip, from one descriptor."""
    return np.ascontiguousarray(vec[dihedral_permutations()])


def transform_square(op: int, square: np.ndarray) -> np.ndarray:
    """The pixel operation that `dihedral_permutations()[op]` mirrors (for checks)."""
    return np.ascontiguousarray(_spatial(op, square))
