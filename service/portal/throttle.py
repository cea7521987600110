"""How many sign-ups and failed logins one client address may make at the portal in a while:
beside the per-account lockout (accounts.py), this stops one address from creating accounts
by the thousand or guessing passwords across many accounts."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg


@dataclass(frozen=True)
class Limit:
    attempts: int
    minutes: int


LIMITS = {
    "signup": Limit(10, 60),  # accounts one address may create in an hour
    "login_failed": Limit(30, 15),  # wrong passwords from one address, any accounts
}


class Throttled(ValueError):
    pass


def check(conn: psycopg.Connection, client: str, kind: str) -> None:
    """Raise ``Throttled`` when ``client`` has used up its ``kind`` attempts."""
    limit = LIMITS[kind]
    with conn.transaction():  # ended here: what the caller does next is a transaction of its own
        row = conn.execute(
            "SELECT count(*) AS n FROM portal_attempts WHERE client = %s AND kind = %s"
            " AND at > now() - make_interval(mins => %s)",
            (client, kind, limit.minutes),
        ).fetchone()
    if row is not None and row["n"] >= limit.attempts:
        what = "sign-ups" if kind == "signup" else "failed logins"
        raise Throttled(f"too many {what} from your address: try again in {limit.minutes} minutes")


def record(conn: psycopg.Connection, client: str, kind: str) -> None:
    """Count one attempt (and forget those older than a day)."""
    with conn.transaction():
        conn.execute("DELETE FROM portal_attempts WHERE at < now() - interval '1 day'")
        conn.execute("INSERT INTO portal_attempts (client, kind) VALUES (%s, %s)", (client, kind))


def client_of(request_client: object) -> str:
    """The client address Starlette saw (the proxy's forwarded one where uvicorn trusts the
    proxy: ``CHOPMARK_FORWARDED_ALLOW_IPS``)."""
    host = getattr(request_client, "host", None)
    return str(host) if host else "unknown"
