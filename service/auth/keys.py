"""API keys: random 256-bit secrets shown once; only their SHA-256 is stored.

A key looks like ``chm_<8-char prefix>_<secret>``; the prefix identifies it in listings and logs.
SHA-256 (not a slow password hash) is right for high-entropy random secrets and keeps every
request's lookup a single indexed query.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

import psycopg

from service.api.text import ONE_LINE_MESSAGE, one_line
from service.auth.scopes import Scope, parse_scopes


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or Scope.admin.value in self.scopes

    @property
    def actor(self) -> str:
        return f"key:{self.prefix}:{self.name}"


def _hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _from_row(row: dict) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=tuple(row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
    )


_COLUMNS = "id, name, prefix, scopes, created_at, revoked_at, last_used_at"


KEY_NAME_MAX_CHARS = 200


def create_key(conn: psycopg.Connection, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; return its record and the secret (never stored, shown once)."""
    if not name.strip():
        raise ValueError("a key needs a name")
    if len(name.strip()) > KEY_NAME_MAX_CHARS or "\x00" in name:
        raise ValueError(f"a key's name is at most {KEY_NAME_MAX_CHARS} characters, without NUL")
    try:
        one_line(name)
    except ValueError:
        raise ValueError(f"a key's name {ONE_LINE_MESSAGE}") from None
    checked = parse_scopes(scopes)
    prefix = secrets.token_hex(4)
    secret = f"chm_{prefix}_{secrets.token_urlsafe(32)}"
    row = conn.execute(
        f"INSERT INTO api_keys (name, prefix, key_hash, scopes) VALUES (%s, %s, %s, %s)"
        f" RETURNING {_COLUMNS}",
        (name.strip(), prefix, _hash(secret), checked),
    ).fetchone()
    return _from_row(row), secret  # type: ignore[arg-type]


def authenticate(conn: psycopg.Connection, secret: str) -> ApiKey | None:
    """The live key for this secret, or None. Marks it used (at most once a minute)."""
    if not secret.startswith("chm_") or len(secret) > 200:
        return None
    row = conn.execute(
        f"UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL"
        f" AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')"
        f" RETURNING {_COLUMNS}",
        (_hash(secret),),
    ).fetchone()
    if row is None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL",
            (_hash(secret),),
        ).fetchone()
    return _from_row(row) if row else None


PREFIX_PATTERN = re.compile(r"[0-9a-f]{8}")


def list_keys(conn: psycopg.Connection) -> list[ApiKey]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY id").fetchall()
    return [_from_row(r) for r in rows]


@dataclass(frozen=True)
class Revocation:
    key: ApiKey
    newly: bool  # False: it was revoked already (nothing changed, nothing to audit)


def revoke_key(conn: psycopg.Connection, key_id_or_prefix: str) -> Revocation | None:
    """Revoke by prefix, or by id. A prefix is 8 hex digits and may be all decimal digits, so
    a number is tried as a prefix first (an id that long would be a 100-millionth key)."""
    if PREFIX_PATTERN.fullmatch(key_id_or_prefix):
        found = _revoke_where(conn, "prefix", key_id_or_prefix)
        if found is not None:
            return found
    if key_id_or_prefix.isdigit():
        return revoke_key_by_id(conn, int(key_id_or_prefix))
    return None


def revoke_key_by_id(conn: psycopg.Connection, key_id: int) -> Revocation | None:
    if not 0 < key_id < 2**63:
        return None
    return _revoke_where(conn, "id", key_id)


def _revoke_where(conn: psycopg.Connection, column: str, value: int | str) -> Revocation | None:
    row = conn.execute(
        f"UPDATE api_keys SET revoked_at = now() WHERE {column} = %s AND revoked_at IS NULL"
        f" RETURNING {_COLUMNS}",
        (value,),
    ).fetchone()
    if row is not None:
        return Revocation(_from_row(row), True)
    row = conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE {column} = %s", (value,)).fetchone()
    return Revocation(_from_row(row), False) if row is not None else None
