"""Two `chopmark serve` processes on one data folder (embedded PostgreSQL) both work, and a
registration through one is matched through the other within seconds."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.support import encode, photo_like


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} never became ready")


def serve_env(settings, **extra: str) -> dict[str, str]:
    """The environment of a `chopmark serve` on the test's database and data folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHOPMARK_", "PROMETHEUS"))}
    return env | {
        "CHOPMARK_DATA_DIR": str(settings.data_dir),
        "CHOPMARK_DATABASE_URL": settings.database_url,
        **extra,
    }


def start_serve(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    """`chopmark serve` on a free port (``args`` after it): the process and its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve", "--port", str(port), *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture
def data_dir():
    folder = Path(tempfile.mkdtemp(prefix="chopmark-serve-"))
    folder.chmod(0o755)
    yield folder / "data"
    shutil.rmtree(folder, ignore_errors=True)


def test_two_serve_processes_share_the_embedded_database(data_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    env |= {"CHOPMARK_DATA_DIR": str(data_dir), "CHOPMARK_INDEX_REFRESH_SECONDS": "0.5"}
    chopmark = [sys.executable, "-m", "service.cli.main"]
    ports = [free_port(), free_port()]
    procs = [
        subprocess.Popen(
            [*chopmark, "serve", "--port", str(p)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for p in ports
    ]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for url, proc in zip(urls, procs, strict=True):
            wait_ready(url, proc)
        key = (
            subprocess.run(
                [
                    *chopmark,
                    "keys",
                    "create",
                    "--name",
                    "t",
                    "--scope",
                    "registry",
                    "--scope",
                    "match",
                ],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        h = {"Authorization": f"Bearer {key}"}
        a, b = (httpx.Client(base_url=u, headers=h, timeout=60) for u in urls)
        artist = a.post("/v1/artists", json={"display_name": "S", "email": "s@example.org"}).json()
        r = a.post(
            f"/v1/artists/{artist['id']}/artworks",
            files=[("files", ("s.jpg", encode(photo_like(301)), "image/jpeg"))],
        )
        assert r.status_code == 201, r.text
        work_id = r.json()["artworks"][0]["id"]
        query = {"file": ("q.jpg", encode(photo_like(301), quality=70), "image/jpeg")}
        deadline = time.monotonic() + 30  # returns as soon as it holds
        hit = []
        while time.monotonic() < deadline and not hit:
            hit = [
                m
                for m in b.post("/v1/matches", files=query).json()["matches"]
                if m["artwork_id"] == work_id and m["decision"] == "copy"
            ]
            time.sleep(0.2)
        assert hit, "the second process did not match the new registration"
        assert b.get(f"/v1/artworks/{work_id}").json()["id"] == work_id
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
