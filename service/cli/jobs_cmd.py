"""``chopmark jobs list`` and ``jobs show``: moderation batch jobs, as GET /v1/moderation/jobs
and GET /v1/moderation/jobs/{id} give them (every key's: the CLI is the operator)."""

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
    fail,
    runtime,
    show_page,
    shown,
    time_window,
)

if TYPE_CHECKING:
    from service.runtime import Runtime

STATUSES = ("queued", "running", "completed", "failed")
jobs_app = typer.Typer(help="Moderation batch jobs.", no_args_is_help=True)


@jobs_app.command("list")
def jobs_list(
    status: Annotated[
        list[str] | None,
        typer.Option(help="queued, running, completed or failed (repeat for more than one)"),
    ] = None,
    since: SinceOption = None,
    until: UntilOption = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    as_json: PageJsonOption = False,
) -> None:
    """Batch jobs, newest first, with their items counted by status and by verdict."""
    from service.moderation.listing import JobFilter, list_jobs

    wanted = chosen(status, STATUSES, "--status", f"one of {', '.join(STATUSES)}")
    start, end = time_window(since, until)
    where = JobFilter(statuses=wanted, since=start, until=end)

    def fetch(_rt: Runtime, conn: psycopg.Connection) -> tuple[list[dict[str, Any]], str | None]:
        page = list_jobs(conn, where, limit, cursor)
        return page.jobs, page.next_cursor

    show_page("jobs", fetch, _table, as_json=as_json)


def _table(jobs: list[dict[str, Any]]) -> Table:
    table = Table("created (UTC)", "status", "done", "allow", "review", "block", "failed")
    table.add_column("user", overflow="fold")
    table.add_column("webhook")
    table.add_column("id", overflow="fold")
    for j in jobs:
        hook = j["webhook"]
        table.add_row(
            f"{j['created_at'].astimezone(UTC):%Y-%m-%d %H:%M:%S}",
            j["status"],
            f"{j['done']}/{j['total']}",
            str(j["verdicts"]["allow"]),
            str(j["verdicts"]["review"]),
            str(j["verdicts"]["block"]),
            str(j["counts"]["rejected"] + j["counts"]["failed"]),
            shown(j["user"] or "-"),
            f"{hook['state']} ({hook['attempts']})" if hook else "-",
            str(j["id"]),
        )
    return table


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[UUID, typer.Argument(help="the job's id")],
    full: Annotated[bool, typer.Option(help="each item's full result too")] = False,
) -> None:
    """A job's progress and each item's outcome as JSON."""
    from service.moderation.jobs import get_job

    with runtime() as rt, rt.pool.connection() as conn:
        job = get_job(conn, job_id, None, full=full)
    if job is None:
        raise fail(f"no moderation job {job_id}")
    print(json.dumps(job, indent=2, default=str))
