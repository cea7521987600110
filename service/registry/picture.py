"""The evidence picture of a registry match: the query beside each matched artwork."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from service.registry.matching import RegistryMatches
from similarity import DecodedImage, decode_image
from similarity.picture import EvidenceRow, evidence_picture

if TYPE_CHECKING:
    from service.runtime import Runtime

MAX_ROWS = 4


def registry_rows(
    rt: Runtime, result: RegistryMatches, limit: int = MAX_ROWS
) -> list[EvidenceRow]:
    """One evidence row per match (copies first, at most ``limit``), from the originals kept in
    the blob store."""
    rows = []
    ranked = sorted(result.matches, key=lambda m: (m.match.decision != "copy", -m.match.score))
    for found in ranked[:limit]:
        work = found.artwork
        reference = decode_image(rt.blobs.get(work.sha256), rt.decode_limits).image
        title = f"artwork {work.id}" + (f' "{work.title}"' if work.title else "")
        rows.append(EvidenceRow(reference, found.match, title))
    return rows


def registry_match_picture(rt: Runtime, decoded: DecodedImage, result: RegistryMatches) -> bytes:
    """PNG bytes: the query beside each matched artwork (:func:`registry_rows`)."""
    out = io.BytesIO()
    picture = evidence_picture(
        decoded.image, registry_rows(rt, result), query_size=(decoded.width, decoded.height)
    )
    picture.save(out, "PNG", compress_level=6)
    return out.getvalue()
