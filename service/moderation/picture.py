"""The picture of one moderation check, for a moderator who would rather look than read: a band
with the verdict, its reasons and the provenance found, over the evidence rows (the image beside
each registered artwork, output of ours and training source it matched, with the fitted
outline)."""

from __future__ import annotations

import io
import textwrap
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageFont

from service.moderation.check import CheckOutcome
from service.registry.picture import registry_rows
from similarity import decode_image
from similarity.picture import BACKGROUND, GAP, EvidenceRow, evidence_picture

if TYPE_CHECKING:
    from service.runtime import Runtime

VERDICT_COLOURS = {"block": (190, 30, 30), "review": (215, 130, 0), "allow": (40, 140, 60)}
MAX_REGISTRY_ROWS = 3
MAX_OTHER_ROWS = 2  # outputs of ours, training sources: each
WRAP = 96  # characters a line in the band
BAND_LINE = 17  # pixels a line


def _rows(rt: Runtime, outcome: CheckOutcome) -> list[EvidenceRow]:
    ins = outcome.inspection
    rows = registry_rows(rt, ins.registry, MAX_REGISTRY_ROWS)
    for out in [o for o in ins.resolution.outputs if o.match is not None][:MAX_OTHER_ROWS]:
        assert out.match is not None
        reference = decode_image(rt.blobs.get(out.record.sha256), rt.decode_limits).image
        rows.append(EvidenceRow(reference, out.match, f"our output {out.record.id}"))
    for match, record in [(m, r) for m, r in ins.sources or [] if r is not None][:MAX_OTHER_ROWS]:
        assert record is not None
        thumbnail = decode_image(rt.thumbnails.get(record.sha256), rt.decode_limits).image
        title = f"training source {record.id} ({record.dataset})"
        rows.append(EvidenceRow(thumbnail, match, title))
    return rows


def _band_lines(report: dict[str, Any]) -> list[str]:
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
    return lines


def moderation_picture(rt: Runtime, data: bytes, outcome: CheckOutcome) -> bytes:
    """PNG bytes: the verdict band over the evidence rows, for the check ``outcome`` of the image
    file ``data`` (decoded again here in colour: the check reads luma alone)."""
    report = outcome.report
    decoded = decode_image(data, rt.decode_limits)
    body = evidence_picture(
        decoded.image,
        _rows(rt, outcome),
        empty="nothing matched",
        query_size=(decoded.width, decoded.height),
    )
    big = ImageFont.load_default(size=22)
    small = ImageFont.load_default(size=13)
    lines = _band_lines(report)
    band = 2 * GAP + 28 + BAND_LINE * len(lines)
    canvas = Image.new("RGB", (body.width, band + body.height), BACKGROUND)
    colour = VERDICT_COLOURS.get(report["verdict"], (90, 90, 90))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, canvas.width - 1, band - 1], fill=colour)
    draw.text((GAP, GAP), report["verdict"].upper(), fill=(255, 255, 255), font=big)
    for n, line in enumerate(lines):
        draw.text((GAP, GAP + 30 + n * BAND_LINE), line, fill=(255, 255, 255), font=small)
    canvas.paste(body, (0, band))
    out = io.BytesIO()
    canvas.save(out, "PNG", compress_level=6)
    return out.getvalue()
