"""Local features (ORB keypoints) and geometric verification with RANSAC.

Features are found on the picture scaled so its longer side is `WORK_SIDE`, so that a copy
rescaled anywhere between 25% and 100% lands near the registered scale. ORB is rotation
invariant but not mirror invariant: verification also tries the query's mirror image. Its
features are described at the mirrored keypoints (`extract_with_mirror`): corner detection and
the orientation measure are symmetric under a mirror, so only the descriptors need computing,
about a quarter of the cost of a second detection.

`WORK_SIDE` is 256 pixels. The quality benchmark (`bench/results/match_quality.md`) called the
same share of edited copies `copy` at 512, 384 and 256 (0.988, 0.988, 0.989 recall, precision
1.000 each), while ORB on the picture and its mirror image costs about half as much at 256 as
at 384 and a third as much as at 512.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import faiss
import numpy as np

from similarity.threads import one_openmp_thread

WORK_SIDE = 256
MAX_FEATURES = 400
_MAGIC = b"OB1"
_HEADER = struct.Struct("<3sBHHH")  # magic, flags, width, height, count
_XY_SCALE = 16.0  # fixed-point keypoint coordinates: 1/16 pixel, sides up to 4095
_FLAG_EXTRA = 1  # header flag: more bytes follow the features (see `with_extra`)
_FEATURE_BYTES = 4 + 32  # a keypoint's two uint16 coordinates and its ORB descriptor


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints (N, 2) float32 in a WORK_SIDE picture of size (width, height), ORB (N, 32)."""

    xy: np.ndarray
    descriptors: np.ndarray
    width: int
    height: int

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def pack(self) -> bytes:
        """Compact bytes: header, uint16 fixed-point coordinates, raw descriptors."""
        n = len(self)
        head = _HEADER.pack(_MAGIC, 0, self.width, self.height, n)
        xy = np.round(self.xy * _XY_SCALE).clip(0, 65535).astype("<u2")
        return head + xy.tobytes() + np.ascontiguousarray(self.descriptors, np.uint8).tobytes()

    @classmethod
    def unpack(cls, data: bytes) -> LocalFeatures:
        """Inverse of `pack` (bytes from `with_extra` too); raises ValueError on foreign or
        damaged bytes."""
        n = (_features_end(data) - _HEADER.size) // _FEATURE_BYTES
        _magic, _flags, w, h, _n = _HEADER.unpack_from(data)
        off = _HEADER.size
        xy = np.frombuffer(data, "<u2", 2 * n, off).reshape(n, 2).astype(np.float32) / _XY_SCALE
        desc = np.frombuffer(data, np.uint8, 32 * n, off + 4 * n).reshape(n, 32)
        return cls(xy=xy, descriptors=desc, width=w, height=h)


def _features_end(data: bytes) -> int:
    """Where the features in packed `data` end, checking the header and the length (the
    features alone, or followed by extra bytes when the header says so)."""
    if len(data) < _HEADER.size:
        raise ValueError("local features: too short")
    magic, flags, _w, _h, n = _HEADER.unpack_from(data)
    end = _HEADER.size + n * _FEATURE_BYTES
    if magic != _MAGIC or len(data) < end or (len(data) > end) != bool(flags & _FLAG_EXTRA):
        raise ValueError("local features: bad header or length")
    return end


def with_extra(packed: bytes, extra: bytes) -> bytes:
    """Packed features followed by `extra` bytes that travel with them in the same column (a
    work's edge map, see `similarity.lines`); `unpack` reads the features as before."""
    if len(packed) != _features_end(packed):
        raise ValueError("local features: extra bytes already follow")
    if not extra:
        return packed
    head = bytearray(packed[: _HEADER.size])
    head[3] |= _FLAG_EXTRA
    return bytes(head) + packed[_HEADER.size :] + extra


def extra_of(data: bytes) -> bytes:
    """The extra bytes that follow packed features (empty when none do)."""
    return bytes(data[_features_end(data) :])


def split_extra(data: bytes) -> tuple[bytes, bytes]:
    """(the packed features alone, as `pack` makes them; the extra bytes that followed)."""
    end = _features_end(data)
    if len(data) == end:
        return bytes(data), b""
    head = bytearray(data[: _HEADER.size])
    head[3] &= ~_FLAG_EXTRA & 0xFF
    return bytes(head) + bytes(data[_HEADER.size : end]), bytes(data[end:])


def work_gray(gray: np.ndarray) -> np.ndarray:
    """The grey picture (uint8) scaled so its longer side is WORK_SIDE."""
    h, w = gray.shape
    f = WORK_SIDE / max(h, w)
    if abs(f - 1) < 1e-3:
        return np.ascontiguousarray(gray)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    return cv2.resize(gray, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)


_ORB_PARAMS = {
    "nfeatures": MAX_FEATURES,
    "scaleFactor": 1.25,
    "nlevels": 6,
    "edgeThreshold": 15,
    "patchSize": 31,
    "fastThreshold": 12,
}


def _too_thin(gray_work: np.ndarray) -> bool:
    """No ORB keypoint fits a picture thinner than its border on both sides (and OpenCV's
    pyramid fails on one that thin, rather than finding none)."""
    return min(gray_work.shape[:2]) < 2 * _ORB_PARAMS["edgeThreshold"] + 1


def extract(gray_work: np.ndarray, max_features: int = MAX_FEATURES) -> LocalFeatures:
    """ORB features of a WORK_SIDE grey picture (uint8); none for a picture too thin for any."""
    if _too_thin(gray_work):
        return _features((), None, gray_work.shape)
    kps, desc = _orb(max_features).detectAndCompute(gray_work, None)
    return _features(kps, desc, gray_work.shape)


def extract_with_mirror(
    gray_work: np.ndarray, max_features: int = MAX_FEATURES
) -> tuple[LocalFeatures, LocalFeatures]:
    """ORB features of a WORK_SIDE grey picture and of its mirror image.

    The mirror's keypoints are the picture's, mirrored (x -> width - 1 - x, angle -> 180 - angle:
    the intensity centroid that sets ORB's angle mirrors with the picture); only their
    descriptors are computed on the mirror image.
    """
    features, keypoints = detect(gray_work, max_features)
    return features, mirror_of(gray_work, keypoints, features)


def detect(
    gray_work: np.ndarray, max_features: int = MAX_FEATURES
) -> tuple[LocalFeatures, list[cv2.KeyPoint]]:
    """ORB features of a WORK_SIDE grey picture, with the keypoints they were found at (for
    `mirror_of`). ``extract_with_mirror`` is the two in one call; a query takes them apart so
    that its features are ready before the mirror image's are computed."""
    if _too_thin(gray_work):
        return _features((), None, gray_work.shape), []
    kps, desc = _orb(max_features).detectAndCompute(gray_work, None)
    return _features(kps, desc, gray_work.shape), list(kps)


def mirror_of(
    gray_work: np.ndarray, keypoints: list[cv2.KeyPoint], features: LocalFeatures
) -> LocalFeatures:
    """The mirror image's features, described at ``keypoints`` (from `detect`, whose
    ``features`` they gave) mirrored. The keypoints are mirrored in place."""
    if not keypoints:
        return features
    last = gray_work.shape[1] - 1
    for k in keypoints:  # in place, their positions read already: cheaper than copies
        x, y = k.pt
        k.pt = (last - x, y)
        k.angle = (180.0 - k.angle) % 360.0
    m_kps, m_desc = _orb(MAX_FEATURES).compute(
        np.ascontiguousarray(gray_work[:, ::-1]), keypoints
    )
    return _features(m_kps, m_desc, gray_work.shape)


def _orb(max_features: int) -> cv2.ORB:
    return cv2.ORB_create(**{**_ORB_PARAMS, "nfeatures": max_features})


def _features(kps: Sequence[cv2.KeyPoint], desc: np.ndarray | None,
              shape: tuple[int, ...]) -> LocalFeatures:
    h, w = shape[:2]
    if desc is None or not kps:
        return LocalFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8), w, h)
    xy = cv2.KeyPoint_convert(kps).reshape(-1, 2).astype(np.float32, copy=False)
    return LocalFeatures(xy=xy, descriptors=desc, width=w, height=h)


@dataclass(frozen=True)
class Verification:
    """Outcome of fitting a similarity transform from query to reference keypoints."""

    inliers: int
    matches: int
    mirrored: bool
    transform: list[list[float]] | None  # 2x3 query -> reference, in reference work pixels
    scale: float
    rotation_deg: float
    coverage: float  # share of the reference picture that the query covers

    def as_evidence(self) -> dict[str, object]:
        return {
            "inliers": self.inliers,
            "tentative_matches": self.matches,
            "mirrored": self.mirrored,
            "transform_query_to_reference": self.transform,
            "scale": round(self.scale, 4),
            "rotation_deg": round(self.rotation_deg, 2),
            "reference_coverage": round(self.coverage, 4),
        }


NO_MATCH = Verification(0, 0, False, None, 0.0, 0.0, 0.0)


def nearest_two(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query descriptor, Hamming distances (n, 2) and indices (n, 2) of the two nearest
    reference descriptors."""
    one_openmp_thread()
    index = faiss.IndexBinaryFlat(256)
    index.add(np.ascontiguousarray(reference, np.uint8))
    dist, idx = index.search(np.ascontiguousarray(query, np.uint8), 2)
    return dist, idx


def verify(
    query: LocalFeatures,
    reference: LocalFeatures,
    *,
    ratio: float = 0.85,
    max_distance: int = 80,
    reproj_px: float = 6.0,
    min_tentative: int = 6,
    mirrored: bool = False,
) -> Verification:
    """Match descriptors (ratio test), then RANSAC a partial-affine (similarity) transform.

    With fewer than `min_tentative` descriptor matches, RANSAC is skipped (no transform).
    """
    if len(query) < 3 or len(reference) < 3:
        return NO_MATCH
    dist, idx = nearest_two(query.descriptors, reference.descriptors)
    good = np.flatnonzero(
        (dist[:, 0] < ratio * dist[:, 1]) & (dist[:, 0] <= max_distance) & (idx[:, 0] >= 0)
    )
    if len(good) < max(4, min_tentative):
        return Verification(0, len(good), mirrored, None, 0.0, 0.0, 0.0)
    ref_idx = idx[good, 0]
    src = query.xy[good]
    dst = reference.xy[ref_idx]
    model, mask = cv2.estimateAffinePartial2D(
        src, dst, method=cv2.RANSAC, ransacReprojThreshold=reproj_px, maxIters=1000,
        confidence=0.99, refineIters=10,
    )
    if model is None or mask is None:
        return Verification(0, len(good), mirrored, None, 0.0, 0.0, 0.0)
    inlier_mask = mask.ravel().astype(bool)
    # Count each reference keypoint once: many query points collapsing on one is not evidence.
    inliers = len(np.unique(ref_idx[inlier_mask]))
    a, b = float(model[0, 0]), float(model[1, 0])
    scale = float(np.hypot(a, b))
    rotation = float(np.degrees(np.arctan2(b, a)))
    coverage = _coverage(model, query.width, query.height, reference.width, reference.height)
    return Verification(
        inliers=inliers,
        matches=len(good),
        mirrored=mirrored,
        transform=[[round(float(v), 5) for v in row] for row in model],
        scale=scale,
        rotation_deg=rotation,
        coverage=coverage,
    )


def _coverage(model: np.ndarray, qw: int, qh: int, rw: int, rh: int) -> float:
    corners = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], np.float32)
    mapped = corners @ model[:, :2].T + model[:, 2]
    box = np.array([[0, 0], [rw, 0], [rw, rh], [0, rh]], np.float32)
    area, _ = cv2.intersectConvexConvex(mapped.astype(np.float32), box)
    return float(area) / float(rw * rh) if rw * rh else 0.0
