"""Writers that join a caller's transaction, and change numbers drawn under the log's lock."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from service.audit.log import lock_for_change, next_change_seq
from service.db.transactions import atomic


def _count(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(*) AS n FROM scratch").fetchone()["n"]


def test_atomic_commits_alone_and_joins_an_open_transaction(runtime) -> None:
    with runtime.pool.connection() as conn:
        conn.execute("CREATE TEMP TABLE scratch (x int)")
        conn.commit()
        # alone: a transaction of its own, committed at the end of the block
        with atomic(conn):
            conn.execute("INSERT INTO scratch VALUES (1)")
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert _count(conn) == 1
        conn.rollback()
        # inside a caller's transaction: no savepoint, the caller's rollback takes both rows
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO scratch VALUES (2)")
            with atomic(conn):
                conn.execute("INSERT INTO scratch VALUES (3)")
            raise RuntimeError("the caller fails after the writer")
        assert _count(conn) == 1
        conn.rollback()
        with conn.transaction():
            with atomic(conn):
                conn.execute("INSERT INTO scratch VALUES (4)")
            assert conn.info.transaction_status == TransactionStatus.INTRANS
        assert _count(conn) == 2
        conn.rollback()
        # ... and an error inside it is the caller's: there is no savepoint to go back to
        with pytest.raises(psycopg.errors.InFailedSqlTransaction), conn.transaction():
            try:
                with atomic(conn):
                    conn.execute("SELECT 1 / 0")
            except psycopg.errors.DivisionByZero:
                pass
            conn.execute("SELECT 1")


def test_change_numbers_are_drawn_only_by_the_holder_of_the_log_lock(runtime) -> None:
    """A writer that waits for the lock draws its number after the holder's, even when the
    holder draws after the waiter asked: numbers follow the order of commits."""
    holder_locked = threading.Event()
    waiter_asked = threading.Event()
    release = threading.Event()

    def holder() -> int:
        with runtime.pool.connection() as conn, conn.transaction():
            lock_for_change(conn)
            holder_locked.set()
            assert waiter_asked.wait(10)
            release.wait(0.5)  # the waiter is blocked on the lock meanwhile
            return int(conn.execute("SELECT nextval('change_seq') AS n").fetchone()["n"])

    def waiter() -> int:
        assert holder_locked.wait(10)
        with runtime.pool.connection() as conn, conn.transaction():
            waiter_asked.set()
            return next_change_seq(conn)

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(holder)
        second = pool.submit(waiter)
        held, waited = first.result(timeout=30), second.result(timeout=30)
    assert waited > held
