"""The default watermarker: a tiled spread-spectrum pattern in luma with a self-synchronising
lattice (see the package docstring for the design and the false-positive arithmetic)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from . import convolutional as cc
from . import kernels
from .detector import detect
from .embedder import embed
from .fold import Templates
from .layout import TileLayout, make_layout
from .payload import FRAME_BITS, PAYLOAD_BITS, check_payload, frame_bits
from .protocol import WatermarkReading

ALG = "org.chopmark.wm.v1"
MIN_EMBED_SIDE = 256
MIN_DETECT_SIDE = 96


class TiledWatermarker:
    """Tiled spread-spectrum watermark carrying a 48-bit payload with a CRC-32 check word."""

    alg = ALG
    payload_bits = PAYLOAD_BITS

    def __init__(self, key: str = ALG) -> None:
        self.layout: TileLayout = make_layout(key, cc.coded_length(FRAME_BITS))
        self.templates = Templates(self.layout.pilot)
        kernels.warm_up()  # compiled (or loaded from the cache) now, not in a first request

    def embed(self, image: Image.Image, payload: int) -> Image.Image:
        payload = check_payload(payload)
        if min(image.size) < MIN_EMBED_SIDE:
            raise ValueError(
                f"image {image.size[0]}x{image.size[1]} is too small to watermark: "
                f"both sides must be at least {MIN_EMBED_SIDE} px"
            )
        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        return Image.fromarray(
            embed(rgb, self.layout, self.templates, cc.encode(frame_bits(payload))), "RGB"
        )

    def detect(self, image: Image.Image) -> WatermarkReading:
        if min(image.size) < MIN_DETECT_SIDE:
            raise ValueError(
                f"image {image.size[0]}x{image.size[1]} is too small to read: "
                f"both sides must be at least {MIN_DETECT_SIDE} px"
            )
        return detect(self.layout, self.templates, image)

    def read_back(self, image: Image.Image) -> WatermarkReading:
        """Read a file this watermarker just marked, unedited: only its own geometry is tried
        (the same answer as ``detect`` for such a file, without the search when it fails)."""
        if min(image.size) < MIN_DETECT_SIDE:
            raise ValueError(
                f"image {image.size[0]}x{image.size[1]} is too small to read: "
                f"both sides must be at least {MIN_DETECT_SIDE} px"
            )
        return detect(self.layout, self.templates, image, unedited_only=True)


def default_watermarker() -> TiledWatermarker:
    return TiledWatermarker()
