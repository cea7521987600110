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


def test_a_snapshot_of_another_signals_version_is_passed_over_as_an_upgrade(tmp_path, caplog):
    """Not a warning about damage: the index is built from the database, as after any upgrade."""
    import json
    import logging

    save_snapshot(tmp_path, _index(20, 4), _checkpoint(3, 20))
    folder = tmp_path / "artwork" / (tmp_path / "artwork" / "CURRENT").read_text()
    meta = json.loads((folder / "index.json").read_text())
    (folder / "index.json").write_text(json.dumps({**meta, "signals_version": "pdq0.hog0.orb0"}))
    with caplog.at_level(logging.INFO, logger="service.indexing.snapshots"):
        assert load_snapshot(tmp_path, "artwork") is None
    (record,) = [r for r in caplog.records if "snapshot" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "made with signals pdq0.hog0.orb0" in record.getMessage()
    assert "building the index from the database" in record.getMessage()


def test_a_snapshot_whose_codes_an_earlier_release_made_is_passed_over(
    runtime, client, make_key, photo, caplog
):
    """A snapshot written before the dense codes described offsets from the centroids (its
    configuration does not say `residual`) is not loaded: the bank is built from the database,
    and its new snapshot says how it codes."""
    import json
    import logging

    from service.indexing.bank import BankIndex

    bank = _one_work_snapshotted(runtime, client, make_key, photo(83))
    bank_dir = bank.snapshot_root / "artwork"
    folder = bank_dir / (bank_dir / "CURRENT").read_text()
    for name in ("index.json", "dense.json", "lines.json"):
        meta = json.loads((folder / name).read_text())
        for config in (meta.get("dense"), meta.get("config")):
            if config is not None:
                config.pop("residual")
        (folder / name).write_text(json.dumps(meta))
    assert MatchIndex.load(folder).config.dense.residual is False  # readable as it was

    fresh = BankIndex("artwork", runtime.pool, bank.snapshot_root)
    with caplog.at_level(logging.INFO, logger="service.indexing.snapshots"):
        fresh.load()
    assert fresh.status().size == 1 and "database" in fresh.status().loaded_from
    said = [r.getMessage() for r in caplog.records if "snapshot" in r.getMessage()]
    assert any("as an earlier release did" in m for m in said), said
    assert all(r.levelno == logging.INFO for r in caplog.records if "snapshot" in r.getMessage())
    now = bank_dir / (bank_dir / "CURRENT").read_text()
    assert json.loads((now / "index.json").read_text())["dense"]["residual"] is True


def test_banks_search_with_the_configured_effort_built_or_loaded(settings, runtime, photo):
    """CHOPMARK_INDEX_NPROBE reaches every bank; an index built from the database and one
    loaded from a snapshot saved with another effort both search with it."""
    from service.indexing.bank import BankIndex
    from service.runtime import Runtime

    rt = Runtime.open(settings.model_copy(update={"index_nprobe": 7}))
    try:
        assert {bank.nprobe for bank in rt.banks.values()} == {7}
    finally:
        rt.close()
    built = BankIndex("artwork", runtime.pool, settings.index_dir, nprobe=7)
    built.load()
    assert "database" in built.status().loaded_from
    assert built._index.config.dense.nprobe == built._index._dense.config.nprobe == 7
    built.snapshot()
    loaded = BankIndex("artwork", runtime.pool, settings.index_dir, nprobe=9)
    loaded.load()
    assert "snapshot" in loaded.status().loaded_from
    assert loaded._index.config.dense.nprobe == loaded._index._lines.config.nprobe == 9


def _register(client, h, artist: str, data: bytes) -> str:
    files = [("files", ("w.jpg", data, "image/jpeg"))]
    r = client.post(f"/v1/artists/{artist}/artworks", files=files, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["artworks"][0]["id"]


def _one_work_snapshotted(runtime, client, make_key, data: bytes):
    """The artwork bank after one work was registered and a snapshot of it written."""
    h = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Ivo", "email": "ivo@example.org"}, headers=h
    ).json()["id"]
    _register(client, h, artist, data)
    bank = runtime.banks["artwork"]
    bank.snapshot()
    return bank


def _matched(client, h, data: bytes) -> set[str]:
    r = client.post("/v1/matches", files={"file": ("q.jpg", data, "image/jpeg")}, headers=h)
    assert r.status_code == 200, r.text
    return {m["artwork_id"] for m in r.json()["matches"] if m["decision"] == "copy"}


def test_a_database_restored_to_an_earlier_point_is_indexed_anew(
    runtime, client, make_key, photo, caplog
):
    """A restore that lost the newest registration rewinds the change numbers: the running
    index drops the lost work and sees the works registered after the restore, although they
    reuse numbers it had already passed."""
    h = auth(make_key("registry", "match"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Ode", "email": "ode@example.org"}, headers=h
    ).json()["id"]
    kept = _register(client, h, artist, photo(91))
    with runtime.pool.connection() as conn:
        before = conn.execute("SELECT last_value FROM change_seq").fetchone()["last_value"]
    lost = _register(client, h, artist, photo(92))
    bank = runtime.banks["artwork"]
    bank.refresh()
    assert bank.status().size == 2 and _matched(client, h, photo(92)) == {lost}
    with caplog.at_level("WARNING", logger="service.indexing.bank"):
        with runtime.pool.connection() as conn:  # what the restore takes back
            fid = conn.execute(
                "DELETE FROM artworks WHERE id = %s RETURNING fingerprint_id", (lost,)
            ).fetchone()["fingerprint_id"]
            conn.execute("DELETE FROM fingerprints WHERE id = %s", (fid,))
            conn.execute("SELECT setval('change_seq', %s)", (before,))
        after = _register(client, h, artist, photo(93))  # numbered as the lost one was
        bank.refresh()  # (or the refresher, first)
    assert "rebuilding the artwork index" in caplog.text
    assert bank.status().size == 2
    assert _matched(client, h, photo(93)) == {after}
    assert _matched(client, h, photo(92)) == set()
    assert _matched(client, h, photo(91)) == {kept}


def test_an_index_of_another_timeline_is_not_trusted(runtime, client, make_key, photo, caplog):
    """A snapshot, or a running index, made before the database changed timeline (a
    point-in-time recovery or a failover) is rebuilt from the database."""
    import json

    from service.indexing.bank import BankIndex

    bank = _one_work_snapshotted(runtime, client, make_key, photo(94))
    system, timeline = bank._database_id.split(":")
    assert system and timeline.isdigit()

    bank_dir = bank.snapshot_root / "artwork"
    checkpoint = bank_dir / (bank_dir / "CURRENT").read_text() / "checkpoint.json"
    stored = json.loads(checkpoint.read_text())
    stored["database_id"] = f"{system}:{int(timeline) + 1}"
    checkpoint.write_text(json.dumps(stored))
    fresh = BankIndex("artwork", runtime.pool, bank.snapshot_root)
    fresh.load()
    assert "database" in fresh.status().loaded_from and fresh.status().size == 1

    checkpoint = bank_dir / (bank_dir / "CURRENT").read_text() / "checkpoint.json"  # rebuilt
    stored = json.loads(checkpoint.read_text())
    assert stored["database_id"] == f"{system}:{timeline}"
    stored["database_id"] = system  # as snapshots made before the timeline was recorded
    checkpoint.write_text(json.dumps(stored))
    older = BankIndex("artwork", runtime.pool, bank.snapshot_root)
    older.load()
    assert "snapshot" in older.status().loaded_from and older.status().size == 1

    bank._database_id = f"{system}:{int(timeline) + 5}"  # as if it ran before a failover
    with caplog.at_level("WARNING", logger="service.indexing.bank"):
        bank.refresh()
    assert "epoch changed" in caplog.text
    assert bank._database_id == f"{system}:{timeline}" and bank.status().size == 1
