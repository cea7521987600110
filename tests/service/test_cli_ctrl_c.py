"""Ctrl-C on the CLI's long commands that fingerprint in worker processes (`register`, `sources
add`): the command stops after the item it is storing, prints what it stored and exits 130,
with no traceback from it or its workers; running it again stores the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import photo_like

COUNT = 150


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(COUNT):
        photo_like(2000 + i, (320, 240)).save(folder / f"p{i:03d}.jpg", quality=90)
    return folder


def _env(settings) -> dict[str, str]:
    return {**os.environ, "CHOPMARK_DATABASE_URL": settings.database_url,
            "CHOPMARK_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}


def _count(runtime, table: str) -> int:
    with runtime.pool.connection() as conn:
        return int(conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()["n"])


def _interrupted(settings, args: list[str], started: Callable[[], bool]) -> tuple[str, str]:
    """Run the command in a process group of its own, as a terminal does, and press Ctrl-C
    (SIGINT to the group: the command and its workers) once ``started`` says it stores."""
    proc = subprocess.Popen([sys.executable, "-m", "service.cli.main", *args],
                            env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None:
        assert time.monotonic() < deadline, "the command stored nothing in two minutes"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    return out, err


def _run(settings, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli.main", *args], env=_env(settings),
                          capture_output=True, text=True, timeout=300)


def test_ctrl_c_stops_register_cleanly_and_a_second_run_stores_the_rest(
    runtime, settings, tmp_path
):
    folder = _folder(tmp_path)
    made = _run(settings, ["artists", "create", "--name", "Cy", "--email", "c@example.org"])
    assert made.returncode == 0, made.stdout + made.stderr
    artist = made.stdout.strip().splitlines()[-1]
    args = ["register", str(folder), "--artist", artist, "--workers", "2"]
    out, _ = _interrupted(settings, args, lambda: _count(runtime, "artworks") > 0)
    stored = _count(runtime, "artworks")
    assert 0 < stored < COUNT
    assert f"created {stored}, duplicate 0, rejected 0" in out, out

    rest = _run(settings, args)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"created {COUNT - stored}, duplicate {stored}, rejected 0" in rest.stdout
    assert _count(runtime, "artworks") == COUNT


def test_ctrl_c_stops_sources_add_cleanly_and_a_second_run_stores_the_rest(
    runtime, settings, tmp_path
):
    folder = _folder(tmp_path)
    args = ["sources", "add", "--dataset", "set-c", str(folder), "--workers", "2"]
    out, _ = _interrupted(settings, args, lambda: _count(runtime, "training_sources") > 0)
    stored = _count(runtime, "training_sources")
    assert 0 < stored < COUNT
    assert f"added {stored}, duplicate 0, rejected 0" in out, out

    rest = _run(settings, args)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"added {COUNT - stored}, duplicate {stored}, rejected 0" in rest.stdout
    assert _count(runtime, "training_sources") == COUNT
