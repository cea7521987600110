"""The picture of one moderation check, for a moderator who would rather look than read: a band
with the verdict, its reasons, the provenance found and the decision a person made since, over
the evidence rows (the image beside each registered artwork, output of ours and training source
it matched, with the fitted outline).

It is drawn from the check's report, as answered and stored, so the picture of a recorded check
(``GET /v1/moderation/checks/{id}/picture``, from its kept upload) is the one the check drew when
it was made, with the reviews added since."""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from service.moderation.check import get_check
from service.registry.picture import stored_artwork_rows, stored_match
from similarity import decode_image
from similarity.picture import EvidenceRow, banded, evidence_picture

if TYPE_CHECKING:
    from service.runtime import Runtime

VERDICT_COLOURS = {"block": (190, 30, 30), "review": (215, 130, 0), "allow": (40, 140, 60)}
MAX_REGISTRY_ROWS = 3
MAX_OTHER_ROWS = 2  # outputs of ours, training sources: each
WRAP = 96  # characters a line in the band


class UploadNotKept(LookupError):
    """The check is recorded, but its upload is not in the store (not kept, or removed)."""


def _rows(
    rt: Runtime, conn: psycopg.Connection, report: dict[str, Any]
) -> tuple[list[EvidenceRow], list[str]]:
    """The evidence rows, and a line for each match whose picture is no longer kept."""
    rows, gone = stored_artwork_rows(rt, conn, report["registry"]["matches"], MAX_REGISTRY_ROWS)
    outputs = [o for o in report["provenance"]["outputs"] if o.get("decision")]
    for o in outputs[:MAX_OTHER_ROWS]:
        title = f"our output {o['generation_id']}"
        if not o.get("sha256") or not rt.blobs.exists(o["sha256"]):
            gone.append(f"{title}: its picture is not kept")
            continue
        reference = decode_image(rt.blobs.get(o["sha256"]), rt.decode_limits).image
        rows.append(EvidenceRow(reference, stored_match(o), title))
    sources = [m for m in report["training_sources"].get("matches", []) if m.get("source_id")]
    for m in sources[:MAX_OTHER_ROWS]:
        title = f"training source {m['source_id']} ({m['dataset']})"
        if not rt.thumbnails.path(m["sha256"]).exists():
            gone.append(f"{title}: its thumbnail is not kept")
            continue
        thumbnail = decode_image(rt.thumbnails.get(m["sha256"]), rt.decode_limits).image
        rows.append(EvidenceRow(thumbnail, stored_match(m), title))
    return rows, gone


def _band_lines(report: dict[str, Any], gone: list[str]) -> list[str]:
    prov = report["provenance"]
    wm = prov["watermark"]
    watermark = "absent" if not wm["present"] else f"present ({wm['value']})"
    if wm["forged"]:
        watermark += ", names an output these pixels are not"
    lines = [
        f"check {report['id']} | policy {report['policy']['name']} v{report['policy']['version']}",
        f"C2PA: {prov['c2pa']['state']} | watermark: {watermark} | "
        f"AI-generated: {prov['ai_generated']['status']}",
    ]
    for reason in report["reasons"]:
        lines += textwrap.wrap(f"{reason['action']}: {reason['message']}", WRAP)
    lines += gone
    reviews = report.get("reviews") or []
    if reviews:
        last = reviews[-1]
        note = f": {last['note']}" if last.get("note") else ""
        lines += textwrap.wrap(
            f"reviewed: {last['decision'].upper()} by {last['reviewer']} at "
            f"{str(last['created_at'])[:19]}{note}",
            WRAP,
        )
    return lines


def moderation_picture(
    rt: Runtime, data: bytes, report: dict[str, Any], conn: psycopg.Connection | None = None
) -> bytes:
    """PNG bytes: the verdict band over the evidence rows, for the check ``report`` of the image
    file ``data`` (decoded again here in colour: the check reads luma alone)."""
    if conn is None:
        with rt.pool.connection() as own:
            return moderation_picture(rt, data, report, own)
    decoded = decode_image(data, rt.decode_limits)
    rows, gone = _rows(rt, conn, report)
    body = evidence_picture(
        decoded.image, rows, empty="nothing matched", query_size=(decoded.width, decoded.height)
    )
    colour = VERDICT_COLOURS.get(report["verdict"], (90, 90, 90))
    canvas = banded(body, report["verdict"].upper(), _band_lines(report, gone), colour)
    out = io.BytesIO()
    canvas.save(out, "PNG", compress_level=6)
    return out.getvalue()


def recorded_picture(rt: Runtime, check_id: UUID, api_key_id: int | None) -> bytes | None:
    """The picture of a recorded check from its kept upload (``api_key_id``: only a check made
    with that key); None when there is no such check. Raises ``UploadNotKept``."""
    with rt.pool.connection() as conn:
        report = get_check(conn, check_id, api_key_id)
        if report is None:
            return None
        if not rt.blobs.exists(report["sha256"]):
            kept = rt.settings.moderation_keep_uploads
            raise UploadNotKept(
                f"the upload of moderation check {check_id} is not kept, so there is no picture "
                f"of it: uploads are kept for verdicts {', '.join(kept) or '(none)'} and removed "
                f"after {rt.settings.moderation_upload_days:g} days (this check: "
                f"{report['verdict']})"
            )
        return moderation_picture(rt, rt.blobs.get(report["sha256"]), report, conn)
