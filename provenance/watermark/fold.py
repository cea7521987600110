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

from . import kernels
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


def fold_total(
    e: np.ndarray, lattice: Lattice, sub: int = FOLD_SUB, px_scale: float = 1.0
) -> np.ndarray:
    """One fold of the whole image; ``px_scale`` working pixels per pixel of ``e``."""
    return kernels.fold(e, lattice.matrix * (px_scale * sub), TILE * sub, by_quadrant=False)[0]


def fold_regions(e: np.ndarray, lattice: Lattice) -> Folded:
    h, w = e.shape
    sums = kernels.fold(e, lattice.matrix * FOLD_SUB, TILE * FOLD_SUB, by_quadrant=True)
    centres = np.array([[-w / 4, -h / 4], [w / 4, -h / 4], [-w / 4, h / 4], [w / 4, h / 4]])
    return Folded(sums, centres)


@lru_cache(maxsize=4)
def _pulse_spectrum(sub: int) -> np.ndarray:
    n = TILE * sub
    impulse = np.zeros((TILE, TILE), dtype=np.float32)
    impulse[0, 0] = 1.0
    m = interpolation_matrix(np.arange(n) / sub, TILE)
    return np.fft.rfft2((m @ impulse) @ m.T)


def _highpass_sigma_bins(period: float, sub: int) -> float:
    return HIGHPASS_SIGMA * sub * TILE / period


@lru_cache(maxsize=4)
def packed_frequency_sq(n: int) -> np.ndarray:
    """``fx**2 + fy**2`` (cycles per bin) of every slot of an OpenCV packed (CCS) spectrum of an
    ``n x n`` real array (``n`` even): inner columns hold the real and imaginary parts of
    ``kx = (j + 1) // 2`` for every row ``ky``; the first and last columns hold ``kx = 0`` and
    ``kx = n / 2`` with ``ky = (i + 1) // 2``."""
    i = np.arange(n)[:, None]
    j = np.arange(n)[None, :]
    edge = (j == 0) | (j == n - 1)
    kx = np.where(j == n - 1, n // 2, (j + 1) // 2)
    ky = np.where(edge, (i + 1) // 2, i)
    ky = np.minimum(ky, n - ky)
    return ((kx / n) ** 2 + (ky / n) ** 2).astype(np.float32)


def chips_spectrum(chips: np.ndarray, sub: int = FOLD_SUB) -> np.ndarray:
    """rfft2 of chip values placed as impulses every ``sub`` bins."""
    n = TILE * sub
    grid = np.zeros((n, n), dtype=np.float32)
    grid[::sub, ::sub] = chips
    return np.fft.rfft2(grid)


def _packed(spec: np.ndarray, n: int) -> np.ndarray:
    return cv2.dft(np.fft.irfft2(spec, s=(n, n)).astype(np.float32))


class Templates:
    """What a fold is correlated with, as OpenCV packed spectra, cached per period: the pilot
    (for the tile offset) and a single chip (the matched filter for reading chips).

    Both are a fixed spectrum (the cubic pulse, times the pilot's for the pilot) scaled by the
    whitening high-pass at the lattice's scale, a real, even response: so each template is the
    fixed packed spectrum times that response at every packed slot."""

    def __init__(self, pilot: np.ndarray) -> None:
        self._base: dict[tuple[str, int], np.ndarray] = {}
        for sub in (RANK_SUB, FOLD_SUB):
            n = TILE * sub
            pulse = _pulse_spectrum(sub)
            self._base["chip", sub] = _packed(pulse, n)
            self._base["pilot", sub] = _packed(pulse * chips_spectrum(pilot, sub), n)
        self._cache: dict[tuple[str, float, int], np.ndarray] = {}

    def pilot(self, lattice: Lattice, sub: int = FOLD_SUB) -> np.ndarray:
        return self._get("pilot", lattice, sub)

    def chip(self, lattice: Lattice, sub: int = FOLD_SUB) -> np.ndarray:
        return self._get("chip", lattice, sub)

    def _get(self, kind: str, lattice: Lattice, sub: int) -> np.ndarray:
        period = round(lattice.period, 2)
        key = (kind, period, sub)
        found = self._cache.get(key)
        if found is None:
            n = TILE * sub
            k = np.float32(2 * (np.pi * _highpass_sigma_bins(period, sub)) ** 2)
            response = 1 - np.exp(-k * packed_frequency_sq(n))
            found = self._base[kind, sub] * response
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
    """``corr`` in standard deviations from its mean (a 2-D float32 map)."""
    mean, std = cv2.meanStdDev(corr)
    return (corr - np.float32(mean[0, 0])) * np.float32(1.0 / (std[0, 0] + 1e-12))


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
