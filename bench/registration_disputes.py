"""What the ownership-dispute check adds to registration at 1M registered works, and which
copies it catches.

Setup as ``bench/moderation_bench.py`` (whose helpers it uses): a temporary data folder with an
embedded PostgreSQL; ``--registered`` real images registered by artist A; ``--works``
synthetic works loaded into the artwork index from the cached snapshot, so every search runs
over the full index. Then artist B registers, one file at a time as the API does (prepare,
store, insert, index catch-up, then the dispute check), edited copies of A's works (one of
``--edits`` each, in turn) and unregistered real images. For each file: the registration
without the check (prepare + store + insert + catch-up) and the check itself
(``open_disputes``), timed apart in the same run; whether a copy opened a dispute with the
work it copies, and whether an unregistered image opened any.

    OMP_NUM_THREADS=1 python bench/registration_disputes.py --images /work/shared/data/images \
        --works 1000000 --out bench/results/registration_disputes.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from similarity.edits import EDITS_BY_NAME

EDITS = (
    "jpeg_50",
    "scale_50",
    "crop_80",
    "crop_60",
    "brightness_-30",
    "saturation_+30",
    "grayscale",
    "text_20",
    "screenshot_border",
    "rotate_5",
    "hflip",
)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--works", type=int, default=1_000_000)
    ap.add_argument("--registered", type=int, default=60, help="real images artist A registers")
    ap.add_argument("--free", type=int, default=60, help="unregistered real images B registers")
    ap.add_argument("--edits", default=",".join(EDITS), help="edits B's copies are made with")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "chopmark-bench")
    ap.add_argument(
        "--signals",
        choices=("query", "stored"),
        default="query",
        help="what the check matches with: the signals a query computes from the kept original"
        " (what registration does), or the work's stored fingerprints",
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    edits = [EDITS_BY_NAME[name] for name in args.edits.split(",")]

    sys.path.insert(0, str(Path(__file__).parent))
    from moderation_bench import Crowd, bench_runtime, jpeg, register_files

    crowd = Crowd.of(args.images, args.works, args.cache)
    reg_files = crowd.files[: args.registered]
    free_files = crowd.files[args.registered : args.registered + args.free]

    from service.registry.disputes import open_disputes
    from service.registry.ingest import insert, prepare, store_files

    with bench_runtime("chopmark-disputebench-") as rt:
        t0 = time.perf_counter()
        with rt.pool.connection() as conn:
            a = rt.registry.create_artist(conn, "bench", "A", "a@example.org", {})
            b = rt.registry.create_artist(conn, "bench", "B", "b@example.org", {})
            registered = register_files(rt, conn, a.id, reg_files)
            originals = {f.name: art.id for f, art, _ in registered}
        crowd.join(rt, args.works)
        bank = rt.banks["artwork"]
        size = bank.status().size
        print(f"setup: {size:,} works in the artwork index ({time.perf_counter() - t0:.0f} s)")

        rng = np.random.default_rng(5)
        uploads: list[tuple[str, str | None, bytes]] = []  # (kind, original's name, bytes)
        for i, f in enumerate(reg_files):
            edit = edits[i % len(edits)]
            img = edit.apply(Image.open(f).convert("RGB"), rng)
            uploads.append((edit.name, f.name, jpeg(img, 88)))
        uploads += [("unregistered", None, f.read_bytes()) for f in free_files]
        order = rng.permutation(len(uploads))

        register_ms: list[float] = []
        check_ms: list[float] = []
        found: dict[str, list[bool]] = {}
        false_disputes = 0
        with rt.pool.connection() as conn:
            for n, k in enumerate(order):
                kind, original, data = uploads[k]
                s = time.perf_counter()
                try:
                    item = prepare(data, f"b-{k}.jpg", rt.decode_limits)
                except Exception as exc:  # an edit that leaves too little to register
                    found.setdefault(kind, []).append(False)
                    print(f"  {kind} refused: {exc}")
                    continue
                store_files(rt.blobs, rt.thumbnails, item)
                with conn.transaction():
                    art, created = insert(conn, rt.registry, "bench", b.id, item, None, {})
                bank.catch_up()
                s2 = time.perf_counter()
                disputes = open_disputes(
                    rt, "bench", [art.id] if created else [], query_signals=args.signals == "query"
                )
                check_ms.append((time.perf_counter() - s2) * 1e3)
                register_ms.append((s2 - s) * 1e3)
                earlier = {d["earlier"]["artwork_id"] for d in disputes}
                if original is None:
                    false_disputes += bool(disputes)
                else:
                    found.setdefault(kind, []).append(originals[original] in earlier)
                if n % 20 == 19:
                    print(f"  {n + 1}/{len(order)} registered", flush=True)

    reg_mean, check_mean = statistics.fmean(register_ms), statistics.fmean(check_ms)
    lines = [
        f"# Ownership disputes at registration: cost and catch at {size:,} works",
        "",
        "Command: `OMP_NUM_THREADS=1 python bench/registration_disputes.py --images "
        f"{args.images} --works {args.works} --signals {args.signals} --out <file>`",
        "",
        f"Artwork index: {size:,} works ({args.works:,} synthetic + {len(reg_files)} real, "
        f"registered by artist A). Artist B then registers {len(uploads)} files one at a time: "
        f"{len(reg_files)} edited copies of A's works and {len(free_files)} unregistered images.",
        "",
        "| per file | p50 ms | p99 ms | mean ms |",
        "|---|---:|---:|---:|",
        f"| registration without the check (decode, fingerprints, store, insert, index "
        f"catch-up) | {pct(register_ms, 50):.1f} | {pct(register_ms, 99):.1f} | "
        f"{statistics.fmean(register_ms):.1f} |",
        f"| the dispute check (`open_disputes`: one registry match, disputes opened) | "
        f"{pct(check_ms, 50):.1f} | {pct(check_ms, 99):.1f} | {statistics.fmean(check_ms):.1f} |",
        "",
        f"Check / registration without it, means: {check_mean / reg_mean:.2f}x (registration"
        f" with the check: {reg_mean + check_mean:.1f} ms a file,"
        f" {1e3 / (reg_mean + check_mean):.0f} files/s in one process).",
        "",
        "| B's upload | files | disputes opened with the copied work |",
        "|---|---:|---:|",
    ]
    for kind, hits in found.items():
        lines.append(f"| copy, {kind} | {len(hits)} | {sum(hits)} ({sum(hits) / len(hits):.0%}) |")
    lines.append(f"| unregistered image | {len(free_files)} | {false_disputes} opened any |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
