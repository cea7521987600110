"""The evidence picture of a registry match: the query beside each matched artwork."""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any
from uuid import UUID

from service.registry.matching import RegistryMatches
from similarity import DecodedImage, decode_image
from similarity.matcher import Match
from similarity.picture import EvidenceRow, banded, evidence_picture

if TYPE_CHECKING:
    from service.runtime import Runtime

MAX_ROWS = 4
CLAIM_COLOURS = {"open": (90, 90, 120), "upheld": (190, 30, 30), "rejected": (40, 140, 60)}


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
    """PNG bytes: a band with the claim, its reason and its decision, over the claimed output
    beside each of the artist's works the matcher found in it when the claim was filed (copies
    first), with the fitted outline; the output alone when it found none."""
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
    body = evidence_picture(
        output.image,
        rows,
        empty="the matcher found no work of the artist in this output",
        query_size=(output.width, output.height),
    )
    out = io.BytesIO()
    lines = [
        f"claim {claim['id']}",
        f"against output {claim['output_id']} ({claim['output_origin']})",
        f"by artist {claim['artist_id']}",
        *textwrap.wrap(f"reason: {claim['reason']}", 96, max_lines=3),
    ]
    if claim["status"] != "open":
        note = f": {claim['decision_note']}" if claim["decision_note"] else ""
        lines += textwrap.wrap(
            f"{claim['status']} by {claim['decided_by']} at {str(claim['decided_at'])[:19]}{note}",
            96,
            max_lines=3,
        )
    title = f"CLAIM {claim['status'].upper()}"
    banded(body, title, lines, CLAIM_COLOURS[claim["status"]]).save(out, "PNG", compress_level=6)
    return out.getvalue()
