"""Safe image decoding: refuse bad input before spending memory on it."""

from __future__ import annotations

import io
import re
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

Image.init()
# MPO (multi-picture JPEG) has its own opener only in some Pillow releases.
ACCEPTED_FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF") if f in Image.OPEN
)

_ORIENTATION_TAG = 0x0112

# Pixel counts are checked against DecodeLimits; Pillow's own warning would only be noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_SWAPS_SIDES = {5, 6, 7, 8}


class ImageRejected(ValueError):
    """An upload that cannot be used as an image; `str(e)` is the user-facing reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def __reduce__(self) -> tuple[type[ImageRejected], tuple[str, str]]:
        # Picklable, so worker processes can report a refusal.
        return type(self), (self.code, str(self))


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds checked before any pixel is decoded."""

    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 100_000_000
    max_side: int = 30_000


@dataclass(frozen=True)
class DecodedImage:
    """An RGB picture, or a greyscale one when asked for (EXIF orientation applied, maybe
    reduced), and facts about the original.

    `width` and `height` are the original's size as displayed (after EXIF orientation), not
    the size of `image`, which may be smaller when a reduced decode was asked for.
    """

    image: Image.Image
    format: str
    width: int
    height: int
    frames: int = 1  # frames or pages in the file (animated GIF/WebP/PNG, multi-page TIFF)


# How every route that matches an upload decodes it (the registry, training sources and our
# outputs: /v1/matches, moderation, the generation gate, SBR by content, chopmark verify), so
# the same bytes get the same answer everywhere: greyscale (every fingerprint reads luma),
# reduced as far as the longer side stays at least MATCH_SIDE (the fingerprints' working sizes
# are smaller) and the shorter side at least MATCH_SHORT_SIDE (the working size of the
# provenance watermark's detector, which reads as well from such a decode as at full size).
MATCH_SIDE = 512
MATCH_SHORT_SIDE = 320


def decode_for_matching(
    data: bytes, limits: DecodeLimits = DecodeLimits(), *, colour: bool = False
) -> DecodedImage:
    """`data` decoded as every matching route decodes it (see `MATCH_SIDE`); `colour` keeps the
    colours (for a picture shown beside the evidence) at the same size."""
    return decode_image(
        data, limits, target_side=MATCH_SIDE, short_side=MATCH_SHORT_SIDE, grey=not colour
    )


def decode_image(
    data: bytes,
    limits: DecodeLimits = DecodeLimits(),
    *,
    target_side: int | None = 512,
    short_side: int | None = None,
    grey: bool = False,
) -> DecodedImage:
    """Decode `data` into an RGB image, refusing empty, oversized, truncated or bomb input.

    With `target_side`, a JPEG is decoded straight at a reduced scale (DCT scaling) and other
    formats are box-reduced, so that the longer side stays at least `target_side` (and, with
    `short_side` too, the shorter side at least `short_side`: a panorama keeps more).
    `target_side=None` decodes at full size. `grey` gives a greyscale ("L") image instead,
    all fingerprints need: a colour JPEG then decodes its luma channel alone, skipping the
    chroma channels and the colour conversion.
    """
    if not data:
        raise ImageRejected("empty", "The upload is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            "too_large",
            # The caller may have stopped reading at the limit: the true size can be larger.
            f"The upload is over the limit of {limits.max_bytes} bytes.",
        )
    _refuse_chunk_floods(data)
    _let_pillow_open(limits.max_pixels)
    try:
        im = Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS))
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(exc, limits) from exc
    except UnidentifiedImageError as exc:
        raise ImageRejected(
            "not_an_image",
            "The upload is not an image in an accepted format "
            f"({', '.join(f for f in ACCEPTED_FORMATS if f != 'MPO')}).",
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageRejected(
            "truncated", f"The image header is damaged or cut short ({exc})."
        ) from exc

    width, height = im.size
    _check_size(width, height, limits)
    frames = _frame_count(im)
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    if frames > 1 and fmt == "PNG" and im.info.get("default_image"):
        # An APNG whose default image is not part of its animation: viewers that play APNG
        # (every browser) never show it, so the picture is the animation's first frame.
        im.seek(1)

    # How far the picture may be reduced: each side kept at least as long as asked.
    f = 1.0
    if target_side is not None:
        f = min(1.0, target_side / max(im.size))
        if short_side is not None:
            f = max(f, min(1.0, short_side / min(im.size)))
    if fmt == "JPEG" and (grey or f < 1.0):
        # Only a YCbCr or greyscale JPEG changes mode here; CMYK ones are converted below.
        im.draft("L" if grey else "RGB",
                 (max(1, int(im.size[0] * f)), max(1, int(im.size[1] * f))))
    try:
        im.load()
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(exc, limits) from exc
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise ImageRejected(
            "truncated", f"The image data is truncated or corrupt and cannot be decoded ({exc})."
        ) from exc
    # Read after the pixels: for a PNG, Pillow looks for EXIF by decoding the image, and a
    # decoding error met there would be taken for a damaged EXIF block, leaving a corrupt
    # picture accepted as partly black.
    orientation = _orientation(im)
    if orientation in _SWAPS_SIDES:
        width, height = height, width

    factor = 1
    if f < 1.0 and fmt != "JPEG":
        factor = max(1, int(1.0 / f + 1e-9))  # a whole factor, no smaller than asked
    if factor > 1 and im.mode in _REDUCIBLE:
        im = im.reduce(factor)
        factor = 1
    pixels = _to_grey(im) if grey else _to_rgb(im)
    if factor > 1:  # palette, bilevel and 16-bit pictures: reduced once converted
        pixels = pixels.reduce(factor)
    if orientation not in (None, 1):
        pixels = _apply_orientation(pixels, orientation)
    return DecodedImage(image=pixels, format=fmt, width=width, height=height, frames=frames)


# Modes Pillow's box reduction takes as they are.
_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "CMYK", "I", "F"})


def later_frames(
    data: bytes,
    limits: DecodeLimits = DecodeLimits(),
    *,
    most: int = 7,
    grey: bool = False,
    total: int | None = None,
) -> tuple[int, list[tuple[int, Image.Image]]]:
    """For an animated or multi-page image (GIF, WebP, APNG, TIFF): its frame count, and up to
    ``most`` frames after the first, evenly spaced, decoded as :func:`decode_image` decodes
    the first (full size, EXIF orientation applied), and with them the ``LONGEST_SHOWN``
    frames an animation shows longest, where some are shown longer than most (a picture held
    for seconds among flickering ones is what a viewer sees). ``(1, [])`` for a single frame.
    Call it on bytes :func:`decode_image` accepted; a frame that cannot be decoded ends the
    list there. Where reaching a frame means decoding those before it (GIF, APNG, WebP), only
    the frames within ``max_pixels`` decoded pixels are sampled. ``total``: the count
    :func:`decode_image` gave (``DecodedImage.frames``), not counted again."""
    _let_pillow_open(limits.max_pixels)
    with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as im:
        total = _frame_count(im) if total is None else total
        if total <= 1 or most <= 0:
            return total, []
        orientation = _orientation(im)
        last = min(total - 1, _reachable_frame(im, limits.max_pixels))
        if last < 1:
            return total, []
        count = min(most, last)
        wanted = {int(i) for i in np.linspace(1, last, count).round()}
        if im.format in _TIMED:  # frames reached by passing through the ones before anyway
            wanted |= _longest_shown(im, last, LONGEST_SHOWN)
        frames: list[tuple[int, Image.Image]] = []
        for index in sorted(wanted):
            try:
                im.seek(index)
                _check_size(im.size[0], im.size[1], limits)
                im.load()
                pixels = _to_grey(im) if grey else _to_rgb(im)
            except (ImageRejected, OSError, SyntaxError, ValueError, EOFError, MemoryError):
                break
            if pixels is im:
                pixels = pixels.copy()  # the next seek changes im in place
            if orientation not in (None, 1):
                pixels = _apply_orientation(pixels, orientation)
            frames.append((index, pixels))
        return total, frames


# Animations whose frames carry display times; frames an animation shows longer than most are
# sampled too, at most this many.
_TIMED = frozenset({"GIF", "PNG", "WEBP"})
LONGEST_SHOWN = 3


def _longest_shown(im: Image.Image, last: int, most: int) -> set[int]:
    """Of frames 1..``last``, up to ``most`` that are shown longer than the animation's median
    frame, longest first; none when every frame is shown as long. Leaves ``im`` anywhere."""
    shown: list[tuple[float, int]] = []
    try:
        for index in range(last + 1):
            im.seek(index)
            if im.format == "WEBP":
                im.load()  # Pillow reads a WebP frame's display time as it decodes it
            shown.append((float(im.info.get("duration") or 0), index))
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        pass  # a damaged frame ends the walk; the frames before it count
    if len(shown) < 2:
        return set()
    median = float(np.median([d for d, _ in shown]))
    longer = sorted((d, i) for d, i in shown if d > median and i >= 1)
    return {i for _, i in longer[::-1][:most]}


# Frames or pages counted at most. A TIFF's page count is known only by walking its pages, and
# Pillow's own count of a small file of 100,000 one-pixel pages took a minute. A longer file is
# treated as this long: its later frames are not sampled.
FRAME_COUNT_LIMIT = 4000


def _frame_count(im: Image.Image) -> int:
    """Frames or pages of an opened image, counted up to ``FRAME_COUNT_LIMIT``; 1 for an MPO
    (its other pictures are views of the same scene). Leaves the image at its first frame."""
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return 1
    if im.format != "TIFF":  # a count from the header (APNG, WebP) or a linear skim (GIF)
        return min(int(getattr(im, "n_frames", 1) or 1), FRAME_COUNT_LIMIT)
    count = 1
    try:
        while count < FRAME_COUNT_LIMIT:  # frame by frame: each seek goes on from the last
            im.seek(count)
            count += 1
    except (EOFError, OSError, SyntaxError, ValueError):  # the end, or a damaged frame there
        pass
    im.seek(0)
    return count


def _reachable_frame(im: Image.Image, budget_pixels: int) -> int:
    """The last frame index worth seeking to. GIF, APNG and WebP decode every frame on the way
    to the one sought, so a small file of many large frames could cost minutes of CPU: the
    frames passed through stay within one picture's pixel limit. TIFF seeks directly."""
    if im.format == "TIFF":
        return 1 << 30
    frame_pixels = max(1, im.size[0] * im.size[1])
    return max(0, budget_pixels // frame_pixels - 1)


# Chunks a PNG may hold. Encoders write image data in chunks of 8 KiB or more (a file at the
# upload limit holds a few thousand); a file of a million tiny chunks costs every reader of it
# (Pillow, the C2PA reader, the label reader) seconds to walk, for nothing.
MAX_PNG_CHUNKS = 100_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _refuse_chunk_floods(data: bytes) -> None:
    if not data.startswith(_PNG_SIGNATURE):
        return
    pos, count, end = len(_PNG_SIGNATURE), 0, len(data)
    unpack = struct.Struct(">I4s").unpack_from
    while pos + 8 <= end:
        length, kind = unpack(data, pos)
        count += 1
        if count > MAX_PNG_CHUNKS:
            raise ImageRejected(
                "too_many_chunks",
                f"The PNG holds more than {MAX_PNG_CHUNKS} chunks; an image needs far fewer.",
            )
        if kind == b"IEND":
            return
        pos += 12 + length


def _let_pillow_open(max_pixels: int) -> None:
    """Pillow refuses, before our own check can, images over twice its ``MAX_IMAGE_PIXELS``;
    raised (never lowered) to our limit, it stays a backstop at twice that."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and max_pixels > current:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _too_many_pixels(exc: Exception, limits: DecodeLimits) -> ImageRejected:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1))} pixels" if found else "more pixels than allowed"
    return ImageRejected(
        "too_many_pixels", f"The image has {size}; the limit is {limits.max_pixels} pixels."
    )


def _check_size(width: int, height: int, limits: DecodeLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageRejected("not_an_image", "The image has no pixels.")
    if max(width, height) > limits.max_side:
        raise ImageRejected(
            "too_many_pixels",
            f"The image is {width}x{height}; the longest side allowed is {limits.max_side}.",
        )
    if width * height > limits.max_pixels:
        raise ImageRejected(
            "too_many_pixels",
            f"The image is {width}x{height} ({width * height} pixels); "
            f"the limit is {limits.max_pixels} pixels.",
        )


def _orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(_ORIENTATION_TAG)
    except Exception:  # a damaged EXIF block only loses the orientation
        return None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


def _apply_orientation(im: Image.Image, orientation: int) -> Image.Image:
    ops = {
        2: (Image.Transpose.FLIP_LEFT_RIGHT,),
        3: (Image.Transpose.ROTATE_180,),
        4: (Image.Transpose.FLIP_TOP_BOTTOM,),
        5: (Image.Transpose.TRANSPOSE,),
        6: (Image.Transpose.ROTATE_270,),
        7: (Image.Transpose.TRANSVERSE,),
        8: (Image.Transpose.ROTATE_90,),
    }
    for op in ops.get(orientation, ()):
        im = im.transpose(op)
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB pixels; transparency composited over white, 16-bit and float scaled to 8 bits."""
    if im.mode == "RGB":
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        arr = np.array(im, dtype=np.float32)  # a copy of our own (float64 doubled it)
        finite = np.isfinite(arr)
        top = float(arr.max(initial=0.0, where=finite)) or 1.0
        # NaN and infinities (a float TIFF may hold them) are black or white, not the scale
        np.nan_to_num(arr, copy=False, nan=0.0, posinf=top, neginf=0.0)
        arr *= 255.0 / top
        grey = np.clip(arr, 0, 255, out=arr).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _to_grey(im: Image.Image) -> Image.Image:
    """Greyscale pixels (ITU-R 601 luma, as JPEG stores it), made the way `_to_rgb` would."""
    return im if im.mode == "L" else _to_rgb(im).convert("L")
