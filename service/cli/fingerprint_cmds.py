"""``chopmark fingerprints``: what signals version the stored fingerprints have, and refreshing
those of an older one."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from service.cli.common import cli_actor, console, err_console, runtime, shown
from service.cli.workers import INTERRUPTED_EXIT, stop_on_signal, worker_pool
from service.cpus import usable_cpus
from service.indexing.refingerprint import has_kept_bytes, refresh_stale, stale_rows
from similarity import COMPATIBLE_VERSIONS, SIGNALS_VERSION

fingerprints_app = typer.Typer(
    help="Stored fingerprints and their signals version.", no_args_is_help=True
)


@fingerprints_app.command("status")
def status() -> None:
    """Count active fingerprints per bank and signals version."""
    with runtime() as rt, rt.pool.connection() as conn:
        rows = conn.execute(
            "SELECT bank, signals_version, count(*) AS n FROM fingerprints WHERE active"
            " GROUP BY bank, signals_version ORDER BY bank, signals_version"
        ).fetchall()
    table = Table("bank", "signals version", "fingerprints", "current")
    for r in rows:
        version = r["signals_version"]
        current = (
            "yes" if version == SIGNALS_VERSION
            else "no: matched, not by line drawings" if version in COMPATIBLE_VERSIONS
            else "no: not matched"
        )
        table.add_row(r["bank"], version, str(r["n"]), current)
    console.print(table)
    console.print(
        f"this code makes {SIGNALS_VERSION}; `fingerprints refresh` recomputes artworks and"
        " outputs, adding training sources again (`sources add`) recomputes them"
    )


@fingerprints_app.command("refresh")
def refresh(
    workers: Annotated[
        int | None, typer.Option(min=1, help="processes; default: usable CPUs")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Recompute fingerprints of an older signals version from the kept bytes.

    Artworks and generated outputs are refreshed from the blob store. Training sources keep no
    original bytes: add their images to the same dataset again (`chopmark sources add`).
    Running API processes pick the new fingerprints up on their next index refresh.
    """
    with runtime() as rt, rt.pool.connection() as conn:
        todo = stale_rows(conn)
        conn.commit()
        if not todo:
            console.print(f"every fingerprint is {SIGNALS_VERSION}: nothing to do")
            return
        bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), disable=not progress, console=err_console,
        )
        # rows without kept bytes (training sources) are not recomputed here: not counted
        workable = sum(1 for r in todo if has_kept_bytes(r))
        with bar, worker_pool(workers or usable_cpus(), workable) as pool:
            task = bar.add_task("refreshing", total=workable)
            with stop_on_signal() as stop:
                outcome = refresh_stale(
                    conn, rt.audit, rt.blobs, cli_actor(), limits=rt.decode_limits,
                    executor=pool, on_row=lambda _row: bar.advance(task), rows=todo,
                    should_stop=stop.is_set,
                )
    for bank, n in sorted(outcome.refreshed.items()):
        console.print(f"refreshed {n} {bank} fingerprint(s) to {SIGNALS_VERSION}")
    for bank, n in sorted(outcome.changed_meanwhile.items()):
        console.print(
            f"{n} {bank} fingerprint(s) changed meanwhile (refreshed by another run, or"
            " withdrawn): left as they are"
        )
    for row, reason in outcome.failed:
        err_console.print(f"could not refresh {row.bank} {row.subject_id}: {shown(reason)}")
    for bank, n in sorted(outcome.needs_bytes.items()):
        err_console.print(
            f"{n} {bank} fingerprint(s) keep no original bytes: add those images again"
            + (" (chopmark sources add)" if bank == "source" else "")
        )
    if outcome.interrupted:
        err_console.print(
            "interrupted: the fingerprints counted above are stored; run"
            " `chopmark fingerprints refresh` again for the rest"
        )
        raise typer.Exit(INTERRUPTED_EXIT)
    if outcome.failed:
        raise typer.Exit(1)
