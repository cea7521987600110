"""Artists a page at a time (GET /v1/artists, chopmark artists list): the one a 409 said is
registered found by its address, each with their works and whether they can log in to the
portal."""

from __future__ import annotations

import json

from tests.service.portal_support import sign_up
from tests.support import auth, encode, photo_like


def test_artists_are_listed_found_by_address_and_counted(client, make_key, cli):
    reg = auth(make_key("registry"))
    made = []
    for name in ("ana", "bo", "cy"):
        r = client.post(
            "/v1/artists",
            json={"display_name": name, "email": f"{name}@example.org"},
            headers=reg,
        )
        made.append(r.json()["id"])
    files = [("files", (f"{s}.jpg", encode(photo_like(s)), "image/jpeg")) for s in (801, 802)]
    works = client.post(f"/v1/artists/{made[0]}/artworks", files=files, headers=reg).json()
    client.delete(f"/v1/artworks/{works['artworks'][0]['id']}", headers=reg)
    sign_up(client, "Dee", "dee@example.org")

    everyone = client.get("/v1/artists", headers=reg).json()
    assert [a["display_name"] for a in everyone["artists"]] == ["ana", "bo", "cy", "Dee"]
    assert [a["works"] for a in everyone["artists"]] == [1, 0, 0, 0]  # one withdrawn
    assert [a["portal_login"] for a in everyone["artists"]] == [False, False, False, True]
    assert everyone["next_cursor"] is None

    first = client.get("/v1/artists", params={"limit": 3}, headers=reg).json()
    rest = client.get(
        "/v1/artists", params={"limit": 3, "cursor": first["next_cursor"]}, headers=reg
    ).json()
    assert [a["id"] for a in first["artists"] + rest["artists"]] == [
        a["id"] for a in everyone["artists"]
    ]

    # The 409 of a second registration, then the artist it meant, by address.
    r = client.post(
        "/v1/artists", json={"display_name": "Bo", "email": "BO@example.org"}, headers=reg
    )
    assert r.status_code == 409
    (bo,) = client.get("/v1/artists", params={"email": "bo@EXAMPLE.org"}, headers=reg).json()[
        "artists"
    ]
    assert bo["id"] == made[1]
    assert client.get("/v1/artists", params={"email": "x@example.org"}, headers=reg).json() == {
        "artists": [],
        "next_cursor": None,
    }
    assert client.get("/v1/artists", params={"cursor": "x"}, headers=reg).status_code == 422

    listed = json.loads(cli("artists", "list", "--json").stdout)["artists"]
    assert [a["email"] for a in listed] == [
        "ana@example.org",
        "bo@example.org",
        "cy@example.org",
        "dee@example.org",
    ]
    table = cli("artists", "list", "--email", "dee@example.org").stdout
    assert "Dee" in table and "login" in table and "ana" not in table
    assert cli("artists", "list", "--cursor", "x", ok=False).returncode == 2
