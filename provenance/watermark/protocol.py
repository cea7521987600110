"""The watermark backend protocol and its reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class WatermarkReading:
    """What a detector found. ``payload`` is set only when ``present``; ``confidence`` is in
    [0, 1]; ``bit_errors_corrected`` counts coded bits the decoder overruled (None when nothing
    valid was decoded); ``details`` holds the geometry found and diagnostics."""

    present: bool
    payload: int | None
    confidence: float
    bit_errors_corrected: int | None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Watermarker(Protocol):
    """An invisible watermark: ``alg`` is the C2PA soft-binding algorithm name."""

    alg: str
    payload_bits: int

    def embed(self, image: Image.Image, payload: int) -> Image.Image: ...

    def detect(self, image: Image.Image) -> WatermarkReading: ...


# A watermarker may also offer ``read_back(image) -> WatermarkReading``: reading a file it has
# just marked, at the geometry it marked (the stamp step's check); ``detect`` serves otherwise.
