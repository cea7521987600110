"""The compiled fold and Viterbi kernels, and the packed templates, against the plain array
expressions they stand for."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from provenance.watermark import convolutional as cc
from provenance.watermark import fold as fl
from provenance.watermark import kernels
from provenance.watermark.lattice import Lattice
from provenance.watermark.layout import TILE
from provenance.watermark.tiled import TiledWatermarker


def _fold_reference(e: np.ndarray, matrix: np.ndarray, n: int) -> np.ndarray:
    """Quadrant folds by ``np.bincount``: every pixel to bin ``floor(matrix @ (x, y)) mod n``."""
    h, w = e.shape
    xs = np.arange(w, dtype=np.float32) - np.float32(w / 2)
    ys = np.arange(h, dtype=np.float32) - np.float32(h / 2)
    m = matrix.astype(np.float32)
    u = (xs * m[0, 0])[None, :] + (ys * m[0, 1])[:, None]
    v = (xs * m[1, 0])[None, :] + (ys * m[1, 1])[:, None]
    idx = (np.floor(v).astype(np.int64) % n) * n + (np.floor(u).astype(np.int64) % n)
    idx += (2 * (ys >= 0))[:, None] * n * n + (xs >= 0)[None, :] * n * n
    return np.bincount(idx.ravel(), weights=e.ravel(), minlength=4 * n * n).reshape(4, n, n)


def _viterbi_reference(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Exhaustive search over every input word of ``n_bits`` bits (small ``n_bits`` only)."""
    best, best_bits = -np.inf, None
    for word in range(1 << n_bits):
        bits = np.array([(word >> (n_bits - 1 - i)) & 1 for i in range(n_bits)], np.uint8)
        score = float(np.dot(2.0 * cc.encode(bits) - 1.0, soft))
        if score > best:
            best, best_bits = score, bits
    assert best_bits is not None
    return best_bits


@pytest.mark.parametrize(
    ("period", "angle", "shape"),
    [(64.0, 0.0, (320, 320)), (57.3, 0.03, (320, 455)), (91.7, -0.08, (331, 320))],
)
def test_fold_matches_the_bincount_of_every_pixel(
    period: float, angle: float, shape: tuple[int, int]
) -> None:
    rng = np.random.default_rng(1)
    e = rng.normal(size=shape).astype(np.float32)
    lattice = Lattice.similarity(period, angle)
    got = fl.fold_regions(e, lattice).regions
    n = TILE * fl.FOLD_SUB
    assert np.array_equal(got, _fold_reference(e, lattice.matrix * fl.FOLD_SUB, n))
    total = fl.fold_total(e, lattice)
    assert np.allclose(total, got.sum(0))
    assert total.sum() == pytest.approx(float(e.astype(np.float64).sum()), abs=1e-6)


def test_viterbi_finds_the_best_word() -> None:
    rng = np.random.default_rng(2)
    for _ in range(10):
        soft = rng.normal(size=cc.coded_length(8))
        assert np.array_equal(cc.viterbi(soft, 8), _viterbi_reference(soft, 8))


def test_packed_templates_equal_the_transform_of_their_spatial_form() -> None:
    """Each template is the OpenCV packed spectrum of the pulse (times the pilot) with the
    whitening high-pass of its lattice's scale."""
    wm = TiledWatermarker()
    for period in (40.0, 64.0, 91.73):
        for sub in (fl.RANK_SUB, fl.FOLD_SUB):
            n = TILE * sub
            lattice = Lattice.similarity(period, 0.0)
            sigma = fl._highpass_sigma_bins(round(period, 2), sub)
            fy = np.fft.fftfreq(n)[:, None]
            fx = np.fft.rfftfreq(n)[None, :]
            chip = fl._pulse_spectrum(sub) * (
                1 - np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
            )
            pilot = chip * fl.chips_spectrum(wm.layout.pilot, sub)
            for spec, got in (
                (chip, wm.templates.chip(lattice, sub)),
                (pilot, wm.templates.pilot(lattice, sub)),
            ):
                want = cv2.dft(np.fft.irfft2(spec, s=(n, n)).astype(np.float32))
                assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_warm_up_compiles_both_kernels() -> None:
    kernels.warm_up()
    assert kernels._fold.signatures and kernels._viterbi.signatures


@pytest.mark.parametrize("shape", [(320, 480), (324, 486), (225, 375), (96, 135)])
def test_power_spectrum_from_the_half_transform_is_the_full_one(shape):
    from provenance.watermark.lattice import _power

    rng = np.random.default_rng(sum(shape))
    real = rng.standard_normal(shape).astype(np.float32)
    real[:7, :5] += 40.0  # a strong low frequency beside white noise
    full = cv2.dft(real, flags=cv2.DFT_COMPLEX_OUTPUT)
    expected = full[..., 0] ** 2 + full[..., 1] ** 2
    got = _power(real)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(expected.max()))
