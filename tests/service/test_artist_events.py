"""What touched an artist's works, newest first (GET /v1/artists/{id}/events): registrations,
licences, withdrawals, moderation matches and blocked img2img attempts, narrowed by kind, work
and time, a page at a time; nothing of another artist's."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from uuid import UUID

import pytest

from service.genservice import GenerationService
from tests.service.test_generations import (  # noqa: F401 (tiny_runner is a fixture)
    b64,
    edited_copy,
    request,
    tiny_runner,
)
from tests.support import auth, encode, photo_like

ZERO = "00000000-0000-0000-0000-000000000000"


def new_artist(client, h, name: str) -> str:
    r = client.post(
        "/v1/artists", json={"display_name": name, "email": f"{name}@example.org"}, headers=h
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def register(client, h, artist: str, *seeds: int) -> list[str]:
    files = [("files", (f"{s}.jpg", encode(photo_like(s)), "image/jpeg")) for s in seeds]
    r = client.post(
        f"/v1/artists/{artist}/artworks",
        files=files,
        data={"preferences": '{"img2img": "deny"}'},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return [w["id"] for w in r.json()["artworks"]]


def events(client, h, artist: str, **params) -> dict:
    r = client.get(f"/v1/artists/{artist}/events", params=params, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def kinds(page: dict) -> list[tuple[str, str | None]]:
    return [(e["kind"], e["artwork_id"]) for e in page["events"]]


@pytest.fixture
def history(client, runtime, make_key):
    """Artist A: two works registered, a licence on the first, a moderation check that finds
    a copy of it, an img2img generation on it that is blocked, the second work withdrawn.
    Artist B: one work. Returns what was made."""
    reg = auth(make_key("registry"))
    a, b = new_artist(client, reg, "ana"), new_artist(client, reg, "bo")
    first, second = register(client, reg, a, 7201, 7202)
    (theirs,) = register(client, reg, b, 7203)
    r = client.post(
        f"/v1/artworks/{first}/licenses",
        json={"grantee": "carol", "scopes": ["img2img"]},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    licence = r.json()["id"]
    copy = edited_copy(photo_like(7201))
    r = client.post(
        "/v1/moderation/check",
        files={"file": ("q.jpg", copy)},
        data={"user": "dave"},
        headers=auth(make_key("moderate")),
    )
    assert r.status_code == 200 and r.json()["verdict"] == "block", r.text
    check = r.json()["id"]
    lazy = GenerationService.open(runtime)  # a blocked request never loads the model
    client.app.state.generation = lazy
    try:
        r = client.post(
            "/v1/generations",
            json=request(init_image=b64(copy), strength=0.6, user="eve"),
            headers=auth(make_key("generate")),
        )
    finally:
        lazy.close()
    assert r.status_code == 403, r.text
    generation = r.json()["id"]
    assert client.delete(f"/v1/artworks/{second}", headers=reg).status_code == 200
    return {
        "reg": reg,
        "a": a,
        "b": b,
        "first": first,
        "second": second,
        "theirs": theirs,
        "licence": licence,
        "check": check,
        "generation": generation,
    }


def test_an_artists_events_are_everything_that_touched_their_works_newest_first(client, history):
    reg, first, second = history["reg"], history["first"], history["second"]
    page = events(client, reg, history["a"])
    got = kinds(page)
    assert got[:4] == [
        ("artwork.withdrawn", second),
        ("generation.input_matched", first),
        ("moderation.matched", first),
        ("license.granted", first),
    ]
    assert sorted(got[4:6]) == sorted(
        [("artwork.registered", first), ("artwork.registered", second)]
    )
    assert got[6:] == [("artist.created", None)] and page["next_cursor"] is None
    times = [datetime.fromisoformat(e["at"]) for e in page["events"]]
    assert times == sorted(times, reverse=True)
    blocked = page["events"][1]["data"]
    assert blocked["generation_id"] == history["generation"] and blocked["outcome"] == "blocked"
    assert blocked["status"] == "blocked" and blocked["user"] == "eve"
    assert blocked["mode"] == "img2img" and blocked["input_role"] == "init"
    matched = page["events"][2]
    assert matched["data"]["check_id"] == history["check"] and matched["data"]["user"] == "dave"
    assert matched["data"]["verdict"] == "block" and matched["audit_seq"] is not None
    granted = page["events"][3]["data"]
    assert granted["grantee"] == "carol"
    # Nothing of the other artist's, and nothing of A's in B's.
    theirs = kinds(events(client, reg, history["b"]))
    assert theirs[0] == ("artwork.registered", history["theirs"])
    assert not {w for _, w in theirs} & {first, second}
    assert history["theirs"] not in {w for _, w in got}


def test_events_are_narrowed_by_kind_work_and_time_and_cut_into_pages(client, history):
    reg, a, first, second = history["reg"], history["a"], history["first"], history["second"]
    assert kinds(events(client, reg, a, kind="moderation.matched")) == [
        ("moderation.matched", first)
    ]
    both = events(client, reg, a, kind=["generation.input_matched", "artwork.withdrawn"])
    assert kinds(both) == [("artwork.withdrawn", second), ("generation.input_matched", first)]
    assert kinds(events(client, reg, a, artwork_id=second)) == [
        ("artwork.withdrawn", second),
        ("artwork.registered", second),
    ]
    whole = events(client, reg, a)["events"]
    cut = datetime.fromisoformat(whole[2]["at"])
    assert [e["kind"] for e in events(client, reg, a, since=cut.isoformat())["events"]] == [
        e["kind"] for e in whole[:3]
    ]
    assert events(client, reg, a, until=cut.isoformat())["events"] == whole[3:]
    seen, cursor = [], None
    while True:
        page = events(client, reg, a, limit=2, **({"cursor": cursor} if cursor else {}))
        seen += page["events"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"cursor": "bm90LW91cnM="}, "cursor"),
        ({"kind": "DROP TABLE"}, "kind"),
        ({"limit": 0}, "limit"),
        ({"artwork_id": "7"}, "artwork_id"),
        ({"since": "2026-11-29T10:00:00Z", "until": "2026-11-29T10:00:00Z"}, "since"),
    ],
)
def test_bad_event_parameters_get_a_422_that_names_them(client, make_key, params, said):
    h = auth(make_key("registry"))
    artist = new_artist(client, h, "cy")
    r = client.get(f"/v1/artists/{artist}/events", params=params, headers=h)
    assert r.status_code == 422, r.text
    assert said in json.dumps(r.json()["detail"])


def test_events_of_no_such_artist_are_404(client, make_key):
    r = client.get(f"/v1/artists/{ZERO}/events", headers=auth(make_key("registry")))
    assert r.status_code == 404 and ZERO in r.json()["detail"]


def test_artists_events_command_prints_the_history_and_json(client, settings, history, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from service.cli.events_cmd import artist_events

    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "250")
    app = typer.Typer()
    app.command("events")(artist_events)
    app.command("other")(lambda: None)  # keep `events` a named sub-command
    runner = CliRunner()
    out = runner.invoke(app, ["events", history["a"]])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    row = next(i for i, line in enumerate(lines) if "generation.input_matched" in line)
    assert "outcome blocked" in lines[row] and "user eve" in lines[row]
    assert lines.index(next(x for x in lines if "artwork.withdrawn" in x)) < row
    out = runner.invoke(app, ["events", history["a"], "--kind", "moderation.matched", "--json"])
    assert out.exit_code == 0, out.output
    (only,) = json.loads(out.output)["events"]
    assert only["data"]["check_id"] == history["check"] and only["artwork_id"] == history["first"]
    out = runner.invoke(app, ["events", history["a"], "--limit", "3"])
    cursor = out.output.split("more: --cursor ")[1].split()[0]
    out = runner.invoke(app, ["events", history["a"], "--cursor", cursor, "--json"])
    rest = [e["kind"] for e in json.loads(out.output)["events"]]
    assert rest[-1] == "artist.created" and "artwork.withdrawn" not in rest
    for bad in ([ZERO], [history["a"], "--since", "soon"], [history["a"], "--cursor", "x"]):
        out = runner.invoke(app, ["events", *bad])
        assert out.exit_code == 2, (bad, out.output)
    said = runner.invoke(app, ["events", ZERO]).output
    assert f"no artist {ZERO}" in said and "Traceback" not in said


def test_an_artists_claim_against_an_adapter_and_its_decision_are_among_their_events(
    client, make_key, tiny_runner, tmp_path  # noqa: F811
):
    from tests.service.test_generations import _register_lora

    admin, reg = auth(make_key("admin")), auth(make_key("registry"))
    _register_lora(client, admin, tiny_runner, tmp_path, "copycat", 9)
    ana, bo = new_artist(client, reg, "ana"), new_artist(client, reg, "bo")
    claim = client.post(
        "/v1/adapters/copycat/claims",
        json={"artist_id": ana, "reason": "trained on my portfolio"},
        headers=reg,
    )
    assert claim.status_code == 201, claim.text
    decided = client.post(
        f"/v1/adapters/copycat/claims/{claim.json()['id']}/decision",
        json={"uphold": True, "note": "the samples match"},
        headers=admin,
    )
    assert decided.status_code == 200, decided.text
    got = events(client, reg, ana)["events"]
    assert [e["kind"] for e in got] == [
        "adapter.claim_decided",
        "adapter.claim_filed",
        "artist.created",
    ]
    assert got[1]["data"]["reason"] == "trained on my portfolio"
    assert got[0]["data"]["decision"] == "upheld" and got[0]["artwork_id"] is None
    assert [e["kind"] for e in events(client, reg, bo)["events"]] == ["artist.created"]


def _indexed(runtime) -> list[dict]:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT * FROM artist_audit ORDER BY seq").fetchall()


def test_the_migration_indexes_the_entries_logged_before_it(client, runtime, history):
    """Migration 0016 fills ``artist_audit`` for an existing log as the trigger fills it for
    new entries: the same rows, and the same pages."""
    import service

    made = _indexed(runtime)
    reg = history["reg"]
    before = events(client, reg, history["a"])
    assert {r["artist_id"] for r in made} == {UUID(history["a"]), UUID(history["b"])}
    assert len([r for r in made if str(r["artist_id"]) == history["a"]]) == len(
        [e for e in before["events"] if e["audit_seq"] is not None]
    )
    sql = (Path(service.__file__).parent / "migrations" / "0016_artist_audit.sql").read_text()
    fill = sql[sql.index("-- The entries logged before") : sql.index("CREATE INDEX artist_audit")]
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute("DELETE FROM artist_audit")
        conn.execute(fill)
    assert _indexed(runtime) == made
    assert events(client, reg, history["a"]) == before


def test_an_entry_about_nothing_of_an_artist_is_logged_and_not_indexed(runtime):
    """The trigger reads a subject's id only when well formed: an odd subject never stops an
    append."""
    odd = [
        ("artwork.updated", "artwork:not-an-id"),
        ("artwork.updated", "artwork:" + "-" * 36),
        ("artist.created", f"artist:{ZERO}"),  # well formed, no such artist
        ("adapter.claim_filed", f"adapter:{ZERO}"),  # no claim_id in its data
        ("key.created", "key:7"),
        ("storage.collected", None),
    ]
    with runtime.pool.connection() as conn, conn.transaction():
        for kind, subject in odd:
            runtime.audit.append(conn, kind, "test", subject, {"claim_id": "x'; --"})
    with runtime.pool.connection() as conn:
        logged = conn.execute("SELECT count(*) FROM audit_log WHERE actor = 'test'").fetchone()
    assert logged["count"] == len(odd)
    assert _indexed(runtime) == []
