"""``chopmark check IMAGE...``: moderate images in-process, as POST /v1/moderation/check does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from service.cli.common import (
    cli_actor,
    console,
    err_console,
    fail,
    runtime,
    shown,
    unreadable,
    write_named_file,
)

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
                write_named_file(pictures / f"{name}.png", moderation_picture(rt, data, outcome))
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
