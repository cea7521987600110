"""The artist portal over HTTP: sign-up and login (lockout, invitations), every page refused
without a login and every form without its token, works registered, changed, licensed and
withdrawn through the forms with the same effect as through the API, activity and claims."""

from __future__ import annotations

import io
import json
import re

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.portal.accounts import FAILED_LOGINS_BEFORE_LOCK
from tests.service.portal_support import (
    PASSWORD,
    artist_id_of,
    csrf_of,
    portal_with,
    post,
    sign_up,
    signup_form,
)
from tests.service.test_audit_api import pdf_text
from tests.service.test_generations import (  # noqa: F401 (tiny_runner is a fixture)
    _register_lora,
    tiny_runner,
)
from tests.service.test_moderation import edited, stamp
from tests.support import auth, encode, photo_like

ZERO = "00000000-0000-0000-0000-000000000000"


def count(runtime, sql: str, *args) -> int:
    with runtime.pool.connection() as conn:
        return conn.execute(sql, args).fetchone()["count"]


def upload(client, token: str, *files, **fields):
    return client.post(
        "/portal/works",
        data={"csrf": token, **fields},
        files=[("files", f) for f in files],
        follow_redirects=False,
    )


def jpeg(seed: int) -> tuple[str, bytes, str]:
    return (f"work-{seed}.jpg", encode(photo_like(seed)), "image/jpeg")


def audit_actors(runtime, kind: str) -> list[str]:
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT convert_from(entry, 'UTF8')::jsonb ->> 'actor' AS actor FROM audit_log"
            " WHERE kind = %s ORDER BY seq",
            (kind,),
        ).fetchall()
    return [r["actor"] for r in rows]


# --- sign-up and login -------------------------------------------------------------------------


def test_sign_up_creates_the_artist_logs_in_and_audits_it(client, runtime):
    sign_up(client)
    artist = artist_id_of(runtime, "mei@example.org")
    page = client.get("/portal/works")
    assert "Your works" in page.text and "Log out Mei Lin" in page.text
    assert "Welcome" not in page.text  # the notice is for the redirect only
    assert audit_actors(runtime, "artist.created") == ["portal:sign-up"]
    # only a hash of the password and of the session token are stored
    with runtime.pool.connection() as conn:
        stored = conn.execute(
            "SELECT password_hash FROM portal_accounts WHERE artist_id = %s", (artist,)
        ).fetchone()["password_hash"]
        tokens = conn.execute("SELECT token_hash FROM portal_sessions").fetchall()
    assert stored.startswith("scrypt$") and PASSWORD not in stored
    cookie = client.cookies.get("chopmark_portal")
    assert cookie and all(cookie.encode() not in bytes(t["token_hash"]) for t in tokens)


@pytest.mark.parametrize(
    ("form", "status", "said"),
    [
        ({"password": "short", "password_again": "short"}, 422, "at least 10 characters"),
        ({"password_again": "another password"}, 422, "the two passwords differ"),
        ({"email": "not-an-address"}, 422, "e-mail address"),
        ({"display_name": "   "}, 422, "name"),
        (
            {"password": "mei@example.org", "password_again": "mei@example.org"},
            422,
            "must not be the e-mail address",
        ),
    ],
)
def test_a_refused_sign_up_says_why_and_creates_nothing(client, runtime, form, status, said):
    r = client.post("/portal/signup", data=signup_form(**form), follow_redirects=False)
    assert r.status_code == status
    assert said in r.text
    assert count(runtime, "SELECT count(*) FROM artists") == 0
    assert count(runtime, "SELECT count(*) FROM portal_accounts") == 0
    assert "chopmark_portal" not in r.cookies


def test_an_address_already_registered_is_refused_with_the_way_in(client, runtime, make_key):
    reg = auth(make_key("registry"))
    r = client.post(
        "/v1/artists", json={"display_name": "Mei", "email": "Mei@Example.org"}, headers=reg
    )
    assert r.status_code == 201
    r = client.post("/portal/signup", data=signup_form(display_name="Someone"))
    assert r.status_code == 409
    assert "invitation link" in r.text
    assert count(runtime, "SELECT count(*) FROM artists") == 1


def test_sign_up_by_invitation_only_refuses_the_form(settings, database_url):
    with portal_with(settings, portal_signup="invite") as (c, rt):
        assert "by invitation" in c.get("/portal/signup").text
        r = c.post("/portal/signup", data=signup_form())
        assert r.status_code == 403
        assert count(rt, "SELECT count(*) FROM artists") == 0


def test_login_logout_and_a_wrong_password(client):
    sign_up(client)
    token = csrf_of(client.get("/portal/works").text)
    r = post(client, "/portal/logout", token)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    assert client.get("/portal/works", follow_redirects=False).status_code == 303

    r = client.post(
        "/portal/login", data={"email": "mei@example.org", "password": "wrong password!"}
    )
    assert r.status_code == 401
    assert "wrong e-mail address or password" in r.text
    r = client.post(
        "/portal/login", data={"email": "nobody@example.org", "password": "wrong password!"}
    )
    assert r.status_code == 401  # the same answer: no telling which addresses have accounts
    assert "wrong e-mail address or password" in r.text

    r = client.post(
        "/portal/login",
        data={"email": "MEI@example.org", "password": PASSWORD, "next": "/portal/defaults"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/portal/defaults"
    cookie = r.cookies.get("chopmark_portal") or client.cookies.get("chopmark_portal")
    assert cookie
    set_cookie = r.headers["set-cookie"].lower()
    assert (
        "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/portal" in set_cookie
    )
    assert client.get("/portal/defaults").status_code == 200


def test_a_logged_out_session_cannot_be_replayed(client):
    sign_up(client)
    cookie = client.cookies.get("chopmark_portal")
    token = csrf_of(client.get("/portal/works").text)
    post(client, "/portal/logout", token)
    client.cookies.set("chopmark_portal", cookie, path="/portal")
    assert client.get("/portal/works", follow_redirects=False).status_code == 303


def test_repeated_failures_lock_the_login_even_with_the_right_password(client):
    sign_up(client)
    client.cookies.clear()
    for _ in range(FAILED_LOGINS_BEFORE_LOCK):
        r = client.post(
            "/portal/login", data={"email": "mei@example.org", "password": "guess guess guess"}
        )
        assert r.status_code == 401
    r = client.post("/portal/login", data={"email": "mei@example.org", "password": PASSWORD})
    assert r.status_code == 429
    assert "too many failed logins" in r.text
    assert "chopmark_portal" not in client.cookies


def test_one_address_makes_only_so_many_sign_ups(client, runtime, monkeypatch):
    from service.portal import throttle

    monkeypatch.setitem(throttle.LIMITS, "signup", throttle.Limit(2, 60))
    r = client.post("/portal/signup", data=signup_form(password="short", password_again="short"))
    assert r.status_code == 422  # a weak password is not an attempt
    for n in (1, 2):
        client.cookies.clear()
        r = client.post(
            "/portal/signup", data=signup_form(email=f"a{n}@example.org"), follow_redirects=False
        )
        assert r.status_code == 303
    client.cookies.clear()
    r = client.post("/portal/signup", data=signup_form(email="a3@example.org"))
    assert r.status_code == 429 and "too many sign-ups from your address" in r.text
    assert count(runtime, "SELECT count(*) FROM artists") == 2


def test_one_address_guesses_only_so_many_passwords_across_accounts(client, monkeypatch):
    from service.portal import throttle

    monkeypatch.setitem(throttle.LIMITS, "login_failed", throttle.Limit(3, 15))
    for email in ("a@example.org", "b@example.org"):
        sign_up(client, email.split("@")[0], email)
    client.cookies.clear()
    for email in ("a@example.org", "b@example.org", "a@example.org"):  # below each one's lock
        r = client.post("/portal/login", data={"email": email, "password": "guess guess guess"})
        assert r.status_code == 401
    r = client.post("/portal/login", data={"email": "b@example.org", "password": PASSWORD})
    assert r.status_code == 429 and "too many failed logins from your address" in r.text
    assert "chopmark_portal" not in client.cookies


def test_login_never_redirects_off_the_portal(client):
    sign_up(client)
    client.cookies.clear()
    for target in ("https://evil.example/", "//evil.example/x", "/v1/keys", "/portal\\@evil"):
        r = client.post(
            "/portal/login",
            data={"email": "mei@example.org", "password": PASSWORD, "next": target},
            follow_redirects=False,
        )
        assert r.status_code == 303
        assert r.headers["location"] == "/portal/works", target


def test_a_form_posted_from_another_site_is_refused(client, runtime):
    for origin in ("https://evil.example", "null"):  # null: a sandboxed frame elsewhere
        r = client.post("/portal/signup", data=signup_form(), headers={"Origin": origin})
        assert r.status_code == 403, origin
    assert count(runtime, "SELECT count(*) FROM artists") == 0


def test_the_portal_url_is_an_origin_of_ours_behind_a_proxy(settings, database_url):
    """A proxy that hands the service another host: the portal's public address still posts."""
    with portal_with(settings, portal_url="https://art.example.org") as (c, _):
        for origin, status in (("https://evil.example", 403), ("https://art.example.org", 303)):
            r = c.post(
                "/portal/signup",
                data=signup_form(),
                headers={"Origin": origin},
                follow_redirects=False,
            )
            assert r.status_code == status, origin


# --- refusals: every page and every form -------------------------------------------------------

PAGES = [
    "/portal/works",
    f"/portal/works/{ZERO}",
    f"/portal/works/{ZERO}/thumbnail",
    "/portal/defaults",
    "/portal/events",
    "/portal/claims",
    f"/portal/claims/{ZERO}/picture",
    "/portal/account",
    f"/portal/works/{ZERO}/report.pdf",
    f"/portal/claims/{ZERO}/report.pdf",
]
FORMS = [
    "/portal/works",
    f"/portal/works/{ZERO}/preferences",
    f"/portal/works/{ZERO}/withdraw",
    f"/portal/works/{ZERO}/licenses",
    f"/portal/works/{ZERO}/licenses/{ZERO}/revoke",
    "/portal/defaults",
    "/portal/claims",
    "/portal/claims/adapter",
    "/portal/logout",
    "/portal/account/profile",
    "/portal/account/password",
    "/portal/account/sessions/end",
]
OPEN = {
    ("GET", "/portal"),
    ("GET", "/portal/login"),
    ("POST", "/portal/login"),
    ("GET", "/portal/signup"),
    ("POST", "/portal/signup"),
    ("GET", "/portal/invite/{token}"),
    ("POST", "/portal/invite/{token}"),
}


def test_every_portal_route_is_in_the_refusal_tests():
    """A page added without a line in PAGES or FORMS (so without a refusal test) fails here."""
    from service.portal import (
        account_pages,
        activity_pages,
        auth_pages,
        report_pages,
        works_pages,
    )

    listed = {("GET", re.sub(ZERO, "{x}", p)) for p in PAGES}
    listed |= {("POST", re.sub(ZERO, "{x}", p)) for p in FORMS}
    for module in (auth_pages, works_pages, activity_pages, account_pages, report_pages):
        for route in module.router.routes:
            for method in route.methods - {"HEAD"}:
                if (method, route.path) in OPEN:
                    continue
                shape = re.sub(r"\{[a-z_]+\}", "{x}", route.path)
                assert (method, shape) in listed, (method, route.path)


@pytest.mark.parametrize("path", PAGES)
def test_pages_send_a_visitor_without_login_to_the_login_page(client, path):
    r = client.get(path, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/portal/login?next=/portal/")


@pytest.mark.parametrize("path", FORMS)
def test_forms_without_login_change_nothing(client, runtime, path):
    before = count(runtime, "SELECT count(*) FROM audit_log")
    r = client.post(path, data={"csrf": "x"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/portal/login")
    assert count(runtime, "SELECT count(*) FROM audit_log") == before


@pytest.mark.parametrize("path", FORMS)
def test_forms_without_the_sessions_token_are_refused(client, runtime, path):
    sign_up(client)
    before = count(runtime, "SELECT count(*) FROM audit_log")
    for data in ({}, {"csrf": "not-the-token"}):
        r = client.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
        assert "reload the page" in r.text
    assert count(runtime, "SELECT count(*) FROM audit_log") == before
    assert client.get("/portal/works").status_code == 200  # still logged in


def test_a_malformed_or_unknown_address_gets_a_page(client):
    sign_up(client)
    for path, status, said in (
        ("/portal/works/not-a-uuid", 422, "artwork_id"),
        ("/portal/events?artwork=xyz", 422, "artwork"),
        ("/portal/nothing-here", 404, "Not Found"),
    ):
        r = client.get(path)
        assert r.status_code == status, path
        assert r.headers["content-type"].startswith("text/html"), path
        assert said in r.text and "That did not work" in r.text, path
    r = client.put("/portal/works")
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    # the API keeps its JSON
    r = client.get("/v1/artworks/not-a-uuid")
    assert r.status_code in (401, 422) and r.headers["content-type"] == "application/json"


def test_pages_carry_a_strict_content_security_policy(client):
    r = client.get("/portal/login")
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in r.text


# --- works ---------------------------------------------------------------------------------------


def test_registering_works_through_the_form(client, runtime, make_key):
    token = sign_up(client)
    artist = artist_id_of(runtime, "mei@example.org")
    r = upload(
        client,
        token,
        jpeg(501),
        jpeg(502),
        ("notes.txt", b"not an image at all", "text/plain"),
        title="Harbour studies",
        img2img="allow",
        training="deny",
    )
    assert r.status_code == 201, r.text
    assert "2 registered" in r.text and "1 refused" in r.text
    assert "notes.txt" in r.text
    reg = auth(make_key("registry"))
    works = client.get(f"/v1/artists/{artist}/artworks", headers=reg).json()["artworks"]
    assert len(works) == 2
    assert {w["title"] for w in works} == {"Harbour studies"}
    assert all(w["preferences"] == {"img2img": "allow", "training": "deny"} for w in works)
    assert audit_actors(runtime, "artwork.registered") == [f"portal:artist:{artist}"] * 2
    # the works match at once, edits and all
    m = client.post(
        "/v1/matches",
        files={"file": ("q.jpg", edited(501), "image/jpeg")},
        headers=auth(make_key("match")),
    ).json()
    assert [x["artwork_id"] for x in m["matches"] if x["decision"] == "copy"] == [
        next(w["id"] for w in works if w["original_filename"] == "work-501.jpg")
    ]
    # the works page shows them with their thumbnails
    page = client.get("/portal/works").text
    for w in works:
        assert f"/portal/works/{w['id']}/thumbnail" in page
        thumb = client.get(f"/portal/works/{w['id']}/thumbnail")
        assert thumb.headers["content-type"] == "image/webp"
        assert Image.open(io.BytesIO(thumb.content)).size[0] <= 256
    # the same bytes again: registered before, nothing new
    r = upload(client, token, jpeg(501))
    assert r.status_code == 201 and "1 already registered before" in r.text
    assert len(client.get(f"/v1/artists/{artist}/artworks", headers=reg).json()["artworks"]) == 2


@pytest.mark.parametrize(
    ("files", "fields", "status", "said"),
    [
        ([], {}, 422, "choose one or more image files"),
        ([("a.txt", b"plain text", "text/plain")], {}, 415, "no file could be registered"),
        ([jpeg(1)], {"img2img": "sometimes"}, 422, "choose allow, deny or the default"),
        ([jpeg(1)], {"title": "   "}, 422, "more than white space"),
    ],
)
def test_a_refused_upload_says_why_and_registers_nothing(
    client, runtime, files, fields, status, said
):
    token = sign_up(client)
    r = upload(client, token, *files, **fields)
    assert r.status_code == status
    assert said in r.text
    assert count(runtime, "SELECT count(*) FROM artworks") == 0


def test_an_upload_over_the_request_limit_gets_a_page_and_registers_nothing(
    client, runtime, settings
):
    token = sign_up(client)
    big = b"\xff" * (settings.max_request_bytes + 1)
    r = upload(client, token, ("huge.jpg", big, "image/jpeg"))
    assert r.status_code == 413
    assert r.headers["content-type"].startswith("text/html")
    assert "too large" in r.text and "/portal/works" in r.text
    assert count(runtime, "SELECT count(*) FROM artworks") == 0


def test_works_are_listed_newest_first_a_page_at_a_time(client, runtime, monkeypatch):
    from service.portal import works_pages

    monkeypatch.setattr(works_pages, "PAGE", 2)
    token = sign_up(client)
    for seed in (561, 562, 563):
        assert upload(client, token, jpeg(seed)).status_code == 201
    ids = [str(r["id"]) for r in _works(runtime)]  # oldest first
    first = client.get("/portal/works").text
    shown = re.findall(r'href="/portal/works/([0-9a-f-]{36})"', first)
    assert shown == [ids[2], ids[1]]
    (older,) = re.findall(r'href="(/portal/works\?cursor=[^"]+)"', first)
    second = client.get(older.replace("&amp;", "&")).text
    assert re.findall(r'href="/portal/works/([0-9a-f-]{36})"', second) == [ids[0]]
    assert "Older works" not in second


def test_works_are_found_by_title_or_file_name(client, runtime):
    token = sign_up(client)
    upload(client, token, jpeg(591), title="Harbour at dawn")
    upload(client, token, jpeg(592), title="100% harbour_b")
    upload(client, token, jpeg(593))  # no title: work-593.jpg
    ids = {r["title"] or r["original_filename"]: str(r["id"]) for r in _works(runtime)}

    def found(q: str) -> set[str]:
        page = client.get("/portal/works", params={"q": q}).text
        return set(re.findall(r'href="/portal/works/([0-9a-f-]{36})"', page))

    assert found("HARBOUR") == {ids["Harbour at dawn"], ids["100% harbour_b"]}
    assert found("work-593") == {ids["work-593.jpg"]}
    assert found("100%") == {ids["100% harbour_b"]}  # % and _ are letters here
    assert found("r_b") == {ids["100% harbour_b"]}
    assert found("__") == set()
    assert "No work's title or file name holds" in client.get("/portal/works?q=zzz").text
    assert len(found("")) == 3  # an empty search is the whole list


def test_text_from_artists_is_shown_not_obeyed(client, runtime):
    token = sign_up(client, '<img src=x onerror="alert(1)">', "mei@example.org")
    r = upload(client, token, jpeg(581), title="<script>alert('t')</script>")
    assert r.status_code == 201
    for page in (client.get("/portal/works").text, r.text):
        assert "<script>alert" not in page and "&lt;script&gt;alert(" in page
        assert '<img src=x onerror' not in page


def test_another_artists_work_is_not_found(client, settings, runtime):
    from service.api.app import create_app

    token = sign_up(client)
    upload(client, token, jpeg(511))
    (work,) = [r["id"] for r in _works(runtime)]
    with TestClient(create_app(settings, runtime=runtime)) as other:
        other_token = sign_up(other, "Other", "other@example.org")
        for path in (f"/portal/works/{work}", f"/portal/works/{work}/thumbnail"):
            r = other.get(path)
            assert r.status_code == 404 and "you have no work" in r.text
        for path in (f"/portal/works/{work}/withdraw", f"/portal/works/{work}/preferences"):
            r = post(other, path, other_token, img2img="allow")
            assert r.status_code == 404
        r = post(
            other, f"/portal/works/{work}/licenses", other_token, grantee="u", scopes="img2img"
        )
        assert r.status_code == 404
        r = other.get(f"/portal/works/{work}/report.pdf")
        assert r.status_code == 404 and "you have no work" in r.text
    assert _works(runtime)[0]["status"] == "active"
    assert count(runtime, "SELECT count(*) FROM licenses") == 0


def _works(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT * FROM artworks ORDER BY created_at").fetchall()


def test_choices_licences_and_withdrawal_through_the_work_page(client, runtime, make_key):
    token = sign_up(client)
    upload(client, token, jpeg(521), title="Cliff")
    (work,) = [str(r["id"]) for r in _works(runtime)]
    reg = auth(make_key("registry"))

    r = post(
        client,
        f"/portal/works/{work}/preferences",
        token,
        title="Cliff at dusk",
        img2img="allow",
        style="",
        training="deny",
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=preferences")
    api = client.get(f"/v1/artworks/{work}", headers=reg).json()
    assert api["title"] == "Cliff at dusk"
    assert api["preferences"] == {"img2img": "allow", "training": "deny"}
    assert "Your choices are saved" in client.get(r.headers["location"]).text

    r = post(
        client,
        f"/portal/works/{work}/licenses",
        token,
        grantee="platform-user-7",
        scopes="style",
        expires="2099-12-31",
    )
    assert r.status_code == 303
    (lic,) = client.get(f"/v1/artworks/{work}/licenses", headers=reg).json()
    assert lic["grantee"] == "platform-user-7" and lic["scopes"] == ["style"]
    assert lic["expires_at"].startswith("2100-01-01T00:00:00")  # through the last day
    page = client.get(f"/portal/works/{work}").text
    assert "platform-user-7" in page and "active" in page

    for bad, said in (
        ({"grantee": "u", "expires": "2001-01-01", "scopes": "img2img"}, "has passed"),
        ({"grantee": "u", "expires": "soon", "scopes": "img2img"}, "a day such as"),
        ({"grantee": "u"}, "uses"),
        ({"grantee": " u ", "scopes": "img2img"}, "white space"),
        ({"grantee": "u", "scopes": "painting"}, "uses"),
    ):
        r = post(client, f"/portal/works/{work}/licenses", token, **bad)
        assert r.status_code == 422, bad
        assert said in r.text, bad
    assert len(client.get(f"/v1/artworks/{work}/licenses", headers=reg).json()) == 1

    r = post(client, f"/portal/works/{work}/licenses/{lic['id']}/revoke", token)
    assert r.status_code == 303
    assert client.get(f"/v1/artworks/{work}/licenses", headers=reg).json()[0]["revoked_at"]
    r = post(client, f"/portal/works/{work}/licenses/{ZERO}/revoke", token)
    assert r.status_code == 404

    r = post(client, f"/portal/works/{work}/withdraw", token)
    assert r.status_code == 303
    assert client.get(f"/v1/artworks/{work}", headers=reg).json()["status"] == "withdrawn"
    m = client.post(
        "/v1/matches",
        files={"file": ("q.jpg", encode(photo_like(521)), "image/jpeg")},
        headers=auth(make_key("match")),
    ).json()
    assert m["matches"] == []
    assert "Withdrawn" in client.get(f"/portal/works/{work}").text
    assert f"/portal/works/{work}" not in client.get("/portal/works").text
    assert f"/portal/works/{work}" in client.get("/portal/works?withdrawn=true").text
    # the work's record for the artist: every change, each with its proof
    r = client.get(f"/portal/works/{work}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text, pictures = pdf_text(r.content)
    for said in (
        "artwork.registered",
        "artwork.updated",
        "license.granted",
        "license.revoked",
        "artwork.withdrawn",
    ):
        assert said in text, said
    assert pictures >= 1
    actors = set(
        audit_actors(runtime, "artwork.updated") + audit_actors(runtime, "artwork.withdrawn")
    )
    assert actors == {f"portal:artist:{artist_id_of(runtime, 'mei@example.org')}"}


def test_default_choices_apply_to_works_without_their_own(client, runtime, make_key):
    token = sign_up(client)
    upload(client, token, jpeg(531))
    (work,) = [str(r["id"]) for r in _works(runtime)]
    reg = auth(make_key("registry"))
    assert (
        client.get(f"/v1/artworks/{work}", headers=reg).json()["effective_preferences"]["training"]
        == "deny"
    )
    r = post(client, "/portal/defaults", token, img2img="", style="deny", training="allow")
    assert r.status_code == 303
    art = client.get(f"/v1/artworks/{work}", headers=reg).json()
    assert art["effective_preferences"] == {"img2img": "deny", "style": "deny", "training": "allow"}
    r = post(client, "/portal/defaults", token, img2img="", style="", training="")
    artist = client.get(f"/v1/artists/{artist_id_of(runtime, 'mei@example.org')}", headers=reg)
    assert artist.json()["default_preferences"] == {}
    r = post(client, "/portal/defaults", token, training="maybe")
    assert r.status_code == 422


# --- activity and claims ---


def test_activity_shows_what_touched_the_works(mclient, runtime, make_key):
    client = mclient
    token = sign_up(client)
    upload(client, token, jpeg(541), title="Lighthouse")
    (work,) = [str(r["id"]) for r in _works(runtime)]
    post(client, f"/portal/works/{work}/licenses", token, grantee="u-9", scopes="img2img")
    mod = auth(make_key("moderate"))
    r = client.post(
        "/v1/moderation/check",
        files={"file": ("up.jpg", edited(541), "image/jpeg")},
        data={"user": "uploader-1"},
        headers=mod,
    )
    assert r.json()["verdict"] == "block"
    page = client.get("/portal/events").text
    assert "A platform checked an upload that copies this work" in page
    assert "verdict block" in page
    assert "Licence granted to u-9 for img2img" in page
    assert "Registered as “Lighthouse”" in page
    link = re.search(rf'<a href="/portal/works/{work}" class="work-link">(.*?)</a>', page)
    assert link and "Lighthouse" in link.group(1)
    assert f'src="/portal/works/{work}/thumbnail"' in link.group(1)  # the work, to look at
    only = client.get("/portal/events?kind=moderation.matched").text
    assert "copies this work" in only and "Licence granted" not in only
    assert client.get("/portal/events?kind=nonsense").status_code == 422
    assert client.get("/portal/events?cursor=garbage").status_code == 422
    assert "copies this work" in client.get(f"/portal/works/{work}").text


def test_filing_a_claim_and_seeing_its_picture(mclient, runtime, make_key, settings):
    from service.api.app import create_app

    client = mclient
    st = auth(make_key("stamp"))
    copied, _ = stamp(client, st, Image.open(io.BytesIO(edited(551))).convert("RGB"))
    token = sign_up(client)
    upload(client, token, jpeg(551), title="Orchard")
    (work,) = [str(r["id"]) for r in _works(runtime)]

    r = post(
        client,
        "/portal/claims",
        token,
        output_id=copied["id"],
        artwork_id=work,
        reason="a cropped, darkened copy of my orchard",
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=claim-filed")
    page = client.get("/portal/claims").text
    (claim,) = re.findall(r'/portal/claims/([0-9a-f-]{36})/picture"', page)[:1]
    assert "a cropped, darkened copy of my orchard" in page
    assert "found 1 of your works in it (copy" in page
    pic = client.get(f"/portal/claims/{claim}/picture")
    assert pic.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(pic.content)).width > 256
    reg = auth(make_key("registry"))
    api = client.get(f"/v1/claims/{claim}", headers=reg).json()
    assert api["artist_id"] == str(artist_id_of(runtime, "mei@example.org"))
    assert api["created_by"].startswith("portal:artist:")

    for form, status, said in (
        ({"output_id": "not-an-id", "reason": "x"}, 422, "output id"),
        ({"output_id": ZERO, "reason": "mine"}, 404, "no output"),
        ({"output_id": copied["id"], "reason": "   "}, 422, "reason"),
        (
            {
                "output_id": copied["id"],
                "artwork_id": work,
                "reason": "a cropped, darkened copy of my orchard",
            },
            409,
            "open",
        ),
    ):
        r = post(client, "/portal/claims", token, **form)
        assert r.status_code == status, (form, r.text[-500:])
        assert said in r.text, form
    assert count(runtime, "SELECT count(*) FROM claims") == 1

    with TestClient(create_app(settings, runtime=runtime)) as other:
        sign_up(other, "Other", "other@example.org")
        assert other.get(f"/portal/claims/{claim}/picture").status_code == 404
        assert other.get(f"/portal/claims/{claim}/report.pdf").status_code == 404
        assert claim not in other.get("/portal/claims").text

    r = client.post(
        f"/v1/claims/{claim}/decision",
        json={"uphold": True, "note": "plainly a copy"},
        headers=auth(make_key("admin")),
    )
    assert r.status_code == 200
    page = client.get("/portal/claims").text
    assert "upheld" in page and "plainly a copy" in page
    assert f"/portal/claims/{claim}/report.pdf" in page
    text, pictures = pdf_text(client.get(f"/portal/claims/{claim}/report.pdf").content)
    assert "claim.filed" in text and "claim.decided" in text and "plainly a copy" in text
    assert pictures >= 2  # the output and the work found in it
    assert "Your claim was upheld" in client.get("/portal/events").text


def test_claiming_that_a_style_adapter_imitates_the_artist(
    client,
    runtime,
    make_key,
    tiny_runner,  # noqa: F811
    tmp_path,
):
    admin = auth(make_key("admin"))
    _register_lora(client, admin, tiny_runner, tmp_path, "copycat", 9)
    token = sign_up(client)
    for form, status, said in (
        ({"adapter": "no-such", "adapter_reason": "mine"}, 404, "no adapter named"),
        ({"adapter": "copycat", "adapter_reason": ""}, 422, "reason"),
        ({"adapter": "copy\ncat", "adapter_reason": "mine"}, 422, "adapter"),
    ):
        r = post(client, "/portal/claims/adapter", token, **form)
        assert r.status_code == status and said in r.text, form
    claim_form = {"adapter": "copycat", "adapter_reason": "trained on my portfolio"}
    r = post(client, "/portal/claims/adapter", token, **claim_form)
    assert r.status_code == 303
    r = post(client, "/portal/claims/adapter", token, **claim_form)  # the same, still open
    assert r.status_code == 409 and "awaits a decision" in r.text
    (claim,) = client.get("/v1/adapters/copycat/claims", headers=admin).json()
    assert claim["artist_id"] == str(artist_id_of(runtime, "mei@example.org"))
    page = client.get("/portal/claims").text
    assert "copycat" in page and "trained on my portfolio" in page and ">open<" in page
    r = client.post(
        f"/v1/adapters/copycat/claims/{claim['id']}/decision",
        json={"uphold": True, "note": "the samples match"},
        headers=admin,
    )
    assert r.status_code == 200
    page = client.get("/portal/claims").text
    assert ">upheld<" in page and "the samples match" in page and ">blocked<" in page
    said = client.get("/portal/events?kind=adapter.claim_decided").text
    assert "Your claim against the style adapter copycat was upheld: the adapter is blocked" in said


def test_a_claim_names_the_output_by_the_picture_the_artist_found(mclient, runtime, make_key):
    """An artist has a copy of one of our outputs, stripped of its metadata and re-encoded, but
    not its id: the picture leads to the output."""
    client = mclient
    st = auth(make_key("stamp"))
    copied, stamped = stamp(client, st, Image.open(io.BytesIO(edited(571))).convert("RGB"))
    found = encode(Image.open(io.BytesIO(stamped)).convert("RGB"), quality=80)  # no manifest
    token = sign_up(client)
    upload(client, token, jpeg(571), title="Quarry")

    def claim(files: dict, **fields):
        return client.post(
            "/portal/claims",
            data={"csrf": token, "reason": "my quarry, cropped and darkened", **fields},
            files=files,
            follow_redirects=False,
        )

    r = claim({"image": ("found.jpg", encode(photo_like(572)), "image/jpeg")})
    assert r.status_code == 404 and "none of our outputs" in r.text
    r = claim({"image": ("notes.txt", b"not a picture", "text/plain")})
    assert r.status_code == 415
    r = client.post("/portal/claims", data={"csrf": token, "reason": "mine"})
    assert r.status_code == 422 and "give the picture you found" in r.text
    assert count(runtime, "SELECT count(*) FROM claims") == 0

    r = claim({"image": ("found.jpg", found, "image/jpeg")})
    assert r.status_code == 303, r.text[-400:]
    (filed,) = client.get("/v1/claims", headers=auth(make_key("registry"))).json()["claims"]
    assert filed["output_id"] == copied["id"]
    assert [m["decision"] for m in filed["matches"]] == ["copy"]


# --- invitations ---


def test_an_invitation_lets_an_artist_registered_by_the_api_log_in(client, runtime, make_key, cli):
    reg = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Ana", "email": "ana@example.org"}, headers=reg
    ).json()["id"]
    out = cli("artists", "invite", artist)
    link = out.stdout.strip().splitlines()[-1]
    assert "ana@example.org" in out.stderr
    path = link.split("://", 1)[1].split("/", 1)[1]
    assert link.startswith("http://127.0.0.1:8000/portal/invite/")
    page = client.get("/" + path)
    assert "Ana" in page.text
    r = client.post("/" + path, data={"password": "short", "password_again": "short"})
    assert r.status_code == 422 and "at least 10" in r.text
    r = client.post(
        "/" + path,
        data={"password": PASSWORD, "password_again": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=password-set")
    # used once only
    assert client.get("/" + path).status_code == 404
    r = client.post("/" + path, data={"password": PASSWORD, "password_again": PASSWORD})
    assert r.status_code == 404
    r = client.post(
        "/portal/login",
        data={"email": "ana@example.org", "password": PASSWORD},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "Log out Ana" in client.get("/portal/works").text
    # a second invitation resets the password and ends the logins made with the first
    new_link = cli("artists", "invite", artist).stdout.strip().splitlines()[-1]
    new_path = "/" + new_link.split("://", 1)[1].split("/", 1)[1]
    r = client.post(
        new_path, data={"password": "a new long password", "password_again": "a new long password"}
    )
    assert client.get("/portal/works", follow_redirects=False).status_code == 303
    r = client.post("/portal/login", data={"email": "ana@example.org", "password": PASSWORD})
    assert r.status_code == 401
    assert cli("artists", "invite", ZERO, ok=False).returncode != 0
    assert client.get("/portal/invite/unknown-token").status_code == 404


def test_the_portal_answers_json_clients_nothing_about_itself(client):
    spec = client.get("/openapi.json").json()
    assert not [p for p in spec["paths"] if p.startswith("/portal")]
    assert json.loads(client.get("/healthz").text)


# --- the account ---


def test_changing_the_password_ends_the_other_logins(client, settings, runtime):
    from service.api.app import create_app

    token = sign_up(client)
    with TestClient(create_app(settings, runtime=runtime)) as elsewhere:
        r = elsewhere.post("/portal/login", data={"email": "mei@example.org", "password": PASSWORD})
        assert r.status_code == 200 and "Your works" in r.text
        assert "logged in 2 times" in client.get("/portal/account").text

        new = "a brand new passphrase"
        for form, status, said in (
            (
                {"current": "not my password", "password": new, "password_again": new},
                403,
                "the current password is wrong",
            ),
            (
                {"current": PASSWORD, "password": "short", "password_again": "short"},
                422,
                "at least 10",
            ),
            ({"current": PASSWORD, "password": new, "password_again": new + "!"}, 422, "differ"),
        ):
            r = post(client, "/portal/account/password", token, **form)
            assert r.status_code == status and said in r.text
        assert elsewhere.get("/portal/works", follow_redirects=False).status_code == 200

        r = post(
            client,
            "/portal/account/password",
            token,
            current=PASSWORD,
            password=new,
            password_again=new,
        )
        assert r.status_code == 303 and r.headers["location"].endswith("done=password-changed")
        assert elsewhere.get("/portal/works", follow_redirects=False).status_code == 303
        assert client.get("/portal/works", follow_redirects=False).status_code == 200
        r = elsewhere.post("/portal/login", data={"email": "mei@example.org", "password": PASSWORD})
        assert r.status_code == 401
        r = elsewhere.post("/portal/login", data={"email": "mei@example.org", "password": new})
        assert r.status_code == 200 and "Your works" in r.text

        r = post(client, "/portal/account/sessions/end", token)
        assert r.status_code == 303
        assert elsewhere.get("/portal/works", follow_redirects=False).status_code == 303
        assert "logged in 1 time " in client.get("/portal/account").text


def test_a_copy_of_another_artists_work_is_registered_as_disputed_and_settled(
    client, runtime, make_key
):
    reg = auth(make_key("registry"))
    first = client.post(
        "/v1/artists", json={"display_name": "Alma", "email": "alma@example.org"}, headers=reg
    ).json()["id"]
    files = [("files", ("harbour.jpg", encode(photo_like(8501)), "image/jpeg"))]
    r = client.post(f"/v1/artists/{first}/artworks", files=files, headers=reg)
    assert r.status_code == 201, r.text
    original = r.json()["artworks"][0]["id"]

    token = sign_up(client)
    r = upload(client, token, ("copy.jpg", edited(8501), "image/jpeg"), jpeg(8502))
    assert r.status_code == 201, r.text
    assert "2 registered" in r.text
    assert r.text.count('class="badge disputed"') == 1
    assert "match a picture another artist registered before you" in r.text
    mine = artist_id_of(runtime, "mei@example.org")
    works = client.get(f"/v1/artists/{mine}/artworks", headers=reg).json()["artworks"]
    copy = next(w["id"] for w in works if w["original_filename"] == "copy.jpg")
    own = next(w["id"] for w in works if w["original_filename"] != "copy.jpg")
    (dispute,) = client.get("/v1/disputes", headers=reg).json()["disputes"]

    page = client.get(f"/portal/works/{copy}").text
    assert "Ownership dispute" in page and "before you registered this one" in page
    assert dispute["id"] in page and "the permission of both of you" in page
    assert first not in page and original not in page  # the other artist stays unnamed
    assert "dispute" not in client.get(f"/portal/works/{own}").text.lower()
    events = client.get("/portal/events", params={"kind": "artwork.disputed"}).text
    assert "Another artist registered a matching picture before you" in events

    r = client.post(
        f"/v1/disputes/{dispute['id']}/decision",
        json={"withdraw": copy, "note": "<b>Alma</b> showed the layered file"},
        headers=auth(make_key("admin")),
    )
    assert r.status_code == 200, r.text
    page = client.get(f"/portal/works/{copy}").text
    assert "Settled dispute" in page and "this registration was withdrawn" in page
    assert "&lt;b&gt;Alma&lt;/b&gt; showed the layered file" in page and "<b>Alma" not in page
    events = client.get("/portal/events", params={"kind": "artwork.dispute_decided"}).text
    assert "decided against this registration: it was withdrawn" in events


def test_the_artist_changes_their_name_and_with_the_password_their_address(
    client, runtime, make_key
):
    reg = auth(make_key("registry"))
    r = client.post(
        "/v1/artists", json={"display_name": "Ana", "email": "ana@example.org"}, headers=reg
    )
    assert r.status_code == 201
    token = sign_up(client)
    me = artist_id_of(runtime, "mei@example.org")
    before = count(runtime, "SELECT count(*) FROM audit_log")

    # The name alone needs no password.
    same = {"display_name": "Mei L.", "email": "mei@example.org"}
    r = post(client, "/portal/account/profile", token, **same)
    assert r.status_code == 303 and r.headers["location"].endswith("done=profile-changed")
    page = client.get(r.headers["location"]).text
    assert "<strong>Mei L.</strong>" in page and "are saved" in page
    assert client.get(f"/v1/artists/{me}", headers=reg).json()["display_name"] == "Mei L."
    assert audit_actors(runtime, "artist.profile_changed") == [f"portal:artist:{me}"]
    assert "Your name changed to “Mei L.”" in client.get("/portal/events").text

    # A new address needs the current password; refused, nothing changes and what was typed
    # stays in the form.
    for form, status, said in (
        ({"email": "mei.l@example.org"}, 403, "the current password is wrong"),
        ({"email": "mei.l@example.org", "current": "not it"}, 403, "the current password is wrong"),
        ({"email": "ana@example.org", "current": PASSWORD}, 409, "another artist"),
        ({"email": "not an address", "current": PASSWORD}, 422, "e-mail address"),
        ({"email": "mei.l@example.org", "display_name": "  "}, 422, "name"),
    ):
        r = post(client, "/portal/account/profile", token, **{"display_name": "Mei", **form})
        assert r.status_code == status and said in r.text, (form, r.text)
        assert f'value="{form["email"]}"' in r.text
    assert count(runtime, "SELECT count(*) FROM audit_log") == before + 1
    assert client.get(f"/v1/artists/{me}", headers=reg).json()["email"] == "mei@example.org"

    r = post(
        client,
        "/portal/account/profile",
        token,
        display_name="Mei L.",
        email="mei.l@example.org",
        current=PASSWORD,
    )
    assert r.status_code == 303
    assert client.get(f"/v1/artists/{me}", headers=reg).json()["email"] == "mei.l@example.org"
    assert "Your e-mail address changed." in client.get("/portal/events").text
    # The new address is the login now, the old one is not.
    post(client, "/portal/logout", token)
    r = client.post("/portal/login", data={"email": "mei@example.org", "password": PASSWORD})
    assert r.status_code == 401
    r = client.post("/portal/login", data={"email": "mei.l@example.org", "password": PASSWORD})
    assert r.status_code == 200 and "Your works" in r.text
