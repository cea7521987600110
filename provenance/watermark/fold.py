"""Folding the whitened image onto one tile along a lattice, and reading the tile.

Every working pixel is added into the bin of the tile it falls on (``sub`` bins per chip), so
the repeats of the tile add up coherently. Circular correlation of the fold with the pilot chips
gives the tile offset; with one fold per image quadrant, the drift of that offset across the
quadrants corrects the lattice.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .lattice import Lattice, sample_periodic
from .layout import TILE, interpolation_matrix
from .whitening import HIGHPASS_SIGMA, working_size

FOLD_SUB = 4  # bins per chip for decoding
RANK_SUB = 2  # bins per chip for the cheap first look
REGION_WINDOW = 6  # bins: how far a quadrant's offset may drift from the whole image's


@dataclass(frozen=True)
class Folded:
    """One fold per image quadrant (4, n, n), and the quadrants' centres (x, y) in working
    pixels from the image centre."""

    regions: np.ndarray
    centres: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.regions.sum(0)


def _fold_index(
    shape: tuple[int, int], matrix: np.ndarray, sub: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = shape
    n = TILE * sub  # a power of two, so "& (n - 1)" is a modulo that also maps negatives
    xs = np.arange(w, dtype=np.float32) - np.float32(w / 2)
    ys = np.arange(h, dtype=np.float32) - np.float32(h / 2)
    m = (matrix * sub).astype(np.float32)
    u = (xs * m[0, 0])[None, :] + (ys * m[0, 1])[:, None]
    v = (xs * m[1, 0])[None, :] + (ys * m[1, 1])[:, None]
    idx = (np.floor(v).astype(np.int32) & (n - 1)) * n + (np.floor(u).astype(np.int32) & (n - 1))
    return idx, xs, ys


def fold_total(
    e: np.ndarray, lattice: Lattice, sub: int = FOLD_SUB, px_scale: float = 1.0
) -> np.ndarray:
    """One fold of the whole image; ``px_scale`` working pixels per pixel of ``e``."""
    n = TILE * sub
    idx, _, _ = _fold_index(e.shape, lattice.matrix * px_scale, sub)
    return np.bincount(idx.ravel(), weights=e.ravel(), minlength=n * n).reshape(n, n)


def fold_regions(e: np.ndarray, lattice: Lattice) -> Folded:
    h, w = e.shape
    n = TILE * FOLD_SUB
    idx, xs, ys = _fold_index(e.shape, lattice.matrix, FOLD_SUB)
    idx += (2 * (ys >= 0).astype(np.int32))[:, None] * (n * n)
    idx += (xs >= 0).astype(np.int32)[None, :] * (n * n)
    sums = np.bincount(idx.ravel(), weights=e.ravel(), minlength=4 * n * n).reshape(4, n, n)
    centres = np.array([[-w / 4, -h / 4], [w / 4, -h / 4], [-w / 4, h / 4], [w / 4, h / 4]])
    return Folded(sums, centres)


@lru_cache(maxsize=4)
def _pulse_spectrum(sub: int) -> np.ndarray:
    n = TILE * sub
    impulse = np.zeros((TILE, TILE), dtype=np.float32)
    impulse[0, 0] = 1.0
    m = interpolation_matrix(np.arange(n) / sub, TILE)
    return np.fft.rfft2((m @ impulse) @ m.T)


def chip_response(lattice: Lattice, sub: int = FOLD_SUB) -> np.ndarray:
    """Spectrum (rfft2) of one chip at bin (0, 0) as it appears in a fold: the cubic pulse, less
    what the whitening high-pass removes at this lattice's scale."""
    return _chip_response(round(lattice.period, 2), sub)


@lru_cache(maxsize=64)
def _chip_response(period: float, sub: int) -> np.ndarray:
    n = TILE * sub
    sigma_bins = HIGHPASS_SIGMA * sub * TILE / period
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    return _pulse_spectrum(sub) * (1 - np.exp(-2 * (np.pi * sigma_bins) ** 2 * (fx**2 + fy**2)))


def chips_spectrum(chips: np.ndarray, sub: int = FOLD_SUB) -> np.ndarray:
    """rfft2 of chip values placed as impulses every ``sub`` bins."""
    n = TILE * sub
    grid = np.zeros((n, n), dtype=np.float32)
    grid[::sub, ::sub] = chips
    return np.fft.rfft2(grid)


class Templates:
    """What a fold is correlated with, as OpenCV packed spectra, cached per period: the pilot
    (for the tile offset) and a single chip (the matched filter for reading chips)."""

    def __init__(self, pilot: np.ndarray) -> None:
        self._pilot = {sub: chips_spectrum(pilot, sub) for sub in (RANK_SUB, FOLD_SUB)}
        self._cache: dict[tuple[str, float, int], np.ndarray] = {}

    def pilot(self, lattice: Lattice, sub: int = FOLD_SUB) -> np.ndarray:
        return self._get("pilot", lattice, sub)

    def chip(self, lattice: Lattice, sub: int = FOLD_SUB) -> np.ndarray:
        return self._get("chip", lattice, sub)

    def _get(self, kind: str, lattice: Lattice, sub: int) -> np.ndarray:
        key = (kind, round(lattice.period, 2), sub)
        found = self._cache.get(key)
        if found is None:
            spec = chip_response(lattice, sub)
            if kind == "pilot":
                spec = spec * self._pilot[sub]
            n = TILE * sub
            spatial = np.fft.irfft2(spec, s=(n, n)).astype(np.float32)
            found = cv2.dft(spatial)
            if len(self._cache) > 256:
                self._cache.clear()
            self._cache[key] = found
        return found


def correlate(fold: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Circular cross-correlation of a fold with a template (an OpenCV packed spectrum from
    :class:`Templates`): the peak is at ``d`` where ``fold[j] ~ template[j - d]``."""
    spec = cv2.dft(fold.astype(np.float32, copy=False))
    product = cv2.mulSpectrums(spec, template, 0, conjB=True)
    return cv2.idft(product, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)


def correlate_regions(folded: Folded, template: np.ndarray) -> np.ndarray:
    return np.stack([correlate(region, template) for region in folded.regions])


def zscore(corr: np.ndarray) -> np.ndarray:
    return (corr - corr.mean()) / (corr.std() + 1e-12)


def _cdist(a: float, b: float, n: int) -> float:
    d = abs(a - b) % n
    return min(d, n - d)


def _subbin(z: np.ndarray, iy: int, ix: int) -> tuple[float, float]:
    n = z.shape[0]

    def vertex(a: float, b: float, c: float) -> float:
        den = a - 2 * b + c
        return 0.0 if den >= 0 else float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))

    dy = vertex(z[(iy - 1) % n, ix], z[iy, ix], z[(iy + 1) % n, ix])
    dx = vertex(z[iy, (ix - 1) % n], z[iy, ix], z[iy, (ix + 1) % n])
    return iy + dy, ix + dx


def peaks(z: np.ndarray, count: int) -> list[tuple[float, float, float]]:
    """Highest peaks of a circular z-map as (dy, dx, z), sub-bin by parabola fit, 3+ bins apart."""
    n = z.shape[0]
    flat_z = z.ravel()
    if count == 1:
        order = np.array([int(np.argmax(flat_z))])
    else:
        top = np.argpartition(flat_z, -50 * count)[-50 * count :]
        order = top[np.argsort(flat_z[top])[::-1]]
    out: list[tuple[float, float, float]] = []
    for flat in order:
        iy, ix = divmod(int(flat), n)
        if any(_cdist(iy, a, n) < 3 and _cdist(ix, b, n) < 3 for a, b, _ in out):
            continue
        dy, dx = _subbin(z, iy, ix)
        out.append((dy, dx, float(z[iy, ix])))
        if len(out) == count:
            break
    return out


def local_peak(z: np.ndarray, near: tuple[float, float]) -> tuple[float, float, float]:
    """The highest point of ``z`` within ``REGION_WINDOW`` bins of ``near``, unwrapped to lie
    next to ``near``, as (dy, dx, z)."""
    n = z.shape[0]
    r = REGION_WINDOW
    cy, cx = round(near[0]), round(near[1])
    rows = (cy + np.arange(-r, r + 1)) % n
    cols = (cx + np.arange(-r, r + 1)) % n
    win = z[np.ix_(rows, cols)]
    iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
    dy, dx = _subbin(z, int(rows[iy]), int(cols[ix]))
    return cy + (iy - r) + (dy - rows[iy]), cx + (ix - r) + (dx - cols[ix]), float(win[iy, ix])


def corrected(
    lattice: Lattice,
    folded: Folded,
    region_corr: np.ndarray,
    near: tuple[float, float],
    min_z: float = 2.5,
) -> Lattice | None:
    """The lattice corrected by the drift of the pilot offset across quadrants (weighted least
    squares for a scale-and-rotation change and a shift), or None when fewer than three
    quadrants show the pilot.

    A fold built with ``matrix`` when the truth is ``matrix + D`` puts the pilot of a quadrant
    centred at ``c`` at offset ``-(sub * D @ c + b)``; here ``D = [[a, b], [-b, a]] @ matrix``
    (the edits to undo are scaling and rotation)."""
    rows, rhs = [], []
    for centre, corr in zip(folded.centres, region_corr, strict=True):
        dy, dx, peak = local_peak(zscore(corr), near)
        if peak < min_z:
            continue
        u, v = lattice.matrix @ centre
        rows += [peak * np.array([u, v, 1, 0]), peak * np.array([v, -u, 0, 1])]
        rhs += [-peak * dx / FOLD_SUB, -peak * dy / FOLD_SUB]
    if len(rows) < 6:
        return None
    (a, b, _, _), *_ = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)
    change = np.array([[1 + a, b], [-b, 1 + a]])
    return Lattice(change @ lattice.matrix, lattice.score)


def read_chips(
    total: np.ndarray, templates: Templates, lattice: Lattice, offset: tuple[float, float]
) -> np.ndarray:
    """Matched-filter output at every chip centre, ``(TILE, TILE)``, for a tile offset in bins."""
    matched = correlate(total, templates.chip(lattice))
    grid = FOLD_SUB * np.arange(TILE, dtype=np.float32)
    xs = np.broadcast_to(offset[1] + grid[None, :], (TILE, TILE))
    ys = np.broadcast_to(offset[0] + grid[:, None], (TILE, TILE))
    return sample_periodic(matched, xs, ys)


def unedited_lattice(height: int, width: int, period_px: float) -> Lattice:
    """The lattice of a tile period of ``period_px`` image pixels in the working image of an
    unedited image of this size."""
    wh, ww = working_size(height, width)
    k = TILE / period_px
    return Lattice(np.array([[k * width / ww, 0.0], [0.0, k * height / wh]]))
