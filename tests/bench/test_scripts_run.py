"""The benchmark scripts still run against the code (on a few synthetic pictures; the figures
mean nothing at this size): a script that no longer runs is found here, not when someone needs
its numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import encode, photo_like

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _report(script: str, *args: str, cwd: Path) -> str:
    """Run ``script`` with ``args`` and ``--out`` in ``cwd``; the table it wrote."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    env["PYTHONPATH"] = str(BENCH.parent)
    out = cwd / f"{script}.md"
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--out", str(out)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out.read_text()


def _photos(folder: Path, count: int, seed: int) -> Path:
    """``count`` synthetic photo-like JPEGs in ``folder`` (made), named by number."""
    folder.mkdir()
    for i in range(count):
        (folder / f"p{i}.jpg").write_bytes(encode(photo_like(seed + i, (384, 288)), "JPEG"))
    return folder


def test_pipeline_overhead_runs(tmp_path: Path) -> None:
    table = _report(
        "pipeline_overhead.py",
        *("--synthetic", "6", "--register", "3", "--sources", "2", "--repeats", "1"),
        *("--steps", "2", "--sizes", "256", "--formats", "png"),
        cwd=tmp_path,
    )
    assert "| png | 256 | txt2img |" in table and "| png | 256 | img2img |" in table


def test_moderation_bench_runs(tmp_path: Path) -> None:
    # 20 pictures seed the synthetic works; then registered, stamped and free ones
    images = _photos(tmp_path / "images", 30, 900)
    table = _report(
        "moderation_bench.py",
        *("--images", str(images), "--works", "2000", "--registered", "4", "--stamped", "2"),
        *("--queries", "6", "--cache", str(tmp_path / "cache")),
        cwd=tmp_path,
    )
    assert "moderation check, in-process" in table


def test_registration_disputes_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 28, 920)
    table = _report(
        "registration_disputes.py",
        *("--images", str(images), "--works", "2000", "--registered", "4", "--free", "2"),
        *("--edits", "jpeg_50,crop_80", "--cache", str(tmp_path / "cache")),
        cwd=tmp_path,
    )
    assert "the dispute check" in table and "| unregistered image | 2 |" in table


def test_match_recall_at_scale_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 26, 940)
    table = _report(
        "match_recall_at_scale.py",
        *("--images", str(images), "--works", "2000", "--registered", "3", "--free", "2"),
        *("--edits", "jpeg_50,crop_80", "--cache", str(tmp_path / "cache")),
        cwd=tmp_path,
    )
    assert "real works alone (no crowd)" in table and "2,003 works (exact search)" in table


def test_load_moderation_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 6, 950)
    table = _report(
        "load_moderation.py",
        *("--images", str(images), "--duration", "4", "--concurrency", "2"),
        cwd=tmp_path,
    )
    assert "5xx" in table


def test_match_quality_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 20, 700)
    table = _report(
        "match_quality.py",
        *("--images", str(images), "--distractors", "6", "--pairs", "1"),
        cwd=tmp_path,
    )
    for row in ("| grid_2x2 |", "| pasted_into_photo_25 |", "**a work within another picture",
                "**not found yet (small crops)**", "**overall"):
        assert row in table, row


def test_pasted_detection_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 12, 800)
    table = _report("pasted_detection.py", "--images", str(images), cwd=tmp_path)
    assert "| plain pictures (nothing pasted) | 12 |" in table
    assert "| pasted at 25% of the area | 12 |" in table
    assert "| outline search (`find_pasted`) |" in table


def test_grid_detection_runs(tmp_path: Path) -> None:
    images = _photos(tmp_path / "images", 12, 800)
    table = _report("grid_detection.py", "--images", str(images), "--collages", "8", cwd=tmp_path)
    assert "| equal cells, edge to edge | 8 |" in table
    assert "| grid search (`find_panels`) |" in table


def test_watermark_ab_runs(tmp_path: Path) -> None:
    # the "other checkout": a copy of this one's watermark package, so both read alike
    base = tmp_path / "base"
    shutil.copytree(BENCH.parent / "provenance", base / "provenance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    images = _photos(tmp_path / "images", 2, 950)
    table = _report(
        "watermark_ab.py",
        *("--images", str(images), "--base", str(base), "--sizes", "384", "--crops", "2"),
        cwd=tmp_path,
    )
    assert "| marked, every edit | 20 | 20 | 20 | 0 | 20 |" in table
    assert "| unmarked random crops | 2 | 0 | 0 | 0 | 2 |" in table
    assert "No copy was read differently." in table


def test_audit_proofs_runs(tmp_path: Path) -> None:
    table = _report("audit_proofs.py", "--sizes", "300,1000", "--repeats", "1", cwd=tmp_path)
    assert "| 300 |" in table and "| 1,000 |" in table


def test_moderation_lists_runs(tmp_path: Path) -> None:
    table = _report("moderation_lists.py", "--checks", "2000", "--repeats", "1", cwd=tmp_path)
    assert "| the review queue (verdict=review, reviewed=false) |" in table


def test_artist_events_runs(tmp_path: Path) -> None:
    table = _report(
        "artist_events.py", "--works", "200", "--events", "3", "--repeats", "1", cwd=tmp_path
    )
    assert "| ... one work's newest 20 (the portal's work page) |" in table
    assert "| 3 |" in table  # that work's three events
    assert "| with the trigger |" in table and "Migration 0016's fill" in table
