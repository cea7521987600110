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


def test_a_change_committed_elsewhere_reaches_another_process_without_waiting_for_its_poll(
    settings,
):
    """Two runtimes on one database (two API processes): a work registered through one is in
    the other's index within moments, though that one polls only every 60 s: the commit
    notifies its refresher."""
    from service.registry.ingest import insert, prepare, store_files
    from service.runtime import Runtime
    from tests.support import encode, photo_like

    slow = settings.model_copy(update={"index_refresh_seconds": 60.0, "index_stale_seconds": 600})
    writer, other = Runtime.open(slow), Runtime.open(slow)

    def register(seeds: range) -> None:
        with writer.pool.connection() as conn:
            artist = writer.registry.create_artist(conn, "t", "Mei", f"m{seeds[0]}@example.org", {})
            for i in seeds:
                item = prepare(encode(photo_like(i)), f"w{i}.jpg", writer.decode_limits)
                store_files(writer.blobs, writer.thumbnails, item)
                with conn.transaction():
                    insert(conn, writer.registry, "t", artist.id, item, None, {})

    def seen_within(size: int, seconds: float) -> bool:
        committed = time.monotonic()
        while bank.status().size < size and time.monotonic() - committed < 10:
            time.sleep(0.02)
        return bank.status().size == size and time.monotonic() - committed < seconds

    try:
        other.load_indexes()
        other.start_refresher()
        bank = other.banks["artwork"]
        time.sleep(0.5)  # the listener is in place
        register(range(880, 882))
        assert seen_within(2, 5), "well before the 60 s poll"
        # the listener's connection is cut: it connects again and hears the next change
        with writer.pool.connection() as conn:
            cut = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity"
                " WHERE query = 'LISTEN fingerprints_changed'"
            ).fetchone()["n"]
        assert cut == 1
        time.sleep(1.0)
        register(range(890, 891))
        assert seen_within(3, 5)
    finally:
        other.close()
        writer.close()
