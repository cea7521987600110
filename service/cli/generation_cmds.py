"""``chopmark generate``, ``chopmark adapters add|list|block|allow`` and ``chopmark sources add``.

Register with the main app: ``app.command()(generate)``, ``app.add_typer(adapters_app,
name="adapters")``, ``app.add_typer(sources_app, name="sources")``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import as_completed
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from uuid import uuid4

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from service.cli.common import (
    cli_actor,
    console,
    err_console,
    field_problems,
    read_named_file,
    runtime,
    shown,
    write_named_file,
)
from service.cli.register import expand_paths, prepare_file
from service.cli.workers import INTERRUPTED_EXIT, cancel_rest, stop_on_signal, worker_pool
from service.cpus import usable_cpus
from service.genservice.adapters import AdapterRecord
from similarity import ImageRejected

if TYPE_CHECKING:
    from service.api.routes.generations import GenerationCreate

adapters_app = typer.Typer(help="LoRA adapters allowed in generations.", no_args_is_help=True)
sources_app = typer.Typer(help="Training sources screened against outputs.", no_args_is_help=True)

EXIT_BLOCKED = 3
EXIT_INTERRUPTED = INTERRUPTED_EXIT  # as a shell reports a command ended by Ctrl-C


def _fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {shown(message)}")
    return typer.Exit(code)


def _adapter_line(a: AdapterRecord) -> str:
    why = f" ({a.status_reason})" if a.status_reason else ""
    return f"{a.name}  {a.status}{why}  sha256 {a.sha256}  AutoV2 {a.autov2}"


# adapters --------------------------------------------------------------------------------------
@adapters_app.command("add")
def adapters_add(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a .safetensors LoRA")],
    name: Annotated[str, typer.Option(help="the name generation requests use")],
) -> None:
    """Register a LoRA file: hashes, training metadata from its header, status allowed."""
    from service.genservice.service import adapter_store
    from service.registry.store import Conflict

    with runtime() as rt, rt.pool.connection() as conn:
        try:
            rec = adapter_store(rt).register(conn, cli_actor(), name, file, file.name)
        except Conflict as exc:
            raise _fail(str(exc), 1) from None
        except ValueError as exc:
            raise _fail(f"not a usable adapter: {exc}") from None
    console.print(f"registered {_adapter_line(rec)}", soft_wrap=True)  # hashes stay whole
    if rec.training:
        names = sorted(rec.training)
        listed = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        console.print(f"training metadata: {len(names)} field(s) ({shown(listed)})", soft_wrap=True)


@adapters_app.command("list")
def adapters_list(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List registered adapters."""
    from service.genservice.service import adapter_store

    with runtime() as rt, rt.pool.connection() as conn:
        found = adapter_store(rt).list(conn)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "name": a.name,
                        "status": a.status,
                        "status_reason": a.status_reason,
                        "sha256": a.sha256,
                        "autov2": a.autov2,
                        "size_bytes": a.size_bytes,
                        "training": a.training,
                    }
                    for a in found
                ],
                indent=2,
            )
        )
        return
    table = Table("name", "status", "AutoV2", "rank", "base", "registered")
    for a in found:
        table.add_row(
            shown(a.name),
            a.status + (f" ({shown(a.status_reason)})" if a.status_reason else ""),
            a.autov2,
            str(a.details.get("rank") or "-"),
            str(a.details.get("base_family") or a.details.get("base_model_hint") or "-"),
            f"{a.created_at:%Y-%m-%d}",
        )
    console.print(table)


def _set_status(name: str, status: str, reason: str | None) -> None:
    from service.genservice.service import adapter_store
    from service.registry.store import NotFound

    with runtime() as rt, rt.pool.connection() as conn:
        try:
            rec = adapter_store(rt).set_status(conn, cli_actor(), name, status, reason)
        except NotFound as exc:
            raise _fail(str(exc), 1) from None
    console.print(_adapter_line(rec))


@adapters_app.command("block")
def adapters_block(
    name: Annotated[str, typer.Argument()],
    reason: Annotated[str | None, typer.Option(help="recorded and shown to requesters")] = None,
) -> None:
    """Block an adapter: generations naming it are refused."""
    _set_status(name, "blocked", reason)


@adapters_app.command("allow")
def adapters_allow(name: Annotated[str, typer.Argument()]) -> None:
    """Allow a blocked adapter again."""
    _set_status(name, "allowed", None)


# sources ---------------------------------------------------------------------------------------
@sources_app.command("add")
def sources_add(
    paths: Annotated[list[Path], typer.Argument(help="image files and folders")],
    dataset: Annotated[str, typer.Option(help="the training set these images belong to")],
    licence: Annotated[str | None, typer.Option(help="licence notes for the dataset")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="fingerprinting processes; default: usable CPUs")
    ] = None,
) -> None:
    """Fingerprint training-source images into the 'source' bank, with a progress bar."""
    from service.genservice.service import runtime_embedder, source_store
    from service.genservice.sources import LICENCE_MAX_CHARS, check_dataset
    from similarity import decode_image

    try:
        check_dataset(dataset)
    except ValueError as exc:
        raise _fail(f"--{exc}") from None
    if licence is not None and len(licence) > LICENCE_MAX_CHARS:
        raise _fail(f"--licence notes may hold at most {LICENCE_MAX_CHARS} characters")
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise _fail(f"no such file: {', '.join(map(str, missing))}")
    files = list(expand_paths(paths))
    added = duplicates = 0
    rejected: list[tuple[Path, str]] = []
    with runtime() as rt:
        store = source_store(rt)
        embedder = runtime_embedder(rt)
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        interrupted = False
        with (
            progress,
            worker_pool(workers or usable_cpus(), len(files)) as pool,
            rt.pool.connection() as conn,
            stop_on_signal() as stop,
        ):
            task = progress.add_task("adding sources", total=len(files))
            futures = {pool.submit(prepare_file, str(f), rt.decode_limits): f for f in files}
            for fut in as_completed(futures):
                if stop.is_set():  # Ctrl-C: what is stored stays, the rest is left
                    interrupted = True
                    cancel_rest(futures)
                    break
                path = futures[fut]
                try:
                    item = fut.result()
                    vector = None
                    if embedder.available:
                        image = decode_image(item.data, rt.decode_limits, target_side=256).image
                        vector = embedder.embed([image])[0]
                except ImageRejected as exc:
                    rejected.append((path, str(exc)))
                except OSError as exc:
                    rejected.append((path, f"cannot read: {exc.strerror or exc}"))
                else:
                    rt.thumbnails.put(item.sha256, item.thumbnail)
                    _, created = store.add(
                        conn,
                        cli_actor(),
                        dataset=dataset,
                        licence=licence,
                        item=item,
                        embedding=vector,
                        clip_model=embedder.name if vector is not None else None,
                    )
                    added, duplicates = added + created, duplicates + (not created)
                progress.advance(task)
    for path, reason in rejected:
        err_console.print(f"[yellow]rejected[/yellow] {shown(path)}: {shown(reason)}")
    clip = "with CLIP embeddings" if embedder.available else f"no CLIP ({embedder.reason})"
    console.print(
        f"dataset {dataset}: added {added}, duplicate {duplicates}, rejected {len(rejected)}; "
        + clip
    )
    if interrupted:
        err_console.print(
            "interrupted: the images counted above are stored; run the same command again for"
            " the rest (what is stored already comes back as duplicate)"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if rejected and not (added or duplicates):
        raise typer.Exit(1)


# generate --------------------------------------------------------------------------------------
def _stopped_on_interrupt(stop: Callable[[], None]) -> AbstractContextManager[threading.Event]:
    """The first Ctrl-C (or SIGTERM) asks the generation to stop at its next denoising step,
    so that its record ends as failed, interrupted, rather than ``running`` until its lease
    runs out; a second Ctrl-C quits at once. The event says whether it was asked."""

    def asked() -> None:
        err_console.print(
            "[yellow]stopping[/yellow] at the next denoising step; the record will say it was "
            "interrupted (Ctrl-C again to quit at once)"
        )
        stop()

    return stop_on_signal(asked)


def _parse_lora(value: str) -> tuple[str, float]:
    name, _, scale = value.partition(":")
    try:
        return name, float(scale) if scale else 1.0
    except ValueError:
        raise typer.BadParameter(f"--lora {value!r}: expected NAME or NAME:SCALE") from None


def _checked_as_the_api_would(
    prompt: str,
    negative: str,
    seed: int | None,
    steps: int,
    guidance: float,
    width: int,
    height: int,
    user: str | None,
    strength: float,
    scheduler: str,
    lora: list[str] | None,
) -> GenerationCreate:
    """The options checked by the API's request model (sizes, prompt lengths, scheduler names,
    adapter names and scales), so that what the API refuses is refused here before anything is
    recorded."""
    from pydantic import ValidationError

    from service.api.routes.generations import GenerationCreate

    try:
        return GenerationCreate.model_validate(
            {
                "prompt": prompt,
                "negative_prompt": negative,
                "seed": seed,
                "steps": steps,
                "guidance": guidance,
                "width": width,
                "height": height,
                "user": user,
                "strength": strength,
                "scheduler": scheduler,
                "adapters": [
                    {"name": name, "scale": scale} for name, scale in map(_parse_lora, lora or [])
                ],
            }
        )
    except ValidationError as exc:
        raise _fail(field_problems(exc)) from None


_SUFFIXES = {"png": {".png"}, "jpeg": {".jpg", ".jpeg"}, "webp": {".webp"}}


def _format_problem(output: Path) -> str | None:
    """Why ``output``'s name does not fit the format outputs are signed in, or None: the
    signed bytes are written as they are (no re-encoding would keep the signature valid)."""
    from service.cli.common import settings_or_exit

    made = settings_or_exit().output_format
    suffix = output.suffix.lower()
    named = next((f for f, suffixes in _SUFFIXES.items() if suffix in suffixes), None)
    if named is None or named == made:
        return None
    return (
        f"{output.name} names a {named.upper()} file, but outputs are signed as {made.upper()}"
        f" (CHOPMARK_OUTPUT_FORMAT): name it {output.stem}{sorted(_SUFFIXES[made])[-1]}"
        f" or set CHOPMARK_OUTPUT_FORMAT={named}"
    )


def generate(
    prompt: Annotated[str, typer.Argument(help="what to draw")],
    output: Annotated[Path, typer.Option("--output", "-o", help="where to write the image")],
    negative: Annotated[str, typer.Option("--negative", help="negative prompt")] = "",
    init: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="init image: img2img")
    ] = None,
    mask: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="mask: inpainting")
    ] = None,
    strength: Annotated[float, typer.Option(min=0.01, max=1.0)] = 0.75,
    control: Annotated[
        Path | None,
        typer.Option(exists=True, dir_okay=False, help="ControlNet conditioning image"),
    ] = None,
    control_scale: Annotated[float, typer.Option(min=0.0, max=2.0)] = 1.0,
    lora: Annotated[list[str] | None, typer.Option(help="NAME:SCALE; repeat for several")] = None,
    user: Annotated[str | None, typer.Option(help="the platform user asking")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="default: random")] = None,
    steps: Annotated[int, typer.Option(min=1, max=150)] = 20,
    guidance: Annotated[float, typer.Option(min=0, max=30)] = 7.0,
    width: Annotated[int, typer.Option(min=256, max=2048)] = 512,
    height: Annotated[int, typer.Option(min=256, max=2048)] = 512,
    scheduler: Annotated[str, typer.Option()] = "euler",
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
) -> None:
    """Generate through the gate, the screen and the stamp; blocked requests exit 3."""
    from generation.gate import AdapterRequest
    from generation.params import TINY_NOTICE
    from generation.pipeline import GenerationRequest
    from service.genservice.inputs import decode_input, input_problem
    from service.genservice.service import GenerationService

    if mask is not None and init is None:
        raise _fail("--mask needs --init")
    if control is not None and mask is not None:
        raise _fail("--control is not offered with inpainting (--mask)")
    if not output.parent.is_dir():
        raise _fail(f"cannot write {output}: {output.parent} is not a folder")
    if output.is_dir():
        raise _fail(f"cannot write {output}: it is a folder; name the image file to write")
    problem = _format_problem(output)
    if problem is not None:
        raise _fail(problem)
    checked = _checked_as_the_api_would(
        prompt, negative, seed, steps, guidance, width, height, user, strength, scheduler, lora
    )
    adapters = tuple(AdapterRequest(a.name, a.scale) for a in checked.adapters)
    with runtime(indexes=True) as rt:
        from service.stamping.credentials import untrusted_signing

        problem = untrusted_signing(rt.signing)  # as `chopmark serve` refuses it
        if problem:
            raise _fail(problem)
        try:
            init_image = (
                decode_input("init", read_named_file(init), rt.decode_limits) if init else None
            )
            mask_image = (
                decode_input("mask", read_named_file(mask), rt.decode_limits) if mask else None
            )
            controls = (
                (decode_input("control", read_named_file(control), rt.decode_limits),)
                if control
                else ()
            )
        except ImageRejected as exc:
            raise _fail(str(exc)) from None
        problem = input_problem(init_image, mask_image, steps, strength)
        if problem is not None:
            raise _fail(problem)
        request = GenerationRequest(
            id=uuid4(),
            actor=cli_actor(),
            prompt=prompt,
            negative_prompt=negative,
            seed=seed if seed is not None else secrets.randbelow(2**32),
            steps=steps,
            guidance=guidance,
            width=width,
            height=height,
            scheduler=str(checked.scheduler),
            strength=strength,
            platform_user=user,
            init=init_image,
            mask=mask_image,
            controls=controls,
            control_scale=control_scale,
            adapters=adapters,
            prompt_private=rt.settings.prompt_privacy,
        )
        if rt.settings.model is None and not as_json:
            err_console.print(f"[yellow]note:[/yellow] {TINY_NOTICE}")
        service = GenerationService.open(rt)
        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        )
        steps_task = bar.add_task("denoising", total=None)
        request.on_step = lambda done, total: bar.update(steps_task, completed=done, total=total)
        try:
            with bar, _stopped_on_interrupt(service.stop) as interrupted:
                outcome = service.pipeline.run(request)
            record = outcome.record
            data = rt.blobs.get(record.stamp.sha256) if record.stamp is not None else None
        finally:
            service.close()
    if interrupted.is_set() and record.status == "failed":
        raise _fail(f"interrupted: generation {record.id} is recorded as failed", EXIT_INTERRUPTED)
    _report(outcome.record, as_json)
    if record.status == "blocked":
        raise typer.Exit(EXIT_BLOCKED)
    if record.status != "completed" or data is None:
        raise _fail(f"generation failed at {record.stage}: {record.error}", 1)
    kept = f"; generation {record.id} is done and kept (GET /v1/generations/{record.id}/image)"
    write_named_file(output, data, kept)
    if not as_json:
        console.print(f"wrote {shown(output)}")


def _report(record: object, as_json: bool) -> None:
    from generation.pipeline import GenerationRecord

    assert isinstance(record, GenerationRecord)
    model = record.model
    if as_json:
        print(
            json.dumps(
                {
                    "id": str(record.id),
                    "status": record.status,
                    "stage": record.stage,
                    "reasons": record.reasons,
                    "flags": record.flags,
                    "model": record.model_dict(),
                    "adapters": record.adapters,
                    "output": record.stamp.to_dict() if record.stamp else None,
                    "error": record.error,
                    "timings_ms": {k: round(v * 1e3, 1) for k, v in record.timings.items()},
                },
                indent=2,
            )
        )
        return
    if model is not None and model.notice and not model.is_default_tiny:
        err_console.print(f"[yellow]note:[/yellow] {model.notice}")  # (the tiny one's: said first)
    if record.status == "blocked":
        err_console.print(f"[red]blocked[/red] generation {record.id}")
        for reason in record.reasons:
            err_console.print(f"  {reason['code']}: {shown(reason['message'])}")
        return
    if record.stamp is not None:
        s = record.stamp
        console.print(f"generation {record.id}: manifest {s.manifest_id}")
        console.print(f"watermark {s.watermark_alg} {s.watermark_value}; sha256 {s.sha256}")
    for flag in record.flags:
        console.print(f"[yellow]flag[/yellow] {flag['code']}: {shown(flag['message'])}")
