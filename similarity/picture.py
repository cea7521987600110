"""A picture of match evidence, for people who would rather look than read.

One row per match: the query on the left, the registered work on the right. Where geometric
verification fitted a transform, the query's outline is drawn onto the work where it lands (a
crop shows as a smaller box, a rotation as a tilted one, a mirrored copy is marked so), and the
caption names the decision, the score and the signals that fired. A match found in a picture
within the query (a screenshot's picture, a collage's cell) has that picture boxed on the
query, the caption says which, and the box's outline is what lands on the work. A line drawing
found by its lines has its strokes drawn over the work, stretched (and mirrored) as they were
compared.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from similarity.lines import line_drawing
from similarity.local import WORK_SIDE
from similarity.matcher import Match

PANEL = 320  # pixels, the longer side of each picture in a row
GAP = 12
CAPTION = 56  # three lines of caption under each row
CAPTION_LINE = 16  # pixels from one caption line to the next
BACKGROUND = (250, 250, 248)
COLOURS = {"copy": (200, 30, 30), "similar": (225, 140, 0)}


@dataclass(frozen=True)
class EvidenceRow:
    """One match to draw: the registered work's picture, the match, and its title."""

    reference: Image.Image
    match: Match
    title: str


def evidence_picture(
    query: Image.Image,
    rows: Sequence[EvidenceRow],
    empty: str = "no registered work matches",
    query_size: tuple[int, int] | None = None,
) -> Image.Image:
    """The query beside each matched work, with the fitted outline and a caption per row
    (``empty``: the caption under the query alone when nothing matched). ``query_size`` is the
    size of the query's file when ``query`` is a reduced decode of it: a match's ``region`` is
    in the file's pixels."""
    font = ImageFont.load_default(size=13)
    query_panel, q_scale = _panel(query)
    region_scale = query_panel.width / (query_size or query.size)[0]
    width = 2 * PANEL + 3 * GAP
    height = GAP + max(1, len(rows)) * (PANEL + CAPTION + GAP)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    if not rows:
        canvas.paste(query_panel, (GAP, GAP))
        draw.text(
            (GAP, GAP + PANEL + 6),
            empty,
            fill=(60, 60, 60),
            font=font,
        )
        return canvas
    for n, row in enumerate(rows):
        top = GAP + n * (PANEL + CAPTION + GAP)
        colour = COLOURS.get(row.match.decision, (90, 90, 90))
        canvas.paste(query_panel, (GAP, top))
        draw.rectangle(
            [GAP, top, GAP + query_panel.width - 1, top + query_panel.height - 1],
            outline=colour,
            width=3,
        )
        region = _region(row.match)
        if region is not None:
            x0, y0, x1, y1 = (v * region_scale for v in region)
            box = [GAP + x0, top + y0, GAP + x1, top + y1]
            draw.rectangle(box, outline=colour, width=3)
        ref_panel, r_scale = _panel(row.reference)
        left = 2 * GAP + PANEL
        canvas.paste(_with_strokes(ref_panel, query, row.match, colour), (left, top))
        outline = _outline(query, row.reference, row.match, q_scale, r_scale)
        if outline is not None:
            points = [(left + x, top + y) for x, y in outline]
            draw.line([*points, points[0]], fill=colour, width=3)
        caption_top = top + max(query_panel.height, ref_panel.height) + 4
        for k, text in enumerate(caption_lines(_caption(row), font, width - 2 * GAP)):
            draw.text((GAP, caption_top + k * CAPTION_LINE), text, fill=(30, 30, 30), font=font)
    return canvas


BAND_LINE = 17  # pixels from one line of a band to the next


def banded(
    body: Image.Image, title: str, lines: Sequence[str], colour: tuple[int, int, int]
) -> Image.Image:
    """``body`` under a band of ``colour`` holding ``title`` large and ``lines`` small (a
    verdict and its reasons, a claim and its decision)."""
    big = ImageFont.load_default(size=22)
    small = ImageFont.load_default(size=13)
    band = 2 * GAP + 28 + BAND_LINE * len(lines)
    canvas = Image.new("RGB", (body.width, band + body.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, canvas.width - 1, band - 1], fill=colour)
    draw.text((GAP, GAP), title, fill=(255, 255, 255), font=big)
    for n, line in enumerate(lines):
        draw.text((GAP, GAP + 30 + n * BAND_LINE), line, fill=(255, 255, 255), font=small)
    canvas.paste(body, (0, band))
    return canvas


def caption_lines(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
                  width: int) -> list[str]:
    """The caption's lines, each line of ``text`` broken between its `` | ``-separated parts
    where it would run past ``width`` pixels (a part longer than that stays whole)."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    out: list[str] = []
    for line in text.split("\n"):
        current = ""
        for part in line.split(" | "):
            joined = f"{current} | {part}" if current else part
            if current and measure.textlength(joined, font=font) > width:
                out.append(current)
                current = part
            else:
                current = joined
        out.append(current)
    return out


def _panel(image: Image.Image) -> tuple[Image.Image, float]:
    rgb = image.convert("RGB")
    scale = PANEL / max(rgb.size)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    return rgb.resize(size, Image.Resampling.LANCZOS), scale


def _work_scale(image: Image.Image) -> float:
    """The factor local features were extracted at (the longer side brought to WORK_SIDE)."""
    return WORK_SIDE / max(image.size)


def _region(match: Match) -> tuple[float, float, float, float] | None:
    """The box of the embedded picture the match was found in, in query pixels, if any."""
    region = match.evidence.get("region")
    if not isinstance(region, list | tuple) or len(region) != 4:
        return None
    x0, y0, x1, y1 = (float(v) for v in region)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _outline(
    query: Image.Image, reference: Image.Image, match: Match, q_scale: float, r_scale: float
) -> list[tuple[float, float]] | None:
    """The query's corners (or those of the embedded picture the match was found in) mapped
    onto the reference panel, if a transform was fitted."""
    local = match.evidence.get("local_features")
    if not isinstance(local, dict):
        return None
    transform = local.get("transform_query_to_reference")
    if not transform:
        return None
    m = np.asarray(transform, dtype=np.float64).reshape(2, 3)
    region = _region(match)
    width, height = (
        (query.width, query.height) if region is None
        else (region[2] - region[0], region[3] - region[1])
    )
    qs = WORK_SIDE / max(width, height)
    qw, qh = width * qs, height * qs
    corners = np.array([[0, 0, 1], [qw, 0, 1], [qw, qh, 1], [0, qh, 1]], dtype=np.float64)
    mapped = corners @ m.T  # reference work coordinates
    to_panel = r_scale / _work_scale(reference)
    return [(float(x * to_panel), float(y * to_panel)) for x, y in mapped]


def _with_strokes(
    panel: Image.Image, query: Image.Image, match: Match, colour: tuple[int, int, int]
) -> Image.Image:
    """The work's panel with the query's strokes over it, when lines matched them."""
    lines = match.evidence.get("lines")
    if not isinstance(lines, dict):
        return panel
    strokes = line_drawing(np.asarray(query.convert("L")))
    if strokes is None:
        return panel
    bits = strokes.bits[:, ::-1] if lines.get("mirrored") else strokes.bits
    mask = Image.fromarray(bits.astype(np.uint8) * 200).resize(panel.size, Image.Resampling.NEAREST)
    return Image.composite(Image.new("RGB", panel.size, colour), panel, mask)


def _caption(row: EvidenceRow) -> str:
    match = row.match
    fired = [str(s) for s in match.evidence.get("fired") or []]  # type: ignore[union-attr]
    local = match.evidence.get("local_features")
    parts = [f"{match.decision.upper()} of {row.title}", f"score {match.score:.2f}"]
    if isinstance(local, dict) and local.get("inliers"):
        parts.append(f"{local['inliers']} inliers")
        if local.get("mirrored"):
            parts.append("mirrored")
        if local.get("rotation_deg") is not None:
            parts.append(f"rotated {round(float(local['rotation_deg'])) + 0} deg")
    pdq = match.evidence.get("pdq")
    if isinstance(pdq, dict) and pdq.get("distance") is not None:
        parts.append(f"PDQ distance {pdq['distance']}")
    lines = match.evidence.get("lines")
    if isinstance(lines, dict) and lines.get("overlap") is not None:
        parts.append(f"lines overlap {float(lines['overlap']):.2f}"
                     + (" mirrored" if lines.get("mirrored") else ""))
    where = _FOUND_IN.get(str(match.evidence.get("region_kind")))
    if where and match.evidence.get("region") is not None:
        parts.append(where)
    line = " | ".join(parts)
    return line + (f"\nsignals: {', '.join(fired)}" if fired else "")


_FOUND_IN = {
    "grid_cell": "in a cell of a grid",
    "embedded": "in a picture within the frame",
    "pasted": "in a picture pasted into this one",
}
