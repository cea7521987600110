"""Turning uploaded bytes into a registered artwork: validate, fingerprint, store, record.

``prepare`` is the CPU-heavy, database-free half (decode, signals, thumbnail); callers run it off
the event loop or in worker processes. ``commit`` is the short database half.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from service.blobs import FileBlobStore, ThumbnailStore, make_thumbnail
from service.registry.records import Artwork
from service.registry.store import RegistryStore
from similarity import (
    SIGNALS_VERSION,
    DecodeLimits,
    ImageRejected,
    ImageSignals,
    compute_signals,
    decode_image,
)
from similarity.recognisable import UNRECOGNISABLE, recognisable

MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}


@dataclass(frozen=True)
class PreparedImage:
    filename: str | None
    data: bytes
    sha256: str
    media_type: str
    width: int
    height: int
    signals: ImageSignals
    thumbnail: bytes

    def signal_columns(self) -> dict[str, Any]:
        packed = self.signals.pack()
        return {**packed, "signals_version": SIGNALS_VERSION}


def prepare(data: bytes, filename: str | None, limits: DecodeLimits) -> PreparedImage:
    """Decode and fingerprint; raises ``similarity.ImageRejected`` with a clear reason, also
    for a picture no copy of which could be recognised (`similarity.recognisable`)."""
    decoded = decode_image(data, limits)
    signals = compute_signals(decoded, for_query=False)  # stored columns only
    if not recognisable(signals):
        raise ImageRejected("unrecognisable", UNRECOGNISABLE)
    return PreparedImage(
        filename=filename,
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        media_type=MEDIA_TYPES.get(decoded.format, f"image/{decoded.format.lower()}"),
        width=decoded.width,
        height=decoded.height,
        signals=signals,
        thumbnail=make_thumbnail(decoded.image),
    )


def store_files(blobs: FileBlobStore, thumbnails: ThumbnailStore, item: PreparedImage) -> None:
    """The original and its thumbnail, content-addressed (storing them again is harmless)."""
    blobs.put(item.data, item.sha256)
    thumbnails.put(item.sha256, item.thumbnail)


def insert(
    conn: psycopg.Connection,
    store: RegistryStore,
    actor: str,
    artist_id: UUID,
    item: PreparedImage,
    title: str | None,
    preferences: dict[str, str],
) -> tuple[Artwork, bool]:
    """The artwork's record, its files already stored (``store_files``)."""
    return store.insert_artwork(
        conn,
        actor,
        artist_id=artist_id,
        sha256=item.sha256,
        title=title,
        preferences=preferences,
        media_type=item.media_type,
        width=item.width,
        height=item.height,
        byte_size=len(item.data),
        original_filename=item.filename,
        signals=item.signal_columns(),
    )
