"""Recall of `copy` decisions at 1M registered works, by how many inverted lists the dense search
probes, against the same queries on an index of the real works alone (no crowd), in one run.

Setup as ``bench/moderation_bench.py`` (whose helpers it uses): ``--registered`` real images
registered through the registry's own ingest, and ``--works`` synthetic works loaded into the
same artwork index from the cached snapshot (dense views near those of 20 distractor images, the
distractors' local features): a crowd that every dense search has to get through. Each registered
image is queried under each of ``--edits`` (saved as JPEG 88, decoded as an upload is), and
``--free`` never-registered images are queried to count wrong `copy` decisions. For each
``--nprobe`` value in turn, every query is matched (``similarity.match``: candidates, verification,
decision; signals computed beforehand) against the 1M index with the dense search probing that
many lists, and timed: once taking the quantised search's order as it is, once with the
nearest ``Thresholds.dense_rerank`` works ranked again by their stored vectors (what the
service does: ``similarity.index.exact_dense``; the synthetic works' vectors served as their
rows would be, see ``bench/moderation_bench.py``). The baseline row matches the same queries
against an index holding the real works alone (exact: nothing to rank again).

    OMP_NUM_THREADS=1 python bench/match_recall_at_scale.py --images /work/shared/data/images \
        --works 1000000 --out bench/results/match_recall_at_scale.md
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from similarity import (
    ImageSignals,
    MatchIndex,
    compute_signals,
    decode_for_matching,
    match,
)
from similarity.dense_store import DenseStoreConfig
from similarity.edits import EDITS_BY_NAME

EDITS = ("crop_80", "crop_60", "rotate_5", "text_20", "screenshot_border", "scale_50")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--works", type=int, default=1_000_000)
    ap.add_argument("--registered", type=int, default=40)
    ap.add_argument("--free", type=int, default=40, help="never-registered images queried")
    ap.add_argument("--edits", default=",".join(EDITS))
    ap.add_argument("--nprobe", default="4,16,24,48", help="lists the dense search probes")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "chopmark-bench")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    edits = [EDITS_BY_NAME[name] for name in args.edits.split(",")]
    probes = [int(n) for n in args.nprobe.split(",")]

    sys.path.insert(0, str(Path(__file__).parent))
    from moderation_bench import Crowd, bench_runtime, jpeg, register_files

    crowd_files = Crowd.of(args.images, args.works, args.cache)
    reg_files = crowd_files.files[: args.registered]
    free_files = crowd_files.files[args.registered : args.registered + args.free]

    with bench_runtime("chopmark-recallbench-") as rt:
        ids: dict[str, int] = {}
        stored: dict[int, ImageSignals] = {}
        with rt.pool.connection() as conn:
            artist = rt.registry.create_artist(conn, "bench", "A", "a@example.org", {})
            for f, art, item in register_files(rt, conn, artist.id, reg_files):
                assert art.fingerprint_id is not None
                ids[f.name] = art.fingerprint_id
                stored[art.fingerprint_id] = ImageSignals.from_packed(item.signals.pack())
        crowd_files.join(rt, args.works)
        bank = rt.banks["artwork"]
        crowd = bank._index
        lookup = bank._lookup_local
        stored_views = bank._lookup_dense
        assert crowd is not None and len(crowd) >= args.works, "the snapshot was not loaded"
        alone = MatchIndex()
        alone.add(list(stored), list(stored.values()))

        rng = np.random.default_rng(5)
        queries: list[tuple[str, int | None, ImageSignals]] = []
        for edit in edits:
            for f in reg_files:
                img = edit.apply(Image.open(f).convert("RGB"), rng)
                data = jpeg(img, 88)
                queries.append((edit.name, ids[f.name], compute_signals(decode_for_matching(data))))
        for f in free_files:
            queries.append(
                ("never registered", None, compute_signals(decode_for_matching(f.read_bytes())))
            )
        print(f"{len(crowd):,} works; {len(queries)} queries", flush=True)

        def run(index: MatchIndex, again: bool) -> tuple[dict[str, int], int, list[float]]:
            hits: dict[str, int] = {}
            wrong = 0
            ms: list[float] = []
            for kind, want, q in queries:
                s = time.perf_counter()
                found = match(
                    q, index, lookup, limit=10, dense_lookup=stored_views if again else None
                )
                ms.append((time.perf_counter() - s) * 1e3)
                copies = {m.id for m in found if m.decision == "copy"}
                if want is None:
                    wrong += bool(copies)
                else:
                    hits[kind] = hits.get(kind, 0) + (want in copies)
                    wrong += bool(copies - {want})
            return hits, wrong, ms

        dense = crowd._dense
        rows: list[tuple[str, dict[str, int], int, list[float]]] = []
        for _ in range(2):  # warm up
            run(alone, True)
        rows.append(("real works alone (no crowd)", *run(alone, True)))
        default = DenseStoreConfig().nprobe
        if dense.ivf is None:  # below the approximate index's size: one exact search
            rows.append((f"{len(crowd):,} works (exact search)", *run(crowd, True)))
            probes = []
        for n in probes:
            assert dense.ivf is not None
            dense.ivf.nprobe = n
            for again in (False, True):
                label = (
                    f"{len(crowd):,} works, nprobe {n}"
                    + (", ranked again by stored vectors" if again else ", quantised order")
                    + (" (default)" if n == default and again else "")
                )
                rows.append((label, *run(crowd, again)))
            print(f"  nprobe {n} done", flush=True)

    names = [e.name for e in edits]
    per = len(reg_files)
    base_ms = float(np.median(rows[1][3])) if len(rows) > 1 else float("nan")
    lines = [
        "# Match recall at scale: `copy` found per edit, by dense lists probed",
        "",
        f"Command: `OMP_NUM_THREADS=1 python bench/match_recall_at_scale.py --images "
        f"{args.images} --works {args.works} --nprobe {args.nprobe} --out <file>`",
        "",
        f"{per} real works registered; {args.works:,} synthetic works beside them in the 1M "
        f"rows. Queries: each real work under each edit ({per} a column), {len(free_files)} "
        "never-registered images. Match time: `similarity.match` alone (signals computed "
        "before), p50 over every query; ratio to the first 1M row.",
        "",
        "| index | " + " | ".join(names) + " | all copies | wrong `copy` | match p50 ms | ratio |",
        "|---|" + "---:|" * (len(names) + 4),
    ]
    for label, hits, wrong, ms in rows:
        total = sum(hits.values())
        p50 = float(np.median(ms))
        lines.append(
            f"| {label} | "
            + " | ".join(str(hits.get(n, 0)) for n in names)
            + f" | {total}/{per * len(names)} ({total / (per * len(names)):.1%}) | {wrong} |"
            f" {p50:.1f} | {p50 / base_ms:.2f}x |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
