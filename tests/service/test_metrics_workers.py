"""`chopmark serve --workers 2`: any worker's /metrics speaks for both. Request counts are summed
over the workers, each worker's index figures carry its pid, and a killed worker's figures
leave the scrape while its counts stay. The workers end with their supervisor."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from tests.service.test_serve import serve_env, start_serve, wait_ready


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def healthz_count(figures: dict) -> float:
    return sum(
        v
        for labels, v in figures.get("chopmark_http_requests_total", [])
        if labels.get("route") == "/healthz" and labels.get("status") == "200"
    )


def index_pids(figures: dict) -> set[str]:
    return {
        labels["pid"]
        for labels, _ in figures.get("chopmark_index_size", [])
        if labels.get("bank") == "artwork"
    }


def test_metrics_cover_every_worker(settings, tmp_path: Path):
    env = serve_env(settings, CHOPMARK_INDEX_REFRESH_SECONDS="0.5")
    proc, url = start_serve(env, "--workers", "2")
    try:
        wait_ready(url, proc)
        deadline = time.monotonic() + 60  # both workers up and publishing
        while len(index_pids(scrape(url))) < 2:
            assert time.monotonic() < deadline, f"one worker's figures only: {scrape(url)}"
            time.sleep(0.3)
        # Fresh connections, so the kernel hands them to either worker.
        for _ in range(30):
            assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        seen = [scrape(url) for _ in range(8)]
        assert {healthz_count(f) for f in seen} == {30}
        for figures in seen:
            pids = index_pids(figures)
            assert len(pids) == 2
            ages = [
                v
                for labels, v in figures["chopmark_index_refresh_age_seconds"]
                if labels["bank"] == "artwork"
            ]
            assert len(ages) == 2 and all(0 <= a < 30 for a in ages)
            assert [v for _, v in figures["chopmark_image_workers"]] and all(
                v >= 1 for _, v in figures["chopmark_image_workers"]
            )

        # A worker killed outright: its figures leave the scrape, its counts stay.
        victim = int(sorted(index_pids(seen[-1]))[0])
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                figures = scrape(url)
            except httpx.HTTPError:  # the killed worker held the connection
                figures = {}
            if figures and str(victim) not in index_pids(figures):
                break
            assert time.monotonic() < deadline, "the killed worker is still reported"
            time.sleep(0.3)
        assert healthz_count(figures) == 30
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # The shared folder goes with the server.
    assert not list(Path(tempfile.gettempdir()).glob(f"chopmark-metrics-{proc.pid}-*"))


def test_workers_end_with_a_supervisor_killed_outright(settings):
    """kill -9 of `chopmark serve --workers 2` leaves no worker holding the port."""
    proc, url = start_serve(serve_env(settings), "--workers", "2")
    try:
        wait_ready(url, proc)
        deadline = time.monotonic() + 60
        while len(workers := index_pids(scrape(url))) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    finally:
        proc.kill()
        proc.wait(30)
    deadline = time.monotonic() + 40
    alive = {int(p) for p in workers}
    while alive:
        alive = {
            p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
        }
        assert time.monotonic() < deadline, f"workers {alive} outlived their supervisor"
        time.sleep(0.3)


def test_shared_metrics_folders_of_servers_that_are_gone_are_removed(tmp_path) -> None:
    """A server killed outright cannot remove its shared-metrics folder; the next one started
    removes those whose server is gone, and no other."""
    import sys

    from service.api.metrics_shared import remove_abandoned

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    dead = tmp_path / f"chopmark-metrics-{dead_pid}-ab12cd"
    live = tmp_path / f"chopmark-metrics-{os.getpid()}-ef34gh"
    other = tmp_path / "chopmark-metrics-notapid"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "counter_1.db").write_bytes(b"x")
    a_file = tmp_path / f"chopmark-metrics-{dead_pid}-file"
    a_file.write_bytes(b"x")
    assert remove_abandoned(tmp_path) == [dead]
    assert not dead.exists()
    assert live.is_dir() and other.is_dir() and a_file.is_file()
