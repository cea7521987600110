"""``chopmark artists list``: artists a page at a time (or the one with an address), with their
works and whether they have a portal login, as GET /v1/artists lists them."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Annotated, Any

import psycopg
import typer
from rich.table import Table

from service.cli.common import CursorOption, LimitOption, PageJsonOption, show_page, shown

if TYPE_CHECKING:
    from service.runtime import Runtime


def artists_list(
    email: Annotated[str | None, typer.Option(help="exactly this address, any case")] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Artists, oldest first: whether each can log in to the portal (else `chopmark artists
    invite ID`) and how many works they have."""
    from service.registry.artists_list import list_artists

    def fetch(_rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        page = list_artists(conn, email=email, limit=limit, cursor=cursor)
        return page.artists, page.next_cursor

    show_page("artists", fetch, _table, as_json=as_json)


def _table(artists: list[dict[str, Any]]) -> Table:
    table = Table("since (UTC)", "works", "portal")
    table.add_column("name", overflow="fold")
    table.add_column("e-mail", overflow="fold")
    table.add_column("id", overflow="fold")
    for a in artists:
        table.add_row(
            f"{a['created_at'].astimezone(UTC):%Y-%m-%d %H:%M}",
            str(a["works"]),
            "login" if a["portal_login"] else "-",
            shown(a["display_name"]),
            shown(a["email"]),
            str(a["id"]),
        )
    return table
