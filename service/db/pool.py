"""Connection pool creation: psycopg 3 with ``psycopg_pool``."""

from __future__ import annotations

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from service.db.embedded import embedded_database_url
from service.settings import Settings

POOL_WAIT_SECONDS = 10.0


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    return embedded_database_url(settings.embedded_pg_dir)


def open_pool(
    settings: Settings, *, min_size: int = 1, max_size: int | None = None
) -> ConnectionPool:
    pool = ConnectionPool(
        database_url(settings),
        min_size=min_size,
        max_size=max_size or settings.db_pool_max,
        kwargs={"row_factory": dict_row, "autocommit": False},
        open=False,
        name="chopmark",
        # A request waits at most this long for a connection; then it is answered 503 (the
        # database is down or every connection busy) instead of hanging for the default 30 s.
        timeout=POOL_WAIT_SECONDS,
    )
    pool.open(wait=True, timeout=30)
    return pool
