"""Metadata found in PNG, JPEG and WebP containers, read without decoding pixels.

Walks PNG chunks, JPEG segments (up to the first scan) and WebP RIFF chunks, and collects the XMP
packet, text chunks, the EXIF block, and whether a C2PA container (PNG ``caBX``, JPEG APP11 JUMBF,
WebP ``C2PA``) is present. Truncated or malformed containers yield whatever was read before the
damage.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

MAX_XMP_BYTES = 4 * 1024 * 1024
MAX_TEXT_BYTES = 1024 * 1024
# Text inflated from one PNG in all: each compressed chunk may hold megabytes of zeros in a few
# kilobytes, and a file may hold thousands of them.
MAX_INFLATED_BYTES = 8 * 1024 * 1024

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
PNG_XMP_KEYWORD = "XML:com.adobe.xmp"

_MIMES = {
    "png": "image/png",
    "image/png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "image/jpeg": "image/jpeg",
    "image/jpg": "image/jpeg",
    "webp": "image/webp",
    "image/webp": "image/webp",
    "image/x-webp": "image/webp",
}


class UnsupportedFormat(ValueError):
    """The image is not PNG, JPEG or WebP."""


@dataclass
class ContainerMetadata:
    mime: str
    xmp: bytes | None = None
    text: dict[str, str] = field(default_factory=dict)
    exif: bytes | None = None
    c2pa_present: bool = False


def normalize_mime(mime_or_format: str) -> str:
    """``png``/``image/png`` → ``image/png`` (likewise JPEG, WebP); anything else is refused."""
    key = mime_or_format.strip().lower().lstrip(".")
    if key not in _MIMES:
        raise UnsupportedFormat(f"unsupported image format {mime_or_format!r}")
    return _MIMES[key]


def sniff_mime(data: bytes) -> str | None:
    if data.startswith(PNG_SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def read_container(data: bytes) -> ContainerMetadata:
    mime = sniff_mime(data)
    if mime == "image/png":
        return _read_png(data)
    if mime == "image/jpeg":
        return _read_jpeg(data)
    if mime == "image/webp":
        return _read_webp(data)
    raise UnsupportedFormat("not a PNG, JPEG or WebP image")


def _read_png(data: bytes) -> ContainerMetadata:
    meta = ContainerMetadata("image/png")
    pos = len(PNG_SIGNATURE)
    budget = [MAX_INFLATED_BYTES]  # what compressed text chunks may still inflate to
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype == b"caBX":
            meta.c2pa_present = True
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            keyword = body.partition(b"\x00")[0].decode("latin-1")
            if keyword in meta.text or (keyword == PNG_XMP_KEYWORD and meta.xmp is not None):
                continue  # the first of a keyword counts: later ones are not even inflated
            parsed = _png_text(ctype, body, budget)
            if parsed is None:
                continue
            key, value = parsed
            if key == PNG_XMP_KEYWORD:
                meta.xmp = value.encode("utf-8")[:MAX_XMP_BYTES]
            else:
                meta.text.setdefault(key, value)
        elif ctype == b"eXIf":
            meta.exif = body
    return meta


def _png_text(ctype: bytes, body: bytes, budget: list[int]) -> tuple[str, str] | None:
    """(keyword, text) of a text chunk, or None. Compressed text is inflated only with the
    compression method PNG defines (0, zlib) and within what ``budget`` has left."""
    keyword, sep, rest = body.partition(b"\x00")
    if not sep:
        return None
    key = keyword.decode("latin-1")
    limit = MAX_XMP_BYTES if key == PNG_XMP_KEYWORD else MAX_TEXT_BYTES
    if ctype == b"tEXt":
        return key, rest[:limit].decode("latin-1")
    if ctype == b"zTXt":
        if not rest or rest[0] != 0:
            return None
        raw = _inflate(rest[1:], limit, budget)
        return None if raw is None else (key, raw.decode("latin-1"))
    if len(rest) < 2:
        return None
    compressed, method, text = rest[0], rest[1], rest[2:]
    _lang, _, text = text.partition(b"\x00")
    _translated, _, text = text.partition(b"\x00")
    if compressed:
        if method != 0:
            return None
        raw = _inflate(text, limit, budget)
        if raw is None:
            return None
        text = raw
    return key, text[:limit].decode("utf-8", errors="replace")


def _inflate(data: bytes, limit: int, budget: list[int]) -> bytes | None:
    if budget[0] <= 0:
        return None
    try:
        raw = zlib.decompressobj().decompress(data, min(limit, budget[0]))
    except zlib.error:
        return None
    budget[0] -= len(raw)
    return raw


def _read_jpeg(data: bytes) -> ContainerMetadata:
    meta = ContainerMetadata("image/jpeg")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        body = data[pos + 4 : pos + 2 + length]
        pos += 2 + length
        if marker == 0xE1 and body.startswith(JPEG_XMP_HEADER) and meta.xmp is None:
            meta.xmp = body[len(JPEG_XMP_HEADER) :]
        elif marker == 0xE1 and body.startswith(b"Exif\x00\x00") and meta.exif is None:
            meta.exif = body[6:]
        elif marker == 0xEB and (body.startswith(b"JP") or b"c2pa" in body):
            meta.c2pa_present = True
    return meta


def _read_webp(data: bytes) -> ContainerMetadata:
    meta = ContainerMetadata("image/webp")
    pos = 12
    while pos + 8 <= len(data):
        fourcc = data[pos : pos + 4]
        (length,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 8 + length + (length & 1)
        if fourcc == b"XMP ":
            meta.xmp = body[:MAX_XMP_BYTES]
        elif fourcc == b"EXIF":
            meta.exif = body[6:] if body.startswith(b"Exif\x00\x00") else body
        elif fourcc == b"C2PA":
            meta.c2pa_present = True
    return meta
