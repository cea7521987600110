"""Ctrl-C (or SIGTERM) on the CLI's long commands that fingerprint in worker processes
(`register`, `sources add`, `fingerprints refresh`): the command stops after the item it is
storing, prints what it stored and exits 130, with no traceback from it or its workers; running
it again stores the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service.test_refingerprint import (
    _age_every_fingerprint,
    _refreshed_in_log,
    _register_many,
)
from tests.support import auth, photo_like

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


def _interrupted(
    settings,
    args: list[str],
    started: Callable[[], bool],
    signum: int = signal.SIGINT,
    group: bool = True,
) -> tuple[str, str]:
    """Run the command in a process group of its own, as a terminal does, and send ``signum``
    once ``started`` says it stores: to the group (the command and its workers), as Ctrl-C
    does, or to the command alone, as ``kill`` or a container's stop does."""
    proc = subprocess.Popen([sys.executable, "-m", "service.cli.main", *args],
                            env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 120
    while not started() and proc.poll() is None:
        assert time.monotonic() < deadline, "the command stored nothing in two minutes"
        time.sleep(0.02)
    if group:
        os.killpg(proc.pid, signum)
    else:
        os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, out + err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "interrupted" in err
    return out, err


def _run(settings, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli.main", *args], env=_env(settings),
                          capture_output=True, text=True, timeout=300)


def _register_args(settings, folder: Path) -> list[str]:
    made = _run(settings, ["artists", "create", "--name", "Cy", "--email", "c@example.org"])
    assert made.returncode == 0, made.stdout + made.stderr
    artist = made.stdout.strip().splitlines()[-1]
    return ["register", str(folder), "--artist", artist, "--workers", "2"]


def _sources_args(settings, folder: Path) -> list[str]:
    return ["sources", "add", "--dataset", "set-c", str(folder), "--workers", "2"]


REGISTERED = "created {new}, duplicate {old}, rejected 0"
ADDED = "added {new}, duplicate {old}, rejected 0"


@pytest.mark.parametrize(
    ("command", "table", "summary", "signum", "group"),
    [
        (_register_args, "artworks", REGISTERED, signal.SIGINT, True),
        (_sources_args, "training_sources", ADDED, signal.SIGINT, True),
        (_register_args, "artworks", REGISTERED, signal.SIGTERM, False),
        (_sources_args, "training_sources", ADDED, signal.SIGTERM, True),
    ],
    ids=["register", "sources-add", "register-sigterm-alone", "sources-add-sigterm-group"],
)
def test_ctrl_c_stops_cleanly_and_a_second_run_stores_the_rest(
    runtime, settings, tmp_path, command, table, summary, signum, group
):
    args = command(settings, _folder(tmp_path))
    out, _ = _interrupted(settings, args, lambda: _count(runtime, table) > 0, signum, group)
    stored = _count(runtime, table)
    assert 0 < stored < COUNT
    assert summary.format(new=stored, old=0) in out, out

    rest = _run(settings, args)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert summary.format(new=COUNT - stored, old=stored) in rest.stdout, rest.stdout
    assert _count(runtime, table) == COUNT


def test_ctrl_c_stops_a_fingerprint_refresh_cleanly_and_a_second_run_finishes_it(
    client, runtime, settings, make_key
):
    count = 120
    _register_many(client, auth(make_key("registry")), count)
    _age_every_fingerprint(runtime)
    args = ["fingerprints", "refresh", "--workers", "2", "--no-progress"]
    out, _ = _interrupted(settings, args, lambda: _refreshed_in_log(runtime) > 0)
    stored = _refreshed_in_log(runtime)
    assert 0 < stored < count
    assert f"refreshed {stored} artwork fingerprint(s)" in out, out

    rest = _run(settings, args)
    assert rest.returncode == 0, rest.stdout + rest.stderr
    assert f"refreshed {count - stored} artwork fingerprint(s)" in rest.stdout, rest.stdout
    assert _refreshed_in_log(runtime) == count
    verified = _run(settings, ["audit", "verify"])
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_no_more_workers_start_than_there_are_items() -> None:
    from service.cli.workers import worker_pool

    with worker_pool(8, 2) as pool:
        assert len(pool._processes) == 2  # each start costs a second of imports
    with worker_pool(3, 0) as pool:
        assert len(pool._processes) == 1


def test_work_still_queued_when_the_command_fails_is_not_done() -> None:
    """A second Ctrl-C (or any error) leaves through the pool at once: what is queued is
    cancelled rather than worked through first."""
    from service.cli.workers import worker_pool

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt), worker_pool(1, 50) as pool:
        queued = [pool.submit(time.sleep, 0.2) for _ in range(50)]  # 10 s of work on one worker
        raise KeyboardInterrupt
    assert time.monotonic() - started < 3
    assert sum(f.cancelled() for f in queued) >= 45
