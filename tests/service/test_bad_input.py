"""Bad uploads get a clear 4xx and leave nothing behind: no rows, no audit entries."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from tests.support import auth, photo_like


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


def stored_files(runtime) -> int:
    return sum(1 for p in runtime.blobs.root.parent.rglob("*") if p.is_file())


def key_count(runtime) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT count(*) AS n FROM api_keys").fetchone()["n"]


def test_text_holding_nul_is_refused_and_nothing_is_written(
    client, runtime, make_key, artist, photo
):
    """PostgreSQL cannot store NUL in text: every way in answers 422, before any file is kept."""
    artist_id, h = artist
    work = client.post(
        f"/v1/artists/{artist_id}/artworks",
        files=[("files", ("w.jpg", photo(61), "image/jpeg"))],
        headers=h,
    ).json()["artworks"][0]
    admin = auth(make_key("admin"))
    moderate = auth(make_key("moderate"))
    before = (counts(runtime), stored_files(runtime), key_count(runtime))
    image = ("q.jpg", photo(62), "image/jpeg")
    attempts = {
        "artist": client.post(
            "/v1/artists", json={"display_name": "M\x00", "email": "n@example.org"}, headers=h
        ),
        "key": client.post("/v1/keys", json={"name": "k\x00", "scopes": ["match"]}, headers=admin),
        "licence": client.post(
            f"/v1/artworks/{work['id']}/licenses",
            json={"grantee": "eve\x00", "scopes": ["img2img"]},
            headers=h,
        ),
        "title": client.patch(f"/v1/artworks/{work['id']}", json={"title": "T\x00"}, headers=h),
        "upload title": client.post(
            f"/v1/artists/{artist_id}/artworks",
            data={"title": "T\x00"},
            files=[("files", ("n.jpg", photo(63), "image/jpeg"))],
            headers=h,
        ),
        "check user": client.post(
            "/v1/moderation/check", data={"user": "u\x00"}, files={"file": image}, headers=moderate
        ),
        "batch context": client.post(
            "/v1/moderation/batch",
            data={"context": "c\x00"},
            files=[("files", image)],
            headers=moderate,
        ),
        "manifest id": client.get("/sbr/manifests/a%00b", headers=moderate),
    }
    for what, r in attempts.items():
        assert r.status_code == 422, (what, r.status_code, r.text)
        assert "NUL" in r.text or "0x00" in r.text, (what, r.text)
    assert (counts(runtime), stored_files(runtime), key_count(runtime)) == before


def test_a_file_name_holding_control_characters_is_kept_without_them(client, artist, photo):
    artist_id, h = artist
    # written by hand: HTTP clients percent-encode such names, a raw client need not
    boundary = "chopmarkboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            'filename="sun\x00set\x07.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        ).encode("latin-1")
        + photo(64)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    r = client.post(
        f"/v1/artists/{artist_id}/artworks",
        content=body,
        headers={**h, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 201, r.text
    work = client.get(f"/v1/artworks/{r.json()['artworks'][0]['id']}", headers=h).json()
    assert work["original_filename"] == "sunset.jpg"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_numbers_that_are_not_finite_are_refused(client, make_key, value):
    h = {**auth(make_key("generate")), "Content-Type": "application/json"}
    body = '{"prompt": "a lighthouse", "guidance": %s, "adapters": [{"name": "x", "scale": %s}]}'
    r = client.post("/v1/generations", content=body % (value, value), headers=h)
    assert r.status_code == 422, r.text
    assert {tuple(e["loc"]) for e in r.json()["detail"]} >= {("body", "guidance")}


def test_a_refusal_does_not_echo_the_request(client, make_key):
    """A private prompt or megabytes of base64 stay out of the 422 answer."""
    h = auth(make_key("generate"))
    secret_prompt = "a private prompt " * 10
    blob = "A" * 1_000_000 + "\x00"
    r = client.post(
        "/v1/generations", json={"prompt": secret_prompt, "init_image": blob}, headers=h
    )
    assert r.status_code == 422
    assert len(r.content) < 2000 and "private prompt" not in r.text, r.text[:500]


def test_a_form_part_sent_twice_is_refused_not_half_used(client, make_key, photo):
    h = auth(make_key("moderate", "match", "stamp"))
    one, two = ("a.jpg", photo(71), "image/jpeg"), ("b.jpg", photo(72), "image/jpeg")
    attempts = {
        "/v1/moderation/check": ([("file", one), ("file", two)], {}, "`file`"),
        "/v1/matches": ([("file", one)], {"user": ["u1", "u2"]}, "`user`"),
        "/v1/stamps": ([("file", one)], {"metadata": ["{}", "{}"]}, "`metadata`"),
    }
    for path, (files, data, named) in attempts.items():
        r = client.post(path, files=files, data=data, headers=h)
        assert r.status_code == 422 and named in r.json()["detail"], (path, r.text)


def test_a_database_outage_is_a_quick_503_not_a_traceback(client, runtime, make_key, monkeypatch):
    import psycopg_pool

    admin = auth(make_key("admin"))

    def unavailable(*args, **kwargs):
        raise psycopg_pool.PoolTimeout("couldn't get a connection after 10.00 sec")

    monkeypatch.setattr(runtime.pool, "connection", unavailable)
    r = client.get("/v1/keys", headers=admin)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "database is unavailable" in r.json()["detail"]


@pytest.mark.parametrize(
    ("code", "status"),
    [(28, 507), (30, 503), (13, 503)],  # ENOSPC, EROFS, EACCES
)
def test_a_full_or_read_only_data_folder_is_said_without_paths(
    client, runtime, artist, photo, monkeypatch, code, status
):
    import os

    artist_id, h = artist
    before = counts(runtime)

    def cannot_store(data: bytes, sha256: str | None = None) -> str:
        raise OSError(code, os.strerror(code), "/srv/chopmark/data/blobs/ab/cd/secret")

    monkeypatch.setattr(runtime.blobs, "put", cannot_store)
    r = client.post(
        f"/v1/artists/{artist_id}/artworks",
        files=[("files", ("a.jpg", photo(91), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == status, r.text
    assert "/srv" not in r.text and "try again" in r.json()["detail"]
    assert counts(runtime) == before


def test_the_database_out_of_space_is_507_not_unavailable(client, runtime, make_key):
    """PostgreSQL's own disk full (SQLSTATE 53100; for the embedded database, the data folder)
    is said as such, not as a database that is down."""
    h = auth(make_key("registry"))
    with runtime.pool.connection() as conn:
        conn.execute(
            "CREATE FUNCTION pretend_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'could not extend file: No space left on device'"
            " USING ERRCODE = 'disk_full'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER full_disk BEFORE INSERT ON artists"
            " FOR EACH ROW EXECUTE FUNCTION pretend_full()"
        )
        conn.commit()
    r = client.post("/v1/artists", json={"display_name": "F", "email": "f@example.org"}, headers=h)
    assert r.status_code == 507 and "no space left" in r.json()["detail"], r.text
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM artists").fetchone()["n"] == 0


def test_a_registration_the_data_folder_cannot_hold_records_no_artwork(
    client, runtime, artist, photo, monkeypatch
):
    """The sixth file of six finds the disk full: none of the six is registered (before, five
    were, audited and matchable, while the caller was told 507)."""
    import errno
    import os

    artist_id, h = artist
    before = counts(runtime)
    real_put = runtime.blobs.put
    calls = []

    def fills_up(data: bytes, sha256: str | None = None) -> str:
        calls.append(1)
        if len(calls) == 6:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_put(data, sha256)

    monkeypatch.setattr(runtime.blobs, "put", fills_up)
    files = [("files", (f"w{i}.jpg", photo(120 + i), "image/jpeg")) for i in range(6)]
    r = client.post(f"/v1/artists/{artist_id}/artworks", files=files, headers=h)
    assert r.status_code == 507, r.text
    assert counts(runtime) == before


def test_chopmark_register_stops_storing_when_the_data_folder_refuses(
    runtime, artist, tmp_path, monkeypatch
):
    import errno
    import os

    from service.cli.register import register_paths
    from tests.support import encode, photo_like

    artist_id, _ = artist
    for i in range(4):
        (tmp_path / f"w{i}.jpg").write_bytes(encode(photo_like(140 + i)))

    def full(data: bytes, sha256: str | None = None) -> str:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runtime.blobs, "put", full)
    out = register_paths(
        runtime,
        "cli:test",
        artist_id,
        [tmp_path],
        title=None,
        preferences={},
        workers=1,
        show_progress=False,
    )
    assert out.created == [] and len(out.rejected) == 4
    assert all("No space left" in reason for _, reason in out.rejected)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "picture",
    ["a line one pixel wide", "one colour", "a smooth gradient"],
)
def test_a_picture_whose_copies_could_not_be_recognised_is_not_registered(
    client, runtime, artist, picture
):
    make = {
        "a line one pixel wide": lambda: photo_like(41, (640, 480)).resize((1, 600)),
        "one colour": lambda: Image.new("RGB", (640, 480), (30, 60, 200)),
        "a smooth gradient": lambda: Image.linear_gradient("L").convert("RGB"),
    }[picture]
    artist_id, h = artist
    before = counts(runtime)
    good = ("files", ("good.png", _png(photo_like(43, (640, 480))), "image/png"))
    plain = ("files", ("plain.png", _png(make()), "image/png"))

    r = client.post(f"/v1/artists/{artist_id}/artworks", files=[plain], headers=h)
    assert r.status_code == 422, r.text
    assert "too little detail" in r.json()["detail"]
    assert r.json()["rejected"][0]["filename"] == "plain.png"
    assert counts(runtime) == before

    r = client.post(f"/v1/artists/{artist_id}/artworks", files=[good, plain], headers=h)
    assert r.status_code == 201, r.text
    assert [a["original_filename"] for a in r.json()["artworks"]] == ["good.png"]
    assert [x["filename"] for x in r.json()["rejected"]] == ["plain.png"]
