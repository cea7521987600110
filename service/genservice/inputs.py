"""Decoding an image a generation request feeds the model (init, mask, control)."""

from __future__ import annotations

from generation.gate import InputImage
from similarity import DecodeLimits, ImageRejected, decode_for_matching, decode_image

INPUT_MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


def decode_input(role: str, data: bytes, limits: DecodeLimits) -> InputImage:
    """Decode at full size for the model, and as every matching route does for the gate's
    fingerprints; raises ``ImageRejected`` (code ``unsupported`` for formats whose consent
    metadata cannot be read: only PNG, JPEG and WebP are taken)."""
    decoded = decode_image(data, limits, target_side=None)
    media_type = INPUT_MEDIA_TYPES.get(decoded.format)
    if media_type is None:
        raise ImageRejected(
            "unsupported",
            f"the {role} image must be PNG, JPEG or WebP (a generation input whose consent"
            f" metadata can be read), not {decoded.format}",
        )
    return InputImage(
        role, data, decoded.image, media_type, for_matching=decode_for_matching(data, limits)
    )


def input_problem(
    init: InputImage | None, mask: InputImage | None, steps: int, strength: float
) -> str | None:
    """What is wrong with a request's input images as a whole (None when nothing is): checked
    before anything is recorded, by the API and the CLI alike."""
    if init is not None and int(steps * strength) < 1:
        return "steps x strength must be at least 1 for image-to-image"
    if init is not None and mask is not None and mask.image.size != init.image.size:
        (iw, ih), (mw, mh) = init.image.size, mask.image.size
        return f"the mask is {mw}x{mh}; it must be the init image's size, {iw}x{ih}"
    return None
