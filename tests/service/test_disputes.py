"""Ownership disputes: a work registered later that copies another artist's registered work is
kept, put in front of a person with the match between the two, shown to both artists, drawn,
and decided once (one work withdrawn, or both left standing)."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from service.registry.picture import DISPUTE_COLOURS
from tests.service.test_moderation import _band_height, _likeness, edited, moderate
from tests.support import auth, encode, one_connection_left, photo_like

ZERO = "00000000-0000-0000-0000-000000000000"


def artist(client, h, name: str) -> str:
    r = client.post(
        "/v1/artists",
        json={"display_name": name, "email": f"{name.lower()}@example.org"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


def register(client, h, artist_id: str, files: list[tuple[str, bytes]], **data):
    parts = [("files", (name, body, "image/jpeg")) for name, body in files]
    r = client.post(f"/v1/artists/{artist_id}/artworks", files=parts, data=data, headers=h)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture
def pair(mclient, make_key):
    """Artist A registers a picture denying reuse; artist B then registers an edited copy of it
    beside a picture of their own."""
    reg = auth(make_key("registry", "match"))
    a, b = artist(mclient, reg, "Alma"), artist(mclient, reg, "Bruno")
    first = register(
        mclient,
        reg,
        a,
        [("harbour.jpg", encode(photo_like(8101)))],
        title="Harbour",
        preferences=json.dumps({"img2img": "deny"}),
    )
    assert first["disputes"] == []
    second = register(
        mclient, reg, b, [("mine.jpg", edited(8101)), ("own.jpg", encode(photo_like(8102)))]
    )
    return {
        "reg": reg,
        "admin": auth(make_key("admin")),
        "make_key": make_key,
        "a": a,
        "b": b,
        "original": first["artworks"][0],
        "copy": second["artworks"][0],
        "own": second["artworks"][1],
        "registered": second,
    }


def test_a_copy_of_another_artists_work_is_registered_and_disputed(mclient, pair):
    reg, original, copy = pair["reg"], pair["original"], pair["copy"]
    # Both of B's works are registered; one dispute, over the copy, with A's work as the earlier.
    assert [w["duplicate"] for w in pair["registered"]["artworks"]] == [False, False]
    (dispute,) = pair["registered"]["disputes"]
    assert dispute["status"] == "open"
    assert dispute["earlier"]["artwork_id"] == original["id"]
    assert dispute["earlier"]["artist_id"] == pair["a"]
    assert dispute["earlier"]["title"] == "Harbour"
    assert dispute["later"]["artwork_id"] == copy["id"]
    assert dispute["later"]["artist_id"] == pair["b"]
    assert dispute["match"]["decision"] == "copy" and dispute["match"]["score"] >= 0.8
    assert dispute["withdrawn_artwork_id"] is None and dispute["decided_at"] is None
    assert mclient.get(dispute["url"], headers=reg).json() == dispute

    def listed(**params):
        r = mclient.get("/v1/disputes", params=params, headers=reg)
        assert r.status_code == 200, r.text
        return [d["id"] for d in r.json()["disputes"]]

    # Found from either side, by either work, by status; not by a third artist or B's own work.
    assert listed() == [dispute["id"]]
    assert listed(artist_id=pair["a"]) == listed(artist_id=pair["b"]) == [dispute["id"]]
    assert listed(artwork_id=original["id"]) == listed(artwork_id=copy["id"]) == [dispute["id"]]
    assert listed(status="open") == [dispute["id"]]
    assert listed(status=["upheld", "dismissed"]) == []
    assert listed(artwork_id=pair["own"]["id"]) == []
    assert listed(artist_id=artist(mclient, reg, "Cleo")) == []
    assert mclient.get("/v1/disputes", params={"status": "maybe"}, headers=reg).status_code == 422
    assert mclient.get(f"/v1/disputes/{ZERO}", headers=reg).status_code == 404

    # Both artists' events say so, each naming the other work.
    for who, mine, other, role in (
        (pair["a"], original["id"], copy["id"], "earlier"),
        (pair["b"], copy["id"], original["id"], "later"),
    ):
        r = mclient.get(
            f"/v1/artists/{who}/events", params={"kind": "artwork.disputed"}, headers=reg
        )
        (event,) = r.json()["events"]
        assert event["artwork_id"] == mine
        assert event["data"]["dispute_id"] == dispute["id"]
        assert event["data"]["other_artwork_id"] == other and event["data"]["role"] == role

    # The same bytes again from B: the same work, no second dispute.
    again = register(mclient, reg, pair["b"], [("mine.jpg", edited(8101))])
    assert again["artworks"][0]["duplicate"] is True and again["disputes"] == []
    assert listed() == [dispute["id"]]


def test_a_dispute_does_not_let_the_later_registrant_license_the_earlier_work(mclient, pair):
    """While it is open, B's licence for B's copy opens nothing: A's work still matches and
    denies, so a platform user holding B's licence is blocked from A's picture."""
    reg = pair["reg"]
    r = mclient.post(
        f"/v1/artworks/{pair['copy']['id']}/licenses",
        json={"grantee": "mallory", "scopes": ["img2img"]},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    mod = auth(pair["make_key"]("moderate"))
    check = moderate(mclient, mod, encode(photo_like(8101), quality=80), user="mallory")
    assert check["verdict"] == "block"
    found = {m["artwork_id"]: m for m in check["registry"]["matches"]}
    assert set(found) == {pair["original"]["id"], pair["copy"]["id"]}
    # B's copy is licensed to mallory; A's work is not, and it is what blocks.
    reasons = json.dumps(check["reasons"])
    assert pair["original"]["id"] in reasons


def test_matches_and_moderation_name_the_open_dispute_over_a_matched_work(mclient, pair):
    reg, admin = pair["reg"], pair["admin"]
    (dispute,) = pair["registered"]["disputes"]
    r = mclient.post("/v1/matches", files={"file": ("q.jpg", edited(8101))}, headers=reg)
    found = {m["artwork_id"]: m["dispute_id"] for m in r.json()["matches"]}
    assert found == {pair["original"]["id"]: dispute["id"], pair["copy"]["id"]: dispute["id"]}
    r = mclient.post("/v1/matches", files={"file": ("q.jpg", edited(8102))}, headers=reg)
    assert [m["dispute_id"] for m in r.json()["matches"]] == [None]  # B's own work
    mod = auth(pair["make_key"]("moderate"))
    check = moderate(mclient, mod, edited(8101))
    assert {m["dispute_id"] for m in check["registry"]["matches"]} == {dispute["id"]}
    # Settled: no longer named.
    r = mclient.post(
        f"/v1/disputes/{dispute['id']}/decision", json={"withdraw": None}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = mclient.post("/v1/matches", files={"file": ("q.jpg", edited(8101))}, headers=reg)
    assert {m["dispute_id"] for m in r.json()["matches"]} == {None}


def test_registering_ones_own_edits_or_a_merely_similar_picture_opens_nothing(mclient, make_key):
    reg = auth(make_key("registry"))
    a, b = artist(mclient, reg, "Alma"), artist(mclient, reg, "Bruno")
    register(mclient, reg, a, [("one.jpg", encode(photo_like(8201)))])
    # A's own edited copy: no dispute (an artist may register versions of their work).
    assert register(mclient, reg, a, [("one-edit.jpg", edited(8201))])["disputes"] == []
    # Unrelated pictures from B: none either.
    got = register(mclient, reg, b, [(f"{s}.jpg", encode(photo_like(s))) for s in (8202, 8203)])
    assert got["disputes"] == []
    assert mclient.get("/v1/disputes", headers=reg).json()["disputes"] == []


def test_upholding_withdraws_the_named_work_once(mclient, pair):
    reg, admin = pair["reg"], pair["admin"]
    (dispute,) = pair["registered"]["disputes"]
    decide = f"/v1/disputes/{dispute['id']}/decision"
    # A registry key may not decide; a work outside the dispute is refused, nothing changes.
    assert mclient.post(decide, json={"withdraw": None}, headers=reg).status_code == 403
    r = mclient.post(decide, json={"withdraw": pair["own"]["id"]}, headers=admin)
    assert r.status_code == 422 and "not in dispute" in r.json()["detail"]
    r = mclient.post(decide, json={"note": "no withdraw field"}, headers=admin)
    assert r.status_code == 422
    assert mclient.get(dispute["url"], headers=reg).json()["status"] == "open"
    assert (
        mclient.post(
            f"/v1/disputes/{ZERO}/decision", json={"withdraw": None}, headers=admin
        ).status_code
        == 404
    )

    r = mclient.post(
        decide,
        json={"withdraw": pair["copy"]["id"], "note": "A showed the layered file"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    decided = r.json()
    assert decided["status"] == "upheld"
    assert decided["withdrawn_artwork_id"] == pair["copy"]["id"]
    assert decided["later"]["status"] == "withdrawn" and decided["earlier"]["status"] == "active"
    assert decided["decision_note"] == "A showed the layered file"
    assert decided["decided_by"].startswith("key:")
    work = mclient.get(f"/v1/artworks/{pair['copy']['id']}", headers=reg).json()
    assert work["status"] == "withdrawn"
    # The withdrawn copy no longer matches: only A's work is found in the copy's bytes.
    r = mclient.post("/v1/matches", files={"file": ("q.jpg", edited(8101))}, headers=reg)
    assert [m["artwork_id"] for m in r.json()["matches"]] == [pair["original"]["id"]]
    # Once.
    r = mclient.post(decide, json={"withdraw": None}, headers=admin)
    assert r.status_code == 409 and "decided already" in r.json()["detail"]
    for who in (pair["a"], pair["b"]):
        r = mclient.get(
            f"/v1/artists/{who}/events", params={"kind": "artwork.dispute_decided"}, headers=reg
        )
        (event,) = r.json()["events"]
        assert event["data"]["decision"] == "upheld"
        assert event["data"]["withdrawn_artwork_id"] == pair["copy"]["id"]

    # B registers the same bytes again (the work comes back): the pair is disputed anew.
    again = register(mclient, reg, pair["b"], [("mine.jpg", edited(8101))])
    (reopened,) = again["disputes"]
    assert reopened["id"] != dispute["id"] and reopened["status"] == "open"
    assert reopened["later"]["artwork_id"] == pair["copy"]["id"]


def test_a_decision_withdraws_from_the_index_with_one_connection_free(
    mclient, runtime, pair, caplog
):
    """The artwork index catches up after a withdrawal with no connection held (it takes its
    own): with one connection left in the pool it catches up before the answer, rather than
    giving up after the pool's wait and leaving the withdrawn work matching until the next
    refresh."""
    (dispute,) = pair["registered"]["disputes"]
    with one_connection_left(runtime.pool), caplog.at_level("WARNING"):
        r = mclient.post(
            f"/v1/disputes/{dispute['id']}/decision",
            json={"withdraw": pair["copy"]["id"]},
            headers=pair["admin"],
        )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "upheld" and r.json()["later"]["status"] == "withdrawn"
    assert not [rec for rec in caplog.records if "did not catch up" in rec.getMessage()]
    r = pair["reg"]
    found = mclient.post("/v1/matches", files={"file": ("q.jpg", edited(8101))}, headers=r)
    assert [m["artwork_id"] for m in found.json()["matches"]] == [pair["original"]["id"]]


def test_dismissing_lets_both_stand_and_the_pair_is_not_raised_again(mclient, pair):
    reg, admin = pair["reg"], pair["admin"]
    (dispute,) = pair["registered"]["disputes"]
    r = mclient.post(
        f"/v1/disputes/{dispute['id']}/decision",
        json={"withdraw": None, "note": "the same person's two accounts"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "dismissed" and r.json()["withdrawn_artwork_id"] is None
    for side in ("original", "copy"):
        work = mclient.get(f"/v1/artworks/{pair[side]['id']}", headers=reg).json()
        assert work["status"] == "active"
    # B withdraws the copy and registers it again: the pair was settled, nothing new.
    assert mclient.delete(f"/v1/artworks/{pair['copy']['id']}", headers=reg).status_code == 200
    again = register(mclient, reg, pair["b"], [("mine.jpg", edited(8101))])
    assert again["artworks"][0]["duplicate"] is False and again["disputes"] == []
    assert [d["id"] for d in mclient.get("/v1/disputes", headers=reg).json()["disputes"]] == [
        dispute["id"]
    ]


def test_the_dispute_picture_shows_both_works_under_a_band(mclient, pair):
    from similarity.picture import GAP, PANEL

    reg = pair["reg"]
    (dispute,) = pair["registered"]["disputes"]
    r = mclient.get(f"{dispute['url']}/picture", headers=reg)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content)).convert("RGB")
    assert picture.width == 2 * PANEL + 3 * GAP
    band = _band_height(picture, DISPUTE_COLOURS["open"])
    assert 40 < band < picture.height - PANEL, "a band, then the two works"
    top = band + GAP
    # Left: the later registration (B's edited copy); right: A's work, registered first.
    later = Image.open(io.BytesIO(edited(8101)))
    left = picture.crop((GAP, top, GAP + PANEL, top + PANEL * later.height // later.width))
    right = picture.crop((2 * GAP + PANEL, top, 2 * GAP + 2 * PANEL, top + PANEL * 3 // 4))
    assert _likeness(left, later) > _likeness(left, photo_like(8102)) + 0.3
    assert _likeness(right, photo_like(8101)) > 0.8
    assert _likeness(right, photo_like(8101)) > _likeness(right, photo_like(8102)) + 0.3
    assert mclient.get(f"/v1/disputes/{ZERO}/picture", headers=reg).status_code == 404


def test_the_command_line_registers_lists_shows_and_decides_disputes(cli, tmp_path):
    a = cli("artists", "create", "--name", "Alma", "--email", "alma@example.org").stdout.strip()
    b = cli("artists", "create", "--name", "Bruno", "--email", "bruno@example.org").stdout.strip()
    (tmp_path / "harbour.jpg").write_bytes(encode(photo_like(8301)))
    (tmp_path / "copy.jpg").write_bytes(edited(8301))
    first = cli("register", "--artist", a, str(tmp_path / "harbour.jpg"))
    assert "created 1, duplicate 0, rejected 0" in first.stdout
    assert "disputed" not in first.stdout + first.stderr
    out = cli("register", "--artist", b, str(tmp_path / "copy.jpg"))
    assert "created 1, duplicate 0, rejected 0, disputed 1" in out.stdout, out.stdout + out.stderr
    assert "awaits a decision" in out.stderr

    listed = json.loads(cli("disputes", "list", "--status", "open", "--json").stdout)
    (dispute,) = listed["disputes"]
    assert dispute["earlier"]["artist_id"] == a and dispute["later"]["artist_id"] == b
    table = cli("disputes", "list", "--artist", a).stdout
    assert dispute["id"] in table and "open" in table and "copy" in table
    assert json.loads(cli("disputes", "list", "--status", "dismissed", "--json").stdout) == {
        "disputes": [],
        "next_cursor": None,
    }
    picture = tmp_path / "dispute.png"
    shown = json.loads(cli("disputes", "show", dispute["id"], "--picture", str(picture)).stdout)
    assert shown["id"] == dispute["id"]
    with Image.open(picture) as drawn:
        assert drawn.format == "PNG" and drawn.width > drawn.height / 2

    neither = cli("disputes", "decide", dispute["id"], ok=False)
    assert neither.returncode != 0 and "--withdraw ARTWORK or --both-stand" in neither.stderr
    outside = cli("disputes", "decide", dispute["id"], "--withdraw", ZERO, ok=False)
    assert outside.returncode != 0 and "not in dispute" in outside.stderr
    later = dispute["later"]["artwork_id"]
    done = cli("disputes", "decide", dispute["id"], "--withdraw", later, "--note", "A's file")
    assert f"upheld, artwork {later} withdrawn" in done.stdout
    twice = cli("disputes", "decide", dispute["id"], "--both-stand", ok=False)
    assert twice.returncode != 0 and "decided already" in twice.stderr
    assert "intact" in cli("audit", "verify").stdout


def test_a_scan_finds_copies_registered_without_a_check_once(cli, runtime, tmp_path):
    """Works recorded without the check (a registry from before disputes, or registered while
    the index was not loaded): the scan opens their disputes, and a second scan opens none."""
    from service.registry.ingest import insert, prepare, store_files
    from similarity import DecodeLimits

    with runtime.pool.connection() as conn:
        a = runtime.registry.create_artist(conn, "test", "Alma", "alma@example.org", {})
        b = runtime.registry.create_artist(conn, "test", "Bruno", "bruno@example.org", {})
        for who, data in (
            (a, encode(photo_like(8401))),
            (b, edited(8401)),
            (b, encode(photo_like(8402))),
        ):
            item = prepare(data, None, DecodeLimits())
            store_files(runtime.blobs, runtime.thumbnails, item)
            insert(conn, runtime.registry, "test", who.id, item, None, {})
    assert json.loads(cli("disputes", "list", "--json").stdout)["disputes"] == []
    out = cli("disputes", "scan")
    assert "checked 3 works: 1 open disputes among them" in out.stdout, out.stdout + out.stderr
    (dispute,) = json.loads(cli("disputes", "list", "--json").stdout)["disputes"]
    assert dispute["earlier"]["artist_id"] == str(a.id)
    assert dispute["later"]["artist_id"] == str(b.id)
    again = cli("disputes", "scan", "--artist", str(a.id))
    assert "checked 1 works: 1 open disputes among them" in again.stdout
    assert len(json.loads(cli("disputes", "list", "--json").stdout)["disputes"]) == 1
