"""``chopmark artists events ARTIST``: what touched an artist's works, as
GET /v1/artists/{id}/events lists it."""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.table import Table

from service.cli.common import console, fail, json_value, runtime, shown, time_option


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
    since: Annotated[
        str | None, typer.Option(help="at or after (ISO 8601; UTC unless zoned)")
    ] = None,
    until: Annotated[str | None, typer.Option(help="before (ISO 8601; UTC unless zoned)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    cursor: Annotated[str | None, typer.Option(help="the next page, as printed last")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the page as JSON")] = False,
) -> None:
    """Everything that touched an artist's works, newest first: registrations, licences,
    withdrawals, moderation matches, refused stamps, generations whose inputs matched (blocked
    img2img attempts among them)."""
    from service.db.keyset import CursorError
    from service.registry.events import EventFilter, list_events
    from service.registry.store import NotFound

    start, end = time_option(since, "--since"), time_option(until, "--until")
    if start is not None and end is not None and start >= end:
        raise fail("--since must be before --until")
    where = EventFilter(
        kinds=tuple(dict.fromkeys(kind or ())), artwork_id=artwork, since=start, until=end
    )
    with runtime() as rt, rt.pool.connection() as conn:
        try:
            rt.registry.get_artist(conn, artist)
            page = list_events(conn, artist, where, limit, cursor)
        except NotFound as exc:
            raise fail(str(exc)) from None
        except CursorError as exc:
            raise fail(f"--cursor: {exc}") from None
    if as_json:
        page_json = {"events": page.events, "next_cursor": page.next_cursor}
        print(json.dumps(page_json, default=json_value, indent=2))
        return
    table = Table("at (UTC)", "kind", "artwork")
    table.add_column("what", overflow="fold")
    for e in page.events:
        table.add_row(
            f"{e['at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            e["kind"],
            str(e["artwork_id"] or "-"),
            _said(e),
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"more: --cursor {page.next_cursor}")
