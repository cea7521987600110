"""POST /v1/matches: edited copies of registered artworks are found, unrelated images are not."""

from __future__ import annotations

import io
import time

import numpy as np
from PIL import Image, ImageEnhance

from tests.service.test_registry_api import expire_licence
from tests.support import auth, encode, photo_like


def register(client, h, *seeds, email="m@example.org", preferences=None):
    artist = client.post(
        "/v1/artists", json={"display_name": "M", "email": email}, headers=h
    ).json()
    files = [("files", (f"{s}.jpg", encode(photo_like(s)), "image/jpeg")) for s in seeds]
    data = {"preferences": preferences} if preferences else {}
    r = client.post(f"/v1/artists/{artist['id']}/artworks", files=files, data=data, headers=h)
    assert r.status_code == 201, r.text
    return artist, r.json()["artworks"]


def query(client, h, image: Image.Image, **form):
    r = client.post(
        "/v1/matches",
        files={"file": ("q.jpg", encode(image, quality=60), "image/jpeg")},
        data=form,
        headers=h,
    )
    assert r.status_code == 200, r.text
    return r.json()


def edited(seed: int) -> Image.Image:
    """Crop to ~70% of the area, rotate 8 degrees, lower the brightness, re-encode."""
    img = photo_like(seed)
    w, h = img.size
    img = img.crop((int(w * 0.1), int(h * 0.08), int(w * 0.92), int(h * 0.93)))
    img = img.rotate(8, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0))
    return ImageEnhance.Brightness(img).enhance(0.8)


def test_edited_copy_is_found_with_evidence(client, make_key):
    h = auth(make_key("registry", "match"))
    artist, works = register(client, h, 101, 102, 103)
    body = query(client, h, edited(102))
    assert body["index"]["size"] == 3
    copies = [m for m in body["matches"] if m["decision"] == "copy"]
    assert [m["artwork_id"] for m in copies] == [works[1]["id"]]
    top = copies[0]
    assert top["artist_id"] == artist["id"]
    assert 0 < top["score"] <= 1
    assert top["evidence"], "a decision must say which signals fired"
    assert top["preferences"]["img2img"] == "deny"


def test_unrelated_image_is_not_a_copy(client, make_key):
    h = auth(make_key("registry", "match"))
    register(client, h, 111, 112)
    body = query(client, h, photo_like(999))
    assert not [m for m in body["matches"] if m["decision"] == "copy"]


def test_withdrawn_artwork_stops_matching(client, make_key):
    h = auth(make_key("registry", "match"))
    _, works = register(client, h, 121)
    assert query(client, h, photo_like(121))["matches"][0]["artwork_id"] == works[0]["id"]
    client.delete(f"/v1/artworks/{works[0]['id']}", headers=h)
    body = query(client, h, photo_like(121))
    assert body["matches"] == []
    assert body["index"]["size"] == 0


def test_licence_is_reported_for_the_named_user(client, make_key):
    h = auth(make_key("registry", "match"))
    _, works = register(client, h, 131)
    client.post(
        f"/v1/artworks/{works[0]['id']}/licenses",
        json={"grantee": "user-9", "scopes": ["img2img"]},
        headers=h,
    )
    assert query(client, h, photo_like(131), user="user-9")["matches"][0]["licensed"] is True
    assert query(client, h, photo_like(131), user="user-1")["matches"][0]["licensed"] is False


def test_only_a_licence_in_force_for_img2img_counts(client, runtime, make_key):
    h = auth(make_key("registry", "match"))
    _, works = register(client, h, 133)
    base = f"/v1/artworks/{works[0]['id']}/licenses"

    def grant(grantee: str, scopes: list[str], expires_at: str | None = None) -> dict:
        body = {"grantee": grantee, "scopes": scopes, "expires_at": expires_at}
        r = client.post(base, json=body, headers=h)
        assert r.status_code == 201, r.text
        return r.json()

    expire_licence(runtime, grant("user-expired", ["img2img"], "2999-01-01T00:00:00Z")["id"])
    revoked = grant("user-revoked", ["img2img"])
    assert client.delete(f"{base}/{revoked['id']}", headers=h).status_code == 200
    grant("user-style", ["style", "training"])
    expire_licence(runtime, grant("user-both", ["img2img"], "2999-01-01T00:00:00Z")["id"])
    grant("user-both", ["style", "img2img"], "2999-01-01T00:00:00Z")
    for user in ("user-expired", "user-revoked", "user-style"):
        top = query(client, h, photo_like(133), user=user)["matches"][0]
        assert top["artwork_id"] == works[0]["id"] and top["licensed"] is False, user
    assert query(client, h, photo_like(133), user="user-both")["matches"][0]["licensed"] is True


def test_match_decisions_are_audited(client, runtime, make_key):
    """With the platform user, what the artist allowed and the licence that applied: a reviewer
    can tell from the log alone why a use was licensed."""
    import json

    h = auth(make_key("registry", "match"))
    _, works = register(client, h, 141)
    query(client, h, edited(141))
    lic = client.post(
        f"/v1/artworks/{works[0]['id']}/licenses",
        json={"grantee": "alice", "scopes": ["img2img"]},
        headers=h,
    ).json()
    query(client, h, edited(141), user="alice")
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT subject, entry FROM audit_log WHERE kind = 'match.decided' ORDER BY seq"
        ).fetchall()
    first, second = (json.loads(bytes(r["entry"]))["data"] for r in rows)
    assert [r["subject"] for r in rows] == [f"artwork:{works[0]['id']}"] * 2
    assert first["user"] is None and first["matches"][0]["licence_id"] is None
    assert first["matches"][0]["artwork_id"] == works[0]["id"]
    assert first["matches"][0]["img2img"] == "deny"
    assert second["user"] == "alice" and second["matches"][0]["licence_id"] == lic["id"]


def test_a_second_process_sees_new_registrations_within_seconds(client, settings, make_key):
    """Another API process on the same database picks a registration up by polling."""
    from service.runtime import Runtime
    from similarity import compute_signals, decode_image

    other = Runtime.open(settings)
    other.load_indexes()
    other.start_refresher()
    try:
        h = auth(make_key("registry", "match"))
        _, works = register(client, h, 151)
        signals = compute_signals(decode_image(encode(photo_like(151))))
        deadline = time.monotonic() + 30  # returns as soon as it holds
        found = []
        while time.monotonic() < deadline and not found:
            found = [m for m in other.banks["artwork"].match(signals) if m.decision == "copy"]
            time.sleep(0.1)
        assert found, "the other process never saw the registration"
    finally:
        other.close()
    assert works


def red_pixels(region: Image.Image) -> int:
    arr = np.asarray(region.convert("RGB"), dtype=np.int16)
    return int(((arr[..., 0] > 170) & (arr[..., 1] < 70) & (arr[..., 2] < 70)).sum())


def test_the_match_can_be_looked_at(client, make_key):
    from similarity.picture import BACKGROUND, CAPTION, GAP, PANEL

    h = auth(make_key("registry", "match"))
    register(client, h, 121, 122)
    copy = edited(122)
    matches = query(client, h, copy)["matches"]
    r = client.post(
        "/v1/matches/picture",
        files={"file": ("q.jpg", encode(copy, quality=60), "image/jpeg")},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    rows = len(matches)
    assert rows >= 1
    assert picture.size == (2 * PANEL + 3 * GAP, GAP + rows * (PANEL + CAPTION + GAP))
    work_panel = picture.crop((2 * GAP + PANEL, GAP, 2 * GAP + 2 * PANEL, GAP + PANEL))
    assert red_pixels(work_panel) > 300  # the query's outline drawn onto the artwork (a copy)

    lone = client.post(
        "/v1/matches/picture",
        files={"file": ("q.jpg", encode(photo_like(998)), "image/jpeg")},
        headers=h,
    )
    assert lone.status_code == 200
    alone = Image.open(io.BytesIO(lone.content))
    assert alone.size[1] == GAP + PANEL + CAPTION + GAP
    empty = np.asarray(alone.convert("RGB").crop((2 * GAP + PANEL, 0, alone.width, alone.height)))
    assert (empty == BACKGROUND).all()  # no artwork beside the query


def test_a_traced_work_is_shown_with_the_strokes_over_it(client, make_key, tmp_path):
    from similarity.edits import EDITS_BY_NAME
    from similarity.picture import CAPTION, GAP, PANEL

    h = auth(make_key("registry", "match"))
    register(client, h, 131)
    edges = EDITS_BY_NAME["canny_control"].apply(photo_like(131), np.random.default_rng(0))
    data = encode(edges, "PNG")
    r = client.post("/v1/matches/picture", files={"file": ("e.png", data)}, headers=h)
    assert r.status_code == 200, r.text
    picture = Image.open(io.BytesIO(r.content)).convert("RGB")
    picture.save(tmp_path / "traced.png")
    assert picture.height == GAP + PANEL + CAPTION + GAP  # one row: the work
    panel = picture.crop((2 * GAP + PANEL, GAP, 2 * GAP + 2 * PANEL, GAP + PANEL))
    # the strokes, in the copy's red, lie over the work (photo_like has no such red itself)
    assert red_pixels(panel) > 2000
    plain = client.post("/v1/matches/picture",
                        files={"file": ("w.jpg", encode(photo_like(131)))}, headers=h)
    plain_panel = Image.open(io.BytesIO(plain.content)).convert("RGB").crop(
        (2 * GAP + PANEL, GAP, 2 * GAP + 2 * PANEL, GAP + PANEL))
    assert red_pixels(panel) > 5 * red_pixels(plain_panel)


def test_a_work_in_a_page_is_boxed_in_the_uploads_pixels_on_every_route(client, make_key):
    """Both routes decode a large page reduced (and the same way): the region of a work found
    inside it is the same box of the uploaded file on both."""
    from tests.similarity.test_embedded import iou, page_with

    h = auth(make_key("registry", "match", "moderate"))
    _, (work,) = register(client, h, 641)
    # a 3200 x 2000 page: both routes decode it reduced, by different factors
    page = encode(page_with(photo_like(641), (820, 300, 1460, 780)).resize((3200, 2000)))
    box = (1640, 600, 2920, 1560)
    regions = []
    for route in ("/v1/matches", "/v1/moderation/check"):
        r = client.post(route, files={"file": ("page.jpg", page, "image/jpeg")}, headers=h)
        assert r.status_code == 200, r.text
        matches = r.json()["matches"] if route == "/v1/matches" else r.json()["registry"]["matches"]
        (m,) = [m for m in matches if m["artwork_id"] == work["id"]]
        assert m["decision"] == "copy"
        regions.append(tuple(m["evidence"]["region"]))
    for region in regions:
        assert iou(region, box) > 0.8, regions


def test_the_same_large_upload_gets_the_same_registry_answer_from_matches_and_moderation(
    client, make_key
):
    """/v1/matches and moderation decode an upload the same way, so the same bytes are matched
    alike: the same works, decisions, scores and geometric evidence (a 2400 x 1600 photo with
    a registered work pasted into a quarter of it, and the work itself enlarged)."""
    h = auth(make_key("registry", "match", "moderate"))
    _, works = register(client, h, 651, 652)
    pasted = photo_like(653, (2400, 1600))
    pasted.paste(photo_like(651).resize((1200, 900)), (1000, 500))
    for picture in (pasted, photo_like(652).resize((2400, 1800))):
        data = encode(picture, quality=85)
        answers = []
        for route in ("/v1/matches", "/v1/moderation/check"):
            r = client.post(route, files={"file": ("q.jpg", data, "image/jpeg")}, headers=h)
            assert r.status_code == 200, r.text
            body = r.json()
            matches = body["matches"] if route == "/v1/matches" else body["registry"]["matches"]
            answers.append(
                [
                    (m["artwork_id"], m["decision"], m["score"], m["evidence"]["local_features"])
                    for m in matches
                ]
            )
        assert answers[0] == answers[1]
        assert answers[0] and answers[0][0][0] in {w["id"] for w in works}
