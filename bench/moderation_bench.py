"""Latency and throughput of one moderation check at 1M registered works, against the floor of
decoding the same image, measured in the same run.

Setup (a temporary data folder with an embedded PostgreSQL): real images from ``--images`` are
registered through the registry's own ingest (a few dozen, so that copies are found and verified
with local features) and a few are stamped as our outputs; the artwork index also holds
``--works`` synthetic works loaded from a snapshot, so every search runs over the full index:
random PDQ hashes, dense views near those of 20 distractor images (a real view plus Gaussian
noise, clipped, normalised; as ``bench/match_speed.py`` makes them), and the local features of
a distractor and their own dense views (float16, as the rows store them), served from memory in
place of Postgres rows (1M rows of local features would not fit this machine); distractor
images are never queried. The synthetic snapshot and the dense views are built once and cached
in ``--cache`` (the snapshot hard-linked into each run, the views memory-mapped). ``--outputs N``
puts N synthetic entries of the same kind into the index of our outputs too, as on a platform
that has made many; the stamped real images are the only outputs with rows in Postgres.

Queries mix edited copies of registered works (blocked), unregistered images (allowed) and
stamped outputs stripped of their metadata (review). For each query, in turn: the decode floor
(``decode_image`` at full size, in colour), the luma decode the check itself does (a JPEG's
luma channel alone, reduced as far as the watermark reads as at full size: large uploads only),
and the whole check through the function
the route calls (``run_check``: decode, signals, watermark, C2PA, labels, three banks, policy,
record in Postgres and the audit log). Throughput: sequential and with 2 threads.
``--long-side`` scales every query first (camera-sized uploads rather than the evaluation
images as they are).

    OMP_NUM_THREADS=1 python bench/moderation_bench.py --images /work/shared/data/images \
        --works 1000000 --outputs 1000000 --out bench/results/moderation.md
    OMP_NUM_THREADS=1 python bench/moderation_bench.py --images /work/shared/data/images \
        --works 1000000 --outputs 1000000 --long-side 3000 \
        --out bench/results/moderation_3000px.md
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from service.indexing.snapshots import Checkpoint
from service.moderation.check import run_check
from service.moderation.policy import Policy
from similarity import (
    SIGNALS_VERSION,
    ImageSignals,
    MatchIndex,
    compute_signals,
    decode_for_matching,
    decode_image,
)
from similarity import dense as dense_mod

if TYPE_CHECKING:
    from uuid import UUID

    import psycopg

    from service.registry.ingest import PreparedImage
    from service.registry.records import Artwork
    from service.runtime import Runtime

SYNTHETIC_BASE_ID = 1_000_000_000
CHUNK = 200_000  # the first chunk trains the IVF; later chunks never trigger a retrain
DISTRACTORS = 20  # images whose descriptors seed the synthetic works; never queried


def synthetic_chunks(
    n: int, base_views: np.ndarray, seed: int = 7
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``n`` synthetic works, ``CHUNK`` at a time, always drawn the same way: (ids, PDQ hashes,
    PDQ qualities, dense views (m, views, DIM)). Random hashes; each view a real one plus
    Gaussian noise, clipped, normalised."""
    rng = np.random.default_rng(seed)
    views = len(dense_mod.VIEWS)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        ids = np.arange(SYNTHETIC_BASE_ID + start, SYNTHETIC_BASE_ID + start + m, dtype=np.int64)
        pdq = rng.integers(0, 256, (m, 32), dtype=np.uint8)
        quality = rng.integers(60, 101, m)
        base = base_views[rng.integers(0, len(base_views), m * views)]
        dense = np.clip(base + rng.normal(0, 0.05, base.shape).astype(np.float32), 0, None)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True) + 1e-6
        yield ids, pdq, quality, dense.reshape(m, views, dense_mod.DIM)


def build_synthetic(n: int, folder: Path, base_views: np.ndarray) -> None:
    """A MatchIndex snapshot of the ``n`` synthetic works (``synthetic_chunks``), written to
    ``folder``."""
    index = MatchIndex()
    t0 = time.perf_counter()
    for ids, pdq, quality, dense in synthetic_chunks(n, base_views):
        index.add_packed(ids, pdq=pdq, pdq_quality=quality, dense=dense)
        done = int(ids[-1] - SYNTHETIC_BASE_ID + 1)
        print(f"  synthetic works: {done:,} ({time.perf_counter() - t0:.0f} s)", flush=True)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    index.save(tmp)
    tmp.rename(folder)


def synthetic_dense(cache: Path, n: int, tag: str, base_views: np.ndarray) -> np.ndarray:
    """The dense views of the ``n`` synthetic works as stored (float16, (n, views, DIM)),
    memory-mapped from ``cache``, drawn once: what the database's rows would hold, for
    ranking an approximate index's candidates again (``serve_synthetic_rows``)."""
    from numpy.lib.format import open_memmap

    path = cache / f"synthetic-{n}-{SIGNALS_VERSION}-{tag}.dense.npy"
    if not path.exists():
        print(f"drawing the dense views of {n:,} synthetic works into {path} (once)")
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npy")
        out = open_memmap(tmp, "w+", np.float16, (n, len(dense_mod.VIEWS), dense_mod.DIM))
        for ids, _pdq, _quality, dense in synthetic_chunks(n, base_views):
            start = int(ids[0] - SYNTHETIC_BASE_ID)
            out[start : start + len(ids)] = dense
        out.flush()
        del out
        tmp.rename(path)
    return np.load(path, mmap_mode="r")


def synthetic_snapshot(cache: Path, n: int, tag: str, base_views: np.ndarray) -> Path:
    """The cached snapshot of ``n`` synthetic works, built once (nothing when ``n`` is 0)."""
    # Named for the index's structure too: a snapshot is searched as it was built, so one built
    # by other code (codes of whole vectors, say) would measure that code's index.
    cached = cache / f"synthetic-{n}-{SIGNALS_VERSION}-{tag}-{index_structure()}"
    if n and cached.exists() and not usable(cached):
        print(f"{cached} was written by another index format: rebuilding it")
        shutil.rmtree(cached)
    if n and not cached.exists():
        print(f"building {n:,} synthetic works into {cached} (once)")
        cached.parent.mkdir(parents=True, exist_ok=True)
        build_synthetic(n, cached, base_views)
    return cached


def index_structure() -> str:
    """A short tag of the index structure this code builds (search effort left out)."""
    from similarity.index import IndexConfig

    shape = asdict(IndexConfig())
    shape["dense"].pop("nprobe", None)
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:6]


def usable(folder: Path) -> bool:
    try:
        MatchIndex.load(folder)
    except Exception:
        return False
    return True


def serve_synthetic_rows(bank: object, pool: list[bytes], dense: np.ndarray | None) -> None:
    """Answer for the synthetic works as if their rows were in Postgres: the local features of
    a distractor image each, and (``dense``, from ``synthetic_dense``) their stored dense
    views; real works are still read from Postgres."""
    local_from_db = bank._lookup_local  # type: ignore[attr-defined]
    dense_from_db = bank._lookup_dense  # type: ignore[attr-defined]

    def local(ids: list[int], versions: dict[int, str] | None = None) -> dict[int, bytes]:
        found = dict(local_from_db([i for i in ids if i < SYNTHETIC_BASE_ID], versions))
        synthetic = [i for i in ids if i >= SYNTHETIC_BASE_ID]
        found.update({i: pool[i % len(pool)] for i in synthetic})
        if versions is not None:
            versions.update(dict.fromkeys(synthetic, SIGNALS_VERSION))
        return found

    def views(ids: list[int]) -> dict[int, np.ndarray]:
        found = dict(dense_from_db([i for i in ids if i < SYNTHETIC_BASE_ID]))
        if dense is not None:
            found.update(
                {i: dense[i - SYNTHETIC_BASE_ID] for i in ids if i >= SYNTHETIC_BASE_ID}
            )
        return found

    bank._lookup_local = local  # type: ignore[attr-defined]
    bank._lookup_dense = views  # type: ignore[attr-defined]


def link_snapshot(
    cached: Path, index_dir: Path, database_id: str, n: int, bank: str = "artwork"
) -> None:
    """Publish the cached snapshot as ``bank``'s snapshot at change 0 of this database."""
    bank_dir = index_dir / bank
    target = bank_dir / "snap-0-bench"
    target.mkdir(parents=True)
    for f in cached.iterdir():
        os.link(f, target / f.name)
    cp = Checkpoint(bank, 0, n, SIGNALS_VERSION, database_id, time.time())
    (target / "checkpoint.json").write_text(json.dumps(asdict(cp)))
    (bank_dir / "CURRENT").write_text(target.name)


@dataclass
class Crowd:
    """The evaluation images as the scale benches split them (the distractors whose signals seed
    the synthetic works, then the rest, shuffled alike in every bench), and the synthetic works
    themselves: the cached snapshot and their stored dense views."""

    files: list[Path]  # never distractors: for registering and querying
    pool: list[ImageSignals]  # the distractors' stored signals
    snapshot: Path
    dense: np.ndarray | None

    @classmethod
    def of(cls, images: Path, n: int, cache: Path) -> Crowd:
        from match_quality import SAME_WORK  # files in the folder that show the same work

        twins = {name for group in SAME_WORK for name in group}
        files = sorted(
            p
            for p in images.iterdir()
            if p.suffix.lower() in (".jpg", ".jpeg") and p.name not in twins
        )
        np.random.default_rng(11).shuffle(files)
        pool_files = files[:DISTRACTORS]
        pool = [compute_signals(decode_image(f.read_bytes()), for_query=False) for f in pool_files]
        tag = hashlib.sha256("|".join(f.name for f in pool_files).encode()).hexdigest()[:8]
        base_views = np.concatenate([s.dense_views for s in pool])
        snapshot = synthetic_snapshot(cache, n, tag, base_views)
        dense = synthetic_dense(cache, n, tag, base_views) if n else None
        return cls(files[DISTRACTORS:], pool, snapshot, dense)

    def join(self, rt: Runtime, n: int, bank: str = "artwork") -> None:
        """Load ``bank`` with the ``n`` synthetic works beside what the database holds, their
        rows served from memory (``serve_synthetic_rows``); raises SystemExit if they did not
        load."""
        with rt.pool.connection() as conn:
            db_id = conn.execute(
                "SELECT system_identifier::text AS id FROM pg_control_system()"
            ).fetchone()["id"]
        if n:
            link_snapshot(self.snapshot, rt.settings.index_dir, db_id, n, bank)
        rt.banks[bank].load()
        serve_synthetic_rows(rt.banks[bank], [s.local for s in self.pool], self.dense)
        if rt.banks[bank].status().size < n:
            raise SystemExit(f"the synthetic snapshot of {bank} was not loaded")


@contextmanager
def bench_runtime(prefix: str) -> Iterator[Runtime]:
    """The service's runtime on a fresh data folder (embedded PostgreSQL) whose indexes are
    neither refreshed nor called stale during a run (both after hours); removed after."""
    from service.runtime import Runtime
    from service.settings import Settings

    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    rt = Runtime.open(
        Settings(data_dir=root / "data", index_refresh_seconds=3600, index_stale_seconds=7200)
    )
    try:
        yield rt
    finally:
        rt.close()  # stops the embedded database too
        shutil.rmtree(root, ignore_errors=True)


def register_files(
    rt: Runtime, conn: psycopg.Connection, artist_id: UUID, files: Sequence[Path]
) -> list[tuple[Path, Artwork, PreparedImage]]:
    """``files`` registered for the artist through the registry's own ingest, one at a time:
    each with its artwork and what ingest prepared (its signals)."""
    from service.registry.ingest import insert, prepare, store_files

    done = []
    for f in files:
        item = prepare(f.read_bytes(), f.name, rt.decode_limits)
        store_files(rt.blobs, rt.thumbnails, item)
        with conn.transaction():
            art, _ = insert(conn, rt.registry, "bench", artist_id, item, None, {})
        done.append((f, art, item))
    return done


def jpeg(img: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=quality)
    return out.getvalue()


def edit(img: Image.Image) -> Image.Image:
    w, h = img.size
    img = img.crop((int(w * 0.06), int(h * 0.05), int(w * 0.95), int(h * 0.96)))
    return img.resize((max(1, int(img.size[0] * 0.9)), max(1, int(img.size[1] * 0.9))))


def cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads)."""
    use = resource.getrusage(resource.RUSAGE_SELF)
    return use.ru_utime + use.ru_stime


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--works", type=int, default=1_000_000)
    ap.add_argument("--registered", type=int, default=40, help="real images registered")
    ap.add_argument("--stamped", type=int, default=6, help="real images stamped as outputs")
    ap.add_argument("--outputs", type=int, default=0,
                    help="synthetic entries in our outputs' index too, as on a platform that "
                    "has made many (the same kind of synthetic snapshot as --works)")
    ap.add_argument("--queries", type=int, default=90)
    ap.add_argument(
        "--long-side",
        type=int,
        default=0,
        help="scale every query to this longer side (Lanczos, then JPEG) before it is sent, as "
        "uploads from cameras and phones are larger than the evaluation images; 0: as they are",
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "chopmark-bench")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from match_quality import SAME_WORK  # files in the folder that show the same work

    twins = {name for group in SAME_WORK for name in group}
    files = sorted(
        p
        for p in args.images.iterdir()
        if p.suffix.lower() in (".jpg", ".jpeg") and p.name not in twins
    )
    np.random.default_rng(11).shuffle(files)
    pool_files, files = files[:DISTRACTORS], files[DISTRACTORS:]
    reg_files = files[: args.registered]
    stamp_files = files[args.registered : args.registered + args.stamped]
    free_files = files[args.registered + args.stamped :]

    pool = [compute_signals(decode_image(f.read_bytes()), for_query=False) for f in pool_files]
    tag = hashlib.sha256("|".join(f.name for f in pool_files).encode()).hexdigest()[:8]
    base_views = np.concatenate([s.dense_views for s in pool])
    cached = synthetic_snapshot(args.cache, args.works, tag, base_views)
    cached_outputs = synthetic_snapshot(args.cache, args.outputs, tag, base_views)
    works_dense = synthetic_dense(args.cache, args.works, tag, base_views) if args.works else None
    outputs_dense = (
        synthetic_dense(args.cache, args.outputs, tag, base_views) if args.outputs else None
    )

    from service.api.routes.stamps import StampMetadata, to_facts
    from service.stamping.stamper import stamp_and_record

    with bench_runtime("chopmark-modbench-") as rt:
        t0 = time.perf_counter()
        with rt.pool.connection() as conn:
            artist = rt.registry.create_artist(conn, "bench", "Bench", "bench@example.org", {})
            register_files(rt, conn, artist.id, reg_files)
            db_id = conn.execute(
                "SELECT system_identifier::text AS id FROM pg_control_system()"
            ).fetchone()["id"]
        if args.works:
            link_snapshot(cached, rt.settings.index_dir, db_id, args.works)
        if args.outputs:
            link_snapshot(
                cached_outputs, rt.settings.index_dir, db_id, args.outputs, bank="output"
            )
        rt.load_indexes()
        serve_synthetic_rows(rt.banks["artwork"], [s.local for s in pool], works_dense)
        serve_synthetic_rows(rt.banks["output"], [s.local for s in pool], outputs_dense)
        meta = StampMetadata(generator="BenchDiffusion", model_name="bench-model")
        stamped = []
        for f in stamp_files:
            img = decode_image(f.read_bytes(), target_side=None).image
            res = stamp_and_record(rt, "bench", img, to_facts(meta, None), origin="stamp")
            stamped.append(rt.blobs.get(res.record.sha256))
        rt.banks["output"].refresh()
        size = rt.banks["artwork"].status().size
        out_size = rt.banks["output"].status().size
        if size < args.works or out_size < args.outputs + len(stamped):
            raise SystemExit(
                f"a synthetic snapshot was not loaded ({size:,} works, {out_size:,} outputs)"
            )
        print(
            f"setup: {size:,} works in the artwork index, {out_size:,} in the outputs' index "
            f"({time.perf_counter() - t0:.0f} s)"
        )

        def sized(img: Image.Image) -> Image.Image:
            if not args.long_side:
                return img
            f = args.long_side / max(img.size)
            size = (round(img.width * f), round(img.height * f))
            return img.convert("RGB").resize(size, Image.Resampling.LANCZOS)

        queries: list[tuple[str, bytes]] = []
        rng = np.random.default_rng(3)
        for i in range(args.queries):
            kind = ("copy", "free", "ours")[i % 3]
            if kind == "copy":
                f = reg_files[rng.integers(len(reg_files))]
                queries.append((kind, jpeg(sized(edit(Image.open(f))), 85)))
            elif kind == "free":
                f = free_files[rng.integers(len(free_files))]
                free = jpeg(sized(Image.open(f)), 90) if args.long_side else f.read_bytes()
                queries.append((kind, free))
            else:
                data = stamped[rng.integers(len(stamped))]
                queries.append((kind, jpeg(sized(Image.open(io.BytesIO(data))), 88)))
        sides = sorted(max(Image.open(io.BytesIO(q)).size) for _, q in queries)

        policy = Policy()

        def check(data: bytes) -> dict:
            return run_check(rt, data, policy, actor="bench", api_key_id=None).report

        for _, data in queries[:6]:  # warm up
            check(data)
        floor_ms, luma_ms, prim_ms, check_ms, verdicts, stages = [], [], [], [], {}, {}
        cpu_ms: list[float] = []
        for kind, data in queries:
            s = time.perf_counter()
            decode_image(data, rt.decode_limits, target_side=None)
            floor_ms.append((time.perf_counter() - s) * 1e3)
            s = time.perf_counter()
            decoded = decode_for_matching(data, rt.decode_limits)
            luma_ms.append((time.perf_counter() - s) * 1e3)
            rt.watermarker.detect(decoded.image)
            compute_signals(decoded)
            prim_ms.append((time.perf_counter() - s) * 1e3)
            s = time.perf_counter()
            c = cpu_seconds()
            report = check(data)
            check_ms.append((time.perf_counter() - s) * 1e3)
            cpu_ms.append((cpu_seconds() - c) * 1e3)
            verdicts.setdefault(kind, []).append(report["verdict"])
            for k, v in report["timings"].items():
                stages.setdefault(k, []).append(v)

        s = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda q: check(q[1]), queries))
        wall2 = time.perf_counter() - s

        f50, c50 = pct(floor_ms, 50), pct(check_ms, 50)
        rows = [
            ("decode floor (full decode, colour)", f50, pct(floor_ms, 99), 1.0),
            (
                "luma decode (as the check decodes)",
                pct(luma_ms, 50),
                pct(luma_ms, 99),
                pct(luma_ms, 50) / f50,
            ),
            (
                "primitives floor (luma decode + watermark detect + signals, one after another)",
                pct(prim_ms, 50),
                pct(prim_ms, 99),
                pct(prim_ms, 50) / f50,
            ),
            ("moderation check, in-process", c50, pct(check_ms, 99), c50 / f50),
        ]
        lines = [
            f"Artwork index: {size:,} works ({args.works:,} synthetic + {len(reg_files)} real); "
            f"outputs' index: {out_size:,} ({args.outputs:,} synthetic + {len(stamped)} stamped "
            f"real images); {len(queries)} queries "
            f"({', '.join(f'{k}: {len(v)}' for k, v in verdicts.items())}), longer side "
            f"{sides[0]}-{sides[-1]} px (median {sides[len(sides) // 2]}).",
            "",
            "| measure | p50 ms | p99 ms | p50 ratio to floor |",
            "|---|---:|---:|---:|",
            *[f"| {n} | {a:.1f} | {b:.1f} | {r:.1f}x |" for n, a, b, r in rows],
            "",
            f"Check p50 / primitives floor p50: {c50 / pct(prim_ms, 50):.2f}x.",
            "",
            f"CPU per check (the process's user + system time, all threads): p50 "
            f"{pct(cpu_ms, 50):.1f} ms, mean {statistics.fmean(cpu_ms):.1f} ms; "
            f"{os.cpu_count()} cores can finish at most "
            f"{(os.cpu_count() or 1) * 1e3 / statistics.fmean(cpu_ms):.1f} checks/s.",
            "",
            f"Throughput: {len(check_ms) / (sum(check_ms) / 1e3):.1f} checks/s sequential, "
            f"{len(queries) / wall2:.1f} checks/s with 2 threads.",
            "",
            "Median per stage (ms; watermark runs beside signals, c2pa, labels and the banks; our "
            "outputs are searched beside the registry, `outputs` is the wait for them):",
            "",
            "| stage | p50 ms | p99 ms |",
            "|---|---:|---:|",
            *[
                f"| {k} | {statistics.median(v):.1f} | {pct(v, 99):.1f} |"
                for k, v in stages.items()
            ],
            "",
            "Verdicts by query kind: "
            + "; ".join(
                f"{k}: " + ", ".join(f"{x} {v.count(x)}" for x in sorted(set(v)))
                for k, v in verdicts.items()
            ),
        ]
        text = "\n".join(lines)
        print(text)
        if args.out:
            command = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
            args.out.write_text(
                "# Moderation check latency at scale\n\n"
                f"Command: `{command}`\n\n"
                f"Machine: {os.cpu_count()} CPU cores (shared), "
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}.\n\n" + text + "\n"
            )


if __name__ == "__main__":
    main()
