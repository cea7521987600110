"""What the API promises: text that would act on a terminal or a log is refused where it is
sent, input that cannot be parsed is a 4xx (never a 500), every form part comes once, fields
are taken as their JSON types, and the OpenAPI document states the answers as they are sent."""

from __future__ import annotations

import json
import struct

from tests.service.test_bad_input import counts, key_count
from tests.support import auth

ESCAPE = "\x1b[31mred\x1b[0m"
FORGED_ROW = "x\r\nkadmin    admin"
BIDI = "abc\u202egpj.exe"


def _artist(client, h, name: str = "Rin", email: str = "rin@example.org") -> dict:
    r = client.post("/v1/artists", json={"display_name": name, "email": email}, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


def test_names_and_labels_holding_control_characters_are_refused(
    client, runtime, make_key, photo
):
    h = auth(make_key("registry", "moderate", "match", "generate", "admin"))
    artist = _artist(client, h)
    work = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("w.jpg", photo(301), "image/jpeg"))],
        headers=h,
    ).json()["artworks"][0]
    image = ("q.jpg", photo(302), "image/jpeg")
    before = (counts(runtime), key_count(runtime))
    attempts = {
        "key name": client.post(
            "/v1/keys", json={"name": FORGED_ROW, "scopes": ["match"]}, headers=h
        ),
        "artist name": client.post(
            "/v1/artists", json={"display_name": ESCAPE, "email": "e@example.org"}, headers=h
        ),
        "title": client.patch(f"/v1/artworks/{work['id']}", json={"title": ESCAPE}, headers=h),
        "title on one line": client.patch(
            f"/v1/artworks/{work['id']}", json={"title": "two\nlines"}, headers=h
        ),
        "grantee": client.post(
            f"/v1/artworks/{work['id']}/licenses",
            json={"grantee": BIDI, "scopes": ["img2img"]},
            headers=h,
        ),
        "check user": client.post(
            "/v1/moderation/check", data={"user": FORGED_ROW}, files={"file": image}, headers=h
        ),
        "check context": client.post(
            "/v1/moderation/check", data={"context": ESCAPE}, files={"file": image}, headers=h
        ),
        "match user": client.post(
            "/v1/matches", data={"user": ESCAPE}, files={"file": image}, headers=h
        ),
        "generation user": client.post(
            "/v1/generations", json={"prompt": "a hill", "user": FORGED_ROW}, headers=h
        ),
        "generation prompt": client.post(
            "/v1/generations", json={"prompt": f"a hill {ESCAPE}"}, headers=h
        ),
    }
    for what, r in attempts.items():
        assert r.status_code == 422, (what, r.status_code, r.text)
        assert "control characters" in r.text, (what, r.text)
    assert (counts(runtime), key_count(runtime)) == before
    # free text keeps its line breaks
    r = client.post(
        "/v1/moderation/check",
        data={"context": "line one\nline two\ttabbed"},
        files={"file": image},
        headers=h,
    )
    assert r.status_code == 200, r.text


def test_a_blank_key_name_is_refused_not_a_server_error(client, runtime, make_key):
    admin = auth(make_key("admin"))
    before = key_count(runtime)
    r = client.post("/v1/keys", json={"name": "   ", "scopes": ["match"]}, headers=admin)
    assert r.status_code == 422 and "white space" in r.text, r.text
    assert key_count(runtime) == before


def test_input_nested_without_end_is_refused_not_a_server_error(client, make_key, photo):
    h = auth(make_key("stamp", "admin", "moderate"))
    deep = '{"generator": ' + "[" * 20_000 + "]" * 20_000 + "}"
    r = client.post(
        "/v1/stamps",
        files={"file": ("a.jpg", photo(303), "image/jpeg")},
        data={"metadata": deep},
        headers=h,
    )
    assert r.status_code == 422 and "nested too deeply" in r.text, r.text
    header = ('{"__metadata__": {"a": ' + "[" * 5_000 + "]" * 5_000 + "}}").encode()
    lora = struct.pack("<Q", len(header)) + header
    r = client.post(
        "/v1/adapters",
        data={"name": "deep"},
        files={"file": ("deep.safetensors", lora, "application/octet-stream")},
        headers=h,
    )
    assert r.status_code == 422 and "nested too deeply" in r.text, r.text
    r = client.post(
        "/v1/moderation/batch",
        data={"webhook_url": "http://[::1/"},
        files=[("files", ("a.jpg", photo(304), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 422 and "not a valid URL" in r.text, r.text


def test_fields_are_taken_as_their_json_types(client, make_key, photo):
    h = auth(make_key("stamp", "admin", "registry"))
    meta = {"generator": "G", "model_name": "m"}
    for wrong in ({"seed": True}, {"steps": "5"}, {"prompt_private": "yes"}):
        r = client.post(
            "/v1/stamps",
            files={"file": ("a.jpg", photo(305), "image/jpeg")},
            data={"metadata": json.dumps({**meta, **wrong})},
            headers=h,
        )
        assert r.status_code == 422, (wrong, r.text)
    r = client.post(
        "/v1/adapters/none/claims/00000000-0000-0000-0000-000000000000/decision",
        json={"uphold": "yes"},
        headers=h,
    )
    assert r.status_code == 422 and "uphold" in r.text, r.text


def test_form_parts_sent_twice_are_refused_on_every_route(client, make_key, photo):
    h = auth(make_key("admin"))
    image = ("s.jpg", photo(306), "image/jpeg")
    r = client.post(
        "/v1/sources", data={"dataset": ["first", "second"]}, files=[("files", image)], headers=h
    )
    assert r.status_code == 422 and "`dataset`" in r.text, r.text
    r = client.post(
        "/v1/adapters",
        data={"name": ["one", "two"]},
        files={"file": ("a.safetensors", b"\x00" * 16, "application/octet-stream")},
        headers=h,
    )
    assert r.status_code == 422 and "`name`" in r.text, r.text
    assert client.get("/v1/sources", headers=h).json()["datasets"] == []
    assert client.get("/v1/adapters", headers=h).json() == []


def test_a_licence_end_beyond_what_can_be_stored_is_refused_in_words(client, make_key, photo):
    h = auth(make_key("registry"))
    artist = _artist(client, h, "Ash", "ash@example.org")
    work = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("w.jpg", photo(307), "image/jpeg"))],
        headers=h,
    ).json()["artworks"][0]
    for when in ("9999-12-31T23:59:59-14:00", "9999-06-01T00:00:00Z"):
        r = client.post(
            f"/v1/artworks/{work['id']}/licenses",
            json={"grantee": "eve", "scopes": ["img2img"], "expires_at": when},
            headers=h,
        )
        assert r.status_code == 422 and "before the year 9999" in r.text, (when, r.text)
    ok = client.post(
        f"/v1/artworks/{work['id']}/licenses",
        json={"grantee": "eve", "scopes": ["img2img"], "expires_at": "2999-01-01T00:00:00+05:00"},
        headers=h,
    )
    assert ok.status_code == 201, ok.text


def test_the_openapi_document_states_the_answers_as_sent(client, make_key):
    doc = client.get("/openapi.json").json()
    text = json.dumps(doc)
    assert "HTTPValidationError" not in text
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            if "x-required-scope" in op:
                assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert "400" in responses, (method, path)
            for code, answer in responses.items():
                if code.startswith(("4", "5")) and "content" in answer:
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (path, code)
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    # a 422 with a sentence and one with field problems both fit ErrorBody's detail
    detail = doc["components"]["schemas"]["ErrorBody"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]


def test_a_method_not_allowed_names_every_method_of_the_path(client, make_key):
    h = auth(make_key("admin"))
    r = client.put("/v1/keys", headers=h)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD, POST"
    r = client.delete("/v1/artworks/00000000-0000-0000-0000-000000000000/image", headers=h)
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"
