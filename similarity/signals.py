"""All signals of one image, computed once and used for registration and queries alike."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from similarity import dense as dense_mod
from similarity import local as local_mod
from similarity.decode import DecodedImage
from similarity.pdq import PDQ_BYTES, pdq_dihedral, pdq_hash

SIGNALS_VERSION = "pdq1.hog1.orb1"
"""Changes whenever extraction changes; stored signals of another version must be recomputed."""

PACKED_COLUMNS: tuple[str, ...] = ("pdq", "pdq_quality", "dense", "local")
PDQ_SIDE = 256


@dataclass(frozen=True, eq=False)
class ImageSignals:
    """Fingerprints of one image.

    Stored (see `pack`): `pdq` (32 bytes) and `pdq_quality` (0..100); `dense_views`
    (views x DIM, float32, row 0 is the whole picture, the rest sub-windows, see
    `similarity.dense.VIEWS`); `local` (packed ORB keypoints and descriptors).
    Query side only (not stored, empty after `from_packed`): the PDQ hashes of the eight
    rotations/flips, the ORB features of the mirror image, and dense descriptors of the
    picture turned back by a few small angles (`similarity.dense.describe_query`).
    """

    pdq: bytes
    pdq_quality: int
    dense_views: np.ndarray
    local: bytes
    pdq_dihedral: tuple[bytes, ...] = field(default=())
    local_mirror: bytes | None = None
    dense_query: np.ndarray | None = None

    @property
    def dense(self) -> np.ndarray:
        """(DIM,) L2-normalised descriptor of the whole picture."""
        return self.dense_views[0]

    def pack(self) -> dict[str, bytes | int]:
        """Columns to store: bytes for `pdq`, `dense`, `local`; int for `pdq_quality`."""
        return {
            "pdq": self.pdq,
            "pdq_quality": int(self.pdq_quality),
            "dense": np.ascontiguousarray(self.dense_views, "<f2").tobytes(),
            "local": self.local,
        }

    @classmethod
    def from_packed(cls, d: dict[str, bytes | int]) -> ImageSignals:
        """Inverse of `pack` (values may be bytes, bytearray or memoryview)."""
        pdq = bytes(d["pdq"])  # type: ignore[arg-type]
        if len(pdq) != PDQ_BYTES:
            raise ValueError("pdq must be 32 bytes")
        return cls(
            pdq=pdq,
            pdq_quality=int(d["pdq_quality"]),  # type: ignore[arg-type]
            dense_views=unpack_dense(d["dense"]),  # type: ignore[arg-type]
            local=bytes(d["local"]),  # type: ignore[arg-type]
        )


def unpack_dense(raw: bytes | bytearray | memoryview) -> np.ndarray:
    """(views, DIM) float32 from the packed `dense` column."""
    arr = np.frombuffer(bytes(raw), "<f2")
    if arr.size == 0 or arr.size % dense_mod.DIM:
        raise ValueError("dense column has the wrong length")
    return arr.reshape(-1, dense_mod.DIM).astype(np.float32)


def _rgb_array(img: DecodedImage | Image.Image) -> np.ndarray:
    pil = img.image if isinstance(img, DecodedImage) else img
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return np.asarray(pil)


def _work_rgb(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    f = local_mod.WORK_SIDE / max(h, w)
    if abs(f - 1) < 1e-3:
        return np.ascontiguousarray(rgb)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)


def compute_signals(img: DecodedImage | Image.Image, *, for_query: bool = True) -> ImageSignals:
    """PDQ, dense views and ORB features of one image.

    `for_query` also computes the query-side extras (PDQ of the eight rotations/flips, ORB of
    the mirror image); registration may pass False to save that time. Either result can be
    registered and queried.
    """
    rgb = _work_rgb(_rgb_array(img))
    small = _pdq_rgb(rgb)
    if for_query:
        hashes, quality = pdq_dihedral(small)
        pdq = hashes[0]
    else:
        pdq, quality = pdq_hash(small)
        hashes = []
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    views = dense_mod.describe_views(gray.astype(np.float32))
    feats = local_mod.extract(gray)
    mirror = local_mod.extract(np.ascontiguousarray(gray[:, ::-1])) if for_query else None
    dense_query = dense_mod.describe_query(gray.astype(np.float32)) if for_query else None
    return ImageSignals(
        pdq=pdq,
        pdq_quality=quality,
        dense_views=views,
        local=feats.pack(),
        pdq_dihedral=tuple(hashes),
        local_mirror=mirror.pack() if mirror is not None else None,
        dense_query=dense_query,
    )


def _pdq_rgb(rgb: np.ndarray) -> np.ndarray:
    """PDQ works on a 64x64 reduction; hashing from PDQ_SIDE pixels keeps it cheap."""
    h, w = rgb.shape[:2]
    f = PDQ_SIDE / max(h, w)
    if f >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * f)), max(1, round(h * f))),
                      interpolation=cv2.INTER_AREA)
