"""The evidence picture of a registry match: the query beside each matched artwork."""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any
from uuid import UUID

from service.registry.matching import RegistryMatches
from service.registry.store import NotFound
from similarity import DecodedImage, decode_image
from similarity.matcher import Match
from similarity.picture import EvidenceRow, banded, evidence_picture

if TYPE_CHECKING:
    import psycopg

    from service.runtime import Runtime

MAX_ROWS = 4
BAND_WRAP = 88  # characters a band line holds across two panels
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


def stored_match(entry: dict[str, Any]) -> Match:
    """A match as a stored report or claim keeps it (the index id is not drawn; the decision,
    score and evidence are)."""
    return Match(0, float(entry["score"]), entry["decision"], entry.get("evidence") or {})


def stored_artwork_rows(
    rt: Runtime, conn: psycopg.Connection, matches: list[dict[str, Any]], limit: int
) -> tuple[list[EvidenceRow], list[str]]:
    """Evidence rows for registry matches as stored (``artwork_id``, ``title``, ``decision``,
    ``score``, ``evidence``), copies first, at most ``limit``; and a line for each whose work is
    no longer registered or whose picture is no longer kept."""
    rows: list[EvidenceRow] = []
    gone: list[str] = []
    ranked = sorted(matches, key=lambda m: (m["decision"] != "copy", -m["score"]))
    for m in ranked[:limit]:
        title = f"artwork {m['artwork_id']}" + (f' "{m["title"]}"' if m.get("title") else "")
        try:
            work = rt.registry.get_artwork(conn, UUID(m["artwork_id"]))
        except NotFound:
            gone.append(f"{title}: no longer registered")
            continue
        if not rt.blobs.exists(work.sha256):
            gone.append(f"{title}: its picture is no longer kept")
            continue
        reference = decode_image(rt.blobs.get(work.sha256), rt.decode_limits).image
        rows.append(EvidenceRow(reference, stored_match(m), title))
    return rows, gone


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
    with rt.pool.connection() as conn:
        rows, gone = stored_artwork_rows(rt, conn, claim["matches"], MAX_ROWS)
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
        *textwrap.wrap(f"reason: {claim['reason']}", BAND_WRAP, max_lines=3),
        *gone,
    ]
    if claim["status"] != "open":
        note = f": {claim['decision_note']}" if claim["decision_note"] else ""
        lines += textwrap.wrap(
            f"{claim['status']} by {claim['decided_by']} at {str(claim['decided_at'])[:19]}{note}",
            BAND_WRAP,
            max_lines=3,
        )
    title = f"CLAIM {claim['status'].upper()}"
    banded(body, title, lines, CLAIM_COLOURS[claim["status"]]).save(out, "PNG", compress_level=6)
    return out.getvalue()


DISPUTE_COLOURS = {"open": (150, 100, 20), "upheld": (190, 30, 30), "dismissed": (40, 140, 60)}


def dispute_picture(rt: Runtime, dispute: dict[str, Any]) -> bytes:
    """PNG bytes: a band with the dispute and its decision, over the work registered later
    beside the one registered first, with the matcher's fitted outline (as matched when the
    dispute was opened)."""
    later, earlier = dispute["later"], dispute["earlier"]
    with rt.pool.connection() as conn:
        later_work = rt.registry.get_artwork(conn, later["artwork_id"])
        rows, gone = stored_artwork_rows(
            rt, conn, [{**dispute["match"], "artwork_id": str(earlier["artwork_id"]),
                        "title": earlier["title"]}], 1
        )
    query = decode_image(rt.blobs.get(later_work.sha256), rt.decode_limits)
    body = evidence_picture(query.image, rows, query_size=(query.width, query.height))

    def side(which: str, work: dict[str, Any]) -> str:
        title = f' "{work["title"]}"' if work["title"] else ""
        return (
            f"{which}: artwork {work['artwork_id']}{title} of artist {work['artist_id']},"
            f" registered {str(work['registered_at'])[:19]} ({work['status']})"
        )

    lines = [
        f"dispute {dispute['id']}",
        *textwrap.wrap(side("left, registered later", later), BAND_WRAP, max_lines=2),
        *textwrap.wrap(side("right, registered first", earlier), BAND_WRAP, max_lines=2),
        *gone,
    ]
    if dispute["status"] != "open":
        outcome = (
            "both stand"
            if dispute["withdrawn_artwork_id"] is None
            else f"artwork {dispute['withdrawn_artwork_id']} withdrawn"
        )
        note = f": {dispute['decision_note']}" if dispute["decision_note"] else ""
        lines += textwrap.wrap(
            f"{dispute['status']} by {dispute['decided_by']} at"
            f" {str(dispute['decided_at'])[:19]}, {outcome}{note}",
            BAND_WRAP,
            max_lines=3,
        )
    out = io.BytesIO()
    title = f"OWNERSHIP DISPUTE {dispute['status'].upper()}"
    banded(body, title, lines, DISPUTE_COLOURS[dispute["status"]]).save(
        out, "PNG", compress_level=6
    )
    return out.getvalue()
