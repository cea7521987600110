"""A background thread that keeps every bank index fresh and snapshots it now and then."""

from __future__ import annotations

import logging
import threading
import time

import psycopg

from service.indexing.bank import BankIndex

log = logging.getLogger(__name__)
# While the database is away, each bank says so once a minute rather than at every tick.
DOWN_REPEAT_SECONDS = 60.0


class IndexRefresher:
    def __init__(self, banks: list[BankIndex], interval: float, snapshot_every: int) -> None:
        self.banks = banks
        self.interval = interval
        self.snapshot_every = snapshot_every
        self._stop = threading.Event()
        self._down_since: dict[str, float] = {}
        self._last_said: dict[str, float] = {}
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
                if self._stop.is_set():  # stopping: the pool may be closing under us
                    return
                try:
                    if bank.status().loaded:
                        bank.refresh()
                    else:
                        bank.load()
                    if bank.changes_since_snapshot >= self.snapshot_every:
                        bank.snapshot()
                    if self._down_since.pop(bank.bank, None) is not None:
                        self._last_said.pop(bank.bank, None)
                        log.warning("index refresh of %s: the database answers again", bank.bank)
                except psycopg.OperationalError as exc:  # the database away: one line, not a
                    # traceback every tick (the bank's status and /readyz say it meanwhile)
                    if self._stop.is_set():
                        return
                    self._database_down(bank.bank, exc)
                except Exception:  # recorded in the bank's status; retried next tick
                    if self._stop.is_set():
                        return
                    log.exception("index refresh failed for %s", bank.bank)

    def _database_down(self, bank: str, exc: Exception) -> None:
        now = time.monotonic()
        since = self._down_since.setdefault(bank, now)
        last = self._last_said.get(bank)
        if last is None or now - last >= DOWN_REPEAT_SECONDS:
            self._last_said[bank] = now
            log.warning(
                "index refresh of %s: the database is unavailable (for %.0f s): %s",
                bank,
                now - since,
                str(exc).strip() or type(exc).__name__,
            )
