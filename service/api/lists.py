"""The query parameters every newest-first list takes: a time window and a page (``limit``
and the ``cursor`` of the page before). A cursor not handed out is answered 422 by the app's
handler for ``CursorError``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query

from service.db.keyset import as_utc

MAX_PAGE = 500


@dataclass(frozen=True)
class Page:
    since: datetime | None
    until: datetime | None
    limit: int
    cursor: str | None


def page_params(
    since: Annotated[
        datetime | None, Query(description="at or after (ISO 8601; UTC unless it names its zone)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="before (ISO 8601; UTC unless it names its zone)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Page:
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
    return Page(since, until, limit, cursor)


PageDep = Annotated[Page, Depends(page_params)]
