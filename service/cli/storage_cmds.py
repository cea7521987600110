"""``chopmark storage``: the stored files (originals, outputs, adapters, thumbnails)."""

from __future__ import annotations

import json
from typing import Annotated

import psycopg
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from service.cli.common import cli_actor, console, err_console, runtime
from service.storage_gc import CollectionBusy, collect, parts, stores

storage_app = typer.Typer(help="Stored files.", no_args_is_help=True)


@storage_app.command("gc")
def gc(
    older_than: Annotated[
        float, typer.Option(help="hours: younger files are left alone, whatever names them")
    ] = 24.0,
    dry_run: Annotated[bool, typer.Option(help="count what would go; remove nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Remove stored files that no record names (left by writes whose record never committed),
    and moderation uploads kept longer than CHOPMARK_MODERATION_UPLOAD_DAYS.

    Each removal is written to the audit log. Safe beside running services: files younger than
    --older-than are kept, and a file a writer reuses meanwhile is put back.
    """
    if not older_than >= 0:  # NaN too: it would make every file old enough
        err_console.print(
            "[red]error:[/red] --older-than must be hours, 0 or more: not negative, not NaN"
        )
        raise typer.Exit(2)
    with runtime() as rt:
        targets = stores(
            rt.blobs.root, rt.thumbnails.root, rt.settings.moderation_upload_days
        )
        bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), disable=not progress, console=err_console,
        )
        with bar:
            task = bar.add_task("looking", total=sum(len(parts(s.root)) for s in targets))
            try:
                reports = collect(
                    rt.pool, rt.audit, cli_actor(), targets, grace_seconds=older_than * 3600,
                    dry_run=dry_run, on_part=lambda: bar.advance(task),
                )
            except CollectionBusy as exc:
                err_console.print(str(exc))
                raise typer.Exit(1) from exc
            except psycopg.Error as exc:
                err_console.print(
                    f"the collection stopped, the database failed: {exc}. Files of the batch in "
                    "hand were put back; those removed before are in the audit log."
                )
                raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps({"dry_run": dry_run, **{k: r.as_dict() for k, r in reports.items()}}))
        return
    verb = "would remove" if dry_run else "removed"
    table = Table("store", "files", "named", "younger", verb, "bytes", f"temporary {verb}")
    for name, r in reports.items():
        table.add_row(
            name, str(r.files), str(r.named), str(r.young), str(len(r.removed)),
            str(r.removed_bytes), str(r.temporary_removed),
        )
    console.print(table)
    unrecognised = sum(r.unrecognised for r in reports.values())
    if unrecognised:
        err_console.print(f"{unrecognised} file(s) with names chopmark does not write: left alone")
