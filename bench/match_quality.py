"""Recall and precision of `copy` decisions over the edit list, against PDQ and pHash baselines.

The images are split by work (known duplicates of one work stay together, seeded): 40%
registered, 40% never registered, 20% kept as material for distractors. Distractor works are
collages of random crops of that material (flipped or turned at random), registered beside the
real ones so that candidate retrieval has a crowd to search; no query comes from that material.
Every registered and unregistered image is queried under each edit of `similarity.edits` and
under random pairs of edits. An edited query is saved as a JPEG (quality 95) and decoded like an
upload. A `copy` match is right when it names the work the query came from.

Baselines in the same run: plain PDQ (one hash, distance <= 31, quality >= 50) and imagehash
pHash (distance <= 10), each calling `copy` for every registered work within its threshold.

    python bench/match_quality.py --images /work/shared/data/images \
        --out bench/results/match_quality.md
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image

from similarity import IndexConfig, MatchIndex, Thresholds, compute_signals, decode_image, match
from similarity.dense_store import DenseStoreConfig
from similarity.edits import (
    EDITS,
    LAUNDERING,
    PAIRED_EDITS,
    Edit,
    crop,
    grid,
    pasted_into,
    random_pairs,
)
from similarity.hash_store import HashStoreConfig
from similarity.pdq import pdq_hash

# Files in the evaluation folder that show the same work (one a crop or copy of another).
SAME_WORK: tuple[tuple[str, ...], ...] = (
    ("art-style__adain_mondrian.jpg", "art-style__adain_mondrian_cropped.jpg"),
    ("art-style__adain_picasso_seated_nude_hr.jpg", "art-style__nstf_seated-nude.jpg"),
    ("art-style__adain_woman_in_peasant_dress.jpg",
     "art-style__adain_woman_in_peasant_dress_cropped.jpg"),
    ("art-style__adain_woman_with_hat_matisse.jpg", "art-style__nstf_matisse_crop.jpg",
     "art-style__nstf_woman-with-hat-matisse.jpg"),
    ("art-style__nstf_kandinsky.jpg", "art-style__nstf_kandinsky_crop.jpg"),
    ("photo-set14__face.jpg", "photo-set5__head.jpg"),
)
PDQ_THRESHOLD = 31
PDQ_QUALITY_MIN = 50
PHASH_THRESHOLD = 10


@dataclass
class Tally:
    """Counts for one method on one edit."""

    queries_registered: int = 0
    found: int = 0
    copy_calls: int = 0
    wrong_calls: int = 0
    similar_found: int = 0
    any_calls: int = 0  # `copy` and `similar` matches
    any_wrong: int = 0
    queries_unregistered: int = 0
    unregistered_flagged: int = 0  # unregistered queries with any match

    def add_any(self, registered: bool, called: list[int], right: set[int]) -> None:
        """All matches, `similar` ones included."""
        if registered:
            self.similar_found += bool(right & set(called))
        else:
            self.queries_unregistered += 1
            self.unregistered_flagged += bool(called)
        self.any_calls += len(called)
        self.any_wrong += sum(1 for c in called if c not in right)

    def add(self, registered: bool, called: list[int], right: set[int]) -> None:
        if registered:
            self.queries_registered += 1
            self.found += bool(right & set(called))
        self.copy_calls += len(called)
        self.wrong_calls += sum(1 for c in called if c not in right)

    @property
    def recall(self) -> float:
        return self.found / self.queries_registered if self.queries_registered else float("nan")

    @property
    def precision(self) -> float:
        if not self.copy_calls:
            return float("nan")
        return (self.copy_calls - self.wrong_calls) / self.copy_calls


@dataclass
class Row:
    ours: Tally = field(default_factory=Tally)
    pdq: Tally = field(default_factory=Tally)
    phash: Tally = field(default_factory=Tally)
    seconds: float = 0.0
    queries: int = 0


def work_groups(names: list[str]) -> dict[str, str]:
    """File name -> work key (the first name of its group)."""
    key = {n: n for n in names}
    for group in SAME_WORK:
        for n in group:
            if n in key:
                key[n] = group[0]
    return key


def split(names: list[str], seed: int) -> tuple[set[str], set[str], set[str]]:
    """(registered, unregistered, distractor material) names; one work's files stay together."""
    key = work_groups(names)
    works = sorted(set(key.values()))
    rng = np.random.default_rng(seed)
    rng.shuffle(works)
    a, b = int(len(works) * 0.4), int(len(works) * 0.8)
    parts = (set(works[:a]), set(works[a:b]), set(works[b:]))
    return tuple({n for n in names if key[n] in part} for part in parts)  # type: ignore[return-value]


def collage(material: list[Image.Image], rng: np.random.Generator) -> Image.Image:
    """A distractor work: 2 to 4 random crops of different pictures side by side or in a grid."""
    count = int(rng.integers(2, 5))
    picks = rng.choice(len(material), size=count, replace=False)
    cell = 256
    tiles = []
    for i in picks:
        src = material[int(i)]
        w, h = src.size
        f = float(rng.uniform(0.3, 0.7))
        cw, ch = int(w * f), int(h * f)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        tile = src.crop((x, y, x + cw, y + ch)).resize((cell, cell), Image.BILINEAR)
        if rng.random() < 0.5:
            tile = tile.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tiles.append(tile.rotate(90 * int(rng.integers(4))))
    cols = count if count < 4 else 2
    rows = 1 if count < 4 else 2
    out = Image.new("RGB", (cols * cell, rows * cell))
    for k, tile in enumerate(tiles):
        out.paste(tile, ((k % cols) * cell, (k // cols) * cell))
    return out


def as_upload(img: Image.Image) -> Image.Image:
    """Encode as a JPEG (quality 95) and decode it the way the service decodes uploads."""
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=95)
    return decode_image(buf.getvalue()).image


def plain_pdq(img: Image.Image) -> tuple[bytes, int]:
    return pdq_hash(np.asarray(img.convert("RGB")))


def fmt(x: float) -> str:
    return "-" if x != x else f"{x:.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--pairs", type=int, default=20, help="random pairs of edits")
    ap.add_argument("--limit", type=int, default=0, help="use N evenly spaced images (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--distractors", type=int, default=2000, help="collage works to register")
    ap.add_argument("--ivf", action="store_true",
                    help="use the approximate (IVF) indexes from the first work, as at 1M scale")
    ap.add_argument("--whole-only", action="store_true",
                    help="match the whole picture only, not the pictures found inside it")
    ap.add_argument("--explain", action="store_true",
                    help="print each `copy` naming a wrong work, with its evidence (stderr)")
    ap.add_argument("--only", action="append", default=[], metavar="EDIT",
                    help="query only under this edit (repeatable; each keeps its random draws)")
    ap.add_argument("--threshold", action="append", default=[], metavar="NAME=VALUE",
                    help="override one of similarity.Thresholds (repeatable), for A/B runs")
    args = ap.parse_args(argv)

    paths = sorted(args.images.glob("*.jpg")) + sorted(args.images.glob("*.png"))
    if args.limit and args.limit < len(paths):
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.limit).round().astype(int)]
    names = [p.name for p in paths]
    groups = work_groups(names)
    registered, unregistered, material_names = split(names, args.seed)
    ids = {n: i for i, n in enumerate(names)}
    work_ids: dict[str, set[int]] = defaultdict(set)
    for n in names:
        if n in registered:
            work_ids[groups[n]].add(ids[n])

    originals = {p.name: decode_image(p.read_bytes()).image for p in paths}
    index = MatchIndex(
        IndexConfig(pdq=HashStoreConfig(flat_max=500), dense=DenseStoreConfig(flat_max=2000))
        if args.ivf else None
    )
    local: dict[int, bytes] = {}
    pdq_reg: list[tuple[int, bytes]] = []
    phash_reg: list[tuple[int, imagehash.ImageHash]] = []
    t0 = time.perf_counter()
    to_register = [(ids[n], originals[n]) for n in sorted(registered)]
    material = [originals[n] for n in sorted(material_names)]
    crowd = np.random.default_rng(args.seed + 99)
    to_register += [(len(names) + k, collage(material, crowd)) for k in range(args.distractors)]
    for work_id, img in to_register:
        sig = compute_signals(img, for_query=False)
        index.add([work_id], [sig])
        local[work_id] = sig.pack()["local"]  # type: ignore[assignment]  # as stored
        h, q = plain_pdq(img)
        if q >= PDQ_QUALITY_MIN:
            pdq_reg.append((work_id, h))
        phash_reg.append((work_id, imagehash.phash(img)))
    print(f"registered {len(registered)} images and {args.distractors} distractors in "
          f"{time.perf_counter() - t0:.1f}s", file=sys.stderr)
    pdq_matrix = np.frombuffer(b"".join(h for _, h in pdq_reg), np.uint8).reshape(-1, 32)
    pdq_ids = np.array([i for i, _ in pdq_reg])
    phash_matrix = np.array([r.hash.ravel() for _, r in phash_reg])
    phash_ids = np.array([i for i, _ in phash_reg])
    queried = [n for n in names if n not in material_names]

    def lookup(wanted: list[int]) -> dict[int, bytes]:
        return {i: local[i] for i in wanted if i in local}

    thresholds = _thresholds(args.threshold)
    # Edits added after the first PAIRED_EDITS come last, so that every earlier edit and pair
    # keeps its index, hence its random draws: rows stay comparable with earlier results.
    edits: list[Edit] = (
        list(EDITS[:PAIRED_EDITS])
        + random_pairs(args.pairs, seed=args.seed + 1)
        + list(EDITS[PAIRED_EDITS:])
        + collage_edits([originals[n] for n in sorted(unregistered)])
        + last_edits([originals[n] for n in sorted(unregistered)])
    )
    rows: dict[str, Row] = {}
    for e_no, edit in enumerate(edits):
        if args.only and edit.name not in args.only:
            continue
        row = rows.setdefault(edit.name, Row())
        for n in queried:
            rng = np.random.default_rng([args.seed, e_no, ids[n]])
            query = as_upload(edit.apply(originals[n], rng))
            is_reg = n in registered
            right = work_ids[groups[n]] if is_reg else set()
            start = time.perf_counter()
            found = match(compute_signals(query), index, lookup, thresholds=thresholds,
                          parts=not args.whole_only)
            row.seconds += time.perf_counter() - start
            row.queries += 1
            row.ours.add(is_reg, [m.id for m in found if m.decision == "copy"], right)
            if args.explain:
                for m in found:
                    if m.decision == "copy" and m.id not in right:
                        work = names[m.id] if m.id < len(names) else f"distractor {m.id}"
                        print(f"wrong copy: {edit.name} of {n} called {work}: "
                              f"{json.dumps(m.evidence, default=str)}", file=sys.stderr)
            row.ours.add_any(is_reg, [m.id for m in found], right)
            h, q = plain_pdq(query)
            pdq_called: list[int] = []
            if q >= PDQ_QUALITY_MIN:
                d = np.unpackbits(pdq_matrix ^ np.frombuffer(h, np.uint8), axis=1).sum(1)
                pdq_called = pdq_ids[d <= PDQ_THRESHOLD].tolist()
            row.pdq.add(is_reg, pdq_called, right)
            ph = imagehash.phash(query).hash.ravel()
            d = (phash_matrix != ph).sum(1)
            row.phash.add(is_reg, phash_ids[d <= PHASH_THRESHOLD].tolist(), right)
        o = row.ours
        print(f"{edit.name:44s} recall {fmt(o.recall)} precision {fmt(o.precision)} "
              f"| pdq {fmt(row.pdq.recall)} | phash {fmt(row.phash.recall)}", file=sys.stderr)

    report = render(rows, names, registered, unregistered, args)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


COLLAGES: dict[str, tuple[int, int]] = {"grid_1x2": (2, 1), "grid_2x2": (2, 2), "grid_3x3": (3, 3)}
"""Collage edits: (columns, rows) of square cells, the query's picture in one of them."""


def collage_edits(fillers: list[Image.Image]) -> list[Edit]:
    """The query's picture in a grid of never-registered pictures (`similarity.edits.grid`)."""
    return [Edit(name, grid(cols, rows, fillers)) for name, (cols, rows) in COLLAGES.items()]


BEYOND = ("crop_30", "crop_15")
"""Edits not found yet, measured to show how far: a small part of the work."""
PASTED = ("pasted_into_photo_25",)
"""The work scaled to a quarter of a never-registered photo's area and pasted into it (found by
its outline, `similarity.pasted`)."""


def last_edits(backgrounds: list[Image.Image]) -> list[Edit]:
    """The small crops and the pasted work: last, so that the rows before keep their random
    draws (the pasted work was among the rows not found yet before `similarity.pasted`)."""
    return [Edit("crop_30", crop(0.30)), Edit("crop_15", crop(0.15)),
            Edit("pasted_into_photo_25", pasted_into(0.25, backgrounds))]


def _thresholds(overrides: list[str]) -> Thresholds:
    """`Thresholds` with NAME=VALUE overrides, each converted to the field's default's type."""
    base = Thresholds()
    changes: dict[str, object] = {}
    for item in overrides:
        name, sep, value = item.partition("=")
        if not sep or not hasattr(base, name):
            raise SystemExit(f"--threshold {item!r}: expected NAME=VALUE, NAME a Thresholds field")
        changes[name] = type(getattr(base, name))(value)
    return replace(base, **changes)


def _sum(tallies: list[Tally]) -> Tally:
    t = Tally()
    for x in tallies:
        t.queries_registered += x.queries_registered
        t.found += x.found
        t.copy_calls += x.copy_calls
        t.wrong_calls += x.wrong_calls
        t.similar_found += x.similar_found
        t.any_calls += x.any_calls
        t.any_wrong += x.any_wrong
        t.queries_unregistered += x.queries_unregistered
        t.unregistered_flagged += x.unregistered_flagged
    return t


def render(rows: dict[str, Row], names: list[str], registered: set[str],
           unregistered: set[str], args: argparse.Namespace) -> str:
    cmd = "python bench/match_quality.py " + " ".join(sys.argv[1:])
    single = {e.name for e in EDITS}
    lines = [
        "# Match quality: `copy` decisions under edits",
        "",
        f"Command: `{cmd}`",
        "",
        f"{len(names)} images: {len(registered)} registered, {len(unregistered)} never "
        f"registered, the rest material for {args.distractors} registered distractor collages "
        f"(seed {args.seed}). Each registered and unregistered image is queried under each of "
        f"{len(single)} edits, {args.pairs} random pairs of edits, {len(COLLAGES)} "
        f"collages, {len(PASTED)} paste into a photo and {len(BEYOND)} edits not found yet. "
        + ("Indexes: approximate (binary IVF for PDQ, IVF fast-scan PQ for dense views) from "
           "the start, as at 1M works. " if args.ivf else "Indexes: exact (as below 50k works). ")
        + "Recall: share of queries from registered works whose `copy` matches name the right "
        "work. Precision: share of all `copy` matches (from registered and unregistered "
        "queries) that name the right work. Baselines measured in the same run: plain PDQ "
        f"(one hash, distance <= {PDQ_THRESHOLD}, quality >= {PDQ_QUALITY_MIN}) and imagehash "
        f"pHash (distance <= {PHASH_THRESHOLD}). 'copy or similar' is our recall when "
        "`similar` matches count too, and 'any precision' the share of all matches, `copy` "
        "or `similar`, that name the right work; 'unrelated flagged': share of queries from "
        "never-registered images with any match. Time: signals + match per query, one thread. "
        "The goals (recall >= 0.95, precision >= 0.99) are stated for the copy list; the "
        "laundering edits (negatives, line drawings of a work), the collages (the query's "
        "picture cut to a square cell in a 1x2, 2x2 or 3x3 grid of never-registered "
        "pictures, edge to edge) and the paste (the picture scaled to a quarter of a "
        "never-registered photo's area and pasted into it at a random place) go beyond it; "
        "the small crops (30% or 15% of the area) show what is not found yet.",
        "",
        "| edit | queries | recall | precision | copy or similar | any precision "
        "| unrelated flagged | PDQ recall | PDQ precision | pHash recall | pHash precision "
        "| ms/query |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def line(name: str, row: Row) -> str:
        o = row.ours
        sim = o.similar_found / o.queries_registered if o.queries_registered else float("nan")
        ms = 1000 * row.seconds / max(1, row.queries)
        any_precision = (
            (o.any_calls - o.any_wrong) / o.any_calls if o.any_calls else float("nan")
        )
        flagged = (
            o.unregistered_flagged / o.queries_unregistered if o.queries_unregistered
            else float("nan")
        )
        return (f"| {name} | {row.queries} | {fmt(o.recall)} | {fmt(o.precision)} | {fmt(sim)} "
                f"| {fmt(any_precision)} | {fmt(flagged)} "
                f"| {fmt(row.pdq.recall)} | {fmt(row.pdq.precision)} | {fmt(row.phash.recall)} "
                f"| {fmt(row.phash.precision)} | {ms:.1f} |")

    for name, row in rows.items():
        lines.append(line(name, row))

    def total(label: str, picked: list[Row]) -> str:
        agg = Row(
            ours=_sum([r.ours for r in picked]), pdq=_sum([r.pdq for r in picked]),
            phash=_sum([r.phash for r in picked]), seconds=sum(r.seconds for r in picked),
            queries=sum(r.queries for r in picked),
        )
        return line(f"**{label}**", agg)

    extra = set(COLLAGES) | set(PASTED) | set(BEYOND)
    copy_list = [r for n, r in rows.items() if n not in LAUNDERING and n not in extra]
    lines.append(total("all single edits", [r for n, r in rows.items() if n in single]))
    lines.append(total("all pairs", [r for n, r in rows.items()
                                     if n not in single and n not in extra]))
    lines.append(total("copy list (single edits and pairs)", copy_list))
    lines.append(total("laundering (negatives, line drawings)",
                       [r for n, r in rows.items() if n in LAUNDERING]))
    lines.append(total("a work within another picture (collages, pasted into a photo)",
                       [r for n, r in rows.items() if n in COLLAGES or n in PASTED]))
    lines.append(total("not found yet (small crops)",
                       [r for n, r in rows.items() if n in BEYOND]))
    lines.append(total("overall (all but the rows not found yet)",
                       [r for n, r in rows.items() if n not in BEYOND]))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
