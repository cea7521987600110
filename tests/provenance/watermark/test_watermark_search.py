"""The lattice search's shortcuts: the spectrum computed only where the search looks, and the
refinement left out for lattices whose pilot peak is noise (but for the spectrally strongest)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from provenance.watermark import TiledWatermarker
from provenance.watermark import detector as dt
from provenance.watermark import fold as fl
from provenance.watermark.lattice import (
    FINE_ANGLE_REACH,
    FINE_PERIOD_REACH,
    MAX_ANGLE_DEG,
    MAX_TILES,
    MIN_TILES,
    Lattice,
    _score,
    crop_lattices,
    find_lattices,
    search_band,
    spectrum_snr,
)
from provenance.watermark.whitening import luma_u8, to_working, whiten

from .conftest import textured


def _pilot_field(layout, shape: tuple[int, int], period: float, angle_deg: float,
                 seed: int) -> np.ndarray:
    """White noise with the pilot's plane waves at a given lattice."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    m = Lattice.similarity(period, np.deg2rad(angle_deg)).matrix
    u = m[0, 0] * (xs - w / 2) + m[0, 1] * (ys - h / 2)
    v = m[1, 0] * (xs - w / 2) + m[1, 1] * (ys - h / 2)
    e = np.random.default_rng(seed).normal(0, 1, shape).astype(np.float32)
    for kx, ky in layout.waves:
        e += 0.25 * np.cos(2 * np.pi * (kx * u + ky * v) / layout.tile).astype(np.float32)
    return e


@pytest.mark.parametrize("shape", [(320, 480), (320, 320), (320, 640), (96, 135)])
def test_the_band_limited_spectrum_scores_every_searched_lattice_as_the_full_one(
    watermarker: TiledWatermarker, shape: tuple[int, int]
) -> None:
    waves = watermarker.layout.waves
    short = min(shape)
    e = _pilot_field(watermarker.layout, shape, short / 3.1, 2.0, sum(shape))
    full = spectrum_snr(e)
    band = spectrum_snr(e, search_band(waves, short))
    if short > 200:  # on a small picture the band and its margins are the whole spectrum
        assert np.count_nonzero(band) < 0.6 * band.size
    # every period and angle the coarse and fine searches may score, to their extremes
    periods = np.linspace(short / MAX_TILES - FINE_PERIOD_REACH,
                          short / MIN_TILES + FINE_PERIOD_REACH, 60, dtype=np.float32)
    reach = np.deg2rad(MAX_ANGLE_DEG + FINE_ANGLE_REACH)
    angles = np.linspace(-reach, reach, 25, dtype=np.float32)
    pp, aa = np.meshgrid(periods, angles, indexing="ij")
    np.testing.assert_allclose(_score(band, waves, pp, aa), _score(full, waves, pp, aa),
                               rtol=1e-5)
    for got, expected in (
        (find_lattices(e, waves, 8, band), find_lattices(e, waves, 8, full)),
        (crop_lattices(band, waves, short, 2), crop_lattices(full, waves, short, 2)),
    ):
        assert [x.matrix.tolist() for x in got] == [x.matrix.tolist() for x in expected]


def test_a_noise_lattice_is_not_refined_and_a_marked_one_is(
    watermarker: TiledWatermarker, monkeypatch: pytest.MonkeyPatch
) -> None:
    templates = watermarker.templates
    quadrants_read = []
    correlate_regions = fl.correlate_regions

    def counted(folded: fl.Folded, template: np.ndarray) -> np.ndarray:
        quadrants_read.append(1)
        return correlate_regions(folded, template)

    monkeypatch.setattr(fl, "correlate_regions", counted)
    noise = whiten(to_working(luma_u8(textured(50, (480, 360)).convert("L"))))
    guess = Lattice.similarity(80.0, 0.0)
    lattice, _, total = dt._refine(noise, templates, guess, always=False)
    assert total.max() < dt.REFINE_MIN_Z and lattice is guess
    assert not quadrants_read  # the quadrants' pilot peaks are never looked for
    # ... unless it is one of the lattices always refined (the spectrally strongest)
    dt._refine(noise, templates, guess, always=True)
    assert quadrants_read
    quadrants_read.clear()

    # A mark turned by half a degree and read on the unturned lattice: the pilot stands out
    # and the refinement turns the lattice towards the truth.
    marked = watermarker.embed(textured(51, (480, 360)), 0xABCDEF)
    turned = marked.rotate(0.5, resample=Image.Resampling.BICUBIC)
    e = whiten(to_working(luma_u8(turned)))
    start = fl.unedited_lattice(360, 480, dt.period_for(360, 480))
    lattice, _, total = dt._refine(e, templates, start, always=False)
    assert total.max() >= dt.REFINE_MIN_Z
    assert lattice is not start and quadrants_read
    # Pillow turns counter-clockwise: with y pointing down the lattice's angle is -0.5 degrees
    assert abs(lattice.angle_deg + 0.5) < 0.1 < abs(start.angle_deg + 0.5)


def test_the_spectrally_strongest_searched_lattices_are_the_ones_always_refined(
    watermarker: TiledWatermarker,
) -> None:
    layout, templates = watermarker.layout, watermarker.templates
    marked = watermarker.embed(textured(52, (480, 360)), 0x123456)
    e = whiten(to_working(luma_u8(marked.rotate(1.5, resample=Image.Resampling.BICUBIC))))
    searched = dt._searched(e, layout, templates)
    strongest = find_lattices(e, layout.waves, dt.LATTICE_CANDIDATES)[: dt.SPECTRAL_ALWAYS]
    always = [lattice for lattice, flag in searched if flag]
    assert [x.matrix.tolist() for x in always] == [x.matrix.tolist() for x in strongest]
    assert len(searched) > len(always)  # the others are searched too, refined only when strong
    _, flag = next(dt._lattices(e, layout, templates, marked.size))
    assert not flag  # the unedited lattice is refined only when its pilot stands out


def test_the_coarse_grid_kept_between_reads_fits_each_image_shape(watermarker: TiledWatermarker):
    """The coarse grid's wave positions are kept per image shape: reads of other shapes in
    between find the lattice each finds on its own, the planted one among them."""
    waves = watermarker.layout.waves
    fields = {
        shape: _pilot_field(watermarker.layout, shape, period, 1.0, seed)
        for shape, period, seed in (((320, 480), 70.0, 3), ((320, 640), 90.0, 4),
                                    ((400, 320), 60.0, 5))
    }
    found = {}
    for shape in [*fields, *fields]:  # each shape twice, others in between
        lattices = find_lattices(fields[shape], waves, 3)
        found.setdefault(shape, []).append([x.matrix.tolist() for x in lattices])
    for shape, (first, again) in found.items():
        assert first == again
        planted = {(320, 480): 70.0, (320, 640): 90.0, (400, 320): 60.0}[shape]
        best = Lattice(np.array(first[0]))
        assert abs(best.period - planted) < 0.3 and abs(best.angle_deg - 1.0) < 0.15
