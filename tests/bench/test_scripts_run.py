"""The benchmark scripts still run against the code (on a few synthetic pictures; the figures
mean nothing at this size): a script that no longer runs is found here, not when someone needs
its numbers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support import encode, photo_like

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    env["PYTHONPATH"] = str(BENCH.parent)
    return subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_pipeline_overhead_runs(tmp_path: Path) -> None:
    out = tmp_path / "po.md"
    proc = _run(
        "pipeline_overhead.py",
        "--synthetic", "6",
        "--register", "3",
        "--sources", "2",
        "--repeats", "1",
        "--steps", "2",
        "--sizes", "256",
        "--formats", "png",
        "--out", str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = out.read_text()
    assert "| png | 256 | txt2img |" in table and "| png | 256 | img2img |" in table


def test_moderation_bench_runs(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(30):  # 20 seed the synthetic works, then registered, stamped, free
        (images / f"p{seed}.jpg").write_bytes(encode(photo_like(900 + seed, (384, 288)), "JPEG"))
    out = tmp_path / "mod.md"
    proc = _run(
        "moderation_bench.py",
        "--images", str(images),
        "--works", "2000",
        "--registered", "4",
        "--stamped", "2",
        "--queries", "6",
        "--cache", str(tmp_path / "cache"),
        "--out", str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "moderation check, in-process" in out.read_text()


def test_load_moderation_runs(tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(6):
        (images / f"p{seed}.jpg").write_bytes(encode(photo_like(950 + seed, (384, 288)), "JPEG"))
    out = tmp_path / "load.md"
    proc = _run(
        "load_moderation.py",
        "--images", str(images),
        "--duration", "4",
        "--concurrency", "2",
        "--out", str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "5xx" in out.read_text()
