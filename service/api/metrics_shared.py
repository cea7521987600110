"""Metrics when `chopmark serve` runs several worker processes.

Each worker answers `/metrics` for all of them: request counters and latency histograms are
summed over the workers (prometheus_client's multiprocess mode, files in
`PROMETHEUS_MULTIPROC_DIR`), and each worker's own figures (its index sizes and freshness, its
image lanes) are published every second as gauges labelled with its `pid`. A worker that died
without saying so (killed) has its gauges dropped at the next scrape; its counts stay in the
sums, as counters must.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from service.api.image_work import ImageWork
from service.runtime import Runtime

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "chopmark-metrics-"
_FOLDER = re.compile(rf"^{_PREFIX}(\d+)-\w+$")
PUBLISH_SECONDS = 1.0
REFRESHED = "chopmark_index_refreshed_timestamp_seconds"
FIGURE_HELP = {
    "chopmark_index_size": "entries in a bank index",
    "chopmark_index_change_seq": "last change applied",
    REFRESHED: "when the index last refreshed",
    "chopmark_image_work_busy": "requests doing image work now",
    "chopmark_image_work_waiting": "requests waiting for an image worker",
    "chopmark_image_workers": "requests that may do image work at once",
}
"""A worker's own figures (`own_figures`), with their help texts."""
PER_BANK = frozenset({"chopmark_index_size", "chopmark_index_change_seq", REFRESHED})
REFRESH_AGE = ("chopmark_index_refresh_age_seconds", "time since the last refresh")
"""Scrapes show how long ago each index refreshed, worked out from `REFRESHED` when read."""
_LIVE_FILE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def shared_dir() -> Path | None:
    """The folder the workers share their figures in, when several run."""
    value = os.environ.get(ENV)
    return Path(value) if value else None


@contextmanager
def shared_metrics_dir(processes: int) -> Iterator[None]:
    """With several workers, a fresh folder for their shared metrics, gone when serving ends.

    Set before the workers start, so each imports prometheus_client in multiprocess mode. An
    operator's own `PROMETHEUS_MULTIPROC_DIR` is used as it is, and left in place.
    """
    if processes < 2 or os.environ.get(ENV):
        yield
        return
    remove_abandoned(Path(tempfile.gettempdir()))
    folder = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
    os.environ[ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def remove_abandoned(tmp: Path) -> list[Path]:
    """Remove the shared-metrics folders of servers that are gone (one killed outright cannot
    remove its own); returns them. A folder is named for its server's pid: a live one keeps it."""
    gone = []
    for path in tmp.glob(f"{_PREFIX}*"):
        m = _FOLDER.match(path.name)
        if m and path.is_dir() and not path.is_symlink() and not psutil.pid_exists(int(m[1])):
            shutil.rmtree(path, ignore_errors=True)
            gone.append(path)
    return gone


def forget_dead_workers(folder: Path) -> list[int]:
    """Remove the per-process gauges of workers that are gone; returns their pids."""
    pids = set()
    for path in folder.glob("gauge_live*.db"):
        m = _LIVE_FILE.match(path.name)
        if m:
            pids.add(int(m.group(1)))
    dead = sorted(pid for pid in pids if not psutil.pid_exists(pid))
    for pid in dead:
        mark_process_dead(pid, str(folder))
    return dead


class SharedView(Collector):
    """Every worker's figures, as one scrape; refresh ages worked out at scrape time."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def collect(self) -> Iterator[Metric]:
        forget_dead_workers(self.folder)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, str(self.folder))
        now = time.time()
        for family in registry.collect():
            yield family
            if family.name == REFRESHED:
                age = GaugeMetricFamily(*REFRESH_AGE, labels=["bank", "pid"])
                for s in family.samples:
                    age.add_metric([s.labels["bank"], s.labels["pid"]], max(0.0, now - s.value))
                yield age


def own_figures(rt: Runtime, work: ImageWork | None) -> dict[str, dict[str, float]]:
    """This worker's figures, by name (`FIGURE_HELP`): per bank for those in `PER_BANK`,
    else one value under ``""`` (none for the image lanes when ``work`` is None, nor for the
    refresh time of an index not refreshed yet)."""
    out: dict[str, dict[str, float]] = {name: {} for name in FIGURE_HELP}
    for name, bank in rt.banks.items():
        st = bank.status()
        out["chopmark_index_size"][name] = st.size
        out["chopmark_index_change_seq"][name] = st.change_seq
        if st.refreshed_at is not None:
            out[REFRESHED][name] = st.refreshed_at
    if work is not None:
        lanes = work.status()
        out["chopmark_image_work_busy"][""] = lanes.busy
        out["chopmark_image_work_waiting"][""] = lanes.waiting
        out["chopmark_image_workers"][""] = lanes.workers
    return out


class WorkerFigures:
    """Publishes this worker's index and image-lane figures for the other workers' scrapes."""

    def __init__(self, rt: Runtime, work: ImageWork | None) -> None:
        self.rt = rt
        self.work = work
        self.gauges = {
            name: Gauge(name, text, ["bank"] if name in PER_BANK else [], registry=None,
                        multiprocess_mode="liveall")
            for name, text in FIGURE_HELP.items()
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-publisher", daemon=True)

    def start(self) -> None:
        self.publish()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        folder = shared_dir()
        if folder is not None:
            mark_process_dead(os.getpid(), str(folder))

    def publish(self) -> None:
        for name, values in own_figures(self.rt, self.work).items():
            gauge = self.gauges[name]
            for bank, value in values.items():
                (gauge.labels(bank) if name in PER_BANK else gauge).set(value)

    def _run(self) -> None:
        while not self._stop.wait(PUBLISH_SECONDS):
            self.publish()
