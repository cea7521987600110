"""Artists, artworks, preferences and licences through the HTTP API."""

from __future__ import annotations

import hashlib
import io
import json

from PIL import Image

from tests.support import auth, encode, photo_like


def new_artist(client, headers, email="mei@example.org", **extra):
    r = client.post(
        "/v1/artists", json={"display_name": "Mei Lin", "email": email, **extra}, headers=headers
    )
    assert r.status_code == 201, r.text
    return r.json()


def upload(client, headers, artist_id, *blobs, **form):
    files = [("files", (f"work{i}.jpg", b, "image/jpeg")) for i, b in enumerate(blobs)]
    return client.post(f"/v1/artists/{artist_id}/artworks", files=files, data=form, headers=headers)


def test_artist_create_and_read(client, make_key):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    got = client.get(f"/v1/artists/{artist['id']}", headers=h).json()
    assert got["display_name"] == "Mei Lin" and got["email"] == "mei@example.org"
    # the same email twice is a conflict, a bad email a validation error
    assert (
        client.post(
            "/v1/artists", json={"display_name": "x", "email": "MEI@example.org"}, headers=h
        ).status_code
        == 409
    )
    assert (
        client.post(
            "/v1/artists", json={"display_name": "x", "email": "nope"}, headers=h
        ).status_code
        == 422
    )
    assert (
        client.get("/v1/artists/6f1c1c2e-0000-4000-8000-000000000000", headers=h).status_code == 404
    )
    blank = {"display_name": "  ", "email": "b@example.org"}
    assert client.post("/v1/artists", json=blank, headers=h).status_code == 422
    trimmed = new_artist(client, h, email="ana@example.org", display_name="  Ana Souza ")
    assert trimmed["display_name"] == "Ana Souza"


def test_register_several_files_dedupe_and_keep_originals(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    a, b = photo(1), photo(2)
    r = upload(client, h, artist["id"], a, b, title="Harbour", preferences='{"img2img": "deny"}')
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["rejected"] == []
    works = body["artworks"]
    assert [w["sha256"] for w in works] == [hashlib.sha256(x).hexdigest() for x in (a, b)]
    assert all(not w["duplicate"] and w["title"] == "Harbour" for w in works)
    assert works[0]["width"] == 640 and works[0]["height"] == 480
    # the same bytes again return the existing artwork
    again = upload(client, h, artist["id"], a).json()["artworks"][0]
    assert again["id"] == works[0]["id"] and again["duplicate"] is True
    # originals and thumbnails are kept
    img = client.get(works[0]["image_url"], headers=h)
    assert img.status_code == 200 and img.content == a
    thumb = client.get(works[0]["thumbnail_url"], headers=h)
    assert thumb.headers["content-type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) == 256


def test_preferences_resolve_artwork_then_artist_then_deny(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h, default_preferences={"style": "allow"})
    w = upload(client, h, artist["id"], photo(3), preferences='{"training": "allow"}').json()
    work = w["artworks"][0]
    assert work["preferences"] == {"training": "allow"}
    assert work["effective_preferences"] == {
        "img2img": "deny",
        "style": "allow",
        "training": "allow",
    }
    r = client.patch(
        f"/v1/artworks/{work['id']}",
        json={"title": "New", "preferences": {"img2img": "allow"}},
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["title"] == "New"
    assert r.json()["effective_preferences"]["img2img"] == "allow"
    r = client.patch(
        f"/v1/artists/{artist['id']}", json={"default_preferences": {"style": "deny"}}, headers=h
    )
    assert r.status_code == 200
    got = client.get(f"/v1/artworks/{work['id']}", headers=h).json()
    assert got["effective_preferences"] == {
        "img2img": "allow",
        "style": "deny",
        "training": "allow",
    }
    bad = client.patch(
        f"/v1/artworks/{work['id']}", json={"preferences": {"img2img": "maybe"}}, headers=h
    )
    assert bad.status_code == 422


def test_an_artists_name_and_address_change_all_or_nothing_and_audited(client, runtime, make_key):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    other = new_artist(client, h, email="ana@example.org")
    url = f"/v1/artists/{artist['id']}"

    def entries() -> list[dict]:
        with runtime.pool.connection() as conn:
            rows = conn.execute(
                "SELECT convert_from(entry, 'UTF8')::jsonb -> 'data' AS data FROM audit_log"
                " WHERE kind = 'artist.profile_changed' AND subject = %s ORDER BY seq",
                (f"artist:{artist['id']}",),
            ).fetchall()
        return [r["data"] for r in rows]

    r = client.patch(url, json={"display_name": "  Mei L.  "}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["display_name"] == "Mei L." and r.json()["email"] == "mei@example.org"
    assert entries() == [
        {"before": {"display_name": "Mei Lin"}, "display_name": "Mei L.", "email_changed": False}
    ]
    # Another artist's address (in any case): 409, and the name sent beside it is not taken
    # either, nor the preferences.
    r = client.patch(
        url,
        json={
            "display_name": "Someone",
            "email": "ANA@example.org",
            "default_preferences": {"style": "allow"},
        },
        headers=h,
    )
    assert r.status_code == 409 and "already registered" in r.json()["detail"]
    now = client.get(url, headers=h).json()
    assert now["display_name"] == "Mei L." and now["default_preferences"] == {}
    assert len(entries()) == 1
    # A new address and preferences together; the address is not written into the log.
    both = {"email": "mei.l@example.org", "default_preferences": {"style": "allow"}}
    r = client.patch(url, json=both, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["email"] == "mei.l@example.org"
    assert r.json()["default_preferences"] == {"style": "allow"}
    assert entries()[-1] == {"email_changed": True}
    assert "mei.l@example.org" not in json.dumps(entries())
    # The old address is free again; the same values again change and log nothing.
    assert new_artist(client, h, email="mei@example.org")["email"] == "mei@example.org"
    r = client.patch(url, json={"display_name": "Mei L.", "email": "mei.l@example.org"}, headers=h)
    assert r.status_code == 200 and len(entries()) == 2
    # Bad input: nothing to change, a blank name, a malformed address, an unknown field.
    for body in ({}, {"display_name": "   "}, {"email": "not an address"}, {"name": "x"}):
        r = client.patch(url, json=body, headers=h)
        assert r.status_code == 422, body
    assert client.patch(
        "/v1/artists/00000000-0000-0000-0000-000000000000", json={"display_name": "X"}, headers=h
    ).status_code == 404
    assert client.get(f"/v1/artists/{other['id']}", headers=h).json()["display_name"] == "Mei Lin"
    assert len(entries()) == 2


def test_listing_is_paginated_and_withdrawal_keeps_the_record(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    ids = [
        w["id"]
        for w in upload(client, h, artist["id"], *(photo(10 + i) for i in range(5))).json()[
            "artworks"
        ]
    ]
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/artists/{artist['id']}/artworks", params=params, headers=h).json()
        seen += [w["id"] for w in page["artworks"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    r = client.delete(f"/v1/artworks/{ids[0]}", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    assert client.get(f"/v1/artworks/{ids[0]}", headers=h).json()["status"] == "withdrawn"
    listed = client.get(f"/v1/artists/{artist['id']}/artworks", headers=h).json()["artworks"]
    assert ids[0] not in [w["id"] for w in listed]
    listed = client.get(
        f"/v1/artists/{artist['id']}/artworks", params={"include_withdrawn": "true"}, headers=h
    ).json()["artworks"]
    assert ids[0] in [w["id"] for w in listed]


def expire_licence(runtime, licence_id: str) -> None:
    """Time passes for one licence: its end moves into the past."""
    with runtime.pool.connection() as conn:
        conn.execute(
            "UPDATE licenses SET expires_at = now() - interval '1 minute' WHERE id = %s",
            (licence_id,),
        )


def test_licences_grant_list_revoke(client, runtime, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    work = upload(client, h, artist["id"], photo(4)).json()["artworks"][0]
    base = f"/v1/artworks/{work['id']}/licenses"
    r = client.post(
        base, json={"grantee": "user-42", "scopes": ["img2img"], "expires_at": None}, headers=h
    )
    assert r.status_code == 201
    lic = r.json()
    assert lic["active"] is True
    r = client.post(
        base,
        json={"grantee": "user-7", "scopes": ["img2img"], "expires_at": "2020-01-01T00:00:00Z"},
        headers=h,
    )
    assert r.status_code == 422 and "not in the future" in r.text
    expired = client.post(
        base,
        json={"grantee": "user-7", "scopes": ["img2img"], "expires_at": "2999-01-01T00:00:00Z"},
        headers=h,
    ).json()
    assert expired["active"] is True
    expire_licence(runtime, expired["id"])
    assert {x["id"]: x["active"] for x in client.get(base, headers=h).json()} == {
        lic["id"]: True,
        expired["id"]: False,
    }
    r = client.delete(f"{base}/{lic['id']}", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False
    assert (
        client.post(base, json={"grantee": "u", "scopes": ["print"]}, headers=h).status_code == 422
    )
    for grantee in (" user-42", "user-42 ", ""):
        r = client.post(base, json={"grantee": grantee, "scopes": ["img2img"]}, headers=h)
        assert r.status_code == 422, grantee
    assert (
        client.post(
            base,
            json={"grantee": "u", "scopes": ["img2img"], "expires_at": "2030-01-01T00:00:00"},
            headers=h,
        ).status_code
        == 422
    )


def test_registration_and_changes_land_in_the_audit_log(client, runtime, make_key, photo):
    h = auth(make_key("registry", name="portal"))
    artist = new_artist(client, h)
    work = upload(client, h, artist["id"], photo(5)).json()["artworks"][0]
    client.patch(f"/v1/artworks/{work['id']}", json={"preferences": {"style": "allow"}}, headers=h)
    client.post(
        f"/v1/artworks/{work['id']}/licenses",
        json={"grantee": "u1", "scopes": ["img2img"]},
        headers=h,
    )
    client.delete(f"/v1/artworks/{work['id']}", headers=h)
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT kind, actor, entry FROM audit_log ORDER BY seq").fetchall()
    kinds = [r["kind"] for r in rows]
    assert kinds == [
        "artist.created",
        "artwork.registered",
        "artwork.updated",
        "license.granted",
        "artwork.withdrawn",
    ]
    assert all(r["actor"].endswith(":portal") for r in rows)
    registered = json.loads(bytes(rows[1]["entry"]))
    assert registered["data"]["sha256"] == work["sha256"]


def test_png_and_webp_are_accepted(client, make_key):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    files = [
        ("files", ("a.png", encode(photo_like(30), "PNG"), "image/png")),
        ("files", ("b.webp", encode(photo_like(31), "WEBP"), "image/webp")),
    ]
    r = client.post(f"/v1/artists/{artist['id']}/artworks", files=files, headers=h)
    assert r.status_code == 201
    assert [w["media_type"] for w in r.json()["artworks"]] == ["image/png", "image/webp"]


def test_works_for_an_unknown_artist_are_refused_and_nothing_is_stored(client, make_key, runtime):
    h = auth(make_key("registry"))
    r = upload(client, h, "6f1c1c2e-0000-4000-8000-000000000000", encode(photo_like(4242)))
    assert r.status_code == 404, r.text
    assert "artist" in r.json()["detail"].lower()
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM artworks").fetchone()["n"] == 0


def test_titles_are_trimmed_and_a_blank_or_repeated_one_refused(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = new_artist(client, h)
    r = upload(client, h, artist["id"], photo(980), title="  Harbour  ")
    assert r.status_code == 201 and r.json()["artworks"][0]["title"] == "Harbour"
    work = r.json()["artworks"][0]
    assert upload(client, h, artist["id"], photo(981), title="   ").status_code == 422
    twice = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("a.jpg", photo(982), "image/jpeg"))],
        data={"title": ["One", "Two"]},
        headers=h,
    )
    assert twice.status_code == 422 and "title" in twice.text
    url = f"/v1/artworks/{work['id']}"
    assert client.patch(url, json={"title": " "}, headers=h).status_code == 422
    r = client.patch(url, json={"title": None}, headers=h)
    assert r.status_code == 200 and r.json()["title"] is None
