"""Lists cut by keyset ``(time, key)``: their page cursors (opaque to clients, so a list's order
can change without breaking the cursors they hold) and time windows."""

from __future__ import annotations

import base64
from collections.abc import Sequence
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


class Where:
    """A list query's conditions, joined by AND, with their parameters in order: a filter left
    unset (None, or no values) adds nothing."""

    def __init__(self, *terms: str) -> None:
        self.terms: list[str] = list(terms)
        self.args: list[object] = []

    def add(self, term: str, *args: object) -> None:
        self.terms.append(term)
        self.args.extend(args)

    def equal(self, column: str, value: object) -> None:
        if value is not None:
            self.add(f"{column} = %s", value)

    def any_of(self, column: str, values: Sequence[object]) -> None:
        if values:
            self.add(f"{column} = ANY(%s)", list(values))

    def window(self, column: str, since: datetime | None, until: datetime | None) -> None:
        """At or after ``since``, before ``until``."""
        if since is not None:
            self.add(f"{column} >= %s", since)
        if until is not None:
            self.add(f"{column} < %s", until)

    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.terms) if self.terms else ""
