"""An audit report as a PDF for people: what the record says, the pictures behind it side by side,
every audit entry about it, the signed tree head they are proved under, and how to check the
proofs without chopmark. The proofs themselves travel in the JSON report."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    Image,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)
from reportlab.platypus.flowables import Flowable

from provenance.merkle import leaf_hash
from service.audit.report import Report

_STYLES = getSampleStyleSheet()
_BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=9, leading=11.5)
_SMALL = ParagraphStyle("small", parent=_BODY, fontSize=7.5, leading=9.5)
_MONO = ParagraphStyle("mono", parent=_SMALL, fontName="Courier")
_EVIDENCE_SIDE = 55 * mm
MAX_LISTED = 500  # entries listed in a PDF (a work copied thousands of times has as many)


def _p(text: object, style: ParagraphStyle = _BODY) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def record_facts(kind: str | None, record: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The lines of a record a reviewer reads first, as (label, value)."""
    if record is None:
        return []
    if kind == "moderation_check":
        prov = record.get("provenance", {})
        facts = [
            ("verdict", record.get("verdict")),
            ("checked at", record.get("created_at")),
            ("image SHA-256", record.get("sha256")),
            ("platform user", record.get("user")),
            ("context", record.get("context")),
            ("policy", f"{record['policy']['name']} ({record['policy']['version']})"),
            ("C2PA", prov.get("c2pa", {}).get("state")),
            ("watermark", "present" if prov.get("watermark", {}).get("present") else "absent"),
            ("AI-generated", prov.get("ai_generated", {}).get("status")),
        ]
        facts += [(f"reason ({r['action']})", r["message"]) for r in record.get("reasons", [])]
        facts += [
            (
                "registry match",
                f"artwork {m['artwork_id']}: {m['decision']}, score {m['score']:.3f}"
                + (", licensed" if m.get("licensed") else ""),
            )
            for m in record.get("registry", {}).get("matches", [])
        ]
        facts += [
            (
                f"decided by {r['reviewer']}",
                f"{r['decision']} at {r['created_at']}" + (f": {r['note']}" if r["note"] else ""),
            )
            for r in record.get("reviews", [])
        ]
    elif kind == "artwork":
        facts = [
            (k.replace("_", " "), record.get(k))
            for k in ("title", "artist_id", "status", "sha256", "created_at", "withdrawn_at")
        ]
        facts.append(("preferences", json.dumps(record.get("effective_preferences"))))
    elif kind == "claim":
        facts = [
            (k.replace("_", " "), record.get(k))
            for k in (
                "status", "output_id", "output_origin", "output_sha256", "artist_id",
                "artwork_id", "reason", "created_by", "created_at", "decided_by", "decided_at",
                "decision_note",
            )
        ]
        facts += [
            ("found in the output", f"artwork {m['artwork_id']}: {m['decision']}, score"
             f" {m['score']:.3f}")
            for m in record.get("matches", [])
        ]
        if not record.get("matches"):
            facts.append(("found in the output", "no work of the artist"))
    elif kind == "generation":
        params = record.get("parameters", {})
        model = record.get("model") or {}
        facts = [
            ("status", record.get("status")),
            ("mode", record.get("mode")),
            ("platform user", record.get("platform_user")),
            ("requested at", record.get("created_at")),
            ("prompt", params.get("prompt") or f"(private) {params.get('prompt_sha256')}"),
            ("negative prompt", params.get("negative_prompt")),
            (
                "seed, steps, guidance",
                f"{params.get('seed')}, {params.get('steps')}, {params.get('guidance')}",
            ),
            ("model", f"{model.get('name')} sha256 {model.get('sha256')}"),
        ]
        facts += [
            ("LoRA adapter", f"{a.get('name')} sha256 {a.get('sha256')} scale {a.get('scale')}")
            for a in record.get("adapters", [])
        ]
        facts += [
            (f"decision ({d.get('check')})", f"{d.get('code')}: {d.get('message', '')}")
            for d in record.get("decisions", [])
        ]
    else:
        facts = [(k, v) for k, v in record.items() if not isinstance(v, dict | list)]
    return [(label, str(value)) for label, value in facts if value not in (None, "")]


def _evidence_row(report: Report) -> Iterable[Flowable]:
    if not report.evidence:
        return []
    cells = []
    for ev in report.evidence[:3]:
        img = Image(io.BytesIO(ev.png))
        scale = min(_EVIDENCE_SIDE / img.imageWidth, _EVIDENCE_SIDE / img.imageHeight)
        img.drawWidth, img.drawHeight = img.imageWidth * scale, img.imageHeight * scale
        cells.append([img, _p(ev.caption, _SMALL)])
    table = Table([cells], colWidths=[_EVIDENCE_SIDE + 4 * mm] * len(cells))
    table.setStyle(TableStyle([("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [Paragraph("Evidence", _STYLES["Heading2"]), table]


def render_pdf(report: Report, public_key_pem: str) -> bytes:
    """The report as a PDF (A4)."""
    out = io.BytesIO()
    doc = SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"chopmark audit report: {report.subject}",
        author="chopmark",
        leftMargin=16 * mm,
        rightMargin=16 * mm,
        topMargin=14 * mm,
        bottomMargin=14 * mm,
    )
    key_id = hashlib.sha256(public_key_pem.encode()).hexdigest()
    story: list[Flowable] = [
        Paragraph(escape(f"Audit report: {report.subject}"), _STYLES["Title"]),
        _p(f"Generated {report.generated_at.isoformat()} from the chopmark audit log."),
        Spacer(0, 4 * mm),
    ]
    facts = record_facts(report.record_kind, report.record)
    if facts:
        story.append(Paragraph("Record", _STYLES["Heading2"]))
        table = Table(
            [[_p(label), _p(value)] for label, value in facts], colWidths=[42 * mm, 136 * mm]
        )
        table.setStyle(
            TableStyle(
                [
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                    ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                ]
            )
        )
        story.append(table)
    story += list(_evidence_row(report))
    story.append(Paragraph("Audit entries", _STYLES["Heading2"]))
    if len(report.entries) > MAX_LISTED:
        story.append(
            _p(
                f"The first {MAX_LISTED} of {len(report.entries)} entries; the JSON report holds"
                " and proves every one."
            )
        )
    rows = [[_p("#"), _p("time"), _p("kind"), _p("by"), _p("leaf hash (SHA-256)")]]
    for e in report.entries[:MAX_LISTED]:
        body = json.loads(e.entry)
        rows.append(
            [
                _p(e.seq, _SMALL),
                _p(body.get("time", ""), _SMALL),
                _p(body.get("kind", ""), _SMALL),
                _p(body.get("actor", ""), _SMALL),
                _p(leaf_hash(e.entry).hex(), _MONO),
            ]
        )
    entries = Table(rows, colWidths=[12 * mm, 38 * mm, 34 * mm, 34 * mm, 60 * mm], repeatRows=1)
    entries.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey),
                ("LINEBELOW", (0, 1), (-1, -1), 0.25, colors.lightgrey),
            ]
        )
    )
    story.append(entries)
    story.append(Paragraph("Proof", _STYLES["Heading2"]))
    story += [
        _p(
            f"Each entry above is in the log's Merkle tree (RFC 9162) of {report.head.size}"
            " entries, whose head is signed with the log's Ed25519 key; the inclusion proofs"
            " were checked against it when this report was made."
        ),
        _p(f"tree size: {report.head.size}", _MONO),
        _p(f"root: {report.head.root.hex()}", _MONO),
        _p(f"signature: {report.head.signature.hex()}", _MONO),
        _p(f"public key SHA-256 (of its PEM): {key_id}", _MONO),
        Spacer(0, 3 * mm),
        _p(
            "To check without chopmark's database: take this report as JSON (GET"
            f" /v1/audit/report?subject={report.subject}&format=json) and run `chopmark audit"
            " check-proof report.json --public-key log.pem` with the log's public key from a"
            " source you trust. A tree head kept earlier is proved to be held unchanged with GET"
            " /v1/audit/consistency."
        ),
    ]
    doc.build(story)
    return out.getvalue()
