"""Page cursors for lists cut by keyset ``(created_at, id)``: opaque to clients, so a list's
order can change without breaking the cursors they hold."""

from __future__ import annotations

import base64
from datetime import datetime
from uuid import UUID


class CursorError(ValueError):
    """A cursor this service did not hand out."""


def encode_cursor(created_at: datetime, ident: UUID) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{ident}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, UUID]:
    """The ``(created_at, id)`` a cursor stands for; raises ``CursorError`` for one not ours."""
    try:
        created, ident = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("no time zone")
        return when, UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise CursorError("cursor is not one this API handed out") from None
