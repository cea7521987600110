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
from tests.support import all_at_once, auth


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


def test_a_damaged_snapshot_is_ignored_and_the_bank_rebuilt(runtime, client, make_key, photo):
    """A truncated index file is a lost cache, not a reason to refuse to start."""
    from service.indexing.bank import BankIndex

    h = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Su", "email": "su@example.org"}, headers=h
    ).json()
    r = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("w.jpg", photo(81), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 201
    bank = runtime.banks["artwork"]
    bank.snapshot()
    bank_dir = bank.snapshot_root / "artwork"
    damaged = [f for f in (bank_dir / (bank_dir / "CURRENT").read_text()).iterdir()]
    assert any(f.suffix == ".faiss" for f in damaged)
    for f in damaged:
        if f.suffix == ".faiss":
            f.write_bytes(f.read_bytes()[:100])
    fresh = BankIndex("artwork", runtime.pool, bank.snapshot_root)
    fresh.load()
    assert fresh.status().size == 1 and "database" in fresh.status().loaded_from


def test_every_kind_of_damage_to_a_snapshot_file_is_a_lost_cache(tmp_path: Path) -> None:
    """Each file emptied, zero-filled or cut in half (as a power loss may leave it): not raised,
    not loaded."""
    save_snapshot(tmp_path, _index(50, 3), _checkpoint(5, 50))
    folder = tmp_path / "artwork" / (tmp_path / "artwork" / "CURRENT").read_text()
    files = sorted(f.name for f in folder.iterdir())
    assert "ids.npy" in files and "checkpoint.json" in files
    for name in files:
        original = (folder / name).read_bytes()
        for damaged in (b"", bytes(len(original)), original[: len(original) // 2]):
            (folder / name).write_bytes(damaged)
            assert load_snapshot(tmp_path, "artwork") is None, (name, len(damaged))
        (folder / name).write_bytes(original)
    loaded = load_snapshot(tmp_path, "artwork")
    assert loaded is not None and len(loaded[0]) == 50
