"""The detector's view of an image: luma at a fixed working size, high-passed and weighted so that
each pixel counts by how much watermark it is expected to hold over how much picture noise."""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from .masking import strength_small

WORK_SIDE = 320  # short side of the working image
MAX_ASPECT = 2.0  # longer working images are centre-cropped to this aspect
HIGHPASS_SIGMA = 1.5
ENERGY_SIGMA = 2.0
ENERGY_FLOOR = 1.0


def working_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) of the working image before the aspect crop."""
    f = WORK_SIDE / min(height, width)
    return max(1, round(height * f)), max(1, round(width * f))


def working_crop(height: int, width: int) -> tuple[slice, slice]:
    """The centre crop (rows, columns) of the resized image that is the working image."""
    wh, ww = working_size(height, width)
    cap = round(WORK_SIDE * MAX_ASPECT)
    y0, x0 = max(0, (wh - cap) // 2), max(0, (ww - cap) // 2)
    return slice(y0, y0 + min(wh, cap)), slice(x0, x0 + min(ww, cap))


def to_working(plane: np.ndarray) -> np.ndarray:
    """Resize a luma (or other) plane to the working size, then centre-crop the long side."""
    h, w = plane.shape
    wh, ww = working_size(h, w)
    interp = cv2.INTER_AREA if wh < h else cv2.INTER_CUBIC
    out = cv2.resize(plane, (ww, wh), interpolation=interp).astype(np.float32, copy=False)
    rows, cols = working_crop(h, w)
    return np.ascontiguousarray(out[rows, cols])


def luma_u8(image: Image.Image) -> np.ndarray:
    """The luma plane (BT.601, as a JPEG's Y): a greyscale ("L") picture is its own."""
    if image.mode == "L":
        return np.asarray(image)
    rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def highpass(plane: np.ndarray) -> np.ndarray:
    return plane - cv2.GaussianBlur(plane, (0, 0), HIGHPASS_SIGMA)


def weights(luma: np.ndarray, detail: np.ndarray | None = None) -> np.ndarray:
    """Per-pixel weight (mean 1): expected watermark strength (the embedder's perceptual map,
    re-estimated here) over local residual energy, the maximum-ratio combining weight."""
    if detail is None:
        detail = highpass(luma)
    energy = cv2.GaussianBlur(detail * detail, (0, 0), ENERGY_SIGMA) + ENERGY_FLOOR
    h, w = luma.shape
    # At half the working size (even sides: an exact 2x2 average), scaled back up: the map is
    # smooth, and a quarter of the pixels costs a fraction of the time.
    small = strength_small(luma[: h - h % 2, : w - w % 2], side=min(h, w) // 2)
    strength = cv2.resize(small, (w, h))
    weight = strength / energy
    return weight * (1.0 / float(weight.mean()))


def whiten(
    luma: np.ndarray, weight: np.ndarray | None = None, detail: np.ndarray | None = None
) -> np.ndarray:
    """High-pass residual times :func:`weights`, clipped at 3 standard deviations, zero-mean
    (``detail``: :func:`highpass` of ``luma`` where already computed)."""
    if detail is None:
        detail = highpass(luma)
    out = detail * (weights(luma, detail) if weight is None else weight)
    spread = 3.0 * float(np.std(out)) + 1e-9
    np.clip(out, -spread, spread, out=out)
    out -= out.mean()
    return out


def half(e: np.ndarray) -> np.ndarray:
    """2x2 block average (for cheap first looks)."""
    h, w = e.shape
    return cv2.resize(e, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
