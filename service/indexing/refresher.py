"""A background thread that keeps every bank index fresh and snapshots it now and then."""

from __future__ import annotations

import logging
import threading

from service.indexing.bank import BankIndex

log = logging.getLogger(__name__)


class IndexRefresher:
    def __init__(self, banks: list[BankIndex], interval: float, snapshot_every: int) -> None:
        self.banks = banks
        self.interval = interval
        self.snapshot_every = snapshot_every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="index-refresher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for bank in self.banks:
                try:
                    if bank.status().loaded:
                        bank.refresh()
                    else:
                        bank.load()
                    if bank.changes_since_snapshot >= self.snapshot_every:
                        bank.snapshot()
                except Exception:  # recorded in the bank's status; retried next tick
                    log.exception("index refresh failed for %s", bank.bank)
