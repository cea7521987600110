"""The index refresher while the database is away: one line now and then, not a traceback at
every tick, and a line when it answers again."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import psycopg

from service.indexing.refresher import IndexRefresher


@dataclass
class _Status:
    loaded: bool = True


class _Bank:
    """A bank whose database goes away for a while (``down`` ticks)."""

    def __init__(self, down: int) -> None:
        self.bank = "artwork"
        self.down = down
        self.calls = 0
        self.changes_since_snapshot = 0

    def status(self) -> _Status:
        return _Status()

    def refresh(self) -> None:
        self.calls += 1
        if self.calls <= self.down:
            raise psycopg.OperationalError("connection refused")


def test_a_database_away_is_said_once_and_its_return_too(caplog):
    bank = _Bank(down=6)
    refresher = IndexRefresher([bank], interval=0.05, snapshot_every=1000)  # type: ignore[list-item]
    with caplog.at_level(logging.WARNING, logger="service.indexing.refresher"):
        refresher.start()
        deadline = time.monotonic() + 10
        while bank.calls < 9 and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        refresher.stop()
        assert time.monotonic() - started < 2
    said = [r for r in caplog.records if r.name == "service.indexing.refresher"]
    assert [r.getMessage().split(":")[1].strip() for r in said] == [
        "the database is unavailable (for 0 s)",
        "the database answers again",
    ]
    assert all(r.exc_info is None for r in said)


def test_catching_up_after_a_committed_change_never_fails_the_change(settings):
    """A request whose change committed is not told it failed because the index could not
    catch up at once (the database went away between): the refresher applies it later."""
    from psycopg_pool import ConnectionPool

    from service.indexing.bank import BankIndex

    pool = ConnectionPool(settings.database_url, open=False)  # never opened: every use fails
    bank = BankIndex("artwork", pool, settings.index_dir)
    bank.catch_up()
    assert bank.status().last_error
