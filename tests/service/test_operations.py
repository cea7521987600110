"""Health, readiness, metrics, OpenAPI docs, migrations."""

from __future__ import annotations

import threading

from service.db.migrate import available_migrations, pending, upgrade


def test_healthz_readyz_metrics_docs(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["database"] == "ok"
    assert body["indexes"]["artwork"]["loaded"] is True
    model = body["generation"]["model"]  # no CHOPMARK_MODEL: the tiny default, said so
    assert model["is_default_tiny"] is True and "random weights" in model["notice"]
    assert model["loaded"] is False, "readiness does not load the model"
    metrics = client.get("/metrics").text
    assert "chopmark_http_requests_total" in metrics
    assert 'chopmark_index_size{bank="artwork"}' in metrics
    assert 'chopmark_index_change_seq{bank="artwork"}' in metrics
    ages = [float(line.split()[-1]) for line in metrics.splitlines()
            if line.startswith('chopmark_index_refresh_age_seconds{bank="artwork"}')]
    assert len(ages) == 1 and 0 <= ages[0] < 60
    assert client.get("/docs").status_code == 200


def test_readyz_reports_an_unloaded_or_stale_index(client, runtime):
    bank = runtime.banks["artwork"]
    runtime.refresher.stop()  # first: a tick after the next line would undo it
    bank._refreshed_at = 0.0  # as if the refresher had stopped long ago
    r = client.get("/readyz")
    assert r.status_code == 503
    assert any("stale" in reason for reason in r.json()["reasons"])
    bank._index = None
    r = client.get("/readyz")
    assert any("not loaded" in reason for reason in r.json()["reasons"])


def test_readyz_reports_a_database_that_does_not_answer(client, runtime):
    runtime.refresher.stop()
    runtime.pool.close()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert "database unavailable" in r.json()["reasons"]


def test_concurrent_upgrades_apply_each_migration_once(pg_server_url):
    import uuid

    import psycopg

    name = f"chopmark_mig_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(pg_server_url, dbname=name)
    try:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(len(upgrade(url)))) for _ in range(3)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [0, 0, len(available_migrations())]
        assert pending(url) == []
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_opencv_threads_follow_the_setting(settings):
    import cv2

    from service.runtime import Runtime

    before = cv2.getNumThreads()
    try:
        for wanted in (3, 1):
            rt = Runtime.open(settings.model_copy(update={"opencv_threads": wanted}))
            try:
                assert cv2.getNumThreads() == wanted
            finally:
                rt.close()
    finally:
        cv2.setNumThreads(before)


def test_the_documented_error_body_admits_what_a_422_sends(client, make_key):
    """A field that fails validation is answered with a list under `detail`; the OpenAPI schema
    of the error body says so."""
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ErrorBody"]
    kinds = {alt.get("type") for alt in schema["properties"]["detail"]["anyOf"]}
    assert kinds == {"string", "array"}
    h = {"Authorization": f"Bearer {make_key('registry')}"}
    r = client.post("/v1/artists", json={"display_name": "", "email": "x@example.org"}, headers=h)
    assert r.status_code == 422 and isinstance(r.json()["detail"], list)
    assert set(r.json()["detail"][0]) == {"type", "loc", "msg"}
