"""Perceptual strength map: the watermark may be stronger where the picture is busy and must be
weaker in flat areas and near black or white, where added noise shows."""

from __future__ import annotations

import cv2
import numpy as np

MASK_SIDE = 256  # the map is computed at this size (short side) and scaled up
ACTIVITY_EXPONENT = 0.15
ACTIVITY_FLOOR = 2.0
LEVEL_KNEE = 24.0  # grey levels from black or white below which the strength tapers


def strength_map(luma: np.ndarray) -> np.ndarray:
    """Relative strength (mean 1) for a luma plane (uint8 or float32), float32, same shape."""
    h, w = luma.shape
    small = strength_small(luma)
    if small.shape == (h, w):
        return small
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def strength_small(luma: np.ndarray, side: int = MASK_SIDE) -> np.ndarray:
    """:func:`strength_map` at ``side`` pixels on the short side (or less); a ``side`` other
    than ``MASK_SIDE`` measures activity at the same scale relative to the picture."""
    h, w = luma.shape
    f = min(1.0, side / min(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA).astype(np.float32, copy=False)
    reach = side / MASK_SIDE
    detail = small - cv2.GaussianBlur(small, (0, 0), 1.5 * reach)
    activity = np.sqrt(cv2.GaussianBlur(detail * detail, (0, 0), 3.0 * reach))
    level = np.clip(np.minimum(small, 255.0 - small) / LEVEL_KNEE, 0.25, 1.0)
    mask = (activity + ACTIVITY_FLOOR) ** ACTIVITY_EXPONENT * level
    mask *= 1.0 / (float(mask.mean()) + 1e-6)
    return mask
