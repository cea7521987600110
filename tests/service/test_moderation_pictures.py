"""The picture of a recorded check, from its kept upload (GET /v1/moderation/checks/{id}/picture
and ``chopmark checks picture``): uploads are kept for the verdicts the operator names, for as
many days as it says, and collected after that."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

from PIL import Image

from service.storage_gc import collect, stores
from tests.service.test_moderation import edited, moderate, register, stamp, wait_job
from tests.support import auth, encode, photo_like


def picture_of(client, h, check_id: str):
    return client.get(f"/v1/moderation/checks/{check_id}/picture", headers=h)


def band_lines(png: bytes, colour: tuple[int, int, int]) -> int:
    """The verdict band's height in pixels (rows painted in the verdict's colour at the left)."""
    from tests.service.test_moderation import _band_height

    return _band_height(Image.open(io.BytesIO(png)), colour)


def test_a_blocked_checks_picture_later_is_the_one_drawn_when_it_was_checked(
    mclient, runtime, make_key
):
    from service.moderation.picture import VERDICT_COLOURS

    staff = auth(make_key("registry"))
    register(mclient, staff, 7301)
    a, b = auth(make_key("moderate")), auth(make_key("moderate"))
    admin = auth(make_key("admin"))
    query = edited(7301)
    r = mclient.post("/v1/moderation/check/picture", files={"file": ("q.jpg", query)}, headers=a)
    assert r.status_code == 200, r.text
    check_id, live = r.headers["X-Check-Id"], r.content
    check = mclient.get(f"/v1/moderation/checks/{check_id}", headers=a).json()
    assert check["verdict"] == "block" and check["upload_kept"] is True
    assert runtime.blobs.get(check["sha256"]) == query, "the upload's very bytes are kept"

    later = picture_of(mclient, a, check_id)
    assert later.status_code == 200 and later.headers["content-type"] == "image/png"
    assert later.content == live, "drawn from the stored report: the same picture as then"
    assert picture_of(mclient, admin, check_id).content == live
    refused = picture_of(mclient, b, check_id)
    assert refused.status_code == 404 and check_id in refused.json()["detail"]

    # A person's decision since is in the band: one line more, the rest as before.
    r = mclient.post(
        f"/v1/moderation/checks/{check_id}/reviews",
        json={"decision": "allow", "reviewer": "Ana", "note": "the artist's own account"},
        headers=a,
    )
    assert r.status_code == 201, r.text
    reviewed = picture_of(mclient, a, check_id).content
    colour = VERDICT_COLOURS["block"]
    assert band_lines(reviewed, colour) > band_lines(live, colour)
    grown = band_lines(reviewed, colour) - band_lines(live, colour)
    assert Image.open(io.BytesIO(reviewed)).height == Image.open(io.BytesIO(live)).height + grown


def test_our_stripped_output_in_the_review_queue_is_shown_beside_our_output(mclient, make_key):
    from service.moderation.picture import VERDICT_COLOURS
    from similarity.picture import CAPTION, GAP, PANEL

    staff = auth(make_key("stamp"))
    _, signed = stamp(mclient, staff, photo_like(7311))
    stripped = encode(Image.open(io.BytesIO(signed)).convert("RGB"), quality=92)
    h = auth(make_key("moderate"))
    res = moderate(mclient, h, stripped)
    assert res["verdict"] == "review" and res["upload_kept"] is True
    (ours,) = res["provenance"]["outputs"]
    assert ours["decision"] == "copy" and ours["sha256"] and ours["evidence"]
    r = picture_of(mclient, h, res["id"])
    assert r.status_code == 200, r.text
    picture = Image.open(io.BytesIO(r.content))
    band = band_lines(r.content, VERDICT_COLOURS["review"])
    assert picture.height == band + GAP + PANEL + CAPTION + GAP, "one row: beside our output"
    assert picture.width == 2 * PANEL + 3 * GAP


def test_an_allowed_checks_upload_is_not_kept_and_says_why(mclient, runtime, make_key):
    h = auth(make_key("moderate"))
    data = encode(photo_like(7321))
    res = moderate(mclient, h, data)
    assert res["verdict"] == "allow" and res["upload_kept"] is False
    assert not runtime.blobs.exists(hashlib.sha256(data).hexdigest())
    r = picture_of(mclient, h, res["id"])
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "not kept" in detail and "review, block" in detail and "(this check: allow)" in detail
    r = picture_of(mclient, h, "00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404 and "no moderation check" in r.json()["detail"]
    with runtime.pool.connection() as conn:
        entry = conn.execute(
            "SELECT entry FROM audit_log WHERE kind = 'moderation.checked' AND subject = %s",
            (f"moderation:{res['id']}",),
        ).fetchone()
    assert json.loads(bytes(entry["entry"]))["data"]["upload_kept"] is False


def test_the_operator_chooses_which_verdicts_keep_their_upload(
    mclient, runtime, make_key, monkeypatch
):
    staff = auth(make_key("registry"))
    register(mclient, staff, 7331)
    h = auth(make_key("moderate"))
    monkeypatch.setattr(runtime.settings, "moderation_keep_uploads", [])
    blocked = moderate(mclient, h, edited(7331))
    assert blocked["verdict"] == "block" and blocked["upload_kept"] is False
    assert not runtime.blobs.exists(blocked["sha256"])
    r = picture_of(mclient, h, blocked["id"])
    assert r.status_code == 404 and "(none)" in r.json()["detail"]
    monkeypatch.setattr(runtime.settings, "moderation_keep_uploads", ["allow"])
    allowed = moderate(mclient, h, encode(photo_like(7332)))
    assert allowed["upload_kept"] is True and runtime.blobs.exists(allowed["sha256"])
    assert picture_of(mclient, h, allowed["id"]).status_code == 200


def _collect(runtime, days: float) -> list[str]:
    targets = stores(runtime.blobs.root, runtime.thumbnails.root, days)
    reports = collect(runtime.pool, runtime.audit, "test", targets, grace_seconds=0)
    return reports["blobs"].removed


def test_kept_uploads_of_a_batch_stay_for_the_days_set_then_go(mclient, runtime, make_key):
    staff = auth(make_key("registry"))
    register(mclient, staff, 7341)
    h = auth(make_key("moderate"))
    copy, photo = edited(7341), encode(photo_like(7342))
    files = [("files", ("copy.jpg", copy, "image/jpeg")), ("files", ("p.jpg", photo, "image/jpeg"))]
    r = mclient.post("/v1/moderation/batch", files=files, headers=h)
    assert r.status_code == 202, r.text
    job, _ = wait_job(mclient, h, r.json()["id"])
    verdicts = [item["verdict"] for item in job["items"]]
    assert verdicts == ["block", "allow"], job
    kept, gone = (hashlib.sha256(d).hexdigest() for d in (copy, photo))
    assert _collect(runtime, 90) == [gone], "the allowed item's upload goes once it is checked"
    blocked_id = job["items"][0]["check_id"]
    assert picture_of(mclient, h, blocked_id).status_code == 200
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE moderation_checks SET created_at = now() - interval '3 days' WHERE id = %s",
            (blocked_id,),
        )
    assert _collect(runtime, 4) == [], "kept: younger than four days"
    assert _collect(runtime, 2) == [kept], "older than two days: collected"
    r = picture_of(mclient, h, blocked_id)
    assert r.status_code == 404 and "not kept" in r.json()["detail"]
    assert mclient.get(f"/v1/moderation/checks/{blocked_id}", headers=h).json()["verdict"] == (
        "block"
    ), "the check itself stays"


def test_checks_picture_and_show_commands(mclient, make_key, cli, tmp_path: Path):
    staff = auth(make_key("registry"))
    register(mclient, staff, 7351)
    h = auth(make_key("moderate"))
    blocked = moderate(mclient, h, edited(7351))
    allowed = moderate(mclient, h, encode(photo_like(7352)))
    out = tmp_path / "check.png"
    done = cli("checks", "picture", blocked["id"], "-o", str(out))
    assert str(out) in done.stdout
    assert out.read_bytes() == picture_of(mclient, h, blocked["id"]).content
    refused = cli("checks", "picture", allowed["id"], "-o", str(tmp_path / "x.png"), ok=False)
    assert refused.returncode == 2 and "not kept" in refused.stderr
    assert not (tmp_path / "x.png").exists()
    shown = json.loads(cli("checks", "show", blocked["id"]).stdout)
    assert shown["verdict"] == "block" and shown["sha256"] == blocked["sha256"]
    assert shown["reviews"] == []
    missing = cli("checks", "show", "00000000-0000-0000-0000-000000000000", ok=False)
    assert missing.returncode == 2 and "no moderation check" in missing.stderr


def test_a_full_disk_costs_the_picture_not_the_check(mclient, runtime, make_key, monkeypatch):
    import errno

    staff = auth(make_key("registry"))
    register(mclient, staff, 7361)
    h = auth(make_key("moderate"))

    def full(data: bytes, sha256: str | None = None) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runtime.blobs, "put", full)
    res = moderate(mclient, h, edited(7361))
    assert res["verdict"] == "block" and res["upload_kept"] is False
    stored = mclient.get(f"/v1/moderation/checks/{res['id']}", headers=h).json()
    assert stored["upload_kept"] is False and stored["verdict"] == "block"
    assert picture_of(mclient, h, res["id"]).status_code == 404
