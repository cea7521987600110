"""Shared CLI plumbing: settings, the runtime, output helpers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from pydantic import ValidationError
from rich.console import Console

from service.audit.signing import AuditKeyError
from service.runtime import Runtime
from service.settings import Settings

console = Console()
err_console = Console(stderr=True)

CLI_ACTOR = "cli"


def cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return CLI_ACTOR


def settings_or_exit() -> Settings:
    """The settings, or one line per bad ``CHOPMARK_*`` value and exit status 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors():
            where = "_".join(str(p) for p in e["loc"]).upper()
            name = f"CHOPMARK_{where}: " if where else ""
            err_console.print(f"[red]error:[/red] {name}{e['msg']}", soft_wrap=True)
        raise typer.Exit(2) from None


def open_or_exit(settings: Settings) -> Runtime:
    """``Runtime.open``, or one line and exit status 2 for what an operator must mend first."""
    try:
        return Runtime.open(settings)
    except AuditKeyError as exc:
        err_console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(2) from None


@contextmanager
def runtime(*, indexes: bool = False) -> Iterator[Runtime]:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rt = open_or_exit(settings_or_exit())
    try:
        if indexes:
            rt.load_indexes()
        yield rt
    finally:
        if indexes:
            for bank in rt.banks.values():
                if bank.changes_since_snapshot:
                    bank.snapshot()
        rt.close()
