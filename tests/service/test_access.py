"""API keys: 401 without a valid key, 403 without the route's scope, listing and revoking."""

from __future__ import annotations

import pytest

from tests.support import auth

# Every route that needs a key, with the scope it needs and a minimal request.
PROTECTED = [
    ("post", "/v1/artists", "registry", {"json": {"display_name": "A", "email": "a@example.org"}}),
    ("get", "/v1/artists", "registry", {}),
    ("get", "/v1/artists/00000000-0000-0000-0000-000000000000", "registry", {}),
    (
        "patch",
        "/v1/artists/00000000-0000-0000-0000-000000000000",
        "registry",
        {"json": {"default_preferences": {}}},
    ),
    (
        "post",
        "/v1/artists/00000000-0000-0000-0000-000000000000/artworks",
        "registry",
        {"files": {"files": ("a.jpg", b"x", "image/jpeg")}},
    ),
    ("get", "/v1/artists/00000000-0000-0000-0000-000000000000/artworks", "registry", {}),
    ("get", "/v1/artworks/00000000-0000-0000-0000-000000000000", "registry", {}),
    ("get", "/v1/artworks/00000000-0000-0000-0000-000000000000/image", "registry", {}),
    ("get", "/v1/artworks/00000000-0000-0000-0000-000000000000/thumbnail", "registry", {}),
    ("patch", "/v1/artworks/00000000-0000-0000-0000-000000000000", "registry", {"json": {}}),
    ("delete", "/v1/artworks/00000000-0000-0000-0000-000000000000", "registry", {}),
    (
        "post",
        "/v1/artworks/00000000-0000-0000-0000-000000000000/licenses",
        "registry",
        {"json": {"grantee": "u", "scopes": ["img2img"]}},
    ),
    ("get", "/v1/artworks/00000000-0000-0000-0000-000000000000/licenses", "registry", {}),
    (
        "get",
        "/v1/artworks/00000000-0000-0000-0000-000000000000/licenses/00000000-0000-0000-0000-000000000000",
        "registry",
        {},
    ),
    (
        "delete",
        "/v1/artworks/00000000-0000-0000-0000-000000000000/licenses/00000000-0000-0000-0000-000000000000",
        "registry",
        {},
    ),
    ("post", "/v1/matches", "match", {"files": {"file": ("a.jpg", b"x", "image/jpeg")}}),
    (
        "post",
        "/v1/matches/picture",
        "match",
        {"files": {"file": ("a.jpg", b"x", "image/jpeg")}},
    ),
    (
        "post",
        "/v1/stamps",
        "stamp",
        {"files": {"file": ("a.png", b"x", "image/png")}, "data": {"metadata": "{}"}},
    ),
    ("get", "/v1/stamps/00000000-0000-0000-0000-000000000000", "stamp", {}),
    ("get", "/v1/stamps/00000000-0000-0000-0000-000000000000/image", "stamp", {}),
    ("get", "/sbr/matches/byBinding", "moderate", {"params": {"alg": "a", "value": "b"}}),
    ("post", "/sbr/matches/byBinding", "moderate", {"json": {"alg": "a", "value": "b"}}),
    ("post", "/sbr/matches/byContent", "moderate", {"content": b"x"}),
    ("get", "/sbr/manifests/urn:c2pa:00000000-0000-0000-0000-000000000000", "moderate", {}),
    ("get", "/sbr/services/supportedAlgorithms", "moderate", {}),
    (
        "post",
        "/v1/moderation/check",
        "moderate",
        {"files": {"file": ("a.jpg", b"x", "image/jpeg")}},
    ),
    (
        "post",
        "/v1/moderation/check/picture",
        "moderate",
        {"files": {"file": ("a.jpg", b"x", "image/jpeg")}},
    ),
    (
        "post",
        "/v1/moderation/batch",
        "moderate",
        {"files": {"files": ("a.jpg", b"x", "image/jpeg")}},
    ),
    ("get", "/v1/moderation/jobs/00000000-0000-0000-0000-000000000000", "moderate", {}),
    ("post", "/v1/moderation/jobs/00000000-0000-0000-0000-000000000000/webhook", "moderate", {}),
    ("get", "/v1/moderation/checks/00000000-0000-0000-0000-000000000000", "moderate", {}),
    (
        "get",
        "/v1/moderation/checks/00000000-0000-0000-0000-000000000000/picture",
        "moderate",
        {},
    ),
    ("get", "/v1/artists/00000000-0000-0000-0000-000000000000/events", "registry", {}),
    ("get", "/v1/audit/head", "audit", {}),
    ("get", "/v1/audit/entries", "audit", {}),
    ("get", "/v1/audit/entries/0/proof", "audit", {}),
    ("get", "/v1/audit/report", "audit", {"params": {"subject": "artwork:x"}}),
    ("get", "/v1/audit/consistency", "audit", {"params": {"first": 1}}),
    (
        "post",
        "/v1/moderation/checks/00000000-0000-0000-0000-000000000000/reviews",
        "moderate",
        {"json": {"decision": "allow", "reviewer": "m"}},
    ),
    ("get", "/v1/moderation/jobs", "moderate", {}),
    ("get", "/v1/moderation/checks", "moderate", {}),
    ("get", "/v1/moderation/policy", "moderate", {}),
    ("post", "/v1/generations", "generate", {"json": {}}),
    ("get", "/v1/generations/00000000-0000-0000-0000-000000000000", "generate", {}),
    ("get", "/v1/generations/00000000-0000-0000-0000-000000000000/image", "generate", {}),
    ("post", "/v1/adapters", "admin", {"data": {"name": "x"}}),
    ("get", "/v1/adapters", "admin", {}),
    ("get", "/v1/adapters/x", "admin", {}),
    ("patch", "/v1/adapters/x", "admin", {"json": {"status": "blocked"}}),
    ("post", "/v1/adapters/x/claims", "registry", {"json": {}}),
    ("get", "/v1/adapters/x/claims", "registry", {}),
    (
        "post",
        "/v1/adapters/x/claims/00000000-0000-0000-0000-000000000000/decision",
        "admin",
        {"json": {"uphold": True}},
    ),
    ("post", "/v1/claims", "registry", {"json": {}}),
    ("get", "/v1/claims", "registry", {}),
    ("get", "/v1/claims/00000000-0000-0000-0000-000000000000", "registry", {}),
    ("get", "/v1/claims/00000000-0000-0000-0000-000000000000/picture", "registry", {}),
    ("get", "/v1/disputes", "registry", {}),
    ("get", "/v1/disputes/00000000-0000-0000-0000-000000000000", "registry", {}),
    ("get", "/v1/disputes/00000000-0000-0000-0000-000000000000/picture", "registry", {}),
    (
        "post",
        "/v1/disputes/00000000-0000-0000-0000-000000000000/decision",
        "admin",
        {"json": {"withdraw": None}},
    ),
    (
        "post",
        "/v1/claims/00000000-0000-0000-0000-000000000000/decision",
        "admin",
        {"json": {"uphold": True}},
    ),
    ("post", "/v1/sources", "admin", {"data": {"dataset": "d"}}),
    ("get", "/v1/sources", "admin", {}),
    ("get", "/v1/keys", "admin", {}),
    ("post", "/v1/keys", "admin", {"json": {"name": "n", "scopes": ["match"]}}),
    ("delete", "/v1/keys/1", "admin", {}),
]


@pytest.mark.parametrize(("method", "path", "scope", "kw"), PROTECTED)
def test_routes_refuse_missing_bad_and_wrong_scope_keys(client, make_key, method, path, scope, kw):
    call = getattr(client, method)
    r = call(path, **kw)
    assert r.status_code == 401, r.text
    assert "API key" in r.json()["detail"]
    r = call(path, headers=auth("chm_deadbeef_not-a-real-key"), **kw)
    assert r.status_code == 401
    other = "audit" if scope != "audit" else "match"
    r = call(path, headers=auth(make_key(other)), **kw)
    assert r.status_code == 403
    assert f"'{scope}'" in r.json()["detail"]
    r = call(path, headers=auth(make_key(scope)), **kw)
    assert r.status_code not in (401, 403), r.text


PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics")}


def _fits(path: str, template: str) -> bool:
    """Whether a concrete ``path`` is an instance of an OpenAPI path ``template``."""
    parts, slots = path.split("/"), template.split("/")
    return len(parts) == len(slots) and all(
        a == b or b.startswith("{") for a, b in zip(parts, slots, strict=True)
    )


def test_openapi_states_each_routes_scope(client):
    spec = client.get("/openapi.json").json()
    for method, path, scope, _ in PROTECTED:
        ops = [
            op
            for p, item in spec["paths"].items()
            for m, op in item.items()
            if m == method and _fits(path, p)
        ]
        assert ops, (method, path)
        assert ops[0]["x-required-scope"] == scope


def test_every_route_but_the_probes_is_in_the_refusal_test(client):
    """A route added without a line in ``PROTECTED`` (so without a refusal test) fails here."""
    spec = client.get("/openapi.json").json()
    untested = [
        (m, p)
        for p, item in spec["paths"].items()
        for m in item
        if (m, p) not in PUBLIC
        and not any(method == m and _fits(path, p) for method, path, _, _ in PROTECTED)
    ]
    assert untested == []


def test_admin_creates_lists_and_revokes_keys(client, make_key):
    admin = auth(make_key("admin"))
    r = client.post("/v1/keys", json={"name": "moderation bot", "scopes": ["match"]}, headers=admin)
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("chm_") and created["scopes"] == ["match"]
    listed = client.get("/v1/keys", headers=admin).json()
    assert any(k["id"] == created["id"] and "key" not in k for k in listed)
    # the new key works for its scope, then stops working once revoked
    assert (
        client.get(
            "/v1/artists/00000000-0000-0000-0000-000000000000", headers=auth(secret)
        ).status_code
        == 403
    )
    assert client.delete(f"/v1/keys/{created['id']}", headers=admin).status_code == 200
    r = client.post(
        "/v1/matches", headers=auth(secret), files={"file": ("a.jpg", b"x", "image/jpeg")}
    )
    assert r.status_code == 401


def test_unknown_scope_is_refused(client, make_key):
    r = client.post(
        "/v1/keys", json={"name": "x", "scopes": ["root"]}, headers=auth(make_key("admin"))
    )
    assert r.status_code == 422


def test_only_a_hash_of_the_key_is_stored(runtime, make_key):
    secret = make_key("match")
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT * FROM api_keys").fetchall()
    for row in rows:
        assert secret.encode() not in b"".join(
            v if isinstance(v, bytes) else str(v).encode() for v in row.values()
        )


def test_a_key_whose_prefix_is_all_digits_is_revoked_by_its_prefix(runtime, make_key, client):
    """A prefix is 8 hex digits: about 2% are all decimal digits and read like an id."""
    from service.auth.keys import revoke_key

    make_key("match")
    other = make_key("match")
    with runtime.pool.connection() as conn:
        first, second = conn.execute("SELECT id FROM api_keys ORDER BY id").fetchall()[-2:]
        conn.execute("UPDATE api_keys SET prefix = '12345678' WHERE id = %s", (first["id"],))
        done = revoke_key(conn, "12345678")
        assert done is not None and done.newly
        assert done.key.id == first["id"] and done.key.revoked_at is not None
        again = revoke_key(conn, "12345678")
        assert again is not None and not again.newly
        assert again.key.revoked_at == done.key.revoked_at
        by_id = revoke_key(conn, str(second["id"]))
        assert by_id is not None and by_id.key.id == second["id"]
        assert revoke_key(conn, "87654321") is None and revoke_key(conn, "nonsense") is None
    files = {"file": ("a.jpg", b"x", "image/jpeg")}
    assert client.post("/v1/matches", files=files, headers=auth(other)).status_code == 401
    admin = auth(make_key("admin"))
    assert client.delete("/v1/keys/99999999999999999999", headers=admin).status_code == 404


def test_revoking_a_revoked_key_again_changes_nothing_and_audits_once(runtime, make_key, client):
    admin = auth(make_key("admin"))
    make_key("match", name="victim")
    with runtime.pool.connection() as conn:
        victim = conn.execute("SELECT id FROM api_keys WHERE name = 'victim'").fetchone()["id"]
    first = client.delete(f"/v1/keys/{victim}", headers=admin)
    again = client.delete(f"/v1/keys/{victim}", headers=admin)
    assert first.status_code == again.status_code == 200
    assert first.json()["revoked_at"] == again.json()["revoked_at"]
    with runtime.pool.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM audit_log WHERE kind = 'key.revoked'")
        assert n.fetchone()["n"] == 1


def test_a_refusal_is_logged_with_its_reason_and_key(client, make_key, caplog):
    """The access log has the status alone; the service's log says why, and for which key."""
    import logging

    h = auth(make_key("match", name="partner-7"))
    with caplog.at_level(logging.INFO, logger="service.api.errors"):
        assert client.get("/v1/keys", headers=h).status_code == 403
        assert client.get("/v1/keys").status_code == 401
        r = client.get("/v1/artists/not-a-uuid", headers=auth(make_key("registry")))
    assert r.status_code == 422 and r.json()["detail"][0]["msg"] == "Input should be a valid UUID"
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "service.api.errors"]
    assert any(
        "refused GET /v1/keys with 403" in m and "partner-7" in m and "'admin' scope" in m
        for m in lines
    ), lines
    assert any("with 401" in m and "missing API key" in m for m in lines), lines
    assert any("with 422" in m and "valid UUID" in m for m in lines), lines
