"""``chopmark disputes``: ownership disputes (a work registered later that copies another
artist's work), as /v1/disputes lists and decides them, and a scan of works registered before
disputes were opened at registration."""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
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
    chosen,
    cli_actor,
    console,
    fail,
    free_text_option,
    runtime,
    show_page,
    shown,
    time_window,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

STATUSES = ("open", "upheld", "dismissed")
disputes_app = typer.Typer(
    help="Ownership disputes: works registered later that copy another artist's work.",
    no_args_is_help=True,
)


@disputes_app.command("list")
def disputes_list(
    artist: Annotated[UUID | None, typer.Option(help="one artist's disputes (either side)")] = None,
    artwork: Annotated[UUID | None, typer.Option(help="one work's disputes (either side)")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="open, upheld or dismissed (repeatable)")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Disputes newest first: the queue of open ones (--status open), one artist's, one
    work's, those opened in a time window."""
    from service.registry.disputes import DisputeFilter, list_disputes

    wanted = chosen(status, STATUSES, "--status", "open, upheld or dismissed")
    start, end = time_window(since, until)
    where = DisputeFilter(
        artist_id=artist, artwork_id=artwork, statuses=wanted, since=start, until=end
    )

    def fetch(_rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        page = list_disputes(conn, where, limit, cursor)
        return page.disputes, page.next_cursor

    show_page("disputes", fetch, _table, as_json=as_json)


def _side(work: dict[str, Any]) -> str:
    title = f' "{shown(work["title"])}"' if work["title"] else ""
    return f"{work['artwork_id']}{title} ({work['status']}) of artist {work['artist_id']}"


def _table(disputes: list[dict[str, Any]]) -> Table:
    table = Table("opened (UTC)", "status", "match")
    table.add_column("registered first", overflow="fold")
    table.add_column("registered later", overflow="fold")
    table.add_column("id", overflow="fold")
    for d in disputes:
        table.add_row(
            f"{d['created_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            d["status"],
            f"{d['match']['decision']} {d['match']['score']:.2f}",
            _side(d["earlier"]),
            _side(d["later"]),
            str(d["id"]),
        )
    return table


@disputes_app.command("show")
def disputes_show(
    dispute_id: Annotated[UUID, typer.Argument(help="the dispute's id")],
    picture: Annotated[
        Path | None,
        typer.Option(help="also write its picture (PNG): the later work beside the earlier"),
    ] = None,
) -> None:
    """A dispute as JSON: both works, the match between them and the decision."""
    from service.registry.disputes import get_dispute
    from service.registry.picture import dispute_picture

    if picture is not None and (picture.is_dir() or not picture.parent.is_dir()):
        raise fail(f"--picture: name a PNG file in a folder that exists, not {picture}")
    with runtime() as rt, rt.pool.connection() as conn:
        found = get_dispute(conn, dispute_id)
        if found is None:
            raise fail(f"no dispute {dispute_id}")
        if picture is not None:
            picture.write_bytes(dispute_picture(rt, found))
    print(json.dumps(found, indent=2, default=str))


@disputes_app.command("decide")
def disputes_decide(
    dispute_id: Annotated[UUID, typer.Argument(help="the dispute's id")],
    withdraw: Annotated[
        UUID | None, typer.Option(help="the work to withdraw (upheld), either side")
    ] = None,
    both_stand: Annotated[
        bool, typer.Option("--both-stand", help="let both works stand (dismissed)")
    ] = False,
    note: Annotated[str | None, typer.Option(help="why, for the record")] = None,
) -> None:
    """Decide an open dispute, once (audited under both works): --withdraw one of its works,
    or --both-stand."""
    from service.registry.disputes import DisputeInvalid, decide_dispute
    from service.registry.store import Conflict

    if (withdraw is None) == (not both_stand):
        raise fail("say --withdraw ARTWORK or --both-stand (one of them)")
    said = free_text_option(note, "--note", 5000)
    with runtime() as rt:
        try:
            decided = decide_dispute(
                rt, dispute_id, actor=cli_actor(), withdraw=withdraw, note=said
            )
        except (LookupError, Conflict, DisputeInvalid) as exc:
            raise fail(str(exc.args[0] if exc.args else exc)) from None
    outcome = (
        "both stand" if withdraw is None else f"artwork {decided['withdrawn_artwork_id']} withdrawn"
    )
    console.print(f"dispute {dispute_id}: {decided['status']}, {outcome}")


@disputes_app.command("scan")
def disputes_scan(
    artist: Annotated[UUID | None, typer.Option(help="only this artist's works")] = None,
    since: Annotated[
        str | None, typer.Option(help="only works registered at or after (ISO 8601)")
    ] = None,
) -> None:
    """Check registered works against other artists' works, as registration does, and open a
    dispute for each copy found: for works registered before disputes were opened at
    registration, or while the artwork index was not loaded. One registry match a work (a
    progress bar); pairs open or dismissed already are left as they are."""
    from service.cli.register import check_against_others
    from service.registry.disputes import active_artworks

    start, _ = time_window(since, None)
    with runtime() as rt:
        with rt.pool.connection() as conn, conn.transaction():
            ids = active_artworks(conn, artist, start)
        found = check_against_others(rt, cli_actor(), ids) if ids else []
    console.print(f"checked {len(ids)} works: {len(found)} open disputes among them")
    for d in found:
        console.print(f"  {d['id']}: {_side(d['later'])} copies {_side(d['earlier'])}")
