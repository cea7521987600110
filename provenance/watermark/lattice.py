"""Finding the square lattice of tile repeats: the pilot's plane waves are sharp peaks in the
whitened image's power spectrum, and their pattern, scaled and rotated, gives period and angle.

A lattice maps working pixels to tile coordinates in chips: ``chips = matrix @ (x, y)``, with
``(x, y)`` measured from the image centre. An unedited image has ``matrix = I * TILE / period``;
scaling and rotation scale and rotate it, and a 2x2 matrix also absorbs aspect change and shear.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np
import scipy.fft

from .layout import TILE, TILES_ACROSS

MAX_ANGLE_DEG = 5.0
MIN_TILES = 1.9  # the shortest working side must hold this many periods ...
MAX_TILES = 5.8  # ... and at most this many
COARSE_KEEP = 24  # coarse maxima refined before ranking
COARSE_PERIOD_STEP = 0.5  # working pixels
COARSE_ANGLE_STEP = 0.5  # degrees
BACKGROUND_SIGMA = 6.0  # frequency bins
BACKGROUND_RADIUS = 24  # bins the blur of BACKGROUND_SIGMA reaches (OpenCV's kernel: 8 sigma + 1)
FINE_PERIOD_REACH = 0.6  # working pixels: the fine search's periods round a coarse maximum ...
FINE_ANGLE_REACH = 0.6  # ... and its angles (degrees)
FINE_STEP = 0.1  # both
NMS = 7  # coarse maxima must top this many grid steps square
CROP_KEEP = (0.6, 0.95)  # side fractions a cropped picture may keep, for the crop line
CROP_PERIOD_STEP = 0.1  # working pixels
CROP_NMS = 10  # crop-line maxima must top this many steps either side


@dataclass(frozen=True)
class Lattice:
    matrix: np.ndarray  # (2, 2) chips per working pixel
    score: float = 0.0

    @staticmethod
    def similarity(period: float, angle: float, score: float = 0.0) -> Lattice:
        k = TILE / period
        c, s = np.cos(angle) * k, np.sin(angle) * k
        return Lattice(np.array([[c, s], [-s, c]]), score)

    @cached_property
    def period(self) -> float:
        """Mean tile period in working pixels."""
        (a, b), (c, d) = self.matrix.tolist()
        return TILE / math.sqrt(abs(a * d - b * c))

    @property
    def angle_deg(self) -> float:
        m = self.matrix
        return float(np.rad2deg(np.arctan2(m[0, 1] - m[1, 0], m[0, 0] + m[1, 1])))


def spectrum_snr(e: np.ndarray, band: float | None = None) -> np.ndarray:
    """Power spectrum of the Hann-windowed image over its local background, zero frequency at
    the centre (``fftshift`` order), float32.

    ``band``: only frequencies up to this many cycles per pixel (in x and in y) are wanted, as
    from :func:`search_band`; the ratio is then computed only round them and left 0 elsewhere.
    The local background of a wanted frequency is the same either way (the blur reaches
    ``BACKGROUND_RADIUS`` bins, and that much more is kept), so is the ratio but for the tiny
    floor that keeps it finite."""
    h, w = e.shape
    padded = np.zeros((cv2.getOptimalDFTSize(h), cv2.getOptimalDFTSize(w)), np.float32)
    padded[:h, :w] = e * _hann(h, w)
    power = np.fft.fftshift(_power(padded))
    if band is None:
        return _over_background(power)
    rows, cols = (_band_slice(n, band) for n in power.shape)
    out = np.zeros_like(power)
    out[rows, cols] = _over_background(power[rows, cols])
    return out


def _over_background(power: np.ndarray) -> np.ndarray:
    background = cv2.GaussianBlur(power, (0, 0), BACKGROUND_SIGMA)
    return (power / (background + 1e-6 * float(background.mean()) + 1e-20)).astype(np.float32)


def _band_slice(n: int, band: float) -> slice:
    """The bins of an ``n``-bin shifted axis within ``band`` cycles per pixel of zero, with the
    cubic sampling's reach (2 bins) and the background blur's beside them."""
    reach = int(np.ceil(band * n)) + 3 + BACKGROUND_RADIUS
    return slice(max(0, n // 2 - reach), min(n, n // 2 + reach + 1))


def search_band(waves: np.ndarray, short: int) -> float:
    """The highest frequency (cycles per working pixel) at which :func:`find_lattices` and
    :func:`crop_lattices` look for a pilot wave in an image of ``short`` working pixels on its
    short side: the fastest wave at the shortest period the fine search reaches."""
    shortest = short / MAX_TILES - FINE_PERIOD_REACH
    return float(np.hypot(waves[:, 0], waves[:, 1]).max()) / shortest


@lru_cache(maxsize=16)
def _hann(h: int, w: int) -> np.ndarray:
    return cv2.createHanningWindow((w, h), cv2.CV_32F)


def _power(real: np.ndarray) -> np.ndarray:
    """The power spectrum of a real float32 array, every frequency (unshifted): the half that a
    real FFT computes, the other half mirrored (``P(-k) = P(k)``). A sixth of the time of a full
    complex transform here, the same powers to float32 rounding."""
    rows, cols = real.shape
    spec = scipy.fft.rfft2(real)
    half = spec.real * spec.real + spec.imag * spec.imag
    kept = half.shape[1]
    power = np.empty((rows, cols), np.float32)
    power[:, :kept] = half
    mirrored = np.roll(half[::-1], 1, axis=0)  # row ky holds row -ky
    power[:, kept:] = mirrored[:, cols - kept : 0 : -1]  # column kx holds column -kx
    return power


def sample(img: np.ndarray, x: np.ndarray, y: np.ndarray, periodic: bool = False) -> np.ndarray:
    """Bicubic samples of a float32 image at float positions (arrays of any shape)."""
    size = x.size
    cols = 1024
    mx, my = _rows_of(x, cols), _rows_of(y, cols)
    border = cv2.BORDER_WRAP if periodic else cv2.BORDER_CONSTANT
    out = cv2.remap(img, mx, my, cv2.INTER_CUBIC, borderMode=border)
    return out.ravel()[:size].reshape(np.shape(x))


def _rows_of(v: np.ndarray, cols: int) -> np.ndarray:
    """``v`` as float32 rows of ``cols`` (zero-filled at the end), the maps ``cv2.remap``
    takes."""
    flat = np.asarray(v, np.float32).ravel()
    if flat.size % cols == 0:
        return flat.reshape(-1, cols)
    out = np.zeros(-(-flat.size // cols) * cols, np.float32)
    out[: flat.size] = flat
    return out.reshape(-1, cols)


def sample_periodic(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return sample(img, x, y, periodic=True)


def _score(
    snr: np.ndarray, waves: np.ndarray, periods: np.ndarray, angles: np.ndarray
) -> np.ndarray:
    """Score of each (period, angle) pair (equal-shape arrays): log(1 + snr) summed over where
    the pilot waves fall."""
    return _score_at(snr, _wave_positions(snr.shape, waves, periods, angles))


def _wave_positions(
    shape: tuple[int, ...], waves: np.ndarray, periods: np.ndarray, angles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where, in a spectrum of this shape (``fftshift`` order), the pilot waves of each (period,
    angle) pair fall, as (x, y) arrays of shape ``periods.shape + (waves,)``. A wave of ``k``
    cycles per tile is at ``R(angle)^T k / period`` cycles per pixel."""
    hs, ws = shape
    c, s = np.cos(angles)[..., None], np.sin(angles)[..., None]
    p = periods[..., None]
    fx = (c * waves[:, 0] - s * waves[:, 1]) / p
    fy = (s * waves[:, 0] + c * waves[:, 1]) / p
    return fx * ws + ws // 2, fy * hs + hs // 2


def _score_at(snr: np.ndarray, positions: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    val = sample(snr, *positions)
    return np.log1p(np.maximum(val, 0.0)).sum(-1)


@lru_cache(maxsize=16)
def _coarse_grid(
    short: int, shape: tuple[int, int], waves: bytes
) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The coarse search's periods and angles (a meshgrid, periods along the first axis) for
    an image of ``short`` working pixels on its short side, and where their pilot waves fall in
    a spectrum of ``shape`` (``waves``: the wave array's bytes, int64 pairs)."""
    periods = np.arange(short / MAX_TILES, short / MIN_TILES, COARSE_PERIOD_STEP, dtype=np.float32)
    step = COARSE_ANGLE_STEP
    angles = np.deg2rad(np.arange(-MAX_ANGLE_DEG, MAX_ANGLE_DEG + 1e-6, step, dtype=np.float32))
    pp, aa = np.meshgrid(periods, angles, indexing="ij")
    wave_array = np.frombuffer(waves, np.int64).reshape(-1, 2)
    positions = _wave_positions(shape, wave_array, pp, aa)
    for a in (pp, aa, *positions):
        a.flags.writeable = False
    return pp, aa, positions


def find_lattices(
    e: np.ndarray, waves: np.ndarray, count: int, snr: np.ndarray | None = None
) -> list[Lattice]:
    """The ``count`` best square lattices by pilot-wave score, best first: a coarse grid of
    periods and angles (the Hann window's main lobe spans the grid step), then a fine grid
    round each of the ``COARSE_KEEP`` best local maxima of the coarse score. ``snr`` is
    :func:`spectrum_snr` of ``e`` where already computed."""
    h, w = e.shape
    if snr is None:
        snr = spectrum_snr(e)
    waves_i64 = np.ascontiguousarray(waves, np.int64)
    pp, aa, positions = _coarse_grid(min(h, w), snr.shape, waves_i64.tobytes())
    coarse = _score_at(snr, positions).astype(np.float32)
    is_max = coarse >= cv2.dilate(coarse, np.ones((NMS, NMS), np.uint8))
    flat = np.flatnonzero(is_max)
    flat = flat[np.argsort(coarse.ravel()[flat])[::-1][:COARSE_KEEP]]
    offsets_p, offsets_a = np.meshgrid(
        np.arange(-FINE_PERIOD_REACH, FINE_PERIOD_REACH + 0.01, FINE_STEP, dtype=np.float32),
        np.deg2rad(
            np.arange(-FINE_ANGLE_REACH, FINE_ANGLE_REACH + 0.01, FINE_STEP, dtype=np.float32)
        ),
        indexing="ij",
    )
    fine_p = pp.ravel()[flat][:, None] + offsets_p.ravel()[None, :]
    fine_a = aa.ravel()[flat][:, None] + offsets_a.ravel()[None, :]
    fine = _score(snr, waves, fine_p, fine_a)
    best = np.argmax(fine, axis=1)
    found = [
        Lattice.similarity(float(fine_p[i, j]), float(fine_a[i, j]), float(fine[i, j]))
        for i, j in enumerate(best)
    ]
    return sorted(found, key=lambda f: -f.score)[:count]


def crop_lattices(snr: np.ndarray, waves: np.ndarray, short: int, count: int) -> list[Lattice]:
    """The ``count`` best lattices on the crop line, best first: angle 0 and the periods of an
    image that was only cropped (``short`` working pixels on the short side, ``TILES_ACROSS``
    tiles across its uncropped short side, which kept a ``CROP_KEEP`` fraction). Pictures with
    strong periodic texture can outscore the pilot waves over the full search; along this line
    the pilot usually still wins."""
    lo, hi = (short / (TILES_ACROSS * keep) for keep in CROP_KEEP[::-1])
    periods = np.arange(lo, hi, CROP_PERIOD_STEP, dtype=np.float32)
    score = _score(snr, waves, periods, np.zeros_like(periods)).astype(np.float32)
    top = cv2.dilate(score[None, :], np.ones((1, 2 * CROP_NMS + 1), np.uint8)).ravel()
    maxima = np.flatnonzero(score >= top)
    maxima = maxima[np.argsort(score[maxima])[::-1][:count]]
    return [Lattice.similarity(float(periods[i]), 0.0, float(score[i])) for i in maxima]
