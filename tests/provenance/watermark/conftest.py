"""Fixtures for the watermark tests: synthetic pictures and the edits the mark must survive."""

from __future__ import annotations

import io
from collections.abc import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from provenance.watermark import TiledWatermarker, default_watermarker


def textured(seed: int, size: tuple[int, int] = (512, 384)) -> Image.Image:
    """A deterministic picture: multi-scale coloured noise (roughly 1/f), a gradient, a few flat
    shapes with hard edges, and fine grain."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.zeros((h, w, 3), np.float32)
    for scale in (2, 4, 8, 16, 48, 128):
        grid = rng.normal(size=(h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        img += cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC) * scale**0.6
    img = (img - img.mean()) / (img.std() + 1e-6) * 40 + 128
    img += np.linspace(-30, 30, w, dtype=np.float32)[None, :, None]
    for _ in range(6):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        colour = [float(c) for c in rng.integers(20, 235, 3)]
        cv2.circle(img, (x, y), int(rng.integers(10, min(w, h) // 5)), colour, -1)
    img += rng.normal(0, 3, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    out.seek(0)
    return Image.open(out).convert("RGB")


def resize(image: Image.Image, factor: float) -> Image.Image:
    size = (round(image.width * factor), round(image.height * factor))
    return image.resize(size, Image.Resampling.BICUBIC)


def crop(image: Image.Image, keep: float, fx: float, fy: float) -> Image.Image:
    """Keep ``keep`` of each side; ``fx``, ``fy`` in [0, 1] place the window."""
    w, h = round(image.width * keep), round(image.height * keep)
    x, y = round((image.width - w) * fx), round((image.height - h) * fy)
    return image.crop((x, y, x + w, y + h))


def brighten(image: Image.Image, amount: int) -> Image.Image:
    arr = np.asarray(image).astype(np.int16) + amount
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


EDITS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg90": lambda im: jpeg(im, 90),
    "jpeg75": lambda im: jpeg(im, 75),
    "jpeg50": lambda im: jpeg(im, 50),
    "resize0.5": lambda im: resize(im, 0.5),
    "crop90": lambda im: crop(im, 0.9, 0.3, 0.8),
    "crop80": lambda im: crop(im, 0.8, 0.9, 0.1),
    "rotate2": lambda im: im.rotate(2, resample=Image.Resampling.BICUBIC),
    "brighten20": lambda im: brighten(im, 20),
    "crop90+resize0.75+jpeg75": lambda im: jpeg(resize(crop(im, 0.9, 0.6, 0.4), 0.75), 75),
}


@pytest.fixture(scope="session")
def watermarker() -> TiledWatermarker:
    return default_watermarker()


@pytest.fixture(scope="session")
def marked(watermarker: TiledWatermarker) -> list[tuple[Image.Image, Image.Image, int]]:
    """(original, marked, payload) for three pictures of different sizes and aspects."""
    out = []
    for seed, size in ((1, (512, 384)), (2, (400, 600)), (3, (640, 640))):
        original = textured(seed, size)
        payload = (0x5EED_0000_0000 + seed * 0x1_2345_6789) % (1 << 48)
        out.append((original, watermarker.embed(original, payload), payload))
    return out


def psnr(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    return float(10 * np.log10(255**2 / np.mean((x - y) ** 2)))
