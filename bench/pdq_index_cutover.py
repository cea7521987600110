"""The PDQ index below and above its switch from exact to approximate: search time and hits kept.

Up to `HashStoreConfig.flat_max` registered works (200k) the PDQ hashes sit in an exact binary
index, searched by comparing every hash; beyond it, in a binary IVF that compares the hashes of
16 of its lists. A query searches sixteen hashes (its eight turns and flips, and their
complements for negatives), so the exact index grows costlier than the IVF well before the
switch. This measures, at each size, the search of the same queries in the exact index and in
an IVF (as if the switch were at 50k works), and how many of the exact index's hits on real
works the IVF misses.

Works: real hashes of half the evaluation images plus random hashes up to the size. Queries:
edited copies of registered and unregistered images (as `match_speed.py` makes them), their
sixteen hashes.

    OMP_NUM_THREADS=1 python bench/pdq_index_cutover.py --images /work/shared/data/images \\
        --out bench/results/pdq_index_cutover.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from detection_report import emit
from match_speed import edited_queries, pct, to_jpeg_1024

from similarity import compute_signals, decode_image
from similarity.hash_store import HashStore, HashStoreConfig
from similarity.index import IndexConfig

RADIUS = IndexConfig().pdq_radius
SYNTHETIC = 1_000_000  # ids from here on are random hashes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--sizes", default="50000,100000,200000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--ivf-from", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    blobs = [to_jpeg_1024(p) for p in sorted(args.images.glob("*.jpg"))]
    half = len(blobs) // 2
    order = rng.permutation(len(blobs))
    reg_idx, unreg_idx = order[:half], order[half:]
    real_ids = np.array([int(i) for i in reg_idx], np.int64)
    real = np.stack([np.frombuffer(compute_signals(decode_image(blobs[i]), for_query=False).pdq,
                                   np.uint8) for i in reg_idx])
    queries = []
    for data in edited_queries(blobs, reg_idx, unreg_idx, args.queries, rng):
        sig = compute_signals(decode_image(data, grey=True))
        plain = np.frombuffer(b"".join(sig.pdq_dihedral), np.uint8).reshape(-1, 32)
        queries.append(np.ascontiguousarray(np.concatenate([plain, ~plain])))

    lines = [
        "# The PDQ index, exact and approximate, round its switch",
        "",
        f"Command: `OMP_NUM_THREADS=1 python bench/pdq_index_cutover.py --images {args.images} "
        f"--out {args.out}`",
        "",
        f"{args.queries} queries (edited copies, half of registered images), 16 hashes each, "
        f"radius {RADIUS}; the IVF built as `HashStore` builds it at {args.ivf_from:,} works and "
        "beyond. 'hits kept': of the exact index's hits on real works, those the IVF finds too.",
        "",
        "| works | exact: search p50 ms | IVF: search p50 ms | exact / IVF | hits kept | "
        "hits lost at PDQ distance |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for size in [int(s) for s in args.sizes.split(",")]:
        fill = rng.integers(0, 256, (size - len(real_ids), 32), dtype=np.uint8)
        ids = np.concatenate([real_ids, np.arange(len(fill), dtype=np.int64) + SYNTHETIC])
        hashes = np.ascontiguousarray(np.concatenate([real, fill]))
        found, took = {}, {}
        for name, flat_max in (("exact", size), ("ivf", args.ivf_from - 1)):
            store = HashStore(HashStoreConfig(flat_max=flat_max))
            store.add(ids, hashes)
            assert store.is_ivf == (name == "ivf")
            store.within(queries[0], RADIUS)  # first call out of the timings
            hits, times = [], []
            for q in queries:
                t = time.perf_counter()
                res = store.within(q, RADIUS)
                times.append(time.perf_counter() - t)
                hits.append({(int(w), int(d)) for row in res for w, d in row if w < SYNTHETIC})
            found[name], took[name] = hits, times
        exact_hits = sum(len(h) for h in found["exact"])
        lost = sorted(d for e, i in zip(found["exact"], found["ivf"], strict=True)
                      for _, d in e - i)
        lines.append(
            f"| {size:,} | {pct(took['exact'], 50):.2f} | {pct(took['ivf'], 50):.2f} | "
            f"{pct(took['exact'], 50) / pct(took['ivf'], 50):.1f}x | "
            f"{exact_hits - len(lost)} of {exact_hits} | {', '.join(map(str, lost)) or '-'} |"
        )
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
