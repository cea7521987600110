"""``chopmark artists events ARTIST``: what touched an artist's works, as
GET /v1/artists/{id}/events lists it."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import psycopg
import typer
from rich.table import Table

from service.cli.common import (
    CursorOption,
    LimitOption,
    PageJsonOption,
    SinceOption,
    UntilOption,
    show_page,
    shown,
    time_window,
)

if TYPE_CHECKING:
    from service.runtime import Runtime


def _said(event: dict[str, Any]) -> str:
    """The few facts of an event a person reads first."""
    data = event["data"]
    keys = ("outcome", "verdict", "user", "grantee", "score", "check_id", "generation_id")
    return ", ".join(f"{k} {shown(str(data[k]))}" for k in keys if data.get(k) is not None)


def artist_events(
    artist: Annotated[UUID, typer.Argument(help="the artist's id")],
    kind: Annotated[
        list[str] | None,
        typer.Option(help="moderation.matched, generation.input_matched, ... (repeatable)"),
    ] = None,
    artwork: Annotated[UUID | None, typer.Option(help="one of the artist's works")] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Everything that touched an artist's works, newest first: registrations, licences,
    withdrawals, moderation matches, refused stamps, generations whose inputs matched (blocked
    img2img attempts among them)."""
    from service.registry.events import EventFilter, list_events

    start, end = time_window(since, until)
    where = EventFilter(
        kinds=tuple(dict.fromkeys(kind or ())), artwork_id=artwork, since=start, until=end
    )

    def fetch(rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        rt.registry.get_artist(conn, artist)  # NotFound: one line
        page = list_events(conn, artist, where, limit, cursor)
        return page.events, page.next_cursor

    show_page("events", fetch, _table, as_json=as_json)


def _table(events: list[dict[str, Any]]) -> Table:
    table = Table("at (UTC)", "kind", "artwork")
    table.add_column("what", overflow="fold")
    for e in events:
        table.add_row(
            f"{e['at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            e["kind"],
            str(e["artwork_id"] or "-"),
            _said(e),
        )
    return table
