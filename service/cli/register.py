"""``chopmark register``: files and folders into the registry, fingerprinted in parallel."""

from __future__ import annotations

import logging
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import as_completed
from pathlib import Path
from uuid import UUID

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from service.cli.workers import cancel_rest, stop_on_signal, worker_pool
from service.cpus import usable_cpus
from service.registry.ingest import PreparedImage, insert, prepare, store_files
from service.registry.records import RegistrationOutcome
from service.runtime import Runtime
from similarity import DecodeLimits, ImageRejected

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


def expand_paths(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                # a broken link is reported (it cannot be read), not silently passed over
                if child.is_file() or (child.is_symlink() and not child.exists()):
                    yield child
        else:
            yield path


def prepare_file(path: str, limits: DecodeLimits) -> PreparedImage:
    """One image file read and prepared (in a worker process). A path that is not a regular
    file (a FIFO, a device) is refused before it is opened: reading one could wait forever."""
    p = Path(path)
    found = p.stat()
    if not stat.S_ISREG(found.st_mode):
        raise ImageRejected("not_a_file", "not a regular file (a FIFO, a device or a socket)")
    size = found.st_size
    if size > limits.max_bytes:
        raise ImageRejected("too_large", f"{size} bytes is over the limit of {limits.max_bytes}")
    return prepare(p.read_bytes(), p.name, limits)


def register_paths(
    rt: Runtime,
    actor: str,
    artist_id: UUID,
    paths: list[Path],
    *,
    title: str | None,
    preferences: dict[str, str],
    workers: int | None = None,
    show_progress: bool = True,
) -> RegistrationOutcome:
    files = list(expand_paths(paths))
    outcome = RegistrationOutcome()
    with rt.pool.connection() as conn:
        rt.registry.get_artist(conn, artist_id)
    workers = workers or usable_cpus()
    progress = _bar(show_progress)
    with (
        progress,
        worker_pool(workers, len(files)) as pool,  # spawned: forking one with a pool is unsafe
        rt.pool.connection() as conn,
        stop_on_signal() as stop,
    ):
        task = progress.add_task("registering", total=len(files))
        futures = {pool.submit(prepare_file, str(f), rt.decode_limits): f for f in files}
        refused: str | None = None  # the data folder refused a write: nothing more is stored
        for fut in as_completed(futures):
            if stop.is_set():  # Ctrl-C: what is stored stays, the rest is left for a later run
                outcome.interrupted = True
                cancel_rest(futures)
                break
            path = futures[fut]
            if refused is not None:
                fut.cancel()
                outcome.rejected.append((str(path), f"not stored: {refused}"))
                progress.advance(task)
                continue
            try:
                item = fut.result()
            except ImageRejected as exc:
                outcome.rejected.append((str(path), str(exc)))
            except OSError as exc:
                outcome.rejected.append((str(path), f"cannot read: {exc.strerror or exc}"))
            except Exception as exc:  # one file that breaks the fingerprinting: the rest go on
                log.exception("registering %s failed", path)
                outcome.rejected.append(
                    (str(path), f"could not be processed: {type(exc).__name__}: {exc}")
                )
            else:
                try:
                    store_files(rt.blobs, rt.thumbnails, item)
                    art, created = insert(
                        conn, rt.registry, actor, artist_id, item, title, preferences
                    )
                except OSError as exc:  # a full or read-only data folder: stop storing
                    refused = f"the data folder refused a write ({exc.strerror or exc})"
                    outcome.rejected.append((str(path), f"not stored: {refused}"))
                else:
                    (outcome.created if created else outcome.duplicates).append(art)
            progress.advance(task)
    if outcome.created and not outcome.interrupted:
        try:
            outcome.disputes = check_against_others(
                rt, actor, [a.id for a in outcome.created], show_progress
            )
        except Exception as exc:  # the works are registered: say so, and how to check them
            log.warning("the new works were not checked against other artists' works: %s", exc)
            outcome.unchecked = True
    return outcome


def check_against_others(
    rt: Runtime, actor: str, artwork_ids: list[UUID], show_progress: bool = True
) -> list[dict]:
    """New works matched against the registry, as the API's registration does: a copy of
    another artist's work opens a dispute (`service.registry.disputes`). Loads the artwork
    index (from its snapshot) for it, and leaves a fresh snapshot behind."""
    from service.registry.disputes import open_disputes

    bank = rt.banks["artwork"]
    if bank.status().loaded:
        bank.catch_up()
    else:
        bank.load()
    progress = _bar(show_progress)
    with progress:
        task = progress.add_task("checking against other artists' works", total=len(artwork_ids))
        found = open_disputes(rt, actor, artwork_ids, lambda n: progress.advance(task, n))
    if bank.changes_since_snapshot:
        bank.snapshot()
    return found


def _bar(show: bool) -> Progress:
    """A progress bar with the count done and the time left (nothing shown unless ``show``)."""
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not show,
    )
