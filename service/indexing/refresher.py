"""A background thread that keeps every bank index fresh and snapshots it now and then.

It refreshes when the database says the fingerprints changed (``LISTEN fingerprints_changed``,
sent by a trigger when a change commits, whichever process or command made it) and at least
every ``interval`` seconds (a listener whose connection was lost reconnects, then refreshes at
once for what was committed while nobody listened).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

import psycopg

from service.indexing.bank import BankIndex

log = logging.getLogger(__name__)
# While the database is away, each bank says so once a minute rather than at every tick.
DOWN_REPEAT_SECONDS = 60.0
CHANNEL = "fingerprints_changed"
LISTEN_SLICE_SECONDS = 0.25  # how soon a stop is seen while listening


class IndexRefresher:
    def __init__(
        self,
        banks: list[BankIndex],
        interval: float,
        snapshot_every: int,
        listen: Callable[[], psycopg.Connection] | None = None,
    ) -> None:
        """``listen`` opens an autocommit connection for notifications; None: poll alone."""
        self.banks = banks
        self.interval = interval
        self.snapshot_every = snapshot_every
        self._listen = listen
        self._listener: psycopg.Connection | None = None
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
        try:
            while self._wait():
                self._tick()
        finally:
            self._close_listener()

    def _wait(self) -> bool:
        """Until a change is announced or ``interval`` passes; False when stopping."""
        if self._listen is None:
            return not self._stop.wait(self.interval)
        deadline = time.monotonic() + self.interval
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            listener = self._listener
            if listener is None:
                if self._connect_listener() is None:
                    return not self._stop.wait(left)
                return not self._stop.is_set()  # (again) listening: catch up on the gap now
            try:
                slice_ = min(left, LISTEN_SLICE_SECONDS)
                if any(True for _ in listener.notifies(timeout=slice_, stop_after=1)):
                    for _ in listener.notifies(timeout=0):  # those already in: the same tick
                        pass
                    return not self._stop.is_set()
            except psycopg.Error:  # the connection was lost: poll until the next tick
                self._close_listener()
        return not self._stop.is_set()

    def _connect_listener(self) -> psycopg.Connection | None:
        assert self._listen is not None
        try:
            conn = self._listen()
        except psycopg.Error:
            return None  # the database away: polling says so, and this is tried next tick
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):
                conn.close()
            return None
        self._listener = conn
        return conn

    def _close_listener(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

    def _tick(self) -> None:
        """Refresh (or load) every bank, and snapshot those far enough from their last."""
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
