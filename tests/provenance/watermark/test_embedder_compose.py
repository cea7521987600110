"""The marked pixels are ``rgb + delta`` on each channel, rounded and saturated, computed one
channel at a time (no three-channel float copy of the pattern)."""

from __future__ import annotations

import numpy as np

from provenance.watermark.embedder import compose


def test_compose_adds_the_pattern_to_every_channel_rounded_and_saturated() -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    rgb[0, :4] = [[0, 0, 0], [255, 255, 255], [10, 20, 30], [250, 5, 128]]
    delta = rng.normal(0, 4, (64, 80))
    delta[0, :4] = [-7.6, 9.2, 0.49, -0.51]
    out = compose(rgb, delta)
    exact = rgb.astype(np.float64) + delta[..., None].astype(np.float32)
    expected = np.clip(np.rint(exact), 0, 255)
    assert out.dtype == np.uint8 and out.shape == rgb.shape
    assert np.array_equal(out, expected.astype(np.uint8))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [10, 20, 30] and out[0, 3].tolist() == [249, 4, 127]
