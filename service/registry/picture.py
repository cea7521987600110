"""The evidence picture of a registry match: the query beside each matched artwork."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any
from uuid import UUID

from service.registry.matching import RegistryMatches
from similarity import DecodedImage, decode_image
from similarity.matcher import Match
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


def claim_picture(rt: Runtime, claim: dict[str, Any]) -> bytes:
    """PNG bytes: the claimed output beside each of the artist's works the matcher found in it
    when the claim was filed (copies first), with the fitted outline; the output alone when it
    found none."""
    output = decode_image(rt.blobs.get(claim["output_sha256"]), rt.decode_limits)
    ranked = sorted(claim["matches"], key=lambda m: (m["decision"] != "copy", -m["score"]))
    rows = []
    for m in ranked[:MAX_ROWS]:
        with rt.pool.connection() as conn:
            work = rt.registry.get_artwork(conn, UUID(m["artwork_id"]))
        if not rt.blobs.exists(work.sha256):
            continue
        reference = decode_image(rt.blobs.get(work.sha256), rt.decode_limits).image
        title = f"artwork {work.id}" + (f' "{work.title}"' if work.title else "")
        match = Match(0, float(m["score"]), m["decision"], m["evidence"] or {})  # id not drawn
        rows.append(EvidenceRow(reference, match, title))
    out = io.BytesIO()
    picture = evidence_picture(
        output.image,
        rows,
        empty=f"claim {claim['id']} ({claim['status']}): no work of the artist found in it",
        query_size=(output.width, output.height),
    )
    picture.save(out, "PNG", compress_level=6)
    return out.getvalue()
