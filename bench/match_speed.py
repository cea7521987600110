"""Ingest throughput and match latency at 10k, 100k and 1M registered works, against the decode
floor measured in the same run.

Queries and ingest use the real images scaled up to 1024 px on the longer side and saved as
JPEG (quality 90), in memory. Registered works: real signals for half of the images; the rest
of each index size is filled with synthetic signals (random PDQ hashes; dense views drawn near
real descriptors: a real view plus Gaussian noise, clipped and normalised; the `local` column of
a synthetic work is a real image's). The floor is a full decode of the query JPEG. Search is
`MatchIndex.candidates` alone. Match is `similarity.match` given freshly computed query signals
(and the works' stored dense views, with which an approximate index's candidates are ranked
again, as the service reads them from their rows),
so it includes the query's ORB features whenever verification asks for them (they are computed
lazily, or finished by a helper thread that started on them in `compute_signals`); end to end
is the reduced greyscale decode (as `/v1/matches` decodes: the fingerprints need only luma),
`compute_signals` and `match` timed together, on fresh objects at every
index size, with the library's default helper threads (see `similarity.threads`) and, in the
same run, with none. The per-step table is measured without helpers. Ingest: reduced decode +
`compute_signals(for_query=False)`, in 1 and 2 worker processes.

    OMP_NUM_THREADS=1 python bench/match_speed.py --images /work/shared/data/images \
        --out bench/results/match_speed.md
"""

from __future__ import annotations

import argparse
import gc
import io
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from similarity import MatchIndex, compute_signals, decode_image, match
from similarity import threads as threads_mod
from similarity.dense import DIM, VIEWS
from similarity.edits import COPY_EDITS
from similarity.jit import warm_up

SIDE = 1024


def to_jpeg_1024(path: Path) -> bytes:
    img = Image.open(path).convert("RGB")
    f = SIDE / max(img.size)
    img = img.resize((round(img.width * f), round(img.height * f)), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def ingest_one(data: bytes) -> bytes:
    # in colour, as registration decodes (it keeps a thumbnail)
    sig = compute_signals(decode_image(data), for_query=False)
    return sig.pdq


def ingest_rate(blobs: list[bytes], workers: int) -> float:
    start = time.perf_counter()
    if workers == 1:
        for b in blobs:
            ingest_one(b)
    else:
        with mp.get_context("fork").Pool(workers) as pool:
            pool.map(ingest_one, blobs, chunksize=4)
    return len(blobs) / (time.perf_counter() - start)


def edited_queries(blobs: list[bytes], reg_idx: np.ndarray, unreg_idx: np.ndarray, count: int,
                   rng: np.random.Generator) -> list[bytes]:
    """Edited copies of registered and unregistered images in turn (an edit of the copy list
    each, drawn with ``rng``), as 1024-px JPEG uploads."""
    half = len(reg_idx)
    queries = []
    for q in range(count):
        src = int(reg_idx[q % half]) if q % 2 == 0 else int(unreg_idx[q % half])
        edit = COPY_EDITS[int(rng.integers(len(COPY_EDITS)))]
        img = edit.apply(Image.open(io.BytesIO(blobs[src])).convert("RGB"), rng)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, "JPEG", quality=90)
        queries.append(buf.getvalue())
    return queries


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q))


def synthetic_fill(n: int, real_views: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(n, 32) random hashes and (n, views, DIM) float16 dense views near real ones."""
    hashes = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    views = np.empty((n, len(VIEWS), DIM), np.float16)
    step = 100_000
    for i in range(0, n, step):
        m = min(step, n - i)
        base = real_views[rng.integers(0, len(real_views), m * len(VIEWS))]
        noisy = np.clip(base + rng.normal(0, 0.05, base.shape).astype(np.float32), 0, None)
        noisy /= np.linalg.norm(noisy, axis=1, keepdims=True) + 1e-6
        views[i : i + m] = noisy.reshape(m, len(VIEWS), DIM)
    return hashes, views


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    warm_up()  # the compiled loops, ready as in a serving process before its first query
    rng = np.random.default_rng(args.seed)
    proc = psutil.Process()
    helpers = threads_mod.helper_threads()
    threads_mod.set_helper_threads(0)  # per-step costs, one thread

    paths = sorted(args.images.glob("*.jpg"))
    blobs = [to_jpeg_1024(p) for p in paths]
    half = len(blobs) // 2
    order = rng.permutation(len(blobs))
    reg_idx, unreg_idx = order[:half], order[half:]

    # Decode floor and ingest.
    floor = []
    reduced = []
    for b in blobs:
        t = time.perf_counter()
        decode_image(b, target_side=None)
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode_image(b)
        reduced.append(time.perf_counter() - t)
    rate1 = ingest_rate(blobs, 1)
    rate2 = ingest_rate(blobs, 2)
    print(f"floor p50 {pct(floor, 50):.2f} ms; ingest {rate1:.1f}/s (1), {rate2:.1f}/s (2)",
          file=sys.stderr)

    real_sigs = {int(i): compute_signals(decode_image(blobs[i]), for_query=False)
                 for i in reg_idx}
    real_views = np.concatenate([s.dense_views for s in real_sigs.values()])
    real_packed = {i: bytes(s.pack()["local"]) for i, s in real_sigs.items()}  # as stored
    real_local = list(real_packed.values())

    queries = edited_queries(blobs, reg_idx, unreg_idx, args.queries, rng)
    q_floor, q_reduced, q_signals, q_orb = [], [], [], []
    for data in queries:
        t = time.perf_counter()
        decode_image(data, target_side=None)
        q_floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        dec = decode_image(data, grey=True)
        q_reduced.append(time.perf_counter() - t)
        t = time.perf_counter()
        sig = compute_signals(dec)
        q_signals.append(time.perf_counter() - t)
        t = time.perf_counter()
        _ = sig.local, sig.local_mirror
        q_orb.append(time.perf_counter() - t)

    gc.collect()
    base_rss = proc.memory_info().rss / 2**20
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        fill = size - len(real_sigs)
        hashes, views = synthetic_fill(fill, real_views, rng)
        index = MatchIndex()
        t = time.perf_counter()
        index.add(list(real_sigs), list(real_sigs.values()))
        ids = np.arange(fill, dtype=np.int64) + 1_000_000
        index.add_packed(ids, pdq=hashes, pdq_quality=np.full(fill, 100), dense=views)
        build = time.perf_counter() - t
        del hashes
        gc.collect()
        rss = proc.memory_info().rss

        def stored_views(wanted: list[int], views: np.ndarray = views) -> dict[int, np.ndarray]:
            """The works' stored dense views, as the service reads their rows to rank an
            approximate index's candidates again."""
            return {
                w: real_sigs[w].dense_views if w in real_sigs else views[w - 1_000_000]
                for w in wanted
            }

        def lookup(wanted: list[int]) -> dict[int, bytes]:
            out = {}
            for w in wanted:
                out[w] = real_packed[w] if w in real_packed else real_local[w % len(real_local)]
            return out

        # Blocks of ten queries: the floor, then end to end without and with helpers, so that
        # each figure and the floor it is divided by come from the same minutes (this shared
        # machine's speed drifts by tens of percent within a run).
        size_floor: list[float] = []
        e2e_alone: list[float] = []
        search, times, e2e = [], [], []
        for start in range(0, len(queries), 10):
            block = queries[start : start + 10]
            for data in block:
                t = time.perf_counter()
                decode_image(data, target_side=None)
                size_floor.append(time.perf_counter() - t)
            threads_mod.set_helper_threads(0)
            for data in block:
                t = time.perf_counter()
                match(
                    compute_signals(decode_image(data, grey=True)),
                    index,
                    lookup,
                    dense_lookup=stored_views,
                )
                e2e_alone.append(time.perf_counter() - t)
            threads_mod.set_helper_threads(helpers)
            for data in block:
                t = time.perf_counter()
                sig = compute_signals(decode_image(data, grey=True))
                t1 = time.perf_counter()
                match(sig, index, lookup, dense_lookup=stored_views)
                t2 = time.perf_counter()
                times.append(t2 - t1)
                e2e.append(t2 - t)
                t = time.perf_counter()
                index.candidates(sig, k=12)
                search.append(time.perf_counter() - t)
        threads_mod.set_helper_threads(0)
        tmp = Path(tempfile.mkdtemp(prefix="chopmark-snap-"))
        try:
            t = time.perf_counter()
            index.save(tmp)
            save_s = time.perf_counter() - t
            t = time.perf_counter()
            loaded = MatchIndex.load(tmp)
            load_s = time.perf_counter() - t
            snap_mb = sum(f.stat().st_size for f in tmp.iterdir()) / 2**20
            del loaded
        finally:
            shutil.rmtree(tmp)
        del index
        rows.append({
            "size": size, "build_s": build, "rss_mb": rss / 2**20, "snap_mb": snap_mb,
            "save_s": save_s, "load_s": load_s,
            "search_p50": pct(search, 50), "search_p99": pct(search, 99),
            "match_p50": pct(times, 50), "match_p99": pct(times, 99),
            "e2e_p50": pct(e2e, 50), "e2e_p99": pct(e2e, 99),
            "alone_p50": pct(e2e_alone, 50), "helpers": helpers,
            "floor_p50": pct(size_floor, 50),
        })
        print(rows[-1], file=sys.stderr)

    report = render(args, floor, reduced, rate1, rate2, q_floor, q_reduced, q_signals, q_orb,
                    rows)
    report += f"\nProcess RSS before any index: {base_rss:.0f} MB.\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


def render(args: argparse.Namespace, floor: list[float], reduced: list[float], rate1: float,
           rate2: float, q_floor: list[float], q_reduced: list[float], q_signals: list[float],
           q_orb: list[float], rows: list[dict[str, float]]) -> str:
    cmd = "python bench/match_speed.py " + " ".join(sys.argv[1:])
    fl = pct(q_floor, 50)
    lines = [
        "# Match speed: ingest, latency at scale, against the decode floor",
        "",
        f"Command: `OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} {cmd}`",
        "",
        f"Machine: {os.cpu_count()} CPUs (shared). Images: the evaluation set scaled to {SIDE} px "
        "(JPEG q90). Floor: full decode of the query JPEG, same run; in the scale table, "
        "measured at each size in blocks of ten queries between the timed matches, and every "
        "ratio there is to that size's floor.",
        "",
        "| step | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| decode floor, full (originals) | {pct(floor, 50):.2f} | {pct(floor, 99):.2f} |",
        f"| decode, reduced to 512 (originals) | {pct(reduced, 50):.2f} | {pct(reduced, 99):.2f} |",
        f"| decode floor, full (queries) | {fl:.2f} | {pct(q_floor, 99):.2f} |",
        f"| decode, reduced greyscale (queries) | {pct(q_reduced, 50):.2f} "
        f"| {pct(q_reduced, 99):.2f} |",
        f"| compute_signals (query side) | {pct(q_signals, 50):.2f} | {pct(q_signals, 99):.2f} |",
        f"| query ORB features, picture and mirror image (one thread) | {pct(q_orb, 50):.2f} "
        f"| {pct(q_orb, 99):.2f} |",
        "",
        f"Ingest (reduced decode + registration signals): {rate1:.1f} images/s in 1 process, "
        f"{rate2:.1f} images/s in 2 processes (target >= 50/s on 2 cores).",
        "",
        "| registered works | build s | process RSS after build MB | snapshot MB | save s | load s "
        "| floor p50 ms | search p50 ms | search p50 / floor | match p50 ms | match p99 ms "
        "| match p50 / floor "
        "| end-to-end p50 ms | end-to-end p99 ms | end-to-end p50 / floor "
        "| end-to-end p50 ms, no helper | no helper / floor |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fl = r["floor_p50"]
        lines.append(
            f"| {int(r['size']):,} | {r['build_s']:.1f} | {r['rss_mb']:.0f} | {r['snap_mb']:.0f} "
            f"| {r['save_s']:.2f} | {r['load_s']:.2f} | {fl:.2f} | {r['search_p50']:.1f} "
            f"| {r['search_p50'] / fl:.2f} | {r['match_p50']:.1f} "
            f"| {r['match_p99']:.1f} | {r['match_p50'] / fl:.2f} | {r['e2e_p50']:.1f} "
            f"| {r['e2e_p99']:.1f} | {r['e2e_p50'] / fl:.2f} | {r['alone_p50']:.1f} "
            f"| {r['alone_p50'] / fl:.2f} |"
        )
    if rows:
        lines += ["", f"Helper threads (search, match, end to end): {int(rows[0]['helpers'])}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
