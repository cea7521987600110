"""Index snapshots on disk for a fast restart.

``<root>/<bank>/CURRENT`` names the live snapshot folder; a new snapshot is written to its own
folder and published by atomically replacing ``CURRENT``, so readers never see a half-written one
and several processes may snapshot the same bank.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from service.atomic_files import write_atomically
from similarity import SIGNALS_VERSION, MatchIndex
from similarity.dense_store import DenseStoreConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    bank: str
    change_seq: int
    size: int
    signals_version: str
    database_id: str
    created_at: float


def save_snapshot(root: Path, index: MatchIndex, checkpoint: Checkpoint) -> Path:
    bank_dir = root / checkpoint.bank
    bank_dir.mkdir(parents=True, exist_ok=True)
    folder = bank_dir / f"snap-{checkpoint.change_seq}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir()
    index.save(tmp)
    (tmp / "checkpoint.json").write_text(json.dumps(asdict(checkpoint)))
    tmp.rename(folder)
    write_atomically(bank_dir / "CURRENT", folder.name.encode())
    _prune(bank_dir, keep=folder.name)
    return folder


def load_snapshot(root: Path, bank: str) -> tuple[MatchIndex, Checkpoint] | None:
    """The latest snapshot of ``bank``, or None when there is none or it cannot be read (a
    damaged snapshot is only a lost cache: the caller rebuilds from the database)."""
    bank_dir = root / bank
    if not (bank_dir / "CURRENT").exists():
        return None
    try:
        name = (bank_dir / "CURRENT").read_text().strip()
        folder = bank_dir / name
        checkpoint = Checkpoint(**json.loads((folder / "checkpoint.json").read_text()))
        made_with = MatchIndex.snapshot_version(folder)
        if made_with != SIGNALS_VERSION:  # an upgrade: expected, not damage
            log.info(
                "not loading the %s index snapshot: made with signals %s, this release makes %s;"
                " building the index from the database",
                bank,
                made_with,
                SIGNALS_VERSION,
            )
            return None
        if not MatchIndex.snapshot_dense_config(folder).codes_like(DenseStoreConfig()):
            log.info(  # an upgrade too: asked before the index files are read
                "not loading the %s index snapshot: its approximate index codes vectors as an"
                " earlier release did (this release finds more copies among many works);"
                " building the index from the database",
                bank,
            )
            return None
        return MatchIndex.load(folder), checkpoint
    # Whatever a damaged file raises (faiss: RuntimeError; numpy on an empty file: EOFError;
    # a torn checkpoint: ValueError...), the database still holds everything.
    except Exception as exc:
        log.warning(
            "ignoring the %s index snapshot, it cannot be read: %s: %s",
            bank,
            type(exc).__name__,
            exc,
        )
        return None


def _prune(bank_dir: Path, keep: str) -> None:
    """Remove older snapshots (older than a minute, so a concurrent loader is not disturbed)."""
    cutoff = time.time() - 60
    for child in bank_dir.iterdir():
        try:
            old = child.is_dir() and child.name != keep and child.stat().st_mtime < cutoff
        except FileNotFoundError:  # renamed or pruned by another writer meanwhile
            continue
        if old:
            shutil.rmtree(child, ignore_errors=True)
