"""All signals of one image, computed once and used for registration and queries alike."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from similarity import dense as dense_mod
from similarity import lines as lines_mod
from similarity import local as local_mod
from similarity.decode import DecodedImage
from similarity.embedded import Box, box_overlap, find_embedded, rescaled
from similarity.panels import find_panels
from similarity.pasted import find_pasted
from similarity.pdq import PDQ_BYTES, pdq_dihedral, pdq_hash
from similarity.threads import Deferred

SIGNALS_VERSION = "pdq2.hog2.orb2.lines1"
"""Changes whenever extraction changes; stored signals of another version must be recomputed."""
COMPATIBLE_VERSIONS: frozenset[str] = frozenset({SIGNALS_VERSION, "pdq2.hog2.orb2"})
"""Stored versions this code still matches: the one before lacks only the work's edge map
(`similarity.lines`), so those rows match as before except by line drawings until they are
recomputed (`chopmark fingerprints refresh`)."""
LINES_VIEW = len(dense_mod.VIEWS)
"""The row of the stored dense views that describes the work's edge map, when present."""

PACKED_COLUMNS: tuple[str, ...] = ("pdq", "pdq_quality", "dense", "local")
_UNSET = object()
PDQ_SIDE = 128


class _Pixels:
    """The dense region, for the dense views computed when read, the ORB features of the
    picture and its mirror image, offered to a helper thread when the signals were made, and
    the work-size luma, for the features of its negative when a negative is to be verified."""

    __slots__ = ("gray", "local", "mirror", "negative", "region")

    def __init__(self, region: np.ndarray, orb: _OrbJobs, gray: np.ndarray) -> None:
        self.region = region
        self.local = orb.plain
        self.mirror = orb.mirror
        self.gray = gray
        self.negative: tuple[bytes, bytes] | None = None


class _OrbJobs:
    """The ORB features of a query picture and of its mirror image, packed, as two jobs offered
    to the helper threads one after the other: the mirror image's are described at the
    picture's keypoints, so their job waits for the first, and the picture's (which every
    verification needs, the mirror image's only some) are ready as soon as they are found."""

    __slots__ = ("mirror", "plain")

    def __init__(self, gray: np.ndarray) -> None:
        found: list[tuple[local_mod.LocalFeatures, list[cv2.KeyPoint]]] = []

        def plain() -> bytes:
            features, keypoints = local_mod.detect(gray)
            found.append((features, keypoints))
            return features.pack()

        def mirror() -> bytes:
            self.plain.result()
            features, keypoints = found[0]
            return local_mod.mirror_of(gray, keypoints, features).pack()

        self.plain: Deferred[bytes] = Deferred(plain)
        self.mirror: Deferred[bytes] = Deferred(mirror)


PartKind = Literal["embedded", "grid_cell", "pasted"]


@dataclass(frozen=True)
class Part:
    """A picture within the query, matched on its own: its box in the pixels of the query's
    file (not of a reduced decode), its own query signals, and how it was found: a picture
    embedded in a frame (`similarity.embedded`), a cell of a grid of pictures
    (`similarity.panels`) or a picture pasted into another (`similarity.pasted`)."""

    box: Box
    signals: ImageSignals
    kind: PartKind = "embedded"


class ImageSignals:
    """Fingerprints of one image.

    Stored (see `pack`): `pdq` (32 bytes) and `pdq_quality` (0..100); `dense_views`
    (views x DIM, float32, row 0 is the whole picture, the rest sub-windows, see
    `similarity.dense.VIEWS`), stored with the descriptor of the edge map after them
    (`stored_dense`); `local` (packed ORB keypoints and descriptors), stored with the edge map
    `lines` after them (`similarity.lines`).
    Query side only (not stored, empty after `from_packed`): the PDQ hashes of the eight
    rotations/flips, the ORB features of the mirror image, dense descriptors of the
    picture turned back by a few small angles (`similarity.dense.describe_query`), the
    `parts`: pictures within it (a screenshot's, a grid's cells), each with signals of its
    own, and the `strokes` of a query that looks like a line drawing.

    Signals made by `compute_signals` keep the reduced picture and compute `dense_views` when
    first read; `local` and `local_mirror` are worked out together by a helper thread, or when
    first read if no helper has started on them. The values are the same either way.
    Read-only; pickling computes every part first.
    """

    __slots__ = ("_dense_query", "_dense_views", "_lines", "_lines_row", "_local", "_local_mirror",
                 "_packed", "_parts", "_pdq", "_pdq_dihedral", "_pdq_quality", "_pixels",
                 "_strokes")

    def __init__(
        self,
        pdq: bytes,
        pdq_quality: int,
        dense_views: np.ndarray | None = None,
        local: bytes | None = None,
        pdq_dihedral: tuple[bytes, ...] = (),
        local_mirror: bytes | None = None,
        dense_query: np.ndarray | None = None,
        *,
        pixels: _Pixels | None = None,
        parts: tuple[Part, ...] = (),
        strokes: lines_mod.LineMap | None = None,
        lines: lines_mod.LineMap | None = None,
        lines_row: np.ndarray | None = None,
    ) -> None:
        if pixels is None and (dense_views is None or local is None):
            raise ValueError("dense_views and local are needed without pixels to compute them")
        put = object.__setattr__
        put(self, "_pdq", pdq)
        put(self, "_pdq_quality", pdq_quality)
        put(self, "_dense_views", dense_views)
        put(self, "_local", local)
        put(self, "_pdq_dihedral", tuple(pdq_dihedral))
        put(self, "_local_mirror", local_mirror)
        put(self, "_dense_query", dense_query)
        put(self, "_pixels", pixels)
        put(self, "_parts", tuple(parts))
        put(self, "_strokes", strokes)
        # with the pixels kept and no edge map given, it is made when first read
        put(self, "_lines", _UNSET if lines is None and pixels is not None else lines)
        put(self, "_lines_row", lines_row)
        put(self, "_packed", None)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("ImageSignals is read-only")

    def __repr__(self) -> str:
        return f"ImageSignals(pdq={self._pdq.hex()}, pdq_quality={self._pdq_quality})"

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return _unpickle, (self.pdq, self.pdq_quality, self.dense_views, self.local,
                           self.pdq_dihedral, self.local_mirror, self.dense_query, self.parts,
                           self.strokes, self.lines, self._lines_row)

    @property
    def pdq(self) -> bytes:
        return self._pdq

    @property
    def pdq_quality(self) -> int:
        return self._pdq_quality

    @property
    def pdq_dihedral(self) -> tuple[bytes, ...]:
        return self._pdq_dihedral

    @property
    def parts(self) -> tuple[Part, ...]:
        """Pictures within this one (embedded in a frame, or the cells of a grid), matched on
        their own too (query side only)."""
        return self._parts

    @property
    def strokes(self) -> lines_mod.LineMap | None:
        """The strokes of a query that looks like a line drawing (query side only; None
        otherwise), matched against works' edge maps (`similarity.lines`)."""
        return self._strokes

    @property
    def lines(self) -> lines_mod.LineMap | None:
        """The edge map stored with the picture (`similarity.lines.stored_edges`), made from
        the kept pixels when first read; None for a picture that is itself a line drawing or
        held by frames or grids, and for stored signals without one (read without the `local`
        column, or stored by the version before edge maps)."""
        if self._lines is _UNSET:
            gray = self._pixels.gray  # type: ignore[union-attr]
            object.__setattr__(self, "_lines", lines_mod.stored_edges(gray, gray))
        return self._lines  # type: ignore[return-value]

    @property
    def dense_query(self) -> np.ndarray | None:
        return self._dense_query

    @property
    def dense_views(self) -> np.ndarray:
        if self._dense_views is None:
            assert self._pixels is not None
            object.__setattr__(
                self, "_dense_views", dense_mod.describe_views_region(self._pixels.region)
            )
        return self._dense_views  # type: ignore[return-value]

    @property
    def local(self) -> bytes:
        if self._local is None:
            assert self._pixels is not None
            object.__setattr__(self, "_local", self._pixels.local.result())
        return self._local  # type: ignore[return-value]

    @property
    def local_mirror(self) -> bytes | None:
        """ORB features of the mirror image (query side only; None otherwise)."""
        if self._local_mirror is None and self._pixels is not None:
            object.__setattr__(self, "_local_mirror", self._pixels.mirror.result())
        return self._local_mirror

    @property
    def local_negative(self) -> tuple[bytes, bytes] | None:
        """ORB features of the picture's negative and of its mirror image, computed when first
        read (query side only, while the pixels are kept; None otherwise)."""
        px = self._pixels
        if px is None:
            return None
        if px.negative is None:
            px.negative = _extract_pair(255 - px.gray)
        return px.negative

    @property
    def dense(self) -> np.ndarray:
        """(DIM,) L2-normalised descriptor of the whole picture."""
        if self._dense_views is None and self._dense_query is not None:
            return self._dense_query[0]  # the same picture, described the same way
        return self.dense_views[0]

    def pack(self) -> dict[str, bytes | int]:
        """Columns to store: bytes for `pdq`, `dense`, `local`; int for `pdq_quality`.

        `dense` holds the views and, in row `LINES_VIEW`, the descriptor of the edge map;
        `local` the ORB features followed by the edge map (`similarity.local.with_extra`).
        Packed once: a stamp's fingerprints are packed beside it and read again on its path."""
        if self._packed is None:
            local = self.local
            lines = self.lines
            if lines is not None:
                local = local_mod.with_extra(local, lines.pack())
            packed = {
                "pdq": self.pdq,
                "pdq_quality": int(self.pdq_quality),
                "dense": np.ascontiguousarray(self.stored_dense, "<f2").tobytes(),
                "local": local,
            }
            object.__setattr__(self, "_packed", packed)
        return dict(self._packed)

    @property
    def stored_dense(self) -> np.ndarray:
        """The dense rows as stored and indexed: the views, then (row `LINES_VIEW`) the
        descriptor of the edge map when there is one."""
        views = self.dense_views
        row = self._lines_row
        if row is None and self.lines is not None:
            row = self.lines.describe()
        return views if row is None else np.vstack([views, row[None, :]])

    @classmethod
    def from_packed(cls, d: dict[str, bytes | int]) -> ImageSignals:
        """Inverse of `pack` (values may be bytes, bytearray or memoryview). `local` may be
        empty where the features are not needed (an index reads only pdq and dense)."""
        pdq = bytes(d["pdq"])  # type: ignore[arg-type]
        if len(pdq) != PDQ_BYTES:
            raise ValueError("pdq must be 32 bytes")
        rows = unpack_dense(d["dense"])  # type: ignore[arg-type]
        if len(rows) > LINES_VIEW + 1:
            raise ValueError("dense column has too many rows")
        raw = bytes(d["local"])  # type: ignore[arg-type]
        local, extra = local_mod.split_extra(raw) if raw else (raw, b"")
        return cls(
            pdq=pdq,
            pdq_quality=int(d["pdq_quality"]),  # type: ignore[arg-type]
            dense_views=rows[:LINES_VIEW],
            local=local,
            lines=lines_mod.LineMap.unpack(extra) if extra else None,
            lines_row=rows[LINES_VIEW] if len(rows) > LINES_VIEW else None,
        )


def _unpickle(*args: object) -> ImageSignals:
    *whole, parts, strokes, lines, lines_row = args
    return ImageSignals(
        *whole, parts=parts, strokes=strokes, lines=lines, lines_row=lines_row  # type: ignore[arg-type]
    )


def unpack_dense(raw: bytes | bytearray | memoryview) -> np.ndarray:
    """(views, DIM) float32 from the packed `dense` column."""
    arr = np.frombuffer(bytes(raw), "<f2")
    if arr.size == 0 or arr.size % dense_mod.DIM:
        raise ValueError("dense column has the wrong length")
    return arr.reshape(-1, dense_mod.DIM).astype(np.float32)


def _grey_array(img: DecodedImage | Image.Image) -> np.ndarray:
    """uint8 luma; every signal is computed from it (PDQ's own luma weights are ITU-R 601's)."""
    pil = img.image if isinstance(img, DecodedImage) else img
    if pil.mode == "L":
        return np.asarray(pil)
    if pil.mode != "RGB":
        pil = pil.convert("RGB")
    return cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2GRAY)


def compute_signals(img: DecodedImage | Image.Image, *, for_query: bool = True) -> ImageSignals:
    """PDQ, dense views and ORB features of one image.

    `for_query` also computes the query-side extras (PDQ of the eight rotations/flips, dense
    descriptors of the picture turned back; ORB of the mirror image when first read; the
    signals of pictures embedded in it, see `similarity.embedded`), hands the ORB features to a
    helper thread, and leaves `dense_views` to be computed when first read.
    Registration may pass False to compute the stored parts at once and skip the extras.
    Either result can be registered and queried.
    """
    full = _grey_array(img)
    gray = local_mod.work_gray(full)
    if not for_query:
        pdq, quality = pdq_hash(_pdq_input(gray))
        return ImageSignals(
            pdq=pdq,
            pdq_quality=quality,
            dense_views=dense_mod.describe_views_region(
                dense_mod.reduce_for_views(gray.astype(np.float32))
            ),
            local=local_mod.extract(gray).pack(),
            lines=lines_mod.stored_edges(full, gray),
        )
    # The helper threads start on the picture's ORB features first (the longest part of a
    # query's signals), then the embedded pictures are looked for and described.
    orb = _OrbJobs(gray)
    to_file = _to_file_pixels(img, full.shape)
    parts = tuple(
        Part(to_file(b), _query_signals(local_mod.work_gray(full[b[1] : b[3], b[0] : b[2]])), kind)
        for b, kind in _part_boxes(full, gray)
    )
    return _query_signals(gray, parts, lines_mod.line_drawing(full, gray), orb)


def _part_boxes(full: np.ndarray, gray: np.ndarray) -> list[tuple[Box, PartKind]]:
    """Boxes of the pictures within the query worth matching on their own: the cells of a grid
    of pictures (`similarity.panels`), then pictures pasted into the picture
    (`similarity.pasted`) and pictures embedded in a frame (`similarity.embedded`), each but
    for those found already."""
    boxes: list[tuple[Box, PartKind]] = [(b, "grid_cell") for b in find_panels(full)]
    for kind, found in (("pasted", find_pasted(full)), ("embedded", find_embedded(full, gray))):
        before = len(boxes)
        for box in found:
            if not any(box_overlap(box, seen) > SAME_PART_OVERLAP for seen, _ in boxes[:before]):
                boxes.append((box, kind))
    return boxes


SAME_PART_OVERLAP = 0.8  # intersection over union of two boxes of one picture


def _to_file_pixels(
    img: DecodedImage | Image.Image, shape: tuple[int, ...]
) -> Callable[[Box], Box]:
    """Maps a box in the pixels signals are computed from to the image file's own pixels (a
    decode may have been reduced: a part's box is reported where it lies in the upload)."""
    if not isinstance(img, DecodedImage) or (img.height, img.width) == shape[:2]:
        return lambda box: box
    return lambda box: rescaled(box, shape, (img.height, img.width))


def _query_signals(
    gray: np.ndarray,
    parts: tuple[Part, ...] = (),
    strokes: lines_mod.LineMap | None = None,
    orb: _OrbJobs | None = None,
) -> ImageSignals:
    """Query signals of a work-size luma picture (``orb``: its ORB jobs, if started already)."""
    # Nearly every query is verified with its ORB features, and half also with its mirror
    # image's: the helper threads work on them while this one hashes and describes the
    # picture (see `similarity.threads`).
    local = orb if orb is not None else _OrbJobs(gray)
    hashes, quality = pdq_dihedral(_pdq_input(gray))
    region = dense_mod.reduce_for_views(gray.astype(np.float32))
    return ImageSignals(
        pdq=hashes[0],
        pdq_quality=quality,
        pdq_dihedral=tuple(hashes),
        dense_query=dense_mod.describe_query_region(region),
        pixels=_Pixels(region, local, gray),
        parts=parts,
        strokes=strokes,
    )


def _extract_pair(gray: np.ndarray) -> tuple[bytes, bytes]:
    plain, mirror = local_mod.extract_with_mirror(gray)
    return plain.pack(), mirror.pack()


def _pdq_input(grey: np.ndarray) -> np.ndarray:
    """PDQ works on a 64x64 reduction of the luma; hashing from PDQ_SIDE pixels keeps it cheap.
    The grey picture goes in as three equal channels, whose luma is itself."""
    h, w = grey.shape[:2]
    f = PDQ_SIDE / max(h, w)
    if f < 1:
        grey = cv2.resize(grey, (max(1, round(w * f)), max(1, round(h * f))),
                          interpolation=cv2.INTER_AREA)
    return np.repeat(grey[:, :, None], 3, axis=2)
