"""The watermark detector of this checkout against another's (an earlier commit checked out as a
git worktree), copy by copy in turn, in one process.

Each version reads the same copies, one after the other (which goes first turns from copy to
copy), so both see the machine as it is: a change smaller than this shared machine's drift
between two runs of `watermark_bench.py` can be measured. Read, per image and size: the marked
image after every edit of `watermark_bench.py` (the same edits, seeds and payloads), the
unmarked original, and random unmarked crops (as in its false-positive check). Reported: what
each version recovers, every copy where the two differ, false positives, and the median time
of each kind of read with its ratio (this / base).

The marks are made by the base's embedder (marks already in the world were made by earlier
code); whether this checkout's embedder gives the same pixels is reported too.

    git worktree add /tmp/base <commit>
    OMP_NUM_THREADS=1 python bench/watermark_ab.py --images /work/shared/data/images \\
        --base /tmp/base
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from detection_report import emit
from other_checkout import commit, load_other
from PIL import Image
from watermark_bench import EDITS, image_paths, load, unmarked_crop

from provenance import watermark as this_watermark

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("base", "this")


@dataclass
class Reads:
    """Per version: recovered (or, unmarked, present) flags and seconds, in reading order."""

    hits: dict[str, list[bool]] = field(default_factory=lambda: {n: [] for n in NAMES})
    seconds: dict[str, list[float]] = field(default_factory=lambda: {n: [] for n in NAMES})
    labels: list[str] = field(default_factory=list)
    same_numbers: int = 0  # copies whose readings' details (bar the time) are equal


def read_both(
    readers: dict[str, Callable[[Image.Image], Any]], image: Image.Image, turn: int,
    reads: Reads, label: str, hit: Callable[[Any], bool],
) -> None:
    details = {}
    for k in range(len(NAMES)):
        name = NAMES[(turn + k) % len(NAMES)]
        t = time.perf_counter()
        reading = readers[name](image)
        reads.seconds[name].append(time.perf_counter() - t)
        reads.hits[name].append(hit(reading))
        details[name] = {key: v for key, v in reading.details.items() if key != "seconds"}
    reads.labels.append(label)
    reads.same_numbers += details["base"] == details["this"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout's root")
    ap.add_argument("--sizes", default="512,1024")
    ap.add_argument("--limit", type=int, default=None, help="images (default: all)")
    ap.add_argument("--crops", type=int, default=400, help="unmarked random crops")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    other = load_other(args.base, "provenance.watermark")
    marker = other.default_watermarker()
    ours = this_watermark.default_watermarker()
    readers = {"base": marker.detect, "this": ours.detect}
    paths = image_paths(args.images, args.seed, args.limit)

    marked_reads, unmarked_reads, crop_reads = Reads(), Reads(), Reads()
    same_marks = compared_marks = 0
    turn = 0
    for side in (int(s) for s in args.sizes.split(",") if s):
        rng = np.random.default_rng(args.seed)
        for path in paths:
            image = load(path, side)
            if min(image.size) < this_watermark.MIN_EMBED_SIDE:
                continue
            payload = int(rng.integers(0, 1 << this_watermark.PAYLOAD_BITS))
            marked = marker.embed(image, payload)
            compared_marks += 1
            same_marks += bool(np.array_equal(np.asarray(marked),
                                              np.asarray(ours.embed(image, payload))))
            for edit_name, edit in EDITS.items():
                edited = edit(marked, rng)
                read_both(readers, edited, turn, marked_reads, f"{side}/{edit_name}/{path.stem}",
                          lambda r, p=payload: bool(r.present and r.payload == p))
                turn += 1
            read_both(readers, image, turn, unmarked_reads, f"{side}/{path.stem}",
                      lambda r: bool(r.present))
            turn += 1
        print(f"{side} px done", file=sys.stderr)
    rng = np.random.default_rng(args.seed + 1)
    originals: dict[int, Image.Image] = {}
    for _ in range(args.crops):
        i = int(rng.integers(0, len(paths)))
        if i not in originals:
            originals[i] = Image.open(paths[i]).convert("RGB")
        read_both(readers, unmarked_crop(originals[i], rng), turn, crop_reads, paths[i].stem,
                  lambda r: bool(r.present))
        turn += 1
    emit(report(args, argv, marked_reads, unmarked_reads, crop_reads, same_marks,
                compared_marks), args.out)
    return 0


def _ms(seconds: list[float]) -> float:
    return float(np.median(seconds)) * 1000


def report(args: argparse.Namespace, argv: list[str] | None, marked: Reads, unmarked: Reads,
           crops: Reads, same_marks: int, compared: int) -> list[str]:
    lines = [
        "# Watermark detection: this code against another commit, copy by copy in turn",
        "",
        "Command: `OMP_NUM_THREADS=1 python bench/watermark_ab.py "
        f"{' '.join(argv or sys.argv[1:])}`",
        "",
        f"Base: `{commit(args.base, 'provenance')}`; this: `{commit(ROOT, 'provenance')}`. "
        f"Marked by the base's embedder; this checkout's embedder gives the same pixels for "
        f"{same_marks} of {compared} images.",
        "",
        "'same numbers': the readings' details (lattice, pilot z, offset, agreement, payload as "
        "decoded, hypotheses tried) are equal.",
        "",
        "| reads | copies | base: recovered / present | this | differ | same numbers | "
        "base p50 ms | this p50 ms | this / base |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for title, reads in (("marked, every edit", marked), ("unmarked originals", unmarked),
                         ("unmarked random crops", crops)):
        b, t = np.array(reads.hits["base"]), np.array(reads.hits["this"])
        if not len(b):  # none of this kind read (--crops 0)
            continue
        lines.append(
            f"| {title} | {len(b)} | {int(b.sum())} | {int(t.sum())} | {int((b != t).sum())} | "
            f"{reads.same_numbers} | "
            f"{_ms(reads.seconds['base']):.2f} | {_ms(reads.seconds['this']):.2f} | "
            f"{_ms(reads.seconds['this']) / _ms(reads.seconds['base']):.3f}x |"
        )
    differ = [
        f"- {label}: base {b}, this {t}"
        for reads in (marked, unmarked, crops)
        for label, b, t in zip(reads.labels, reads.hits["base"], reads.hits["this"], strict=True)
        if b != t
    ]
    lines += ["", "Copies read differently:" if differ else "No copy was read differently.", ""]
    return lines + differ


if __name__ == "__main__":
    raise SystemExit(main())
