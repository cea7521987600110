"""Adding the tiled pattern to the luma of an RGB image at a fixed PSNR.

The pattern is the chip tile rendered at ``period_for`` pixels per tile, times the perceptual
strength map, added equally to R, G and B. Before the final pass the embedder reads the marked
image the way the detector will (informed embedding): each coded bit's chips are re-weighted so
that bits the picture itself works against get more of the energy budget and those it already
favours get less; the PSNR budget stays the same.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from . import fold as fl
from .layout import TileLayout, interpolation_matrix, period_for, render, separable
from .masking import strength_small
from .whitening import highpass, to_working, weights, whiten, working_crop, working_size

TARGET_PSNR_DB = 40.5
HOST_REJECTION = 0.5
MIN_BIT_GAIN = 0.6


def _mean_square(a: np.ndarray) -> float:
    flat = a.ravel()
    return float(np.einsum("i,i->", flat, flat)) / flat.size


def _gain(pattern: np.ndarray, psnr_db: float) -> float:
    target_rms = 255.0 / 10 ** (psnr_db / 20)
    # Rounding to integers adds about 1/12 to the mean squared error.
    return float(np.sqrt(max(target_rms**2 - 1 / 12, 0.1) / (_mean_square(pattern) + 1e-12)))


def compose(rgb: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``rgb + delta`` on every channel, rounded and saturated to uint8. Channel by channel:
    a three-channel float copy of ``delta`` was the largest array of a stamp (about 1 GB at
    80 Mpx), for the same pixels."""
    delta = delta.astype(np.float32, copy=False)
    return cv2.merge([cv2.add(channel, delta, dtype=cv2.CV_8U) for channel in cv2.split(rgb)])


def working_pattern(
    chips: np.ndarray, height: int, width: int, period: int, strength: np.ndarray
) -> np.ndarray:
    """The masked pattern as the detector's working image of an unedited image would hold it
    (``strength`` is the small perceptual map)."""
    wh, ww = working_size(height, width)
    rows, cols = working_crop(height, width)
    my, mx = _working_matrices(height, width, period, chips.shape[0])
    mask = cv2.resize(strength, (ww, wh), interpolation=cv2.INTER_LINEAR)[rows, cols]
    return separable(my, chips, mx) * mask


@lru_cache(maxsize=8)
def _working_matrices(height: int, width: int, period: int, tile: int) -> tuple[np.ndarray, ...]:
    """The interpolation matrices of ``working_pattern`` for one image size (outputs of one
    size follow each other: the same for every stamp of that size)."""
    wh, ww = working_size(height, width)
    rows, cols = working_crop(height, width)
    ys = np.arange(rows.start, rows.stop, dtype=np.float64)
    xs = np.arange(cols.start, cols.stop, dtype=np.float64)
    my = interpolation_matrix((ys + 0.5) * (height / wh) * tile / period - 0.5, tile)
    mx = interpolation_matrix((xs + 0.5) * (width / ww) * tile / period - 0.5, tile)
    my.flags.writeable = mx.flags.writeable = False
    return my, mx


def bit_weights(
    gray: np.ndarray,
    pattern_w: np.ndarray,
    layout: TileLayout,
    templates: fl.Templates,
    coded_bits: np.ndarray,
    period: int,
) -> np.ndarray:
    """Amplitude factor per coded bit (informed embedding). The detector's view of the picture
    alone and of the pattern alone (``pattern_w``, working size, final amplitude) give each
    bit's gain and the picture's own pull on it; the factors maximise the smallest margin at an
    unchanged total energy."""
    h, w = gray.shape
    host_w = to_working(gray)
    detail = highpass(host_w)
    weight = weights(host_w, detail)
    e_host = whiten(host_w, weight, detail)
    e_pattern = highpass(pattern_w) * weight
    lattice = fl.unedited_lattice(h, w, period)
    fold_host = fl.fold_total(e_host, lattice)
    fold_pattern = fl.fold_total(e_pattern, lattice)
    corr = fl.correlate(fold_host + fold_pattern, templates.pilot(lattice))
    offset = fl.peaks(fl.zscore(corr), 1)[0][:2]
    host = layout.coded_soft(fl.read_chips(fold_host, templates, lattice, offset))
    own = layout.coded_soft(fl.read_chips(fold_pattern, templates, lattice, offset))
    symbols = 2.0 * coded_bits - 1.0
    gain = own * symbols
    pull = HOST_REJECTION * host * symbols
    gain = np.maximum(gain, 0.2 * max(float(np.median(gain)), 1e-9))
    margin = largest_margin(pull, gain, float(layout.n_coded))
    return np.maximum(MIN_BIT_GAIN, (margin - pull) / gain).astype(np.float32)


def largest_margin(pull: np.ndarray, gain: np.ndarray, budget: float) -> float:
    """The largest common margin ``m`` (at least 0) whose amplitudes
    ``max(MIN_BIT_GAIN, (m - pull) / gain)`` have squares summing to at most ``budget``.

    The sum is a quadratic in ``m`` between the points where one more bit leaves the floor:
    those are sorted, the piece that reaches the budget found, and its root taken (exactly
    what a bisection on ``m`` converges to, without its forty passes over the bits)."""
    g2 = 1.0 / (gain * gain)
    starts = pull + MIN_BIT_GAIN * gain  # where each bit's amplitude leaves the floor
    order = np.argsort(starts)
    starts, g2, pull = starts[order], g2[order], pull[order]
    n = len(starts)
    # on the piece from starts[k] on, bits 0..k are off the floor: a m^2 - 2 b m + c + floor
    a = np.cumsum(g2)
    b = np.cumsum(pull * g2)
    c = np.cumsum(pull * pull * g2)
    floor = (n - 1 - np.arange(n)) * MIN_BIT_GAIN**2
    at_start = a * starts * starts - 2 * b * starts + c + floor
    k = int(np.searchsorted(at_start, budget, side="right")) - 1
    if k < 0:  # within budget only while every bit is on the floor
        return max(0.0, float(starts[0]))
    root = (b[k] + np.sqrt(max(b[k] ** 2 - a[k] * (c[k] + floor[k] - budget), 0.0))) / a[k]
    return max(0.0, float(root))


def embed(
    rgb: np.ndarray,
    layout: TileLayout,
    templates: fl.Templates,
    coded_bits: np.ndarray,
    informed: bool = True,
) -> np.ndarray:
    """The watermarked copy of ``rgb`` (uint8, (h, w, 3)), PSNR about ``TARGET_PSNR_DB``."""
    h, w, _ = rgb.shape
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    strength = strength_small(gray)
    period = period_for(h, w)
    chips = layout.chips(coded_bits)
    if informed:
        pattern_w = working_pattern(chips, h, w, period, strength)
        pattern_w *= _gain(pattern_w, TARGET_PSNR_DB)
        gains = bit_weights(gray, pattern_w, layout, templates, coded_bits, period)
        chips = layout.chips(coded_bits, gains)
    pattern = render(chips, h, w, period)
    pattern *= cv2.resize(strength, (w, h), interpolation=cv2.INTER_LINEAR)
    pattern *= _gain(pattern, TARGET_PSNR_DB)  # saturation at 0 and 255 only raises the PSNR
    return compose(rgb, pattern)
