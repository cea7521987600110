"""Image edits that a copy of a registered work may have gone through.

Used by the quality benchmark and the tests. Every edit is a pure function of the image and a
seeded random generator, so a run is reproducible. `EDITS` names the single edits: those of
the copy list (`COPY_EDITS`), then ways to launder a work (`LAUNDERING`); `combine` chains two.
`grid` sets the picture among other pictures (a collage), `pasted_into` into another picture;
the caller supplies those.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

EditFn = Callable[[Image.Image, np.random.Generator], Image.Image]

_WORDS = ["SAMPLE", "repost", "@artfan", "my wallpaper", "LOL", "daily art", "fav", "nice"]


@dataclass(frozen=True)
class Edit:
    """A named edit."""

    name: str
    apply: EditFn


def crop(area: float) -> EditFn:
    """Crop a window keeping `area` of the picture, at a random place and mildly changed aspect."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = min(w, round(w * np.sqrt(area * aspect)))
        ch = min(h, round(w * h * area / cw))
        x = int(rng.integers(0, w - cw + 1))
        y = int(rng.integers(0, h - ch + 1))
        return img.crop((x, y, x + cw, y + ch))

    return fn


def scale(factor: float) -> EditFn:
    """Scale both sides by `factor`."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.LANCZOS)

    return fn


def jpeg(quality: int) -> EditFn:
    """Re-encode as JPEG at `quality`."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=quality)
        buf.seek(0)
        out = Image.open(buf)
        out.load()
        return out

    return fn


def hflip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Mirror left to right."""
    return ImageOps.mirror(img)


def rotate(degrees: float) -> EditFn:
    """Rotate by `degrees` (random sign), canvas expanded, corners filled with a flat colour."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        sign = 1 if rng.random() < 0.5 else -1
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        return img.convert("RGB").rotate(
            sign * degrees, resample=Image.BICUBIC, expand=True, fillcolor=fill
        )

    return fn


def rotate90(times: int) -> EditFn:
    """Rotate by `times` quarter turns."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return img.rotate(90 * times, expand=True)

    return fn


def enhance(kind: str, factor: float) -> EditFn:
    """Change brightness, contrast or colour saturation by `factor` (1.0 is unchanged)."""
    enhancers = {
        "brightness": ImageEnhance.Brightness,
        "contrast": ImageEnhance.Contrast,
        "saturation": ImageEnhance.Color,
    }

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return enhancers[kind](img.convert("RGB")).enhance(factor)

    return fn


def grayscale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Drop colour."""
    return img.convert("L").convert("RGB")


def negative(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Invert every pixel (a way to launder a picture through img2img and back)."""
    return ImageOps.invert(img.convert("RGB"))


def edge_map(
    side: int, square: bool = False, fit: Literal["stretch", "pad", "crop"] = "stretch"
) -> EditFn:
    """A Canny edge map at `side` pixels on the longer side (white lines on black), as made for
    a ControlNet's control image, with thresholds drawn at random; `square` makes it `side` x
    `side`, as a control image resized to the generation's shape, the way `fit` says: the
    picture stretched to it (``"stretch"``), scaled to fit inside it with black bars on two
    sides (``"pad"``), or scaled to cover it with the overflow cut off, centred (``"crop"``):
    the three ways ControlNet front ends resize a control image."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        w, h = img.size
        grey = img.convert("L")
        inner = (max(1, round(w * side / max(w, h))), max(1, round(h * side / max(w, h))))
        if square and fit == "crop":
            grey = ImageOps.fit(grey, (side, side), Image.LANCZOS)
        else:
            grey = grey.resize((side, side) if square and fit == "stretch" else inner,
                               Image.LANCZOS)
        low = int(rng.integers(60, 121))
        edges = Image.fromarray(cv2.Canny(np.asarray(grey), low, 2 * low)).convert("RGB")
        if not square or fit != "pad":
            return edges
        out = Image.new("RGB", (side, side))
        out.paste(edges, ((side - inner[0]) // 2, (side - inner[1]) // 2))
        return out

    return fn


def pencil_tracing(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A pencil sketch of the picture: its luma divided by its blurred negative (dark strokes on
    white where the picture has edges)."""
    grey = np.asarray(img.convert("L"), np.float32)
    radius = max(img.size) / 80
    blurred = np.asarray(
        Image.fromarray((255 - grey).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius)),
        np.float32,
    )
    sketch = np.clip(grey * 255 / np.maximum(255 - blurred, 1), 0, 255)
    return Image.fromarray(sketch.astype(np.uint8)).convert("RGB")


def blur(relative_radius: float) -> EditFn:
    """Gaussian blur with a radius relative to the longer side."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return img.filter(ImageFilter.GaussianBlur(relative_radius * max(img.size)))

    return fn


def text_overlay(coverage: float) -> EditFn:
    """Write a caption whose box covers about `coverage` of the picture."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        out = img.convert("RGB").copy()
        w, h = out.size
        word = _WORDS[int(rng.integers(len(_WORDS)))]
        draw = ImageDraw.Draw(out)
        size = 10
        font = ImageFont.load_default(size=size)
        target = coverage * w * h
        for candidate in range(10, 2000, 4):
            f = ImageFont.load_default(size=candidate)
            x0, y0, x1, y1 = draw.textbbox((0, 0), word, font=f)
            if (x1 - x0) > w * 0.98 or (x1 - x0) * (y1 - y0) > target:
                break
            size, font = candidate, f
        x0, y0, x1, y1 = draw.textbbox((0, 0), word, font=font)
        tx = int(rng.integers(0, max(1, w - (x1 - x0)))) - x0
        ty = int(rng.integers(0, max(1, h - (y1 - y0)))) - y0
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = tuple(255 - c for c in colour)
        draw.text((tx, ty), word, font=font, fill=colour, stroke_width=max(1, size // 20),
                  stroke_fill=outline)
        return out

    return fn


def logo_overlay(coverage: float) -> EditFn:
    """Paste an opaque badge (a coloured panel with a disc and a bar) covering `coverage`."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        out = img.convert("RGB").copy()
        w, h = out.size
        side = round(np.sqrt(coverage * w * h))
        bw, bh = min(w, side), min(h, round(coverage * w * h / min(w, side)))
        x = int(rng.integers(0, w - bw + 1))
        y = int(rng.integers(0, h - bh + 1))
        draw = ImageDraw.Draw(out)
        c1, c2 = (tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(2))
        draw.rectangle((x, y, x + bw - 1, y + bh - 1), fill=c1)
        r = min(bw, bh) // 3
        draw.ellipse((x + bw // 2 - r, y + bh // 2 - r, x + bw // 2 + r, y + bh // 2 + r), fill=c2)
        draw.rectangle((x + bw // 8, y + bh - bh // 6, x + bw - bw // 8, y + bh - bh // 10),
                       fill=c2)
        return out

    return fn


def screenshot_border(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Place the picture on a flat canvas with uneven margins and a title bar, as a screenshot."""
    src = img.convert("RGB")
    w, h = src.size
    left, right = (int(rng.uniform(0.03, 0.25) * w) for _ in range(2))
    top, bottom = (int(rng.uniform(0.03, 0.2) * h) for _ in range(2))
    bar = int(rng.uniform(0.04, 0.08) * h)
    canvas_colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    bar_colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    out = Image.new("RGB", (w + left + right, h + top + bottom + bar), canvas_colour)
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, 0, out.width - 1, bar - 1), fill=bar_colour)
    out.paste(src, (left, top + bar))
    return out


def page_screenshot(share: float) -> EditFn:
    """A screenshot of a page (1600 x 1000) showing the picture at `share` of its area, among
    a title bar, paragraphs of text and icons."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        def colour(lo: int, hi: int) -> tuple[int, ...]:
            return tuple(int(v) for v in rng.integers(lo, hi, 3))

        width, height, bar = 1600, 1000, 40
        out = Image.new("RGB", (width, height), colour(215, 256))
        draw = ImageDraw.Draw(out)
        draw.rectangle((0, 0, width - 1, bar - 1), fill=colour(0, 90))
        font = ImageFont.load_default(size=14)
        ink = colour(0, 70)
        for _ in range(8):  # paragraphs
            x, y = int(rng.integers(10, width - 400)), int(rng.integers(bar + 10, height - 120))
            for line in range(int(rng.integers(2, 7))):
                words = " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), 5))
                draw.text((x, y + 18 * line), words, font=font, fill=ink)
        for _ in range(12):  # icons
            x, y = int(rng.integers(0, width - 32)), int(rng.integers(bar, height - 32))
            draw.rectangle((x, y, x + 31, y + 31), fill=colour(0, 256))
        src = img.convert("RGB")
        w, h = src.size
        f = min(np.sqrt(share * width * height / (w * h)), (height - bar) / h, width / w)
        shown = src.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
        x = int(rng.integers(0, width - shown.width + 1))
        y = int(rng.integers(bar, height - shown.height + 1))
        out.paste(shown, (x, y))
        return out

    return fn


def grid(cols: int, rows: int, fillers: Sequence[Image.Image]) -> EditFn:
    """A collage: the picture and ``cols * rows - 1`` of ``fillers`` (drawn at random), each
    cut to a square cell as collage apps fill cells (the centre, as large as fits), edge to
    edge in a grid, the picture in a random cell. Cells are as wide as the picture's shorter
    side, at most ``GRID_CELL_MAX`` pixels."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        side = min(GRID_CELL_MAX, *img.size)
        count = cols * rows
        picks = rng.choice(len(fillers), size=count - 1, replace=len(fillers) < count - 1)
        cells = [fillers[int(i)] for i in picks]
        cells.insert(int(rng.integers(count)), img)
        out = Image.new("RGB", (cols * side, rows * side))
        for k, cell in enumerate(cells):
            square = ImageOps.fit(cell.convert("RGB"), (side, side), Image.Resampling.LANCZOS)
            out.paste(square, ((k % cols) * side, (k // cols) * side))
        return out

    return fn


GRID_CELL_MAX = 512


def pasted_into(share: float, backgrounds: Sequence[Image.Image]) -> EditFn:
    """The picture pasted, scaled to ``share`` of the area, at a random place of one of
    ``backgrounds`` (drawn at random): a work put into another picture."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        out = backgrounds[int(rng.integers(len(backgrounds)))].convert("RGB").copy()
        w, h = img.size
        f = min(np.sqrt(share * out.width * out.height / (w * h)), out.width / w, out.height / h)
        shown = img.convert("RGB").resize((max(1, round(w * f)), max(1, round(h * f))),
                                          Image.Resampling.LANCZOS)
        x = int(rng.integers(0, out.width - shown.width + 1))
        y = int(rng.integers(0, out.height - shown.height + 1))
        out.paste(shown, (x, y))
        return out

    return fn


EDITS: tuple[Edit, ...] = (
    Edit("crop_60", crop(0.60)),
    Edit("crop_80", crop(0.80)),
    Edit("scale_25", scale(0.25)),
    Edit("scale_50", scale(0.50)),
    Edit("jpeg_30", jpeg(30)),
    Edit("jpeg_50", jpeg(50)),
    Edit("hflip", hflip),
    Edit("rotate_5", rotate(5)),
    Edit("rotate_10", rotate(10)),
    Edit("rotate_15", rotate(15)),
    Edit("rotate_90", rotate90(1)),
    Edit("rotate_180", rotate90(2)),
    Edit("rotate_270", rotate90(3)),
    Edit("brightness_+30", enhance("brightness", 1.3)),
    Edit("brightness_-30", enhance("brightness", 0.7)),
    Edit("contrast_+30", enhance("contrast", 1.3)),
    Edit("contrast_-30", enhance("contrast", 0.7)),
    Edit("saturation_+30", enhance("saturation", 1.3)),
    Edit("saturation_-30", enhance("saturation", 0.7)),
    Edit("grayscale", grayscale),
    Edit("blur", blur(0.004)),
    Edit("text_20", text_overlay(0.20)),
    Edit("logo_20", logo_overlay(0.20)),
    Edit("screenshot_border", screenshot_border),
    Edit("page_screenshot_40", page_screenshot(0.40)),
    Edit("page_screenshot_10", page_screenshot(0.10)),
    Edit("negative", negative),
    Edit("negative_hflip", lambda img, rng: negative(hflip(img, rng), rng)),
    Edit("canny_control", edge_map(512)),
    Edit("canny_control_square", edge_map(512, square=True)),
    Edit("pencil_tracing", pencil_tracing),
    Edit("canny_control_padded", edge_map(512, square=True, fit="pad")),
    Edit("canny_control_cropped", edge_map(512, square=True, fit="crop")),
)

EDITS_BY_NAME: dict[str, Edit] = {e.name: e for e in EDITS}

LAUNDERING: frozenset[str] = frozenset(
    {"negative", "negative_hflip", "canny_control", "canny_control_square", "pencil_tracing",
     "canny_control_padded", "canny_control_cropped"}
)
"""Edits beyond the copy list (what a user calls a copy: crops, scaling, re-encoding, turns,
tone, overlays, borders): ways to launder a work that keep its composition and little else."""
COPY_EDITS: tuple[Edit, ...] = tuple(e for e in EDITS if e.name not in LAUNDERING)


def combine(first: Edit, second: Edit) -> Edit:
    """Apply `first`, then `second`."""

    def fn(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return second.apply(first.apply(img, rng), rng)

    return Edit(f"{first.name}+{second.name}", fn)


PAIRED_EDITS = 24
"""Pairs are drawn from the first this many of `EDITS`, the list the earlier benchmark results
were measured with, so that the same seed draws the same pairs as it did then."""


def random_pairs(count: int, seed: int = 0) -> list[Edit]:
    """`count` pairs of two different edits (of the first `PAIRED_EDITS`), drawn with `seed`."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        i, j = rng.choice(PAIRED_EDITS, size=2, replace=False)
        pairs.append(combine(EDITS[int(i)], EDITS[int(j)]))
    return pairs
