"""End-to-end match latency of this checkout against another (an earlier commit checked out as a
git worktree), query by query in turn, in one process.

This shared machine's speed drifts by tens of percent within minutes, more than most changes
weigh: two runs of `match_speed.py` minutes apart can differ by more than a change does. Here
both versions match every query one after the other (their order turning from query to query),
so each sees the machine as the other does. Each version builds its own index of the same
works (real signals for half the evaluation images, synthetic ones for the rest, as in
`match_speed.py`) and times, per query: the reduced greyscale decode, `compute_signals` and
`match`, with one helper thread, wall clock and CPU (both threads); the floor is the full
decode of the same JPEG, in the same loop. Both versions' matches are compared too: a change
meant to keep results must keep them.

    git worktree add /tmp/base <commit>
    OMP_NUM_THREADS=1 python bench/match_ab.py --images /work/shared/data/images \\
        --base /tmp/base --size 1000000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from detection_report import emit
from match_speed import edited_queries, pct, synthetic_fill, to_jpeg_1024
from other_checkout import commit, load_other

import similarity
from similarity.jit import warm_up


def build(sim: ModuleType, blobs: list[bytes], reg_idx: np.ndarray, size: int,
          seed: int) -> tuple[Any, dict[int, bytes]]:
    real = {int(i): sim.compute_signals(sim.decode_image(blobs[i]), for_query=False)
            for i in reg_idx}
    packed = {i: bytes(s.pack()["local"]) for i, s in real.items()}
    views = np.concatenate([s.dense_views for s in real.values()])
    fill = size - len(real)
    hashes, dense = synthetic_fill(fill, views, np.random.default_rng(seed))
    index = sim.MatchIndex()
    index.add(list(real), list(real.values()))
    index.add_packed(np.arange(fill, dtype=np.int64) + 1_000_000, pdq=hashes,
                     pdq_quality=np.full(fill, 100), dense=dense)
    return index, packed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout's root")
    ap.add_argument("--size", type=int, default=100_000, help="registered works")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    warm_up()  # this checkout's compiled loops, before the other's modules are imported
    other = load_other(args.base, "similarity")
    versions = {"base": other, "this": similarity}

    rng = np.random.default_rng(args.seed)
    blobs = [to_jpeg_1024(p) for p in sorted(args.images.glob("*.jpg"))]
    half = len(blobs) // 2
    order = rng.permutation(len(blobs))
    reg_idx, unreg_idx = order[:half], order[half:]
    queries = edited_queries(blobs, reg_idx, unreg_idx, args.queries, rng)

    built = {}
    for name, sim in versions.items():
        t = time.perf_counter()
        built[name] = build(sim, blobs, reg_idx, args.size, args.seed)
        print(f"{name}: index of {args.size:,} works built in {time.perf_counter() - t:.0f} s",
              file=sys.stderr)
        gc.collect()

    def run(name: str, data: bytes) -> tuple[float, float, list[tuple[int, str]]]:
        sim = versions[name]
        index, packed = built[name]
        local = list(packed.values())

        def lookup(ids: list[int]) -> dict[int, bytes]:
            return {i: packed[i] if i in packed else local[i % len(local)] for i in ids}

        c, t = time.process_time(), time.perf_counter()
        signals = sim.compute_signals(sim.decode_image(data, grey=True))
        found = sim.match(signals, index, lookup)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        parts[name].append(len(signals.parts))
        return wall, cpu, [(m.id, m.decision) for m in found]

    names = list(versions)
    parts: dict[str, list[int]] = {n: [] for n in names}
    for data in queries[:5]:  # first calls (pools, caches) out of the timings
        for name in versions:
            run(name, data)
    for n in names:
        parts[n].clear()
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    floor: list[float] = []
    differ = 0
    for r in range(args.rounds):
        for q, data in enumerate(queries):
            t = time.perf_counter()
            similarity.decode_image(data, target_side=None)
            floor.append(time.perf_counter() - t)
            got = {}
            for k in range(len(names)):
                name = names[(q + r + k) % len(names)]
                w, c, got[name] = run(name, data)
                wall[name].append(w)
                cpu[name].append(c)
            differ += got["base"] != got["this"]
    f = pct(floor, 50)
    lines = [
        "# End-to-end match latency: this code against another commit, query by query in turn",
        "",
        f"Command: `OMP_NUM_THREADS=1 python bench/match_ab.py {' '.join(argv or sys.argv[1:])}`",
        "",
        f"Base: `{commit(args.base, 'similarity')}`; this: "
        f"`{commit(Path(__file__).resolve().parents[1], 'similarity')}`. "
        "One helper thread; CPU is the process's (both threads).",
        "",
        f"Registered works: {args.size:,}; {args.queries} queries x {args.rounds} rounds; "
        f"floor (full decode) p50 {f:.2f} ms.",
        "",
        "| version | end-to-end p50 ms | p50 / floor | mean ms | CPU p50 ms | CPU mean ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        lines.append(
            f"| {name} | {pct(wall[name], 50):.2f} | {pct(wall[name], 50) / f:.2f}x | "
            f"{np.mean(wall[name]) * 1000:.2f} | {pct(cpu[name], 50):.2f} | "
            f"{np.mean(cpu[name]) * 1000:.2f} |"
        )
    lines += ["", f"Queries whose matches (ids and decisions) differ: {differ} of "
              f"{args.queries * args.rounds}.", "",
              "By whether a picture within the query was found and matched on its own (a part: "
              "a grid cell, a pasted or an embedded picture), end-to-end p50 ms:", "",
              "| version | queries without parts | p50 | with parts (parts in all) | p50 |",
              "|---|---:|---:|---:|---:|"]
    for name in names:
        counts = np.array(parts[name])
        times = np.array(wall[name])
        alone, within = times[counts == 0], times[counts > 0]
        lines.append(
            f"| {name} | {len(alone)} | {_p50(alone)} | {len(within)} ({int(counts.sum())}) | "
            f"{_p50(within)} |"
        )
    emit(lines, args.out)
    return 0


def _p50(seconds: np.ndarray) -> str:
    return f"{pct(list(seconds), 50):.2f}" if len(seconds) else "-"


if __name__ == "__main__":
    raise SystemExit(main())
