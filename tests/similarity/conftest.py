"""Synthetic pictures for the similarity tests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter


def textured_picture(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A picture of random shapes over a smooth colour field: rich in corners, like artwork."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack(
        [
            127
            + 100
            * np.sin(
                2 * np.pi * (xx * rng.uniform(0.5, 2) + yy * rng.uniform(0.5, 2) + rng.uniform())
            )
            for _ in range(3)
        ],
        axis=-1,
    )
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(120):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(8, 60)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse((x - r, y - r * rng.uniform(0.3, 1), x + r, y + r), fill=colour)
        elif kind == 1:
            draw.rectangle((x - r, y - r / 2, x + r, y + r / 2), fill=colour)
        else:
            pts = [
                (x + r * np.cos(a), y + r * np.sin(a))
                for a in np.sort(rng.uniform(0, 2 * np.pi, 3))
            ]
            draw.polygon(pts, fill=colour)
    return img.filter(ImageFilter.GaussianBlur(0.6))


def jpeg_bytes(img: Image.Image, quality: int = 90, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, **kwargs)
    return buf.getvalue()


@pytest.fixture(scope="session")
def artwork() -> Image.Image:
    return textured_picture(1)


@pytest.fixture(scope="session")
def other_artwork() -> Image.Image:
    return textured_picture(2)


@pytest.fixture(scope="session")
def make_picture():  # type: ignore[no-untyped-def]
    """The `textured_picture` factory."""
    return textured_picture


@pytest.fixture(scope="session")
def to_jpeg():  # type: ignore[no-untyped-def]
    """The `jpeg_bytes` encoder."""
    return jpeg_bytes
