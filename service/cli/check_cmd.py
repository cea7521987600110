"""``chopmark check IMAGE...``: moderate images in-process, as POST /v1/moderation/check does;
``chopmark checks list``: the recorded checks, as GET /v1/moderation/checks lists them."""

from __future__ import annotations

import hashlib
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
    err_console,
    fail,
    free_text_option,
    runtime,
    show_page,
    shown,
    time_window,
    unreadable,
    write_named_file,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

_STYLE = {"allow": "green", "review": "yellow", "block": "bold red"}


def check(
    images: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help="image files to moderate")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print the full responses")] = False,
    user: Annotated[str | None, typer.Option(help="platform user, for licences")] = None,
    pictures: Annotated[
        Path | None,
        typer.Option(
            "--pictures",
            file_okay=False,
            help="also write each check's picture (verdict, reasons, evidence) as DIR/NAME.png",
        ),
    ] = None,
) -> None:
    """Verdict and reasons for each image: provenance, registry and training-source checks under
    the moderation policy (CHOPMARK_MODERATION_POLICY). Exit 2 if an image cannot be read."""
    from service.moderation.check import run_check
    from service.moderation.picture import moderation_picture
    from service.moderation.policy import POLICIES, PolicyError
    from similarity import ImageRejected

    results: list[tuple[Path, dict[str, Any] | None, str | None]] = []
    with runtime(indexes=True) as rt:
        try:
            policy = POLICIES.for_key(rt.settings, None, None)
        except PolicyError as exc:
            err_console.print(f"[red]error:[/red] {shown(exc)}")
            raise typer.Exit(2) from None
        if pictures is not None:
            try:
                pictures.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise fail(f"--pictures: cannot use {pictures}: {exc.strerror or exc}") from None
        written: set[str] = set()
        for path in images:
            problem = unreadable(path)
            try:
                data = path.read_bytes() if problem is None else b""
            except OSError as exc:
                problem = f"cannot read {path}: {exc.strerror or exc}"
            if problem is not None:
                results.append((path, None, problem))
                continue
            try:
                outcome = run_check(
                    rt, data, policy, actor=cli_actor(), api_key_id=None, user=user
                )
                results.append((path, outcome.report, None))
            except ImageRejected as exc:
                results.append((path, None, str(exc)))
                continue
            if pictures is not None:
                name = path.stem
                while name in written:  # two images of the same name from different folders
                    name += "_"
                written.add(name)
                picture = moderation_picture(rt, data, outcome.report)
                write_named_file(pictures / f"{name}.png", picture)
    if as_json:
        print(
            json.dumps(
                [
                    {"file": str(p), **r} if r is not None else {"file": str(p), "error": e}
                    for p, r, e in results
                ],
                indent=2,
            )
        )
    else:
        table = Table("image", "verdict")
        table.add_column("AI-generated", overflow="fold")  # a generation id whole
        table.add_column("reasons", overflow="fold")
        for path, report, error in results:
            if report is None:
                table.add_row(shown(path), "[red]error[/red]", "", shown(error or ""))
                continue
            verdict = report["verdict"]
            ai = report["provenance"]["ai_generated"]
            table.add_row(
                shown(path),
                f"[{_STYLE[verdict]}]{verdict}[/{_STYLE[verdict]}]",
                ai["status"] + (f" ({ai['generation_id']})" if ai["generation_id"] else ""),
                "\n".join(f"{r['action']}: {shown(r['message'])}" for r in report["reasons"]),
            )
        console.print(table)
    if any(r is None for _, r, _ in results):
        raise typer.Exit(2)


checks_app = typer.Typer(help="Recorded moderation checks.", no_args_is_help=True)


def _reviewed(review: dict[str, Any] | None) -> str:
    if review is None:
        return "-"
    d = review["decision"]
    return f"[{_STYLE[d]}]{d}[/{_STYLE[d]}] by {shown(review['reviewer'])}"


@checks_app.command("list")
def checks_list(
    verdict: Annotated[
        list[str] | None,
        typer.Option(help="allow, review or block (repeat for more than one)"),
    ] = None,
    user: Annotated[str | None, typer.Option(help="platform user")] = None,
    image: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="checks of these very bytes"),
    ] = None,
    job: Annotated[UUID | None, typer.Option(help="the checks of one batch job")] = None,
    reviewed: Annotated[
        bool | None,
        typer.Option(
            "--reviewed/--not-reviewed",
            help="only checks a person decided on since, or only those still waiting",
            show_default=False,
        ),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Recorded checks, newest first (every key's, and the CLI's own): the review queue
    (--verdict review), one user's uploads, whether an image was checked before (--image)."""
    from service.moderation.listing import CheckFilter, list_checks

    wanted = chosen(verdict, _STYLE, "--verdict", "allow, review or block")
    start, end = time_window(since, until)
    digest = None
    if image is not None:
        problem = unreadable(image)
        if problem is not None:
            raise fail(problem)
        digest = hashlib.sha256(image.read_bytes()).hexdigest()
    where = CheckFilter(
        verdicts=wanted,
        user=user,
        sha256=digest,
        job_id=job,
        since=start,
        until=end,
        reviewed=reviewed,
    )

    def fetch(_rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        page = list_checks(conn, where, limit, cursor)
        return page.checks, page.next_cursor

    show_page("checks", fetch, _checks_table, as_json=as_json)


def _checks_table(checks: list[dict[str, Any]]) -> Table:
    table = Table("checked (UTC)", "verdict", "reviewed", "AI-generated", "user", "sha256")
    table.add_column("reasons", overflow="fold")
    table.add_column("id", overflow="fold")
    for c in checks:
        v = c["verdict"]
        table.add_row(
            f"{c['created_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            f"[{_STYLE[v]}]{v}[/{_STYLE[v]}]",
            _reviewed(c["review"]),
            c["ai_generated"] or "-",
            shown(c["user"] or "-"),
            c["sha256"][:12],
            "\n".join(f"{r['action']}: {shown(r['message'])}" for r in c["reasons"]),
            str(c["id"]),
        )
    return table


@checks_app.command("review")
def checks_review(
    check_id: Annotated[UUID, typer.Argument(help="the check's id")],
    decision: Annotated[str, typer.Option(help="allow or block")],
    reviewer: Annotated[str, typer.Option(help="who decided")],
    note: Annotated[str | None, typer.Option(help="why, for the record")] = None,
) -> None:
    """Record a person's decision on a check (a review verdict looked at, a block appealed); the
    latest stands; audited as moderation.reviewed."""
    from service.api.text import name_text
    from service.moderation.reviews import (
        DECISIONS,
        NOTE_MAX_CHARS,
        REVIEWER_MAX_CHARS,
        add_review,
    )

    decision = decision.lower()
    if decision not in DECISIONS:
        raise fail(f"--decision: {shown(decision)} is not allow or block")
    try:
        who = name_text(reviewer)
    except ValueError as exc:
        raise fail(f"--reviewer: {exc}") from None
    if len(who) > REVIEWER_MAX_CHARS:
        raise fail(f"--reviewer: at most {REVIEWER_MAX_CHARS} characters")
    free_text_option(note, "--note", NOTE_MAX_CHARS)
    with runtime() as rt, rt.pool.connection() as conn:
        review = add_review(
            rt,
            conn,
            check_id,
            actor=cli_actor(),
            api_key_id=None,
            reviewer=who,
            decision=decision,
            note=note,
            owner=None,
        )
    if review is None:
        raise fail(f"no moderation check {check_id}")
    console.print(f"{check_id}: {decision} by {shown(who)} (review {review['id']})")


@checks_app.command("show")
def checks_show(check_id: Annotated[UUID, typer.Argument(help="the check's id")]) -> None:
    """A recorded check as JSON, with the decisions people made on it since (as GET
    /v1/moderation/checks/{id} answers it)."""
    from service.moderation.check import get_check

    with runtime() as rt, rt.pool.connection() as conn:
        found = get_check(conn, check_id, None)
    if found is None:
        raise fail(f"no moderation check {check_id}")
    print(json.dumps(found, indent=2, default=str))


@checks_app.command("picture")
def checks_picture(
    check_id: Annotated[UUID, typer.Argument(help="the check's id")],
    out: Annotated[
        Path, typer.Option("--out", "-o", dir_okay=False, help="the PNG file to write")
    ],
) -> None:
    """A recorded check as a picture, from its kept upload: the verdict band (with the latest
    review) over the image beside each match. Uploads are kept for the verdicts in
    CHOPMARK_MODERATION_KEEP_UPLOADS (review and block unless set)."""
    from service.moderation.picture import UploadNotKept, recorded_picture

    with runtime() as rt:
        try:
            png = recorded_picture(rt, check_id, None)
        except UploadNotKept as exc:
            raise fail(str(exc)) from None
    if png is None:
        raise fail(f"no moderation check {check_id}")
    write_named_file(out, png)
    console.print(f"{check_id}: picture written to {shown(str(out))}")
