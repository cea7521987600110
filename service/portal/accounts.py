"""Portal accounts: sign-up (an artist and a password at once), login with a lockout after
repeated failures, one-time invitations for artists a platform registered through the API."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg

from service.db.transactions import lock_name
from service.portal.passwords import check_strength, decoy_hash, hash_password, verify_password
from service.registry.records import Artist
from service.registry.store import RegistryStore

FAILED_LOGINS_BEFORE_LOCK = 5
LOCK_MINUTES = 15
INVITE_HOURS = 72


class LoginFailed(ValueError):
    """Wrong address or password (the message never says which)."""


class LockedOut(ValueError):
    pass


class InviteInvalid(ValueError):
    pass


@dataclass(frozen=True)
class Invite:
    token: str  # shown once
    artist_id: UUID
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def actor_for(artist_id: UUID) -> str:
    """Who the audit log names for what an artist did in the portal."""
    return f"portal:artist:{artist_id}"


def sign_up(
    conn: psycopg.Connection,
    registry: RegistryStore,
    display_name: str,
    email: str,
    password: str,
) -> Artist:
    """A new artist with a portal login, in one transaction (a refused password leaves no
    artist behind). Raises ``WeakPassword`` or ``Conflict`` (the address is registered)."""
    check_strength(password, email=email)
    hashed = hash_password(password)
    with conn.transaction():
        artist = registry.create_artist(conn, "portal:sign-up", display_name, email, {})
        conn.execute(
            "INSERT INTO portal_accounts (artist_id, password_hash) VALUES (%s, %s)",
            (artist.id, hashed),
        )
    return artist


def log_in(conn: psycopg.Connection, email: str, password: str) -> UUID:
    """The artist whose login this is. Raises ``LockedOut`` after
    ``FAILED_LOGINS_BEFORE_LOCK`` failures in a row (for ``LOCK_MINUTES`` after the last one,
    even with the right password), else ``LoginFailed``."""
    with conn.transaction():
        row = conn.execute(
            "SELECT p.artist_id, p.password_hash, p.failed_logins,"
            " p.last_failed_at > now() - make_interval(mins => %s) AS recent"
            " FROM portal_accounts p JOIN artists a ON a.id = p.artist_id"
            " WHERE lower(a.email) = lower(%s) FOR UPDATE OF p",
            (LOCK_MINUTES, email.strip()),
        ).fetchone()
        if row is None:
            verify_password(password, decoy_hash())
            raise LoginFailed("wrong e-mail address or password")
        if row["failed_logins"] >= FAILED_LOGINS_BEFORE_LOCK and row["recent"]:
            raise LockedOut(f"too many failed logins: try again in {LOCK_MINUTES} minutes")
        if not verify_password(password, row["password_hash"]):
            failures = row["failed_logins"] + 1 if row["recent"] else 1
            conn.execute(
                "UPDATE portal_accounts SET failed_logins = %s, last_failed_at = now()"
                " WHERE artist_id = %s",
                (failures, row["artist_id"]),
            )
            failed = LoginFailed("wrong e-mail address or password")
        else:
            conn.execute(
                "UPDATE portal_accounts SET failed_logins = 0, last_failed_at = NULL"
                " WHERE artist_id = %s",
                (row["artist_id"],),
            )
            return row["artist_id"]
    raise failed  # after the commit: the failure is counted


def create_invite(
    conn: psycopg.Connection,
    registry: RegistryStore,
    actor: str,
    artist_id: UUID,
    hours: int = INVITE_HOURS,
) -> Invite:
    """A one-time link for an artist to set (or reset) their portal password. Earlier unused
    invitations of the artist stop working."""
    registry.get_artist(conn, artist_id)  # NotFound
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        conn.execute(
            "UPDATE portal_invites SET used_at = now() WHERE artist_id = %s AND used_at IS NULL",
            (artist_id,),
        )
        row = conn.execute(
            "INSERT INTO portal_invites (token_hash, artist_id, created_by, expires_at)"
            " VALUES (%s, %s, %s, now() + make_interval(hours => %s)) RETURNING expires_at",
            (token_hash(token), artist_id, actor, hours),
        ).fetchone()
    assert row is not None
    return Invite(token, artist_id, row["expires_at"])


def invited_artist(conn: psycopg.Connection, token: str) -> UUID:
    row = conn.execute(
        "SELECT artist_id FROM portal_invites WHERE token_hash = %s AND used_at IS NULL"
        " AND expires_at > now()",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        raise InviteInvalid("this invitation link was used already, has expired or is unknown")
    return row["artist_id"]


def accept_invite(conn: psycopg.Connection, token: str, password: str) -> UUID:
    """Set the invited artist's password, use the invitation up and end the artist's other
    sessions (an invitation doubles as a password reset)."""
    with conn.transaction():
        lock_name(conn, f"portal-invite:{token_hash(token).hex()}")
        artist_id = invited_artist(conn, token)
        email = conn.execute("SELECT email FROM artists WHERE id = %s", (artist_id,)).fetchone()[
            "email"
        ]  # type: ignore[index]
        check_strength(password, email=email)
        conn.execute(
            "INSERT INTO portal_accounts (artist_id, password_hash) VALUES (%s, %s)"
            " ON CONFLICT (artist_id) DO UPDATE SET password_hash = excluded.password_hash,"
            " failed_logins = 0, last_failed_at = NULL, updated_at = now()",
            (artist_id, hash_password(password)),
        )
        conn.execute(
            "UPDATE portal_invites SET used_at = now() WHERE token_hash = %s",
            (token_hash(token),),
        )
        conn.execute(
            "UPDATE portal_sessions SET ended_at = now() WHERE artist_id = %s AND ended_at IS NULL",
            (artist_id,),
        )
    return artist_id


def check_current_password(conn: psycopg.Connection, artist_id: UUID, current: str) -> None:
    """Raise ``LoginFailed`` unless ``current`` is the artist's password (asked before a change
    of the address one logs in with)."""
    row = conn.execute(
        "SELECT password_hash FROM portal_accounts WHERE artist_id = %s", (artist_id,)
    ).fetchone()
    if row is None or not verify_password(current, row["password_hash"]):
        raise LoginFailed("the current password is wrong")


def change_password(conn: psycopg.Connection, artist_id: UUID, current: str, new: str) -> None:
    """Replace the password, given the current one; ends the artist's other sessions. Raises
    ``LoginFailed`` for a wrong current password, ``WeakPassword`` for a weak new one."""
    with conn.transaction():
        row = conn.execute(
            "SELECT p.password_hash, a.email FROM portal_accounts p"
            " JOIN artists a ON a.id = p.artist_id WHERE p.artist_id = %s FOR UPDATE OF p",
            (artist_id,),
        ).fetchone()
        if row is None or not verify_password(current, row["password_hash"]):
            raise LoginFailed("the current password is wrong")
        check_strength(new, email=row["email"])
        conn.execute(
            "UPDATE portal_accounts SET password_hash = %s, updated_at = now()"
            " WHERE artist_id = %s",
            (hash_password(new), artist_id),
        )


def end_other_sessions(conn: psycopg.Connection, artist_id: UUID, keep: str) -> int:
    """End every live session of the artist but the one whose token is ``keep``."""
    ended = conn.execute(
        "UPDATE portal_sessions SET ended_at = now() WHERE artist_id = %s AND ended_at IS NULL"
        " AND token_hash <> %s",
        (artist_id, token_hash(keep)),
    ).rowcount
    conn.commit()
    return ended
