"""An artist's claim that one of our outputs copies their work: filed with what the matcher sees
of the output against their works, decided once by an admin, audited under ``claim:ID``, among
the artist's events, shown as a picture and reported for legal review."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from service.audit.proofs import load_public_key
from service.audit.report import check_report
from service.registry.picture import CLAIM_COLOURS
from tests.service.test_audit_api import pdf_text
from tests.service.test_moderation import _band_height, _likeness, edited, register, stamp
from tests.support import auth, encode, one_connection_left, photo_like

ZERO = "00000000-0000-0000-0000-000000000000"


@pytest.fixture
def made(mclient, make_key):
    """An output of ours (a platform's generation stamped here) that is an edited copy of a
    picture artist A then registers; an unrelated output; artist B and their work."""
    # Made before the artist registered the work: stamping refuses a copy of a registered work
    # that denies reuse, so a claim is how such an output is disputed afterwards.
    st = auth(make_key("stamp"))
    copied, _ = stamp(mclient, st, Image.open(io.BytesIO(edited(7401))).convert("RGB"))
    unrelated, unrelated_bytes = stamp(mclient, st, photo_like(7402))
    reg = auth(make_key("registry"))
    (work,) = register(mclient, reg, 7401)
    artist_a = mclient.get(f"/v1/artworks/{work['id']}", headers=reg).json()["artist_id"]
    r = mclient.post(
        "/v1/artists", json={"display_name": "B", "email": "b@example.org"}, headers=reg
    )
    artist_b = r.json()["id"]
    files = [("files", ("b.jpg", encode(photo_like(7403)), "image/jpeg"))]
    r = mclient.post(f"/v1/artists/{artist_b}/artworks", files=files, headers=reg)
    assert r.status_code == 201, r.text
    (other_work,) = r.json()["artworks"]
    return {
        "reg": reg,
        "admin": auth(make_key("admin")),
        "work": work,
        "a": artist_a,
        "b": artist_b,
        "other_work": other_work,
        "copied": copied["id"],
        "unrelated": unrelated["id"],
        "unrelated_bytes": unrelated_bytes,
        "make_key": make_key,
    }


def file(client, h, **body):
    return client.post("/v1/claims", json=body, headers=h)


def test_a_claim_keeps_what_the_matcher_sees_and_is_decided_once(mclient, runtime, made):
    reg, admin = made["reg"], made["admin"]
    r = file(
        mclient,
        reg,
        output_id=made["copied"],
        artist_id=made["a"],
        artwork_id=made["work"]["id"],
        reason="  my harbour painting, cropped and darkened  ",
    )
    assert r.status_code == 201, r.text
    claim = r.json()
    assert claim["status"] == "open" and claim["output_origin"] == "stamp"
    assert claim["reason"] == "my harbour painting, cropped and darkened"
    (found,) = claim["matches"]
    assert found["artwork_id"] == made["work"]["id"] and found["decision"] == "copy"
    assert found["evidence"]["fired"]
    assert mclient.get(claim["url"], headers=reg).json() == claim
    # The same claim again while it is open: 409, nothing new recorded.
    again = file(
        mclient,
        reg,
        output_id=made["copied"],
        artist_id=made["a"],
        artwork_id=made["work"]["id"],
        reason="my harbour painting, cropped and darkened",
    )
    assert again.status_code == 409 and claim["id"] in again.json()["detail"]
    # An unrelated output: filed, with nothing found in it.
    r = file(mclient, reg, output_id=made["unrelated"], artist_id=made["a"], reason="mine too")
    assert r.status_code == 201 and r.json()["matches"] == []
    unrelated = r.json()

    # Only an admin decides, and only once.
    assert (
        mclient.post(f"{claim['url']}/decision", json={"uphold": True}, headers=reg).status_code
        == 403
    )
    r = mclient.post(
        f"{claim['url']}/decision", json={"uphold": True, "note": "a plain copy"}, headers=admin
    )
    assert r.status_code == 200, r.text
    decided = r.json()
    assert decided["status"] == "upheld" and decided["decision_note"] == "a plain copy"
    assert decided["decided_by"] and decided["decided_at"]
    r = mclient.post(f"{claim['url']}/decision", json={"uphold": False}, headers=admin)
    assert r.status_code == 409 and "upheld" in r.json()["detail"]
    assert mclient.get(claim["url"], headers=reg).json()["status"] == "upheld"

    # Lists: newest first, narrowed, a page at a time.
    page = mclient.get("/v1/claims", headers=reg).json()
    assert [c["id"] for c in page["claims"]] == [unrelated["id"], claim["id"]]
    only = mclient.get("/v1/claims", params={"status": "upheld"}, headers=reg).json()
    assert [c["id"] for c in only["claims"]] == [claim["id"]]
    mine = mclient.get("/v1/claims", params={"artist_id": made["b"]}, headers=reg).json()
    assert mine["claims"] == []
    first = mclient.get("/v1/claims", params={"limit": 1}, headers=reg).json()
    rest = mclient.get(
        "/v1/claims", params={"limit": 1, "cursor": first["next_cursor"]}, headers=reg
    ).json()
    assert [c["id"] for c in first["claims"] + rest["claims"]] == [unrelated["id"], claim["id"]]
    assert rest["next_cursor"] is None
    # ... and by when they were filed: the second claim's time splits them
    split = unrelated["created_at"]
    after = mclient.get("/v1/claims", params={"since": split}, headers=reg).json()
    before = mclient.get("/v1/claims", params={"until": split}, headers=reg).json()
    assert [c["id"] for c in after["claims"]] == [unrelated["id"]]
    assert [c["id"] for c in before["claims"]] == [claim["id"]]

    # Audited under the claim's subject; the artist's events show both.
    with runtime.pool.connection() as conn:
        kinds = [
            r["kind"]
            for r in conn.execute(
                "SELECT kind FROM audit_log WHERE subject = %s ORDER BY seq",
                (f"claim:{claim['id']}",),
            ).fetchall()
        ]
    assert kinds == ["claim.filed", "claim.decided"]
    events = mclient.get(f"/v1/artists/{made['a']}/events", headers=reg).json()["events"]
    said = [(e["kind"], e["data"].get("claim_id")) for e in events]
    assert ("claim.decided", claim["id"]) in said and ("claim.filed", claim["id"]) in said
    filed = next(
        e for e in events if e["kind"] == "claim.filed" and e["data"]["claim_id"] == claim["id"]
    )
    assert filed["artwork_id"] == made["work"]["id"]
    assert filed["data"]["matches"][0]["decision"] == "copy"


def test_a_claims_picture_and_report(mclient, make_key, made):
    from similarity.picture import GAP, PANEL

    reg = made["reg"]
    claim = file(
        mclient, reg, output_id=made["copied"], artist_id=made["a"], reason="a copy"
    ).json()
    r = mclient.get(f"{claim['url']}/picture", headers=reg)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(r.content))
    assert picture.width == 2 * PANEL + 3 * GAP, "the output beside the work found in it"
    assert picture.convert("RGB").getpixel((2, 2)) == CLAIM_COLOURS["open"]
    r = mclient.post(f"{claim['url']}/decision", json={"uphold": False}, headers=made["admin"])
    assert r.status_code == 200
    decided = Image.open(io.BytesIO(mclient.get(f"{claim['url']}/picture", headers=reg).content))
    assert decided.convert("RGB").getpixel((2, 2)) == CLAIM_COLOURS["rejected"]
    assert decided.height > picture.height, "the decision is a line more in the band"
    audit = auth(make_key("audit"))
    subject = f"claim:{claim['id']}"
    report = mclient.get("/v1/audit/report", params={"subject": subject}, headers=audit).json()
    assert report["record_kind"] == "claim" and report["record"]["id"] == claim["id"]
    contents = check_report(report, load_public_key(report["public_key"]))
    assert [c["kind"] for c in contents] == ["claim.filed", "claim.decided"]
    r = mclient.get("/v1/audit/report", params={"subject": subject, "format": "pdf"}, headers=audit)
    assert r.status_code == 200
    text, pictures = pdf_text(r.content)
    assert "the output claimed against" in text and "copy, score" in text
    assert pictures == 2


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        ({"output_id": ZERO}, 404, "no output"),
        ({"artist_id": ZERO}, 404, "no artist"),
        ({"artwork_id": ZERO}, 404, "no artwork"),
        ({"artwork_id": "other"}, 422, "not one of"),
        ({"reason": "   "}, 422, "reason"),
        ({"reason": "x" * 5001}, 422, "reason"),
        ({"extra": 1}, 422, "extra"),
    ],
)
def test_a_claim_that_cannot_be_filed_says_why_and_records_nothing(
    mclient, runtime, made, body, code, said
):
    full = {"output_id": made["copied"], "artist_id": made["a"], "reason": "a copy", **body}
    if full.get("artwork_id") == "other":
        full["artwork_id"] = made["other_work"]["id"]  # registered by another artist
    r = file(mclient, made["reg"], **full)
    assert r.status_code == code and said in json.dumps(r.json()["detail"]), r.text
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM claims").fetchone()["n"] == 0
        assert (
            conn.execute(
                "SELECT count(*) AS n FROM audit_log WHERE kind = 'claim.filed'"
            ).fetchone()["n"]
            == 0
        )


def test_missing_claims_and_bad_cursors(mclient, made):
    reg, admin = made["reg"], made["admin"]
    assert mclient.get(f"/v1/claims/{ZERO}", headers=reg).status_code == 404
    assert mclient.get(f"/v1/claims/{ZERO}/picture", headers=reg).status_code == 404
    r = mclient.post(f"/v1/claims/{ZERO}/decision", json={"uphold": True}, headers=admin)
    assert r.status_code == 404
    r = mclient.post(f"/v1/claims/{ZERO}/decision", json={"uphold": "yes"}, headers=admin)
    assert r.status_code == 422
    assert mclient.get("/v1/claims", params={"cursor": "x"}, headers=reg).status_code == 422
    assert mclient.get("/v1/claims", params={"status": "maybe"}, headers=reg).status_code == 422
    backwards = {"since": "2026-01-02", "until": "2026-01-01"}
    r = mclient.get("/v1/claims", params=backwards, headers=reg)
    assert r.status_code == 422 and "since must be before until" in r.json()["detail"]


def test_stamped_copy_is_found_whole_in_the_claims_picture(mclient, made):
    """The picture's right-hand panel is the artist's work (not the output twice)."""
    from similarity.picture import GAP, PANEL

    claim = file(
        mclient, made["reg"], output_id=made["copied"], artist_id=made["a"], reason="a copy"
    ).json()
    picture = Image.open(
        io.BytesIO(mclient.get(f"{claim['url']}/picture", headers=made["reg"]).content)
    )
    band = _band_height(picture, CLAIM_COLOURS["open"])
    assert band > 40, "the claim's band over the rows"
    top = band + GAP
    panel = picture.crop((2 * GAP + PANEL, top, 2 * GAP + 2 * PANEL, top + PANEL * 3 // 4))
    assert _likeness(panel, photo_like(7401)) > _likeness(panel, photo_like(7403)) + 0.3


def test_copies_of_an_output_with_an_upheld_claim_are_blocked(mclient, made):
    """A person upheld the claim though the matcher found nothing (their judgement stands): the
    output's copies, even re-encoded without their manifest, are then blocked by the default
    policy, the claim named; while it is open, or once rejected, nothing changes."""
    reg, admin = made["reg"], made["admin"]
    moderate_key = auth(made["make_key"]("moderate"))
    stripped = encode(Image.open(io.BytesIO(made["unrelated_bytes"])).convert("RGB"), quality=92)

    def verdict() -> tuple[str, list[dict]]:
        r = mclient.post(
            "/v1/moderation/check", files={"file": ("q.jpg", stripped)}, headers=moderate_key
        )
        assert r.status_code == 200, r.text
        return r.json()["verdict"], [x for x in r.json()["reasons"] if x["signal"] == "claims"]

    assert verdict() == ("review", [])  # ours, without its manifest
    rejected = file(mclient, reg, output_id=made["unrelated"], artist_id=made["b"], reason="no")
    assert rejected.status_code == 201, rejected.text
    mclient.post(f"{rejected.json()['url']}/decision", json={"uphold": False}, headers=admin)
    claim = file(
        mclient, reg, output_id=made["unrelated"], artist_id=made["a"], reason="my composition"
    ).json()
    assert claim["matches"] == [] and verdict() == ("review", [])  # open: nothing yet
    r = mclient.post(f"{claim['url']}/decision", json={"uphold": True}, headers=admin)
    assert r.status_code == 200, r.text
    found, reasons = verdict()
    assert found == "block"
    (why,) = reasons
    assert why["rule"] == "ours_claim_upheld" and why["action"] == "block"
    assert why["evidence"]["claim_id"] == claim["id"]
    assert why["evidence"]["output_id"] == made["unrelated"]
    assert why["evidence"]["artist_id"] == made["a"]


def test_the_claims_commands_file_list_show_and_decide(mclient, made, cli):
    filing = ("claims", "file", "--output", made["copied"], "--artist", made["a"])
    filed = cli(*filing, "--reason", "my harbour, cropped")
    claim = json.loads(filed.stdout)
    assert claim["status"] == "open" and claim["matches"][0]["decision"] == "copy"
    listed = json.loads(cli("claims", "list", "--status", "open", "--json").stdout)["claims"]
    assert [c["id"] for c in listed] == [claim["id"]]
    assert claim["id"] in cli("claims", "list", "--artist", made["a"]).stdout
    later = cli("claims", "list", "--since", claim["created_at"], "--json").stdout
    assert [c["id"] for c in json.loads(later)["claims"]] == [claim["id"]]
    assert json.loads(cli("claims", "list", "--until", claim["created_at"], "--json").stdout)[
        "claims"
    ] == []
    again = cli(*filing, "--reason", "my harbour, cropped", ok=False)
    assert again.returncode == 2 and "open already" in again.stderr
    done = cli("claims", "decide", claim["id"], "--uphold", "--note", "a copy")
    assert "upheld" in done.stdout
    shown = json.loads(cli("claims", "show", claim["id"]).stdout)
    assert shown["status"] == "upheld" and shown["decision_note"] == "a copy"
    assert shown["decided_by"].startswith("cli:")
    for bad in (
        ["decide", claim["id"], "--reject"],  # decided already
        ["show", ZERO],
        ["list", "--status", "maybe"],
        ["list", "--since", "soon"],
        ["list", "--cursor", "x"],
        ["file", "--output", ZERO, "--artist", made["a"], "--reason", "r"],
        ["file", "--output", made["copied"], "--artist", made["a"], "--reason", "   "],
    ):
        out = cli("claims", *bad, ok=False)
        assert out.returncode == 2 and out.stderr.strip() and "Traceback" not in out.stderr, bad


def test_a_retried_claim_is_refused_before_any_matching(mclient, made, monkeypatch):
    from service.registry import claims

    calls: list[str] = []
    real = claims.output_matches

    def counted(rt, sha256, artist_id):
        calls.append(sha256)
        return real(rt, sha256, artist_id)

    monkeypatch.setattr(claims, "output_matches", counted)
    body = {"output_id": made["copied"], "artist_id": made["a"], "reason": "mine"}
    assert file(mclient, made["reg"], **body).status_code == 201
    assert file(mclient, made["reg"], **body).status_code == 409
    assert len(calls) == 1, "the retry was refused before the output was matched again"


def test_a_claim_is_filed_with_one_connection_free(mclient, runtime, made):
    """No connection is held while the output is matched (matching takes its own): with one
    connection left in the pool, a claim is filed, not answered 503 after the pool's wait."""
    body = {"output_id": made["copied"], "artist_id": made["a"], "reason": "mine"}
    with one_connection_left(runtime.pool):
        r = file(mclient, made["reg"], **body)
    assert r.status_code == 201, r.text
    assert r.json()["matches"][0]["decision"] == "copy"
