"""Byte-level helpers for tampering with signed test images."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

from tests.support import encode


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def build_png(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for ctype, body in chunks:
        crc = zlib.crc32(ctype + body) & 0xFFFFFFFF
        out += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", crc)
    return bytes(out)


def replace_png_pixels(signed: bytes, changed: Image.Image) -> bytes:
    """The signed PNG with its image data swapped for ``changed``'s, every other chunk kept."""
    fresh = png_chunks(encode(changed, "PNG"))
    idat = b"".join(body for ctype, body in fresh if ctype == b"IDAT")
    out, placed = [], False
    for ctype, body in png_chunks(signed):
        if ctype == b"IDAT":
            if not placed:
                out.append((ctype, idat))
                placed = True
            continue
        out.append((ctype, body))
    return build_png(out)


def decode(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as im:
        return im.convert("RGB")
