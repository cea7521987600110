"""Lists cut by keyset ``(time, key)``: their page cursors (opaque to clients, so a list's order
can change without breaking the cursors they hold) and time windows."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from uuid import UUID


class CursorError(ValueError):
    """A cursor this service did not hand out."""


def encode_cursor(at: datetime, key: UUID | str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


def decode_cursor_key(cursor: str) -> tuple[datetime, str]:
    """The ``(time, key)`` a cursor stands for; raises ``CursorError`` for one not ours."""
    try:
        at, key = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when = datetime.fromisoformat(at)
    except (ValueError, UnicodeDecodeError):
        raise CursorError("cursor is not one this API handed out") from None
    if when.tzinfo is None or not key:
        raise CursorError("cursor is not one this API handed out")
    return when, key


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The ``(created_at, id)`` of a list keyed by id."""
    at, key = decode_cursor_key(cursor)
    try:
        return at, UUID(key)
    except ValueError:
        raise CursorError("cursor is not one this API handed out") from None


def as_utc(when: datetime | None) -> datetime | None:
    """A time given without its zone, taken as UTC (the zone every recorded time is shown in)."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
