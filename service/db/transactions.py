"""Transactions that join an open one instead of nesting a savepoint in it; named locks."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import psycopg
from psycopg.pq import TransactionStatus


def lock_name(conn: psycopg.Connection, name: str) -> None:
    """An advisory lock on a name, held until the transaction ends."""
    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,))


def atomic(conn: psycopg.Connection) -> AbstractContextManager[object]:
    """``conn.transaction()``, unless the connection is inside a transaction already: then the
    statements join it, and its commit or rollback covers them (no savepoint: two round trips
    less). For writers whose errors end the caller's transaction, never for a caller that
    catches an error and goes on in the same transaction."""
    if conn.info.transaction_status == TransactionStatus.INTRANS:
        return nullcontext()
    return conn.transaction()
