"""``chopmark fingerprints``: what signals version the stored fingerprints have, and refreshing
those of an older one."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from service.cli.common import cli_actor, console, err_console, runtime, shown
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
        count = workers or usable_cpus()
        spawn = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(count, mp_context=spawn, initializer=_leave_ctrl_c_to_the_parent)
        with bar, pool:
            _start_workers(pool, count)
            # rows without kept bytes (training sources) are not recomputed here: not counted
            task = bar.add_task("refreshing", total=sum(1 for r in todo if has_kept_bytes(r)))
            with _ctrl_c_stops() as stop:
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
        raise typer.Exit(130)
    if outcome.failed:
        raise typer.Exit(1)


@contextmanager
def _ctrl_c_stops() -> Iterator[threading.Event]:
    """Ctrl-C sets the event (the run stops after the row it is storing, whose count is then
    exact); a second Ctrl-C interrupts at once."""
    stop = threading.Event()

    def on_ctrl_c(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _start_workers(pool: ProcessPoolExecutor, count: int) -> None:
    """Start every worker now, each with Ctrl-C ignored from its first instruction: Ctrl-C
    reaches the whole process group, the parent alone stops the run, and a worker still
    starting up would print a traceback. A worker starts within ``submit`` while none is idle,
    and inherits the ignored signal (Python then installs no handler of its own for it)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(count):
            pool.submit(_nothing)
    finally:
        signal.signal(signal.SIGINT, previous)


def _nothing() -> None:
    return None


def _leave_ctrl_c_to_the_parent() -> None:
    """In each worker process, as it starts (see `_start_workers`): Ctrl-C is the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
