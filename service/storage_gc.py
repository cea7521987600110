"""Collecting stored files that no record names.

Blobs are written before the record that names them commits, so a record that never commits
leaves its file behind: an insert that failed, a moderation batch refused by its idempotency
key, a process that died between the two. Thumbnails of such images stay too, and so does the
temporary file of a write that died half-way; and the uploads of a moderation batch are named
only until their item is checked. ``collect`` removes them.

It is safe beside running writers:

* only files older than ``grace`` are candidates, and storing bytes that are present already
  renews the file's modification time (``service.blobs.renew_if_present``), so a record about
  to commit keeps its file;
* a candidate that no record names is first renamed aside; if its modification time moved in
  the meantime (a writer reused it between the reference check and the rename) it is put back.
  A writer that comes after the rename finds no file and writes it again;
* removals are written to the audit log (kind ``storage.collected``, the SHA-256 of each
  file) before the files set aside are deleted; if that entry cannot be written they are put
  back;
* one collection runs at a time (a PostgreSQL advisory lock); a file that one which stopped
  half-way left aside is put back and judged again; directories are never removed, since a
  writer may have just made one.
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from service.audit.log import AuditLog

BATCH = 500
_LOCK_KEY = 0x63686F70_6763  # "chop" "gc"
_SHA = re.compile(r"^[0-9a-f]{64}$")
_TEMP = re.compile(r"^\..+\.\d+\.[0-9a-f]{12}\.tmp$")  # service.atomic_files.unique_temp
_ASIDE = ".collecting"  # a file set aside: ".<name>.collecting"


@dataclass(frozen=True)
class Reference:
    """Rows of ``table`` whose ``column`` names a stored file (only those where ``still``, an SQL
    condition, holds)."""

    table: str
    column: str = "sha256"
    still: str | None = None


@dataclass(frozen=True)
class Store:
    """A folder of content-addressed files, and the references that name them."""

    name: str
    root: Path
    suffix: str  # after the SHA-256 in a file's name
    references: tuple[Reference, ...]

    def sha_of(self, path: Path) -> str | None:
        name = path.name
        if not name.endswith(self.suffix):
            return None
        sha = name[: len(name) - len(self.suffix)] if self.suffix else name
        return sha if _SHA.match(sha) else None


# Every table column that names a stored file. A new kind of record that keeps bytes must be
# added here, or its files are collected as unnamed. The uploads of a moderation batch are needed
# until their item is checked; after that, as for a single check, only a check that kept its
# upload (its verdict is one the operator keeps, ``moderation_keep_uploads``) names it, and only
# for ``moderation_upload_days``: the platform user's picture is not kept for ever.
BLOB_REFERENCES = (
    Reference("artworks"),
    Reference("outputs"),
    Reference("adapters"),
    Reference("moderation_job_items", still="status = 'queued'"),
)
THUMBNAIL_REFERENCES = (Reference("artworks"), Reference("training_sources"))
DEFAULT_UPLOAD_DAYS = 90.0


def kept_uploads(days: float) -> Reference:
    """Moderation checks whose upload is kept, for ``days`` after the check."""
    if not (days > 0 and math.isfinite(days)):
        raise ValueError(f"days must be a number more than 0, not {days!r}")
    seconds = repr(float(days) * 86400)  # a float's repr is a valid SQL numeric literal
    return Reference(
        "moderation_checks",
        still=f"upload_kept AND created_at > now() - make_interval(secs => {seconds})",
    )


def stores(
    blob_root: Path, thumbnail_root: Path, upload_days: float = DEFAULT_UPLOAD_DAYS
) -> list[Store]:
    return [
        Store("blobs", blob_root, "", (*BLOB_REFERENCES, kept_uploads(upload_days))),
        Store("thumbnails", thumbnail_root, ".webp", THUMBNAIL_REFERENCES),
    ]


@dataclass
class StoreReport:
    """What a collection found in one store (``removed`` lists SHA-256s)."""

    files: int = 0
    named: int = 0
    young: int = 0
    removed: list[str] = field(default_factory=list)
    removed_bytes: int = 0
    temporary_removed: int = 0
    unrecognised: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "files": self.files,
            "named": self.named,
            "young": self.young,
            "removed": len(self.removed),
            "removed_bytes": self.removed_bytes,
            "temporary_removed": self.temporary_removed,
            "unrecognised": self.unrecognised,
        }


class CollectionBusy(RuntimeError):
    """Another process is collecting."""


def parts(root: Path) -> list[Path]:
    """The entries at the top of a store's folder: the units a collection reports progress in
    (a store shards its files into sub-folders, so this is a cheap count of the work)."""
    try:
        return sorted(root.iterdir())
    except FileNotFoundError:
        return []


def _files(part: Path) -> Iterator[Path]:
    if not part.is_dir():
        yield part
        return
    for dirpath, _dirs, names in os.walk(part):
        for name in names:
            yield Path(dirpath) / name


def named(conn: psycopg.Connection, store: Store, shas: list[str]) -> set[str]:
    """The SHA-256s among ``shas`` that some record names."""
    parts = [
        sql.SQL("SELECT {col} AS sha FROM {table} WHERE {col} = ANY(%s){still}").format(
            col=sql.Identifier(ref.column),
            table=sql.Identifier(ref.table),
            still=sql.SQL(f" AND ({ref.still})" if ref.still else ""),
        )
        for ref in store.references
    ]
    rows = conn.execute(sql.SQL(" UNION ").join(parts), [shas] * len(parts)).fetchall()
    return {r["sha"] for r in rows}


def _stat(path: Path) -> os.stat_result | None:
    try:
        return path.stat()
    except FileNotFoundError:
        return None


def _aside_path(path: Path) -> Path:
    return path.with_name(f".{path.name}{_ASIDE}")


def _set_aside(path: Path, cutoff: float) -> tuple[Path, int] | None:
    """Rename an old file aside; None when it is gone or a writer renewed it meanwhile."""
    aside = _aside_path(path)
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    st = aside.stat()
    if st.st_mtime >= cutoff:  # reused between the reference check and the rename
        os.replace(aside, path)  # the same content as anything written there since
        return None
    return aside, st.st_size


def collect(
    pool: ConnectionPool,
    audit: AuditLog,
    actor: str,
    targets: list[Store],
    *,
    grace_seconds: float,
    dry_run: bool = False,
    on_part: Callable[[], None] | None = None,
) -> dict[str, StoreReport]:
    """Remove files older than ``grace_seconds`` that no record names (see the module's
    docstring); with ``dry_run`` only count them. ``on_part`` is called once each entry of
    ``parts(store.root)`` has been looked through."""
    if not grace_seconds >= 0:  # NaN compares false with every age: nothing would be young
        raise ValueError("the grace period must be seconds, 0 or more: not negative, not NaN")
    with pool.connection() as lock_conn:
        got = lock_conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (_LOCK_KEY,)).fetchone()
        lock_conn.commit()
        if not got["got"]:
            raise CollectionBusy("another storage collection is running")
        try:
            return {
                store.name: _collect_store(
                    pool, audit, actor, store, time.time() - grace_seconds, dry_run, on_part
                )
                for store in targets
            }
        finally:
            lock_conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
            lock_conn.commit()


def _collect_store(
    pool: ConnectionPool,
    audit: AuditLog,
    actor: str,
    store: Store,
    cutoff: float,
    dry_run: bool,
    on_part: Callable[[], None] | None,
) -> StoreReport:
    report = StoreReport()
    batch: list[tuple[str, Path, int]] = []
    for part in parts(store.root):
        for path in _files(part):
            if path.name.startswith(".") and path.name.endswith(_ASIDE):
                # left by a collection that stopped half-way: back in place, then judged again
                path = path.with_name(path.name[1 : -len(_ASIDE)])
                os.replace(_aside_path(path), path)
            report.files += 1
            st = _stat(path)
            if st is None:
                continue  # removed meanwhile
            sha = store.sha_of(path)
            if sha is None:
                if not _TEMP.match(path.name):
                    report.unrecognised += 1
                elif st.st_mtime < cutoff:  # a write that died half-way
                    if not dry_run:
                        path.unlink(missing_ok=True)
                    report.temporary_removed += 1
            elif st.st_mtime >= cutoff:
                report.young += 1
            else:
                batch.append((sha, path, st.st_size))
                if len(batch) >= BATCH:
                    _collect_batch(pool, audit, actor, store, batch, cutoff, dry_run, report)
                    batch = []
        if on_part is not None:
            on_part()
    if batch:
        _collect_batch(pool, audit, actor, store, batch, cutoff, dry_run, report)
    return report


def _collect_batch(
    pool: ConnectionPool,
    audit: AuditLog,
    actor: str,
    store: Store,
    batch: list[tuple[str, Path, int]],
    cutoff: float,
    dry_run: bool,
    report: StoreReport,
) -> None:
    with pool.connection() as conn:
        keep = named(conn, store, [sha for sha, *_ in batch])
    report.named += sum(1 for sha, *_ in batch if sha in keep)
    unnamed = [(sha, path, size) for sha, path, size in batch if sha not in keep]
    if dry_run:
        for sha, _path, size in unnamed:
            report.removed.append(sha)
            report.removed_bytes += size
        return
    aside: list[tuple[str, Path, Path, int]] = []
    for sha, path, _size in unnamed:
        moved = _set_aside(path, cutoff)
        if moved is None:
            report.young += 1
        else:
            aside.append((sha, path, *moved))
    if not aside:
        return
    try:
        with pool.connection() as conn, conn.transaction():
            audit.append(
                conn,
                "storage.collected",
                actor,
                f"storage:{store.name}",
                {
                    "store": store.name,
                    "sha256": [sha for sha, *_ in aside],
                    "bytes": sum(size for *_, size in aside),
                    "reason": "no record names these files",
                },
            )
    except BaseException:
        for _sha, path, moved, _size in aside:
            os.replace(moved, path)
        raise
    for sha, _path, moved, size in aside:
        moved.unlink(missing_ok=True)
        report.removed.append(sha)
        report.removed_bytes += size
