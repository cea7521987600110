"""Versioned schema migrations: ``service/migrations/NNNN_name.sql``, applied in order, once.

An advisory lock makes concurrent upgrades (two processes starting together) safe: the second
waits, then finds nothing left to apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

_LOCK_KEY = 0x63686F70  # "chop"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("service.migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def applied_versions(conn: psycopg.Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version integer PRIMARY KEY, name text NOT NULL,"
        " applied_at timestamptz NOT NULL DEFAULT now())"
    )
    return {row[0] for row in conn.cursor().execute("SELECT version FROM schema_migrations")}


def upgrade(conninfo: str) -> list[Migration]:
    """Apply every pending migration; return the ones applied by this call."""
    done: list[Migration] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            have = applied_versions(conn)
            for mig in available_migrations():
                if mig.version in have:
                    continue
                with conn.transaction():
                    conn.execute(mig.sql)  # type: ignore[arg-type]
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (mig.version, mig.name),
                    )
                done.append(mig)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return done


def pending(conninfo: str) -> list[Migration]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        have = applied_versions(conn)
    return [m for m in available_migrations() if m.version not in have]
