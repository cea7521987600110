"""``chopmark claims``: artists' claims against our outputs, as /v1/claims files, lists and
decides them (the CLI is the operator: it lists every claim and may decide)."""

from __future__ import annotations

import json
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

STATUSES = ("open", "upheld", "rejected")
claims_app = typer.Typer(
    help="Artists' claims that our outputs copy their works.", no_args_is_help=True
)


@claims_app.command("file")
def claims_file(
    output: Annotated[UUID, typer.Option(help="the output (generation id) claimed against")],
    artist: Annotated[UUID, typer.Option(help="the artist who claims")],
    reason: Annotated[str, typer.Option(help="what the artist says")],
    artwork: Annotated[UUID | None, typer.Option(help="which of their works, if known")] = None,
) -> None:
    """File a claim, as POST /v1/claims does: the output is matched against the artist's works
    and what is found is kept with the claim. Prints the claim as JSON."""
    from service.api.schemas import CLAIM_REASON_MAX_CHARS
    from service.registry.claims import ClaimInvalid, file_claim
    from service.registry.store import Conflict

    said = (free_text_option(reason, "--reason", CLAIM_REASON_MAX_CHARS) or "").strip()
    if not said:
        raise fail("--reason: say why (more than white space)")
    with runtime(indexes=True) as rt:
        try:
            claim = file_claim(
                rt,
                actor=cli_actor(),
                output_id=output,
                artist_id=artist,
                artwork_id=artwork,
                reason=said,
            )
        except (LookupError, ClaimInvalid, Conflict) as exc:
            raise fail(str(exc.args[0] if exc.args else exc)) from None
    print(json.dumps(claim, indent=2, default=str))


@claims_app.command("list")
def claims_list(
    artist: Annotated[UUID | None, typer.Option(help="one artist's claims")] = None,
    output: Annotated[UUID | None, typer.Option(help="the claims against one output")] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="open, upheld or rejected (repeatable)")
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Claims newest first: the queue of open ones (--status open), one artist's, one output's,
    those filed in a time window."""
    from service.registry.claims import ClaimFilter, list_claims

    wanted = chosen(status, STATUSES, "--status", "open, upheld or rejected")
    start, end = time_window(since, until)
    where = ClaimFilter(
        artist_id=artist, output_id=output, statuses=wanted, since=start, until=end
    )

    def fetch(_rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        page = list_claims(conn, where, limit, cursor)
        return page.claims, page.next_cursor

    show_page("claims", fetch, _table, as_json=as_json)


def _table(claims: list[dict[str, Any]]) -> Table:
    table = Table("filed (UTC)", "status", "found")
    table.add_column("output", overflow="fold")
    table.add_column("artist", overflow="fold")
    table.add_column("reason", overflow="fold")
    table.add_column("id", overflow="fold")
    for c in claims:
        found = ", ".join(f"{m['decision']} {m['score']:.2f}" for m in c["matches"]) or "-"
        table.add_row(
            f"{c['created_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            c["status"],
            found,
            str(c["output_id"]),
            str(c["artist_id"]),
            shown(c["reason"]),
            str(c["id"]),
        )
    return table


@claims_app.command("show")
def claims_show(claim_id: Annotated[UUID, typer.Argument(help="the claim's id")]) -> None:
    """A claim as JSON, with the matches kept when it was filed and its decision."""
    from service.registry.claims import get_claim

    with runtime() as rt, rt.pool.connection() as conn:
        found = get_claim(conn, claim_id)
    if found is None:
        raise fail(f"no claim {claim_id}")
    print(json.dumps(found, indent=2, default=str))


@claims_app.command("decide")
def claims_decide(
    claim_id: Annotated[UUID, typer.Argument(help="the claim's id")],
    uphold: Annotated[
        bool, typer.Option("--uphold/--reject", help="uphold the claim, or reject it")
    ],
    note: Annotated[str | None, typer.Option(help="why, for the record")] = None,
) -> None:
    """Uphold or reject an open claim, once (audited as claim.decided). Once upheld, copies of
    the output are flagged by moderation (rule ours_claim_upheld)."""
    from service.registry.claims import decide_claim
    from service.registry.store import Conflict

    said = free_text_option(note, "--note", 5000)
    with runtime() as rt, rt.pool.connection() as conn:
        try:
            claim = decide_claim(rt, conn, claim_id, actor=cli_actor(), uphold=uphold, note=said)
        except (LookupError, Conflict) as exc:
            raise fail(str(exc.args[0] if exc.args else exc)) from None
    console.print(f"claim {claim_id}: {claim['status']}")
