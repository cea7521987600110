"""Recorded moderation checks listed newest first: a key's own, an admin's all, narrowed by
verdict, user, image, job and time, a page at a time (GET /v1/moderation/checks and
``chopmark checks list``)."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from PIL import Image

from tests.service.test_moderation import (
    edited,
    moderate,
    one_photo_batch,
    register,
    stamp,
    wait_job,
)
from tests.support import auth, encode, photo_like

LIST = "/v1/moderation/checks"


def listed(client, h, **params) -> dict:
    r = client.get(LIST, params=params, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def ids(page: dict) -> list[str]:
    return [c["id"] for c in page["checks"]]


@pytest.fixture
def recorded(mclient, make_key):
    """Checks by two platform keys: key A a copy of a registered work (block, user u1), an
    unrelated photo (allow, u1) and our output stripped of its manifest (review, u2); key B
    one photo. Returns the keys' headers and A's results, oldest first."""
    staff = auth(make_key("registry", "stamp"))
    (work,) = register(mclient, staff, 7101)
    _, signed = stamp(mclient, staff, photo_like(7102))
    stripped = encode(Image.open(io.BytesIO(signed)).convert("RGB"), quality=92)
    a, b = auth(make_key("moderate")), auth(make_key("moderate"))
    made = [
        moderate(mclient, a, edited(7101), user="u1", context="upload 1"),
        moderate(mclient, a, encode(photo_like(7103)), user="u1"),
        moderate(mclient, a, stripped, user="u2"),
    ]
    assert [m["verdict"] for m in made] == ["block", "allow", "review"]
    other = moderate(mclient, b, encode(photo_like(7104)), user="u1")
    return {"a": a, "b": b, "made": made, "other": other, "work": work}


def test_a_key_lists_its_own_checks_newest_first_an_admin_every_check(mclient, make_key, recorded):
    a, made = recorded["a"], recorded["made"]
    page = listed(mclient, a)
    assert ids(page) == [m["id"] for m in reversed(made)] and page["next_cursor"] is None
    first = page["checks"][-1]
    assert first["verdict"] == "block" and first["user"] == "u1"
    assert first["context"] == "upload 1" and first["media_type"] == "image/jpeg"
    assert first["sha256"] == made[0]["sha256"] and first["reasons"] == made[0]["reasons"]
    assert first["policy"]["version"] == made[0]["policy"]["version"]
    assert first["ai_generated"] == "unknown" and page["checks"][0]["ai_generated"] in (
        "watermarked",
        "matched",
    )
    assert mclient.get(first["url"], headers=a).json()["id"] == first["id"]
    assert ids(listed(mclient, recorded["b"])) == [recorded["other"]["id"]]
    everyone = ids(listed(mclient, auth(make_key("admin"))))
    assert everyone[:4] == [recorded["other"]["id"], *[m["id"] for m in reversed(made)]]


def test_checks_are_narrowed_by_verdict_user_image_and_time(mclient, recorded):
    a, made = recorded["a"], recorded["made"]
    block, allow, review = (m["id"] for m in made)
    assert ids(listed(mclient, a, verdict="review")) == [review]
    assert ids(listed(mclient, a, verdict=["block", "review"])) == [review, block]
    assert ids(listed(mclient, a, user="u1")) == [allow, block]
    assert ids(listed(mclient, a, user="u1", verdict="allow")) == [allow]
    assert ids(listed(mclient, a, user="nobody")) == []
    assert ids(listed(mclient, a, sha256=made[1]["sha256"].upper())) == [allow]
    # Another key's check of the same user is not A's to see.
    assert recorded["other"]["id"] not in ids(listed(mclient, a, user="u1"))
    times = [datetime.fromisoformat(m["created_at"]) for m in made]
    assert ids(listed(mclient, a, since=times[1].isoformat())) == [review, allow]
    assert ids(listed(mclient, a, until=times[1].isoformat())) == [block]
    window = {"since": times[1].isoformat(), "until": times[2].isoformat()}
    assert ids(listed(mclient, a, **window)) == [allow]
    # A time without its zone is UTC.
    utc_naive = times[2].astimezone(UTC).replace(tzinfo=None)
    assert ids(listed(mclient, a, since=utc_naive.isoformat())) == [review]
    assert ids(listed(mclient, a, since=(utc_naive + timedelta(hours=1)).isoformat())) == []


def test_pages_cut_by_cursor_neither_repeat_nor_skip_while_checks_are_added(mclient, recorded):
    a, made = recorded["a"], recorded["made"]
    page = listed(mclient, a, limit=2)
    assert ids(page) == [made[2]["id"], made[1]["id"]] and page["next_cursor"]
    newer = moderate(mclient, a, encode(photo_like(7105)))  # recorded between two pages
    rest = listed(mclient, a, limit=2, cursor=page["next_cursor"])
    assert ids(rest) == [made[0]["id"]] and rest["next_cursor"] is None
    assert ids(listed(mclient, a, limit=1))[0] == newer["id"]


def test_the_checks_of_one_batch_job(mclient, make_key):
    h = auth(make_key("moderate"))
    made = one_photo_batch(mclient, h, 7106)
    assert made.status_code == 202, made.text
    job, _ = wait_job(mclient, h, made.json()["id"])
    (item,) = job["items"]
    moderate(mclient, h, encode(photo_like(7107)))  # a single check, not the job's
    page = listed(mclient, h, job_id=job["id"])
    assert ids(page) == [item["check_id"]] and page["checks"][0]["job_id"] == job["id"]
    # The job's full results carry the decisions people made on its checks since, as the
    # checks themselves do.
    r = mclient.post(
        f"/v1/moderation/checks/{item['check_id']}/reviews",
        json={"decision": "block", "reviewer": "Ana"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    full = mclient.get(f"/v1/moderation/jobs/{job['id']}", params={"full": True}, headers=h)
    (result,) = [i["result"] for i in full.json()["items"]]
    check = mclient.get(f"/v1/moderation/checks/{item['check_id']}", headers=h).json()
    assert [x["decision"] for x in result["reviews"]] == ["block"]
    assert result == check


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"cursor": "not-ours"}, "cursor"),
        ({"verdict": "maybe"}, "verdict"),
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"sha256": "abc"}, "sha256"),
        ({"job_id": "12"}, "job_id"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-11-29T10:00:00Z", "until": "2026-11-29T09:00:00Z"}, "since"),
    ],
)
def test_bad_list_parameters_get_a_422_that_names_them(mclient, make_key, params, said):
    r = mclient.get(LIST, params=params, headers=auth(make_key("moderate")))
    assert r.status_code == 422, r.text
    assert said in json.dumps(r.json()["detail"])


def test_checks_list_command_prints_the_queue_and_json(
    mclient, settings, recorded, tmp_path, monkeypatch
):
    import typer
    from typer.testing import CliRunner

    from service.cli.check_cmd import checks_app

    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "250")
    app = typer.Typer()
    app.add_typer(checks_app, name="checks")
    runner = CliRunner()
    made = recorded["made"]
    out = runner.invoke(app, ["checks", "list", "--verdict", "review"])
    assert out.exit_code == 0, out.output
    assert made[2]["id"] in out.output and made[0]["id"] not in out.output
    out = runner.invoke(app, ["checks", "list", "--verdict", "block", "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.output)
    assert [c["id"] for c in body["checks"]] == [made[0]["id"]]
    assert datetime.fromisoformat(body["checks"][0]["created_at"]).tzinfo is not None
    image = tmp_path / "again.jpg"
    image.write_bytes(encode(photo_like(7103)))
    assert hashlib.sha256(image.read_bytes()).hexdigest() == made[1]["sha256"]
    out = runner.invoke(app, ["checks", "list", "--image", str(image), "--json"])
    assert [c["id"] for c in json.loads(out.output)["checks"]] == [made[1]["id"]]
    out = runner.invoke(app, ["checks", "list", "--limit", "1"])
    assert out.exit_code == 0 and "more: --cursor " in out.output
    cursor = out.output.split("more: --cursor ")[1].split()[0]
    out = runner.invoke(app, ["checks", "list", "--limit", "1", "--cursor", cursor, "--json"])
    assert [c["id"] for c in json.loads(out.output)["checks"]] == [made[2]["id"]]
    for bad in (["--verdict", "maybe"], ["--since", "soon"], ["--cursor", "x"]):
        out = runner.invoke(app, ["checks", "list", *bad])
        assert out.exit_code == 2, (bad, out.output)


def test_a_key_lists_its_own_batch_jobs_newest_first_with_their_items_counted(
    mclient, make_key, cli
):
    staff = auth(make_key("registry"))
    register(mclient, staff, 7111)
    a, b = auth(make_key("moderate")), auth(make_key("moderate"))
    files = [
        ("files", ("copy.jpg", edited(7111), "image/jpeg")),
        ("files", ("free.jpg", encode(photo_like(7112)), "image/jpeg")),
        ("files", ("bad.jpg", b"not an image", "image/jpeg")),
    ]
    r = mclient.post("/v1/moderation/batch", files=files, data={"user": "u7"}, headers=a)
    assert r.status_code == 202, r.text
    mixed, _ = wait_job(mclient, a, r.json()["id"])
    single, _ = wait_job(mclient, a, one_photo_batch(mclient, a, 7113).json()["id"])
    theirs, _ = wait_job(mclient, b, one_photo_batch(mclient, b, 7114).json()["id"])
    page = mclient.get("/v1/moderation/jobs", headers=a).json()
    assert [j["id"] for j in page["jobs"]] == [single["id"], mixed["id"]]
    assert page["next_cursor"] is None
    summary = page["jobs"][1]
    assert summary["status"] == "completed" and summary["total"] == 3 and summary["done"] == 3
    assert summary["counts"] == {"queued": 0, "checked": 2, "rejected": 1, "failed": 0}
    assert summary["verdicts"] == {"allow": 1, "review": 0, "block": 1}
    assert summary["user"] == "u7" and summary["webhook"] is None
    assert mclient.get(summary["url"], headers=a).json()["id"] == mixed["id"]
    admin = mclient.get("/v1/moderation/jobs", headers=auth(make_key("admin"))).json()
    assert [j["id"] for j in admin["jobs"]] == [theirs["id"], single["id"], mixed["id"]]
    first = mclient.get("/v1/moderation/jobs", params={"limit": 1}, headers=a).json()
    rest = mclient.get(
        "/v1/moderation/jobs", params={"limit": 1, "cursor": first["next_cursor"]}, headers=a
    ).json()
    assert [j["id"] for j in first["jobs"] + rest["jobs"]] == [single["id"], mixed["id"]]
    assert rest["next_cursor"] is None
    queued = mclient.get("/v1/moderation/jobs", params={"status": "queued"}, headers=a).json()
    assert queued["jobs"] == []
    since = mclient.get(
        "/v1/moderation/jobs", params={"since": single["created_at"]}, headers=a
    ).json()
    assert [j["id"] for j in since["jobs"]] == [single["id"]]
    for bad in ({"status": "done"}, {"cursor": "x"}, {"limit": 0}):
        r = mclient.get("/v1/moderation/jobs", params=bad, headers=a)
        assert r.status_code == 422 and next(iter(bad)) in json.dumps(r.json()["detail"])
    # The operator's command line: every key's jobs, and one job whole.
    listed_jobs = json.loads(cli("jobs", "list", "--json").stdout)["jobs"]
    assert [j["id"] for j in listed_jobs] == [theirs["id"], single["id"], mixed["id"]]
    assert listed_jobs[2]["verdicts"] == summary["verdicts"]
    table = cli("jobs", "list", "--status", "completed").stdout
    assert mixed["id"] in table and "3/3" in table
    assert cli("jobs", "list", "--limit", "1").stdout.count("more: --cursor ") == 1
    shown = json.loads(cli("jobs", "show", mixed["id"], "--full").stdout)
    assert [i["verdict"] for i in shown["items"]] == ["block", "allow", None]
    assert shown["items"][0]["result"]["id"] == shown["items"][0]["check_id"]
    for bad in (["list", "--status", "done"], ["list", "--cursor", "x"], ["show", str(uuid4())]):
        out = cli("jobs", *bad, ok=False)
        assert out.returncode == 2 and out.stderr.strip(), (bad, out.stderr)


def test_a_persons_decision_on_a_check_is_kept_audited_and_empties_the_queue(
    mclient, runtime, make_key, recorded
):
    a, made = recorded["a"], recorded["made"]
    review = made[2]["id"]
    queue = {"verdict": "review", "reviewed": "false"}
    assert ids(listed(mclient, a, **queue)) == [review]
    r = mclient.post(
        f"{LIST}/{review}/reviews",
        json={"decision": "block", "reviewer": "Mod One", "note": "our output, resold"},
        headers=a,
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["decision"] == "block" and first["check_id"] == review
    assert ids(listed(mclient, a, **queue)) == []
    assert ids(listed(mclient, a, reviewed="true")) == [review]
    summary = listed(mclient, a, reviewed="true")["checks"][0]
    assert summary["review"]["id"] == first["id"] and summary["verdict"] == "review"
    # An appeal: a later decision stands, the earlier one stays on the record.
    r = mclient.post(
        f"{LIST}/{review}/reviews", json={"decision": "allow", "reviewer": "Mod Two"}, headers=a
    )
    assert r.status_code == 201, r.text
    whole = mclient.get(f"{LIST}/{review}", headers=a).json()
    assert [(x["decision"], x["reviewer"]) for x in whole["reviews"]] == [
        ("block", "Mod One"),
        ("allow", "Mod Two"),
    ]
    assert listed(mclient, a, reviewed="true")["checks"][0]["review"]["decision"] == "allow"
    with runtime.pool.connection() as conn:
        entries = conn.execute(
            "SELECT kind, entry FROM audit_log WHERE subject = %s ORDER BY seq",
            (f"moderation:{review}",),
        ).fetchall()
    kinds = [e["kind"] for e in entries]
    assert kinds == ["moderation.checked", "moderation.reviewed", "moderation.reviewed"]
    said = json.loads(bytes(entries[1]["entry"]))["data"]
    assert said["decision"] == "block" and said["reviewer"] == "Mod One"
    assert said["note"] == "our output, resold" and said["verdict"] == "review"
    # Another platform's key cannot see or decide on the check; an admin can.
    r = mclient.post(
        f"{LIST}/{review}/reviews",
        json={"decision": "allow", "reviewer": "x"},
        headers=recorded["b"],
    )
    assert r.status_code == 404
    r = mclient.post(
        f"{LIST}/{review}/reviews",
        json={"decision": "block", "reviewer": "Admin"},
        headers=auth(make_key("admin")),
    )
    assert r.status_code == 201


@pytest.mark.parametrize(
    "body",
    [
        {"decision": "maybe", "reviewer": "m"},
        {"decision": "allow"},
        {"decision": "allow", "reviewer": "   "},
        {"decision": "allow", "reviewer": "m\nforged line"},
        {"decision": "allow", "reviewer": "m", "note": "x\x1b[31m"},
        {"decision": "allow", "reviewer": "m", "note": "n" * 2001},
        {"decision": "allow", "reviewer": "m", "extra": 1},
    ],
)
def test_a_bad_decision_is_refused_and_nothing_is_recorded(mclient, runtime, recorded, body):
    review = recorded["made"][2]["id"]
    r = mclient.post(f"{LIST}/{review}/reviews", json=body, headers=recorded["a"])
    assert r.status_code == 422, r.text
    with runtime.pool.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM moderation_reviews").fetchone()["n"]
        kinds = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE kind = 'moderation.reviewed'"
        ).fetchone()["n"]
    assert n == 0 and kinds == 0


def test_checks_review_command_records_a_decision(mclient, settings, recorded, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from service.cli.check_cmd import checks_app

    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "250")
    app = typer.Typer()
    app.add_typer(checks_app, name="checks")
    runner = CliRunner()
    review = recorded["made"][2]["id"]
    out = runner.invoke(
        app, ["checks", "review", review, "--decision", "block", "--reviewer", "Mod One"]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(app, ["checks", "list", "--reviewed"])
    assert review in out.output and "block by Mod One" in out.output
    out = runner.invoke(app, ["checks", "list", "--not-reviewed", "--verdict", "review", "--json"])
    assert json.loads(out.output)["checks"] == []
    for bad in (
        [review, "--decision", "maybe", "--reviewer", "m"],
        [review, "--decision", "allow", "--reviewer", " "],
        ["00000000-0000-0000-0000-000000000000", "--decision", "allow", "--reviewer", "m"],
    ):
        out = runner.invoke(app, ["checks", "review", *bad])
        assert out.exit_code == 2, (bad, out.output)
