"""The detector's two inner loops, compiled: folding the working image onto one tile, and the
Viterbi add-compare-select recursion. Both give the same numbers as the array expressions they
replace (the same float32 products for the bin of each pixel, float64 sums in pixel order, the
same comparisons), in one pass with no temporaries and without holding the GIL, so a detection
running beside other work in the process does not stall it.

Compiled on first use and cached beside this file (``NUMBA_CACHE_DIR`` moves the cache where
the package is read-only); :func:`warm_up` compiles both ahead of the first request.
"""

from __future__ import annotations

import numpy as np

from similarity.jit import compiled


@compiled
def _fold(e, m00, m01, m10, m11, n, by_quadrant):  # type: ignore[no-untyped-def]
    h, w = e.shape
    half_h = np.float32(h / 2)
    half_w = np.float32(w / 2)
    mask = n - 1
    nn = n * n
    ux = np.empty(w, np.float32)
    vx = np.empty(w, np.float32)
    base = np.zeros(w, np.int64)  # the right-hand quadrants' offset
    for x in range(w):
        xs = np.float32(x) - half_w
        ux[x] = xs * m00
        vx[x] = xs * m10
        if by_quadrant and xs >= 0:
            base[x] = nn
    quadrants = 4 if by_quadrant else 1
    out = np.zeros(quadrants * nn, np.float64)
    bins = np.empty(w, np.int64)
    for y in range(h):
        ys = np.float32(y) - half_h
        uy = ys * m01
        vy = ys * m11
        row = 2 * nn if (by_quadrant and ys >= 0) else 0
        # The bins of a whole row first (a loop the compiler vectorises), then the sums.
        for x in range(w):
            iu = np.int64(np.floor(ux[x] + uy)) & mask
            iv = np.int64(np.floor(vx[x] + vy)) & mask
            bins[x] = row + base[x] + iv * n + iu
        for x in range(w):
            out[bins[x]] += e[y, x]
    return out.reshape(quadrants, n, n)


def fold(e: np.ndarray, matrix: np.ndarray, n: int, *, by_quadrant: bool) -> np.ndarray:
    """Sum of the float32 image ``e`` into ``n x n`` bins: pixel ``(x, y)``, measured from the
    image centre, goes to bin ``floor(matrix @ (x, y)) mod n`` (``n`` a power of two). With
    ``by_quadrant``, one fold per image quadrant, ``(4, n, n)`` (top-left, top-right,
    bottom-left, bottom-right); else ``(1, n, n)``."""
    m = np.asarray(matrix, dtype=np.float32)
    return _fold(
        np.ascontiguousarray(e, dtype=np.float32),
        m[0, 0],
        m[0, 1],
        m[1, 0],
        m[1, 1],
        n,
        by_quadrant,
    )


@compiled
def _viterbi(soft, symbols, states):  # type: ignore[no-untyped-def]
    steps = soft.shape[0]
    regs = symbols.shape[0]
    metric = np.full(states, -np.inf)
    metric[0] = 0.0
    fresh = np.empty(states)
    branch = np.empty(regs)
    decisions = np.empty((steps, states), np.bool_)
    half = states >> 1
    for t in range(steps):
        for r in range(regs):
            branch[r] = (soft[t, 0] * symbols[r, 0] + soft[t, 1] * symbols[r, 1]) + soft[
                t, 2
            ] * symbols[r, 2]
        for ns in range(states):
            c0 = metric[ns >> 1] + branch[ns]
            c1 = metric[half + (ns >> 1)] + branch[states + ns]
            decisions[t, ns] = c1 > c0
            fresh[ns] = c1 if c1 > c0 else c0
        metric[:] = fresh
    bits = np.empty(steps, np.uint8)
    state = 0
    for t in range(steps - 1, -1, -1):
        bits[t] = state & 1
        state = (half if decisions[t, state] else 0) | (state >> 1)
    return bits


def viterbi_bits(soft: np.ndarray, symbols: np.ndarray, states: int) -> np.ndarray:
    """Maximum-correlation path through the trellis: ``soft`` is ``(steps, 3)`` float64,
    ``symbols`` the ``(2 * states, 3)`` +-1 outputs of each register value (oldest input bit
    highest); returns the input bit of every step, the path starting and ending in state 0."""
    return _viterbi(np.ascontiguousarray(soft, dtype=np.float64), symbols, states)


def warm_up() -> None:
    """Compile (or load from the cache) both kernels."""
    fold(np.zeros((4, 4), np.float32), np.eye(2), 8, by_quadrant=True)
    fold(np.zeros((4, 4), np.float32), np.eye(2), 8, by_quadrant=False)
    viterbi_bits(np.zeros((2, 3)), np.ones((4, 3)), 2)
