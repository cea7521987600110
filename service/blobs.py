"""Content-addressed blob store on the local file system: ``blobs/ab/cd/<sha256>``.

Writes go to a temporary file of their own and are renamed into place
(`service.atomic_files`), so a reader never sees half a blob and concurrent writers of the same
content (threads or processes) all succeed. Storing bytes that are there already renews the
file's modification time: the collector of unnamed files (`service.storage_gc`) leaves young
files alone, so a record about to name an old file keeps it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Protocol

from PIL import Image

from service.atomic_files import write_atomically

_SHA = re.compile(r"^[0-9a-f]{64}$")
THUMBNAIL_SIDE = 256


def renew_if_present(path: Path) -> bool:
    """Whether ``path`` exists; if so its modification time becomes now (see the module's
    docstring). A file the collector has just set aside counts as absent: write it again."""
    try:
        os.utime(path)
    except FileNotFoundError:
        return False
    except OSError:  # present, but this process may not touch it (another owner, read-only)
        return True
    return True


class BlobStore(Protocol):
    def put(self, data: bytes, sha256: str | None = None) -> str: ...
    def get(self, sha256: str) -> bytes: ...
    def exists(self, sha256: str) -> bool: ...
    def path(self, sha256: str) -> Path: ...
    def discard(self, sha256: str) -> None: ...


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes, sha256: str | None = None) -> str:
        """Store ``data`` under its SHA-256; ``sha256``, when the caller has just computed it,
        saves hashing the bytes again."""
        sha = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if renew_if_present(target):
            return sha
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data, durable=True)
        return sha

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def discard(self, sha256: str) -> None:
        """Remove a blob that no record names (written beside an insert that then failed)."""
        self.path(sha256).unlink(missing_ok=True)


def make_thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A WebP thumbnail, longest side ``side`` pixels."""
    thumb = image.convert("RGB")
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80, method=4)
    return out.getvalue()


class ThumbnailStore:
    def __init__(self, blobs: FileBlobStore) -> None:
        self.root = blobs.root.parent / "thumbnails"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / f"{sha256}.webp"

    def put(self, sha256: str, data: bytes) -> None:
        target = self.path(sha256)
        if renew_if_present(target):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, data)

    def get(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()
