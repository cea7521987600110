"""Bad uploads get a clear 4xx and leave nothing behind: no rows, no audit entries."""

from __future__ import annotations

import struct
import zlib

import pytest

from tests.support import auth


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG that declares 50000x50000 pixels (2.5 gigapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    raw = zlib.compress(b"\x00" * (width // 8 + 1) * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
        + chunk(b"IDAT", raw)
        + chunk(b"IEND", b"")
    )


def counts(runtime) -> tuple[int, int, int]:
    with runtime.pool.connection() as conn:
        return tuple(
            conn.execute(f"SELECT count(*) AS n FROM {t}").fetchone()["n"]
            for t in ("artworks", "fingerprints", "audit_log")
        )


@pytest.fixture
def artist(client, make_key):
    h = auth(make_key("registry"))
    r = client.post("/v1/artists", json={"display_name": "B", "email": "b@example.org"}, headers=h)
    return r.json()["id"], h


@pytest.mark.parametrize(
    ("name", "make", "status", "words"),
    [
        ("zero.jpg", lambda photo: b"", 400, "empty"),
        ("text.jpg", lambda photo: b"hello, this is not an image at all" * 10, 415, "not an image"),
        ("cut.jpg", lambda photo: photo(1)[: len(photo(1)) // 2], 422, "truncated"),
        ("bomb.png", lambda photo: png_bomb(), 413, "pixels"),
    ],
)
def test_bad_files_are_refused_and_nothing_is_written(
    client, runtime, artist, photo, name, make, status, words
):
    artist_id, h = artist
    before = counts(runtime)
    files = [("files", (name, make(photo), "image/jpeg"))]
    r = client.post(f"/v1/artists/{artist_id}/artworks", files=files, headers=h)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"].lower()
    assert r.json()["rejected"][0]["filename"] == name
    assert counts(runtime) == before
    # the same bytes to the matcher are refused too
    m = client.post(
        "/v1/matches",
        files={"file": (name, make(photo), "image/jpeg")},
        headers=auth(match_key(runtime)),
    )
    assert m.status_code == status


def match_key(runtime) -> str:
    from service.auth.keys import create_key

    with runtime.pool.connection() as conn, conn.transaction():
        return create_key(conn, "m", ["match"])[1]


def test_one_bad_file_among_good_ones_is_listed_as_rejected(client, runtime, artist, photo):
    artist_id, h = artist
    files = [
        ("files", ("good.jpg", photo(2), "image/jpeg")),
        ("files", ("bad.jpg", b"GIF89a garbage", "image/gif")),
    ]
    r = client.post(f"/v1/artists/{artist_id}/artworks", files=files, headers=h)
    assert r.status_code == 201
    assert len(r.json()["artworks"]) == 1
    assert r.json()["rejected"][0]["filename"] == "bad.jpg"


def test_file_over_the_upload_limit(client, runtime, artist, photo):
    artist_id, h = artist
    big = photo(3, size=(2400, 2000))
    big += b"\x00" * (runtime.settings.max_upload_bytes + 10 - len(big))
    before = counts(runtime)
    r = client.post(
        f"/v1/artists/{artist_id}/artworks",
        files=[("files", ("big.jpg", big, "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 413
    assert "limit" in r.json()["detail"]
    assert counts(runtime) == before


def test_request_over_the_body_limit(client, runtime, artist):
    artist_id, h = artist
    huge = b"\xff" * (runtime.settings.max_request_bytes + 1)
    r = client.post(
        f"/v1/artists/{artist_id}/artworks",
        files=[("files", ("x.jpg", huge, "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 413


@pytest.mark.parametrize(
    "prefs", ['{"img2img": ', '["deny"]', '{"img2img": "sometimes"}', '{"remix": "deny"}']
)
def test_malformed_preferences(client, runtime, artist, photo, prefs):
    artist_id, h = artist
    before = counts(runtime)
    r = client.post(
        f"/v1/artists/{artist_id}/artworks",
        data={"preferences": prefs},
        files=[("files", ("a.jpg", photo(4), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 422
    assert "preferences" in r.json()["detail"]
    assert counts(runtime) == before


def test_unknown_artist(client, artist, photo):
    _, h = artist
    r = client.post(
        "/v1/artists/6f1c1c2e-0000-4000-8000-000000000000/artworks",
        files=[("files", ("a.jpg", photo(5), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 404
