"""Finding the cells of a collage (`similarity.panels`): how often plain pictures pass for a grid,
how often collages of them are found cell by cell, and what the search costs next to the decode.

Plain: every image of the folder, decoded as the matching routes decode uploads. Collages: seeded
grids of those images (1x2, 2x1, 2x2, 1x3, 3x1, 3x3, 2x3, 3x2 cells; each cell 160-420 px a
side, cut from its picture as collage apps fill cells), encoded in turn as JPEG 85, JPEG 60 and
PNG. A collage counts as found when the cells returned are its cells (intersection over union
above 0.9 each). Two more sets show what is not found this way: cells of unequal widths (a
60/40 split), and equal cells set apart by white gutters; for those the table also gives how
often the pictures within the query (grid cells, pasted pictures found by their outline,
`similarity.pasted`, and pictures on a plain ground, `similarity.embedded`, as matching looks
for them) cover every cell.

    OMP_NUM_THREADS=1 python bench/grid_detection.py --images /work/shared/data/images \
        --out bench/results/grid_detection.md
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detection_report import cost_lines, emit
from PIL import Image, ImageOps

from similarity import decode_for_matching
from similarity.embedded import Box, box_overlap, find_embedded
from similarity.jit import warm_up
from similarity.local import work_gray
from similarity.panels import find_panels
from similarity.pasted import find_pasted

SHAPES = ((2, 1), (1, 2), (2, 2), (3, 1), (1, 3), (3, 3), (2, 3), (3, 2))
FORMATS = (("JPEG", {"quality": 85}), ("JPEG", {"quality": 60}), ("PNG", {}))
GUTTER_PX = 8


def build(
    pictures: list[Image.Image], widths: list[int], heights: list[int], gutter: int
) -> tuple[Image.Image, list[Box]]:
    """A collage of ``pictures`` (row by row) in cells of the given column widths and row
    heights, ``gutter`` white pixels apart; and the cells' boxes."""
    width = sum(widths) + gutter * (len(widths) - 1)
    height = sum(heights) + gutter * (len(heights) - 1)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    cells: list[Box] = []
    k = 0
    y = 0
    for ch in heights:
        x = 0
        for cw in widths:
            out.paste(ImageOps.fit(pictures[k], (cw, ch), Image.Resampling.LANCZOS), (x, y))
            cells.append((x, y, x + cw, y + ch))
            k += 1
            x += cw + gutter
        y += ch + gutter
    return out, cells


def encode(img: Image.Image, k: int) -> bytes:
    fmt, opts = FORMATS[k % len(FORMATS)]
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def scaled(boxes: list[Box], shape: tuple[int, int], size: tuple[int, int]) -> list[Box]:
    """Boxes in a decode of ``shape`` (h, w) given in the file's pixels ``size`` (w, h)."""
    fx, fy = shape[1] / size[0], shape[0] / size[1]
    return [(round(a * fx), round(b * fy), round(c * fx), round(d * fy)) for a, b, c, d in boxes]


def covered(cells: list[Box], found: list[Box]) -> bool:
    return all(any(box_overlap(c, f) > 0.9 for f in found) for c in cells)


def run_set(
    name: str, count: int, make: Callable[[int], tuple[Image.Image, list[Box]]]
) -> dict[str, object]:
    found = right = either = 0
    for k in range(count):
        img, cells = make(k)
        grey = np.asarray(decode_for_matching(encode(img, k)).image)
        want = scaled(cells, grey.shape, img.size)
        boxes = find_panels(grey)
        found += bool(boxes)
        right += len(boxes) == len(want) and covered(want, boxes)
        within = boxes + find_pasted(grey) + find_embedded(grey, work_gray(grey))
        either += covered(want, within)
    return {"set": name, "n": count, "found": found, "right": right, "either": either}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--collages", type=int, default=240, help="collages per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    warm_up()  # the compiled loops, ready as in a serving process before its first query

    paths = sorted(args.images.glob("*.jpg")) + sorted(args.images.glob("*.png"))
    files = [p.read_bytes() for p in paths]
    pictures = [Image.open(io.BytesIO(d)).convert("RGB") for d in files]

    # Plain pictures: grids found, and the time of the search beside that of the decode.
    decode_ms, search_ms, plain_found = [], [], 0
    for data in files:
        t = time.perf_counter()
        grey = np.asarray(decode_for_matching(data).image)
        decode_ms.append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        plain_found += bool(find_panels(grey))
        search_ms.append(1e3 * (time.perf_counter() - t))

    rng = np.random.default_rng(args.seed)

    def picks(n: int) -> list[Image.Image]:
        return [pictures[int(i)] for i in rng.choice(len(pictures), size=n, replace=False)]

    def equal(k: int, gutter: int = 0) -> tuple[Image.Image, list[Box]]:
        cols, rows = SHAPES[k % len(SHAPES)]
        cw, ch = (int(v) for v in rng.integers(160, 421, 2))
        return build(picks(cols * rows), [cw] * cols, [ch] * rows, gutter)

    def unequal(k: int) -> tuple[Image.Image, list[Box]]:
        total, ch = int(rng.integers(400, 841)), int(rng.integers(200, 421))
        return build(picks(2), [round(total * 0.6), total - round(total * 0.6)], [ch], 0)

    sets = [
        run_set("equal cells, edge to edge", args.collages, equal),
        run_set("unequal cells (60/40), edge to edge", args.collages // 4, unequal),
        run_set(f"equal cells, {GUTTER_PX}-px white gutters", args.collages // 4,
                lambda k: equal(k, GUTTER_PX)),
    ]

    cmd = "python bench/grid_detection.py " + " ".join(sys.argv[1:])
    lines = [
        "# Finding the cells of a collage",
        "",
        f"Command: `OMP_NUM_THREADS=1 {cmd}`",
        "",
        f"{len(files)} images; collages of them seeded with {args.seed}. 'grid found': a grid "
        "was returned; 'right cells': the cells returned are the collage's (IoU > 0.9 each); "
        "'every cell covered': each cell is one of the pictures matching looks for within the "
        "query (grid cells, pasted pictures, or pictures on a plain ground).",
        "",
        "| set | pictures | grid found | right cells | every cell covered |",
        "|---|---:|---:|---:|---:|",
        f"| plain pictures (no grid) | {len(files)} | {plain_found} | - | - |",
    ]
    for s in sets:
        lines.append(f"| {s['set']} | {s['n']} | {s['found']} | {s['right']} | {s['either']} |")
    lines += cost_lines(decode_ms, search_ms, "grid search (`find_panels`)")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
