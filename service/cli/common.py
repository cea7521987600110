"""Shared CLI plumbing: settings, the runtime, output helpers."""

from __future__ import annotations

import json
import logging
import re
import stat
import sys
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psycopg
import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from service.api.text import FREE_TEXT_MESSAGE, free_text, written_out
from service.audit.signing import AuditKeyError
from service.db.keyset import CursorError
from service.runtime import Runtime
from service.settings import Settings

console = Console()
err_console = Console(stderr=True)

CLI_ACTOR = "cli"

def shown(value: object) -> str:
    """Text from outside (titles, names, reasons, file names, an image's own metadata) as this
    CLI prints it: control characters and bidirectional overrides written out (no escape
    sequence reaches the terminal, no line break forges a row) and rich markup escaped
    (``[link=...]`` is printed, not obeyed)."""
    return escape(written_out(str(value)))


def cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return CLI_ACTOR


def settings_or_exit() -> Settings:
    """The settings, or one line per bad ``CHOPMARK_*`` value and exit status 2 (a data folder
    that cannot be made or used is one of them)."""
    try:
        settings = Settings()
        _ = settings.data_path  # made here, if it is not there yet
        return settings
    except OSError as exc:
        where = exc.filename or "it"
        problem = exc.strerror or exc
        raise fail(f"CHOPMARK_DATA_DIR: cannot use {where} as the data folder: {problem}") from None
    except ValidationError as exc:
        for e in exc.errors():
            where = "_".join(str(p) for p in e["loc"]).upper()
            name = f"CHOPMARK_{where}: " if where else ""
            err_console.print(f"[red]error:[/red] {name}{e['msg']}", soft_wrap=True)
        raise typer.Exit(2) from None
    except SettingsError as exc:  # a list or JSON value that does not parse
        field = re.search(r'field "(\w+)"', str(exc))
        name = f"CHOPMARK_{field.group(1).upper()}" if field else "a CHOPMARK_ setting"
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise fail(
            f"{name}: cannot be parsed{cause}; a list is written as JSON,"
            ' e.g. ["/etc/chopmark/root.pem"]'
        ) from None


def read_named_file(path: Path) -> bytes:
    """The bytes of a file the user named on the command line, or one line and exit status 2
    (unreadable, or not a regular file: a FIFO or a device could keep the read waiting)."""
    problem = unreadable(path)
    if problem is not None:
        raise fail(problem)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}") from None


def unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as an input file, or None."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return f"cannot read {path}: not a regular file"
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    return None


def write_named_file(path: Path, data: bytes, what: str = "") -> None:
    """Write an output file the user named, or one line and exit status 2 (``what`` says what
    stands done already, e.g. the record the output belongs to)."""
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise fail(f"cannot write {path}: {exc.strerror or exc}{what}") from None


def field_problems(exc: ValidationError) -> str:
    """A model's validation errors on one line: ``field: message; field: message``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


def missing_paths(settings: Settings) -> list[str]:
    """Files the settings name that are not there, as ``CHOPMARK_NAME: path`` lines."""
    named: list[tuple[str, Path | None]] = [
        ("MODEL", settings.model),
        ("CONTROLNET", settings.controlnet),
        ("CLIP_CHECKPOINT", settings.clip_checkpoint),
        ("SIGNING_CHAIN", settings.signing_chain),
        ("SIGNING_KEY", settings.signing_key),
        ("MODERATION_POLICY", settings.moderation_policy),
        *(("TRUST_ANCHORS", p) for p in settings.trust_anchors),
    ]
    return [f"CHOPMARK_{name}: {p} does not exist" for name, p in named if p and not p.exists()]


def fail(message: object) -> typer.Exit:
    """Print one error line; the caller raises what this returns (exit status 2)."""
    err_console.print(f"[red]error:[/red] {shown(message)}", soft_wrap=True)
    return typer.Exit(2)


# The options of every newest-first listing (``checks list``, ``artists events``).
SinceOption = Annotated[str | None, typer.Option(help="at or after (ISO 8601; UTC unless zoned)")]
UntilOption = Annotated[str | None, typer.Option(help="before (ISO 8601; UTC unless zoned)")]
LimitOption = Annotated[int, typer.Option(min=1, max=500)]
CursorOption = Annotated[str | None, typer.Option(help="the next page, as printed last")]
PageJsonOption = Annotated[bool, typer.Option("--json", help="print the page as JSON")]


def time_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``--since`` and ``--until`` as times (UTC unless they name their zone), in order."""
    start, end = _time_option(since, "--since"), _time_option(until, "--until")
    if start is not None and end is not None and start >= end:
        raise fail("--since must be before --until")
    return start, end


def _time_option(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise fail(f"{option}: not an ISO 8601 date or time: {shown(value)}") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def print_page(
    kind: str,
    items: list[dict[str, Any]],
    next_cursor: str | None,
    *,
    as_json: bool,
    table: Callable[[], Table],
) -> None:
    """A listing's page: as JSON (``{kind: items, "next_cursor"}``), or the table and, when
    there is more, the ``--cursor`` of the next page."""
    if as_json:
        page = {kind: items, "next_cursor": next_cursor}
        print(json.dumps(page, default=_json_value, indent=2))
        return
    console.print(table())
    if next_cursor is not None:
        console.print(f"more: --cursor {next_cursor}")


def chosen(
    values: list[str] | None, allowed: Collection[str], option: str, what: str
) -> tuple[str, ...]:
    """A repeatable option's values, lower-cased, each once; one not ``allowed`` is one line
    (``option``: VALUE is not ``what``) and exit status 2."""
    wanted = tuple(dict.fromkeys(v.lower() for v in values or ()))
    unknown = [v for v in wanted if v not in allowed]
    if unknown:
        raise fail(f"{option}: {shown(unknown[0])} is not {what}")
    return wanted


def free_text_option(value: str | None, option: str, max_chars: int) -> str | None:
    """A note or a reason given on the command line, checked as the API checks it: no control
    characters but line breaks and tabs (NUL among them), at most ``max_chars``."""
    if value is None:
        return None
    try:
        free_text(value)
    except ValueError:
        raise fail(f"{option}: {FREE_TEXT_MESSAGE}") from None
    if len(value) > max_chars:
        raise fail(f"{option}: at most {max_chars} characters")
    return value


def show_page(
    kind: str,
    fetch: Callable[[Runtime, psycopg.Connection], tuple[list[dict[str, Any]], str | None]],
    table: Callable[[list[dict[str, Any]]], Table],
    *,
    as_json: bool,
) -> None:
    """Fetch one page of a listing (``fetch``: its items and the next cursor) and print it as
    ``print_page`` does; a cursor not handed out, or a record the listing is about that does
    not exist (a ``LookupError``), is one line and exit status 2."""
    with runtime() as rt, rt.pool.connection() as conn:
        try:
            items, next_cursor = fetch(rt, conn)
        except CursorError as exc:
            raise fail(f"--cursor: {exc}") from None
        except LookupError as exc:
            raise fail(str(exc.args[0] if exc.args else exc)) from None
    print_page(kind, items, next_cursor, as_json=as_json, table=lambda: table(items))


def _json_value(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)  # times, UUIDs


def database_unusable(exc: BaseException) -> typer.Exit:
    """One line for a database that cannot be reached or a URL that does not parse."""
    return fail(f"the database cannot be used: {str(exc).strip() or type(exc).__name__}")


def open_or_exit(settings: Settings) -> Runtime:
    """``Runtime.open``, or one line and exit status 2 for what an operator must mend first: a
    file the settings name that is missing, the database unreachable or its URL malformed, the
    audit key, the signing credentials."""
    import psycopg

    from provenance.credentials import CredentialsError

    missing = missing_paths(settings)
    if missing:
        raise fail(missing[0])
    try:
        return Runtime.open(settings)
    except (AuditKeyError, CredentialsError) as exc:
        raise fail(exc) from None
    except psycopg.Error as exc:
        raise database_unusable(exc) from None


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
