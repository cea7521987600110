"""Index snapshots: published whole through CURRENT, loadable, and safe to write from several
threads at once."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np

from service.indexing.snapshots import Checkpoint, load_snapshot, save_snapshot
from similarity import MatchIndex
from similarity.dense import DIM
from tests.support import all_at_once


def _index(n: int, seed: int) -> MatchIndex:
    rng = np.random.default_rng(seed)
    views = rng.standard_normal((n, 3, DIM)).astype(np.float32)
    views /= np.linalg.norm(views, axis=-1, keepdims=True)
    index = MatchIndex()
    index.add_packed(np.arange(n) + 1, pdq=rng.integers(0, 256, (n, 32), dtype=np.uint8),
                     pdq_quality=np.full(n, 90), dense=views)
    return index


def _checkpoint(seq: int, size: int) -> Checkpoint:
    return Checkpoint("artwork", seq, size, "test", "db-1", time.time())


def test_a_saved_snapshot_loads_with_its_checkpoint(tmp_path: Path) -> None:
    assert load_snapshot(tmp_path, "artwork") is None
    save_snapshot(tmp_path, _index(30, 0), _checkpoint(7, 30))
    loaded = load_snapshot(tmp_path, "artwork")
    assert loaded is not None
    index, checkpoint = loaded
    assert len(index) == 30 and 1 in index and 30 in index
    assert checkpoint.change_seq == 7 and checkpoint.size == 30


def test_threads_snapshotting_the_same_change_each_publish_a_whole_snapshot(
    tmp_path: Path,
) -> None:
    errors: list[BaseException] = []
    indexes = {n: _index(n, n) for n in (20, 21, 22, 23)}
    for _ in range(5):
        _, failed = all_at_once(
            [partial(save_snapshot, tmp_path, ix, _checkpoint(9, n)) for n, ix in indexes.items()]
        )
        errors += failed
    assert not errors, errors
    loaded = load_snapshot(tmp_path, "artwork")
    assert loaded is not None
    index, checkpoint = loaded
    assert len(index) == checkpoint.size and checkpoint.size in indexes
    leftovers = [p.name for p in (tmp_path / "artwork").iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
