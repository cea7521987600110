"""The embedded PostgreSQL stops with the last process that uses it, even after another user of
it was killed outright."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from service.db.embedded import HANDLES_FILE, embedded_database_url, stop_embedded

HOLD = """
import sys, time
from pathlib import Path
from service.db.embedded import embedded_database_url
embedded_database_url(Path(sys.argv[1]))
print("up", flush=True)
time.sleep(120)
"""


@pytest.fixture
def folder():
    root = Path(tempfile.mkdtemp(prefix="chopmark-embedded-"))
    root.chmod(0o755)  # as root, PostgreSQL runs as its own user and must reach the folder
    yield root / "pg"
    shutil.rmtree(root, ignore_errors=True)


def _postmaster(folder: Path) -> psutil.Process | None:
    try:
        pid = int((folder / "postmaster.pid").read_text().split()[0])
        return psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.NoSuchProcess):
        return None


def test_a_killed_user_does_not_keep_the_server_running(folder: Path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    postmaster = _postmaster(folder)
    assert postmaster is not None and postmaster.is_running()
    assert holder.pid in [int(p) for p in (folder / HANDLES_FILE).read_text()[1:-1].split(",")]

    embedded_database_url(folder)  # this process attaches to the orphaned server
    stop_embedded(folder)  # and, the last live user, stops it
    deadline = time.monotonic() + 30
    while postmaster.is_running() and postmaster.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the embedded PostgreSQL is still running"
        time.sleep(0.2)
