"""Fingerprints of an older signals version: reported by /readyz, left out of matching, and
recomputed from the kept bytes by `chopmark fingerprints refresh` (sources: by adding them
again)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import ImageEnhance

from service.audit.log import lock_for_change
from similarity import SIGNALS_VERSION, compute_signals, decode_image
from similarity.edits import EDITS_BY_NAME
from similarity.local import LocalFeatures
from tests.support import auth, encode, photo_like

OLD = "pdq0.hog0.orb0"


def _age_every_fingerprint(runtime) -> None:
    """Make every stored fingerprint look as if an older release had written it."""
    with runtime.pool.connection() as conn, conn.transaction():
        lock_for_change(conn)
        conn.execute(
            "UPDATE fingerprints SET signals_version = %s, pdq = %s,"
            " change_seq = nextval('change_seq')",
            (OLD, bytes(32)),
        )
    for bank in runtime.banks.values():
        bank.refresh()


def _register_one(client, headers, work) -> str:
    """A new artist with `work` registered; the artwork's id."""
    artist = client.post("/v1/artists", json={"display_name": "Ana", "email": "a@example.org"},
                         headers=headers).json()["id"]
    r = client.post(f"/v1/artists/{artist}/artworks",
                    files=[("files", ("w.jpg", encode(work), "image/jpeg"))], headers=headers)
    assert r.status_code == 201, r.text
    return r.json()["artworks"][0]["id"]


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CHOPMARK_DATABASE_URL": settings.database_url,
           "CHOPMARK_DATA_DIR": str(settings.data_dir), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "service.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_stale_fingerprints_are_reported_and_refreshed(client, runtime, settings, make_key):
    reg, admin = auth(make_key("registry")), auth(make_key("admin"))
    stamper = auth(make_key("stamp"))
    work = photo_like(811, (640, 480))
    artwork = _register_one(client, reg, work)
    source_file = [("files", ("s.png", encode(photo_like(812, (512, 384)), "PNG"), "image/png"))]
    assert client.post("/v1/sources", data={"dataset": "set-a"}, files=source_file,
                       headers=admin).status_code == 201
    meta = {"generator": "chopmark-test", "generator_version": "1", "model_name": "m",
            "model_hash": "ab" * 32, "prompt": "p", "seed": 1}
    stamped = client.post("/v1/stamps", headers=stamper, data={"metadata": json.dumps(meta)},
                          files={"file": ("g.png", encode(photo_like(813), "PNG"), "image/png")})
    assert stamped.status_code == 201, stamped.text
    edited = encode(ImageEnhance.Contrast(work.crop((40, 30, 600, 450))).enhance(1.2))

    def artwork_matches() -> list[str]:
        found = runtime.banks["artwork"].match(compute_signals(decode_image(edited)))
        return [m.decision for m in found]

    assert artwork_matches() == ["copy"]
    _age_every_fingerprint(runtime)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    reasons = " ".join(ready.json()["reasons"])
    assert "artwork index: 1 rows need re-fingerprinting" in reasons
    assert "source index: 1 rows" in reasons and "output index: 1 rows" in reasons
    assert artwork_matches() == []  # old rows stay out of the index

    before = _cli(settings, "fingerprints", "status")
    assert before.returncode == 0, before.stderr
    assert OLD in before.stdout and SIGNALS_VERSION in before.stdout

    done = _cli(settings, "fingerprints", "refresh", "--workers", "1", "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "refreshed 1 artwork fingerprint(s)" in done.stdout
    assert "refreshed 1 output fingerprint(s)" in done.stdout
    assert "1 source fingerprint(s) keep no original bytes" in done.stderr
    again = _cli(settings, "fingerprints", "refresh", "--no-progress")
    assert "refreshed" not in again.stdout  # only the source is left, and it has no bytes

    # a source is refreshed by adding the same image to its dataset again
    dup = client.post("/v1/sources", data={"dataset": "set-a"}, files=source_file, headers=admin)
    assert dup.json()["sources"][0]["duplicate"] is True
    for bank in runtime.banks.values():
        bank.refresh()
    assert client.get("/readyz").status_code == 200
    assert artwork_matches() == ["copy"]
    with runtime.pool.connection() as conn:
        versions = {r["signals_version"] for r in conn.execute(
            "SELECT signals_version FROM fingerprints")}
        refreshed = conn.execute(
            "SELECT subject FROM audit_log WHERE kind = 'fingerprint.refreshed' ORDER BY seq"
        ).fetchall()
    assert versions == {SIGNALS_VERSION}
    assert sorted(r["subject"].split(":")[0] for r in refreshed) == ["artwork", "output", "source"]
    assert f"artwork:{artwork}" in [r["subject"] for r in refreshed]
    verified = _cli(settings, "audit", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_rows_without_edge_maps_still_match_and_refresh_gives_them_one(
    client, runtime, settings, make_key
):
    """Rows of the version before edge maps (`pdq2.hog2.orb2`): still matched by every other
    signal, not by a line drawing; `fingerprints refresh` makes them whole."""
    h = auth(make_key("registry", "match"))
    work = photo_like(821, (640, 480))
    artwork = _register_one(client, h, work)
    with runtime.pool.connection() as conn, conn.transaction():
        lock_for_change(conn)
        row = conn.execute(
            "SELECT id, dense, local_features FROM fingerprints WHERE bank = 'artwork'"
        ).fetchone()
        conn.execute(  # as the version before wrote it: six dense rows, no edge map
            "UPDATE fingerprints SET signals_version = 'pdq2.hog2.orb2', dense = %s,"
            " local_features = %s,"
            " change_seq = nextval('change_seq') WHERE id = %s",
            (bytes(row["dense"])[: 6 * 128 * 2],
             LocalFeatures.unpack(bytes(row["local_features"])).pack(), row["id"]),
        )
    runtime.banks["artwork"].refresh()

    def matched(data: bytes) -> list[tuple[str, str]]:
        r = client.post("/v1/matches", files={"file": ("q.png", data)}, headers=h)
        assert r.status_code == 200, r.text
        return [(m["artwork_id"], m["decision"]) for m in r.json()["matches"]]

    def compared_versions(data: bytes) -> tuple[str, str]:
        """The query's signals version and the matched row's, as the evidence names them."""
        r = client.post("/v1/matches", files={"file": ("q.png", data)}, headers=h)
        evidence = r.json()["matches"][0]["evidence"]
        return evidence["signals_version"], evidence["stored_signals_version"]

    edges = encode(EDITS_BY_NAME["canny_control"].apply(work, _rng()), "PNG")
    edited = encode(ImageEnhance.Contrast(work.crop((40, 30, 600, 450))).enhance(1.2))
    assert client.get("/readyz").status_code == 200  # nothing is missing from the index
    assert matched(edited) == [(artwork, "copy")]
    assert compared_versions(edited) == (SIGNALS_VERSION, "pdq2.hog2.orb2")
    assert matched(edges) == []

    status = _cli(settings, "fingerprints", "status")
    assert "matched, not by line drawings" in status.stdout, status.stdout
    done = _cli(settings, "fingerprints", "refresh", "--workers", "1", "--no-progress")
    assert "refreshed 1 artwork fingerprint(s)" in done.stdout, done.stdout + done.stderr
    runtime.banks["artwork"].refresh()
    assert matched(edges) == [(artwork, "copy")]
    assert matched(edited) == [(artwork, "copy")]
    assert compared_versions(edited) == (SIGNALS_VERSION, SIGNALS_VERSION)


def _rng():
    return np.random.default_rng(0)


def test_a_withdrawn_work_registered_again_takes_the_fingerprints_of_this_release(
    client, runtime, make_key
):
    """A withdrawn row is not refreshed; registering the same bytes again brings it back with
    the fingerprints just computed, not the old ones."""
    h = auth(make_key("registry", "match"))
    work = photo_like(831, (640, 480))
    artwork = _register_one(client, h, work)
    with runtime.pool.connection() as conn, conn.transaction():
        lock_for_change(conn)
        conn.execute(
            "UPDATE fingerprints SET signals_version = %s, pdq = %s,"
            " change_seq = nextval('change_seq') WHERE subject_id = %s",
            (OLD, bytes(32), artwork),
        )
    assert client.delete(f"/v1/artworks/{artwork}", headers=h).status_code in (200, 204)
    artist = client.get(f"/v1/artworks/{artwork}", headers=h).json()["artist_id"]
    again = client.post(f"/v1/artists/{artist}/artworks",
                        files=[("files", ("w.jpg", encode(work), "image/jpeg"))], headers=h)
    assert again.status_code == 201, again.text
    assert again.json()["artworks"][0]["id"] == artwork
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT signals_version, active FROM fingerprints WHERE subject_id = %s",
                           (artwork,)).fetchone()
    assert (row["signals_version"], row["active"]) == (SIGNALS_VERSION, True)
    runtime.banks["artwork"].refresh()
    assert client.get("/readyz").status_code == 200
    edges = encode(EDITS_BY_NAME["canny_control"].apply(work, _rng()), "PNG")
    r = client.post("/v1/matches", files={"file": ("e.png", edges)}, headers=h)
    assert [(m["artwork_id"], m["decision"]) for m in r.json()["matches"]] == [(artwork, "copy")]


def _register_many(client, headers, count: int) -> None:
    artist = client.post("/v1/artists", json={"display_name": "Bo", "email": "b@example.org"},
                         headers=headers).json()["id"]
    for start in range(0, count, 100):  # at most 100 files a request
        files = [("files", (f"w{i}.jpg", encode(photo_like(900 + i, (320, 240))), "image/jpeg"))
                 for i in range(start, min(count, start + 100))]
        r = client.post(f"/v1/artists/{artist}/artworks", files=files, headers=headers)
        assert r.status_code == 201 and len(r.json()["artworks"]) == len(files), r.text


def _refreshed_in_log(runtime) -> int:
    with runtime.pool.connection() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE kind = 'fingerprint.refreshed'"
        ).fetchone()
    return int(row["n"])


def test_rows_another_run_refreshed_meanwhile_are_counted_not_redone(
    client, runtime, make_key
):
    from service.indexing.refingerprint import refresh_stale, stale_rows

    _register_many(client, auth(make_key("registry")), 3)
    _age_every_fingerprint(runtime)
    with runtime.pool.connection() as conn:
        listed = stale_rows(conn)  # what a second run listed before the first one stored them
        first = refresh_stale(conn, runtime.audit, runtime.blobs, "test", rows=listed)
        second = refresh_stale(conn, runtime.audit, runtime.blobs, "test", rows=listed)
    assert first.refreshed == {"artwork": 3} and first.changed_meanwhile == {}
    assert second.refreshed == {} and second.changed_meanwhile == {"artwork": 3}
    assert not first.interrupted and not second.interrupted
    assert _refreshed_in_log(runtime) == 3  # each row refreshed and audited once
