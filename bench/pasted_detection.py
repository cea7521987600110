"""Finding a picture pasted into another (`similarity.pasted`): how often plain pictures yield an
outline (each one an extra query), how often pasted pictures are found with the right outline,
and what the search costs next to the decode.

Plain: every image of the folder, decoded as the matching routes decode uploads. Pasted: each
image scaled to a share of the area of another image of the folder (drawn at random, seeded)
and pasted at a random place, as `similarity.edits.pasted_into` does, encoded in turn as JPEG
85, JPEG 60 and PNG. A paste counts as found when one of the boxes returned is its outline
(intersection over union above 0.9); 'covered' counts the pastes where one of the pictures
matching looks for within the query (grid cells, pasted pictures, pictures on a plain ground)
is.

    OMP_NUM_THREADS=1 python bench/pasted_detection.py --images /work/shared/data/images \
        --out bench/results/pasted_detection.md
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from detection_report import cost_lines, emit
from PIL import Image

from similarity import decode_for_matching
from similarity.embedded import Box, box_overlap, find_embedded, rescaled
from similarity.jit import warm_up
from similarity.local import work_gray
from similarity.panels import find_panels
from similarity.pasted import find_pasted

FORMATS = (("JPEG", {"quality": 85}), ("JPEG", {"quality": 60}), ("PNG", {}))
SHARES = (0.5, 0.25, 0.1)


def encode(img: Image.Image, k: int) -> bytes:
    fmt, opts = FORMATS[k % len(FORMATS)]
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    return buf.getvalue()


def paste(
    work: Image.Image, into: Image.Image, share: float, rng: np.random.Generator
) -> tuple[Image.Image, Box]:
    """``work`` scaled to ``share`` of ``into``'s area (at most its size) at a random place."""
    out = into.copy()
    w, h = work.size
    f = min(np.sqrt(share * into.width * into.height / (w * h)), into.width / w, into.height / h)
    shown = work.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.LANCZOS)
    x = int(rng.integers(0, into.width - shown.width + 1))
    y = int(rng.integers(0, into.height - shown.height + 1))
    out.paste(shown, (x, y))
    return out, (x, y, x + shown.width, y + shown.height)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    warm_up()  # the compiled loops, ready as in a serving process before its first query

    paths = sorted(args.images.glob("*.jpg")) + sorted(args.images.glob("*.png"))
    files = [p.read_bytes() for p in paths]
    pictures = [Image.open(io.BytesIO(d)).convert("RGB") for d in files]

    # Plain pictures: outlines found, and the time of the search beside that of the decode.
    decode_ms, search_ms, plain_found, plain_boxes = [], [], 0, 0
    for data in files:
        t = time.perf_counter()
        grey = np.asarray(decode_for_matching(data).image)
        decode_ms.append(1e3 * (time.perf_counter() - t))
        t = time.perf_counter()
        boxes = find_pasted(grey)
        search_ms.append(1e3 * (time.perf_counter() - t))
        plain_found += bool(boxes)
        plain_boxes += len(boxes)

    rng = np.random.default_rng(args.seed)
    rows = []
    for share in SHARES:
        found = covered = 0
        for k, work in enumerate(pictures):
            other = int(rng.integers(len(pictures) - 1))
            into = pictures[other + (other >= k)]
            img, box = paste(work, into, share, rng)
            grey = np.asarray(decode_for_matching(encode(img, k)).image)
            want = rescaled(box, (img.height, img.width), grey.shape)
            pasted = find_pasted(grey)
            within = pasted + find_panels(grey) + find_embedded(grey, work_gray(grey))
            found += any(box_overlap(b, want) > 0.9 for b in pasted)
            covered += any(box_overlap(b, want) > 0.9 for b in within)
        rows.append((share, len(pictures), found, covered))

    cmd = "python bench/pasted_detection.py " + " ".join(sys.argv[1:])
    lines = [
        "# Finding a picture pasted into another",
        "",
        f"Command: `OMP_NUM_THREADS=1 {cmd}`",
        "",
        f"{len(files)} images; pastes seeded with {args.seed}. 'outline found': one of the boxes "
        "`find_pasted` returns is the pasted picture's (IoU > 0.9); 'covered': one of the "
        "pictures matching looks for within the query is (grid cells, pasted pictures, "
        "pictures on a plain ground).",
        "",
        "| set | pictures | with an outline | outline found | covered |",
        "|---|---:|---:|---:|---:|",
        f"| plain pictures (nothing pasted) | {len(files)} | {plain_found} "
        f"({plain_boxes} boxes) | - | - |",
    ]
    for share, n, found, cov in rows:
        lines.append(f"| pasted at {share:.0%} of the area | {n} | - | {found} | {cov} |")
    lines += cost_lines(decode_ms, search_ms, "outline search (`find_pasted`)")
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
