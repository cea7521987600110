"""Collecting stored files that no record names, beside writers that may reuse them."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import psycopg
import pytest

from service import storage_gc
from service.audit.log import verify
from service.storage_gc import CollectionBusy, collect, stores
from tests.support import auth, encode, photo_like

DAY = 86400.0


def _age(path: Path, seconds: float = 2 * DAY) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _age_all(root: Path) -> None:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            _age(Path(dirpath) / name)


def _register(client, make_key, seed: int) -> dict:
    h = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Mei Lin", "email": f"m{seed}@example.org"}, headers=h
    ).json()
    files = [("files", (f"{seed}.jpg", encode(photo_like(seed)), "image/jpeg"))]
    r = client.post(f"/v1/artists/{artist['id']}/artworks", files=files, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["artworks"][0]


def _collect(runtime, **kw):
    return collect(
        runtime.pool,
        runtime.audit,
        "test",
        stores(runtime.blobs.root, runtime.thumbnails.root),
        grace_seconds=kw.pop("grace_seconds", DAY),
        **kw,
    )


def _collected_entries(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT entry FROM audit_log WHERE kind = 'storage.collected' ORDER BY seq"
        ).fetchall()
    return [json.loads(bytes(r["entry"]))["data"] for r in rows]


@pytest.fixture
def stored(client, runtime, make_key):
    """A registered artwork (named blob and thumbnail), then, all two days old: an orphan blob
    and thumbnail, a temporary file of a write that died; and young: an orphan blob and a
    temporary file being written; and a file chopmark does not write."""
    art = _register(client, make_key, 901)
    orphan = runtime.blobs.put(b"bytes whose record never committed")
    runtime.thumbnails.put(orphan, b"a thumbnail of them")
    stale_tmp = runtime.blobs.path(orphan).with_name(f".{orphan}.4242.0123456789ab.tmp")
    stale_tmp.write_bytes(b"half a write")
    stranger = runtime.blobs.root / "README"
    stranger.write_text("someone's notes")
    _age_all(runtime.blobs.root)
    _age_all(runtime.thumbnails.root)
    young = runtime.blobs.put(b"bytes whose record is committing right now")
    young_tmp = runtime.blobs.path(young).with_name(f".{young}.4242.ba9876543210.tmp")
    young_tmp.write_bytes(b"a write in progress")
    return {
        "art": art,
        "orphan": orphan,
        "stale_tmp": stale_tmp,
        "stranger": stranger,
        "young": young,
        "young_tmp": young_tmp,
    }


def test_a_dry_run_counts_and_removes_nothing(runtime, stored):
    looked_through: list[int] = []
    reports = _collect(runtime, dry_run=True, on_part=lambda: looked_through.append(1))
    # progress comes once for each entry at the top of each store, the total the CLI shows
    targets = stores(runtime.blobs.root, runtime.thumbnails.root)
    assert len(looked_through) == sum(len(storage_gc.parts(s.root)) for s in targets) >= 4
    assert reports["blobs"].removed == [stored["orphan"]]
    assert reports["blobs"].removed_bytes == len(b"bytes whose record never committed")
    assert reports["blobs"].named == 1 and reports["blobs"].young == 1
    assert reports["blobs"].temporary_removed == 1 and reports["blobs"].unrecognised == 1
    assert reports["thumbnails"].removed == [stored["orphan"]]
    assert runtime.blobs.exists(stored["orphan"]) and stored["stale_tmp"].exists()
    assert runtime.thumbnails.path(stored["orphan"]).exists()
    assert _collected_entries(runtime) == []


def test_unnamed_old_files_go_and_everything_else_stays(client, runtime, make_key, stored):
    reports = _collect(runtime)
    orphan, art = stored["orphan"], stored["art"]
    assert reports["blobs"].removed == [orphan]
    assert reports["blobs"].removed_bytes == len(b"bytes whose record never committed")
    assert reports["thumbnails"].removed == [orphan]
    assert not runtime.blobs.exists(orphan) and not runtime.thumbnails.path(orphan).exists()
    assert not stored["stale_tmp"].exists()
    # what a record names, what is young, and what chopmark does not write: all still there
    assert runtime.blobs.exists(stored["young"]) and stored["young_tmp"].exists()
    assert stored["stranger"].exists()
    h = auth(make_key("registry"))
    image = client.get(f"/v1/artworks/{art['id']}/image", headers=h)
    assert image.status_code == 200 and hashlib.sha256(image.content).hexdigest() == art["sha256"]
    assert client.get(f"/v1/artworks/{art['id']}/thumbnail", headers=h).status_code == 200
    # every removal is in the audit log, which still verifies
    entries = _collected_entries(runtime)
    assert {(e["store"], tuple(e["sha256"])) for e in entries} == {
        ("blobs", (orphan,)),
        ("thumbnails", (orphan,)),
    }
    with runtime.pool.connection() as conn:
        assert verify(conn, runtime.audit.key).ok
    # a second collection finds nothing more
    again = _collect(runtime)
    assert again["blobs"].removed == [] and again["thumbnails"].removed == []


def test_a_file_reused_while_it_is_judged_is_put_back(runtime, stored, monkeypatch):
    data = b"bytes whose record never committed"
    judged = storage_gc.named

    def reused_meanwhile(conn, store, shas):
        answer = judged(conn, store, shas)  # nothing names it yet...
        runtime.blobs.put(data)  # ...then a new record's writer stores the same bytes
        return answer

    monkeypatch.setattr(storage_gc, "named", reused_meanwhile)
    reports = _collect(runtime)
    assert reports["blobs"].removed == []
    assert runtime.blobs.get(stored["orphan"]) == data
    assert not list(runtime.blobs.path(stored["orphan"]).parent.glob("*.collecting"))


def test_a_writer_after_the_file_was_set_aside_writes_it_again(runtime, stored):
    path = runtime.blobs.path(stored["orphan"])
    path.rename(path.with_name(f".{path.name}.collecting"))  # the collector holds it
    assert runtime.blobs.put(b"bytes whose record never committed") == stored["orphan"]
    assert path.read_bytes() == b"bytes whose record never committed"


def test_files_stay_when_the_audit_entry_cannot_be_written(runtime, stored, monkeypatch):
    def broken(*_args, **_kw):
        raise psycopg.OperationalError("the database went away")

    monkeypatch.setattr(runtime.audit, "append", broken)
    with pytest.raises(psycopg.OperationalError):
        _collect(runtime)
    assert runtime.blobs.exists(stored["orphan"])
    assert not list(runtime.blobs.path(stored["orphan"]).parent.glob("*.collecting"))


def test_a_file_left_aside_by_a_stopped_collection_is_put_back_and_judged(runtime, stored):
    named_path = runtime.blobs.path(stored["art"]["sha256"])
    orphan_path = runtime.blobs.path(stored["orphan"])
    for path in (named_path, orphan_path):
        path.rename(path.with_name(f".{path.name}.collecting"))
    reports = _collect(runtime)
    assert named_path.exists()  # named: back in place
    assert reports["blobs"].removed == [stored["orphan"]] and not orphan_path.exists()
    assert not list(runtime.blobs.root.rglob("*.collecting"))


def test_one_collection_at_a_time(runtime, stored):
    with psycopg.connect(runtime.settings.database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (storage_gc._LOCK_KEY,))
        with pytest.raises(CollectionBusy):
            _collect(runtime)
    assert runtime.blobs.exists(stored["orphan"])


def test_a_negative_grace_period_is_refused(runtime):
    with pytest.raises(ValueError, match="negative"):
        _collect(runtime, grace_seconds=-1)


def test_the_cli_reports_then_removes(cli, runtime, stored):
    dry = json.loads(cli("storage", "gc", "--dry-run", "--json", "--no-progress").stdout)
    assert dry["dry_run"] and dry["blobs"]["removed"] == 1 and dry["thumbnails"]["removed"] == 1
    assert runtime.blobs.exists(stored["orphan"])
    table = cli("storage", "gc", "--no-progress").stdout
    assert "removed" in table and "blobs" in table and "thumbnails" in table
    assert not runtime.blobs.exists(stored["orphan"]) and runtime.blobs.exists(stored["young"])
    entries = _collected_entries(runtime)
    assert entries and all(e["sha256"] == [stored["orphan"]] for e in entries)
    bad = cli("storage", "gc", "--older-than", "-1", ok=False)
    assert bad.returncode == 2 and "negative" in bad.stderr


def test_a_batch_upload_is_kept_until_its_item_is_checked(settings, runtime, make_key):
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.moderation.jobs import ModerationWorker

    runtime.settings.moderation_workers = 0  # no worker of the app's: items wait for this test's
    h = auth(make_key("moderate"))
    uploads = [encode(photo_like(seed)) for seed in (911, 912)]
    shas = [hashlib.sha256(data).hexdigest() for data in uploads]
    with TestClient(create_app(settings, runtime=runtime)) as client:
        files = [("files", (f"{i}.jpg", data, "image/jpeg")) for i, data in enumerate(uploads)]
        r = client.post("/v1/moderation/batch", files=files, headers=h)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        _age_all(runtime.blobs.root)
        assert _collect(runtime)["blobs"].removed == []  # queued: the worker still needs them
        worker = ModerationWorker(runtime)
        assert worker.process_item() is True  # the first item is checked
        assert _collect(runtime)["blobs"].removed == [shas[0]]
        assert runtime.blobs.exists(shas[1])
        assert worker.process_item() is True
        job = client.get(f"/v1/moderation/jobs/{job_id}", headers=h).json()
        assert job["status"] == "completed" and all(i["verdict"] for i in job["items"])
    assert _collect(runtime)["blobs"].removed == [shas[1]]
