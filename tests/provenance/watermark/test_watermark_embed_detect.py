from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from provenance.watermark import (
    MAX_HYPOTHESES,
    MIN_DETECT_SIDE,
    MIN_EMBED_SIDE,
    TiledWatermarker,
    Watermarker,
    default_watermarker,
    payload_to_hex,
)

from .conftest import EDITS, psnr, textured


def test_default_is_a_watermarker() -> None:
    wm = default_watermarker()
    assert isinstance(wm, Watermarker)
    assert wm.alg == "org.chopmark.wm.v1"
    assert wm.payload_bits >= 48


def test_round_trip(
    marked: list[tuple[Image.Image, Image.Image, int]], watermarker: TiledWatermarker
) -> None:
    for original, image, payload in marked:
        assert image.mode == "RGB" and image.size == original.size
        reading = watermarker.detect(image)
        assert reading.present
        assert reading.payload == payload
        assert payload_to_hex(reading.payload) == payload_to_hex(payload)
        assert reading.confidence > 0.5
        assert reading.bit_errors_corrected is not None


def test_psnr_at_least_40(marked: list[tuple[Image.Image, Image.Image, int]]) -> None:
    for original, image, _ in marked:
        value = psnr(original, image)
        assert 40.0 <= value < 42.0


@pytest.mark.parametrize("edit", list(EDITS))
def test_survives_edit(
    edit: str, marked: list[tuple[Image.Image, Image.Image, int]], watermarker: TiledWatermarker
) -> None:
    for _, image, payload in marked:
        reading = watermarker.detect(EDITS[edit](image))
        assert reading.present, (edit, reading.details)
        assert reading.payload == payload


def test_unmarked_images_read_absent(watermarker: TiledWatermarker) -> None:
    rng = np.random.default_rng(0)
    images = [textured(seed, (480, 360)) for seed in range(10, 16)]
    images.append(Image.new("RGB", (300, 300), (128, 128, 128)))
    images.append(Image.fromarray(rng.integers(0, 256, (320, 256, 3), dtype=np.uint8)))
    for image in images:
        reading = watermarker.detect(image)
        assert not reading.present
        assert reading.payload is None


def test_a_different_key_does_not_read_the_mark(
    marked: list[tuple[Image.Image, Image.Image, int]],
) -> None:
    other = TiledWatermarker(key="another deployment")
    assert not other.detect(marked[0][1]).present


def test_sizes_and_aspects(watermarker: TiledWatermarker) -> None:
    for size in ((256, 256), (900, 300), (300, 700), (2048, 256), (2048, 1536)):
        image = textured(5, size)
        marked = watermarker.embed(image, 42)
        assert psnr(image, marked) >= 40.0
        assert watermarker.detect(marked).payload == 42, size


def test_other_modes_are_converted(watermarker: TiledWatermarker) -> None:
    image = textured(6, (400, 400)).convert("L")
    marked = watermarker.embed(image, 7)
    assert marked.mode == "RGB"
    assert watermarker.detect(marked.convert("RGBA")).payload == 7


def test_small_images_are_refused(watermarker: TiledWatermarker) -> None:
    with pytest.raises(ValueError, match="too small"):
        watermarker.embed(textured(1, (MIN_EMBED_SIDE - 1, 600)), 1)
    with pytest.raises(ValueError, match="too small"):
        watermarker.detect(Image.new("RGB", (MIN_DETECT_SIDE - 1, 400)))


@pytest.mark.parametrize("bad", [-1, 1 << 48])
def test_payload_out_of_range_is_refused(bad: int, watermarker: TiledWatermarker) -> None:
    with pytest.raises(ValueError, match="payload"):
        watermarker.embed(textured(1, (300, 300)), bad)


def test_hypotheses_stay_within_the_false_positive_budget(watermarker: TiledWatermarker) -> None:
    assert MAX_HYPOTHESES * 2.0**-32 <= 1e-6
    rng = np.random.default_rng(3)
    for image in (textured(20, (500, 380)), textured(21, (300, 640)).rotate(3)):
        piece = image.crop((int(rng.integers(0, 40)), 0, image.width, image.height))
        reading = watermarker.detect(piece)
        assert not reading.present
        assert 0 < reading.details["hypotheses_tried"] <= MAX_HYPOTHESES


def test_unmarked_pictures_skip_the_polish(watermarker: TiledWatermarker) -> None:
    """Without evidence of a mark the detector stops after the searched lattices."""
    from provenance.watermark.detector import POLISHED

    for seed in (30, 31, 32):
        reading = watermarker.detect(textured(seed, (480, 360)))
        assert not reading.present
        assert reading.details["hypotheses_tried"] <= MAX_HYPOTHESES - POLISHED


def test_crop_line_finds_the_period_of_a_cropped_lattice(watermarker: TiledWatermarker) -> None:
    from provenance.watermark.lattice import Lattice, crop_lattices, spectrum_snr

    layout = watermarker.layout
    period = 80.3  # working pixels: an 80% crop of a 320 px short side with 5 tiles across
    ys, xs = np.mgrid[0:320, 0:480].astype(np.float32)
    m = Lattice.similarity(period, 0.0).matrix
    u, v = m[0, 0] * xs, m[1, 1] * ys
    rng = np.random.default_rng(4)
    e = rng.normal(0, 1, (320, 480)).astype(np.float32)
    for kx, ky in layout.waves:
        e += 0.3 * np.cos(2 * np.pi * (kx * u + ky * v) / layout.tile).astype(np.float32)
    found = crop_lattices(spectrum_snr(e), layout.waves, 320, 2)
    assert abs(found[0].period - period) < 0.5
    assert found[0].angle_deg == 0.0


def test_read_back_of_a_fresh_mark_tries_its_own_geometry_only(
    watermarker: TiledWatermarker, marked: list[tuple[Image.Image, Image.Image, int]]
) -> None:
    from provenance.watermark.fold import unedited_lattice
    from provenance.watermark.layout import period_for

    for original, image, payload in marked:
        reading = watermarker.read_back(image)
        assert reading.present and reading.payload == payload
        assert reading.details["hypotheses_tried"] <= 3  # the unedited lattice, no search
        # ... taken as it is (no refinement), and reading as well as the full detector
        w, h = image.size
        exact = unedited_lattice(h, w, period_for(h, w))
        assert reading.details["period_px"] == round(exact.period, 3)
        assert reading.details["angle_deg"] == round(exact.angle_deg, 3)
        full = watermarker.detect(image)
        assert full.payload == payload
        assert reading.details["agreement"] >= full.details["agreement"] - 0.01
        unmarked = watermarker.read_back(original)
        assert not unmarked.present and unmarked.details["hypotheses_tried"] <= 3


def test_unmarked_pictures_decode_only_searched_lattices_whose_pilot_stands_out(
    watermarker: TiledWatermarker,
) -> None:
    """Searched lattices whose half-size pilot peak is noise are not refined or decoded; a
    rotated and cropped mark is still found through the search."""
    from provenance.watermark.detector import (
        CROP_LINE_LATTICES,
        DECODED_LATTICES,
        POLISHED,
    )

    every = 1 + DECODED_LATTICES + CROP_LINE_LATTICES
    tried = [
        watermarker.detect(textured(seed, (480, 360))).details["hypotheses_tried"]
        for seed in (40, 41, 42, 43)
    ]
    assert all(1 <= t <= every + POLISHED for t in tried)
    # Decoding every lattice would try about `every` per picture; here at most 3/4 of that.
    assert sum(tried) <= 3 * every, f"searched lattices of pure noise were decoded: {tried}"

    marked = watermarker.embed(textured(44, (480, 360)), 0xC0FFEE)
    edited = marked.rotate(3, resample=Image.Resampling.BICUBIC).crop((30, 20, 450, 340))
    reading = watermarker.detect(edited)
    assert reading.present and reading.payload == 0xC0FFEE
