"""Shared CLI plumbing: settings, the runtime, output helpers."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

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


@contextmanager
def runtime(*, indexes: bool = False) -> Iterator[Runtime]:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rt = Runtime.open(Settings())
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
