"""The audit log for legal review: the signed head, entries by subject, an entry's inclusion
proof and two heads' consistency, each checked with no database (GET /v1/audit/...,
``chopmark audit proof`` and ``check-proof``); a changed entry or head does not pass."""

from __future__ import annotations

import base64
import json

import pytest

from provenance.merkle import root_from_leaf_hashes
from service.audit.proofs import check_consistency, check_entry_proof, load_public_key
from service.audit.report import check_report
from service.audit.signing import tree_head_message
from tests.service.test_moderation import edited, moderate, register
from tests.support import auth


def get(client, h, path: str, **params) -> dict:
    r = client.get(path, params=params, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def checked(client, make_key):
    """A registered work, a moderation check that blocks a copy of it, and an audit key."""
    (work,) = register(client, auth(make_key("registry")), 7301)
    result = moderate(client, auth(make_key("moderate")), edited(7301), user="dave")
    assert result["verdict"] == "block"
    return {"work": work, "check": result, "audit": auth(make_key("audit"))}


def test_the_head_is_signed_and_covers_every_entry(client, checked):
    h = checked["audit"]
    head = get(client, h, "/v1/audit/head")
    key = load_public_key(head["public_key"])
    key.verify(
        bytes.fromhex(head["signature"]),
        tree_head_message(head["size"], bytes.fromhex(head["root"])),
    )
    entries, cursor = [], None
    while True:
        page = get(
            client, h, "/v1/audit/entries", limit=3, **({"cursor": cursor} if cursor else {})
        )
        entries += page["entries"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [e["seq"] for e in entries] == list(range(head["size"] - 1, -1, -1))
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in reversed(entries)]
    assert root_from_leaf_hashes(leaves).hex() == head["root"]


def test_a_moderation_checks_entry_is_proved_in_the_signed_log(client, checked):
    h, check = checked["audit"], checked["check"]
    page = get(client, h, "/v1/audit/entries", subject=f"moderation:{check['id']}")
    (entry,) = page["entries"]
    assert entry["kind"] == "moderation.checked" and entry["data"]["verdict"] == "block"
    assert entry["data"]["sha256"] == check["sha256"] and entry["data"]["user"] == "dave"
    matched = get(client, h, "/v1/audit/entries", kind="moderation.matched")["entries"]
    assert [m["subject"] for m in matched] == [f"artwork:{checked['work']['id']}"]
    head = get(client, h, "/v1/audit/head")
    key = load_public_key(head["public_key"])
    bundle = get(client, h, entry["proof_url"])
    assert bundle["tree_head"] == {k: head[k] for k in ("size", "root", "signature")}
    content = check_entry_proof(bundle, key)
    assert content["data"]["verdict"] == "block" and content["subject"] == entry["subject"]
    # The same entry under the head of the log as it stood right after it.
    early = get(client, h, entry["proof_url"], tree_size=entry["seq"] + 1)
    assert early["tree_head"]["size"] == entry["seq"] + 1
    assert early["tree_head"]["root"] != bundle["tree_head"]["root"]
    check_entry_proof(early, key)
    # A changed verdict, a proof moved to another entry, a head of another log: none pass.
    forged = json.loads(base64.b64decode(bundle["entry"]))
    forged["data"]["verdict"] = "allow"
    changed = {**bundle, "entry": base64.b64encode(json.dumps(forged).encode()).decode()}
    with pytest.raises(ValueError, match="not in the signed tree"):
        check_entry_proof(changed, key)
    with pytest.raises(ValueError):
        check_entry_proof({**bundle, "leaf_index": bundle["leaf_index"] - 1}, key)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with pytest.raises(ValueError, match="not signed by this key"):
        check_entry_proof(bundle, Ed25519PrivateKey.generate().public_key())


def test_a_head_kept_earlier_is_held_by_the_later_log(client, make_key, checked):
    h = checked["audit"]
    kept = get(client, h, "/v1/audit/head")
    moderate(client, auth(make_key("moderate")), edited(7301))  # the log grows
    now = get(client, h, "/v1/audit/head")
    assert now["size"] > kept["size"]
    proof = get(client, h, "/v1/audit/consistency", first=kept["size"])
    assert proof["first"] == {k: kept[k] for k in ("size", "root", "signature")}
    assert proof["second"]["size"] == now["size"]
    key = load_public_key(now["public_key"])
    check_consistency(proof, key)
    rewritten = {**proof, "first": {**proof["first"], "root": "00" * 32}}
    with pytest.raises(ValueError):
        check_consistency(rewritten, key)
    with pytest.raises(ValueError, match="does not extend"):
        check_consistency({**proof, "consistency_proof": proof["consistency_proof"][1:]}, key)


@pytest.mark.parametrize(
    ("path", "params", "code"),
    [
        ("/v1/audit/entries/999999/proof", {}, 404),
        ("/v1/audit/entries/-1/proof", {}, 404),
        ("/v1/audit/entries/2/proof", {"tree_size": 2}, 422),
        ("/v1/audit/entries/0/proof", {"tree_size": 999999}, 422),
        ("/v1/audit/consistency", {"first": 999999}, 422),
        ("/v1/audit/consistency", {"first": 3, "second": 2}, 422),
        ("/v1/audit/consistency", {}, 422),
        ("/v1/audit/entries", {"cursor": "eA=="}, 422),
        ("/v1/audit/entries", {"kind": "no kind"}, 422),
    ],
)
def test_proofs_that_cannot_be_given_are_refused_with_a_reason(client, checked, path, params, code):
    r = client.get(path, params=params, headers=checked["audit"])
    assert r.status_code == code, r.text
    assert r.json()["detail"]


def test_proof_commands_write_and_check_a_bundle_with_no_database(
    client, settings, checked, tmp_path, monkeypatch
):
    import typer
    from typer.testing import CliRunner

    from service.cli.proof_cmds import audit_check_proof, audit_proof

    h = checked["audit"]
    (entry,) = get(client, h, "/v1/audit/entries", subject=f"moderation:{checked['check']['id']}")[
        "entries"
    ]
    head = get(client, h, "/v1/audit/head")
    pem = tmp_path / "log.pem"
    pem.write_text(head["public_key"])
    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    app = typer.Typer()
    app.command("proof")(audit_proof)
    app.command("check-proof")(audit_check_proof)
    runner = CliRunner()
    out = runner.invoke(app, ["proof", str(entry["seq"])])
    assert out.exit_code == 0, out.output
    bundle = tmp_path / "proof.json"
    bundle.write_text(out.output)
    assert json.loads(out.output)["leaf_index"] == entry["seq"]
    monkeypatch.setenv("CHOPMARK_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    out = runner.invoke(app, ["check-proof", str(bundle), "--public-key", str(pem)])
    assert out.exit_code == 0, out.output
    assert f"entry {entry['seq']} (moderation.checked" in out.output
    out = runner.invoke(app, ["check-proof", str(bundle)])
    assert out.exit_code == 0 and "warning" in out.output
    data = json.loads(bundle.read_text())
    data["tree_head"]["root"] = "11" * 32
    bundle.write_text(json.dumps(data))
    out = runner.invoke(app, ["check-proof", str(bundle), "--public-key", str(pem)])
    assert out.exit_code == 1 and "does not hold" in out.output
    consistency = tmp_path / "consistency.json"
    consistency.write_text(
        json.dumps(get(client, h, "/v1/audit/consistency", first=1, second=head["size"]))
    )
    out = runner.invoke(app, ["check-proof", str(consistency), "--public-key", str(pem)])
    assert out.exit_code == 0 and "consistent" in out.output, out.output
    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    out = runner.invoke(app, ["proof", "999999"])
    assert out.exit_code == 2 and "no audit entry" in out.output


# ---- reports ----------------------------------------------------------------------------------


def pdf_text(data: bytes) -> tuple[str, int]:
    """The text of a PDF and how many pictures it holds."""
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    return " ".join(text.split()), sum(len(page.images) for page in reader.pages)


def test_a_moderation_checks_report_proves_its_entries_and_shows_the_evidence(
    client, make_key, checked
):
    h, check = checked["audit"], checked["check"]
    r = client.post(
        f"/v1/moderation/checks/{check['id']}/reviews",
        json={"decision": "block", "reviewer": "Mod One", "note": "a copy of the work"},
        headers=auth(make_key("moderate", "admin")),
    )
    assert r.status_code == 201, r.text
    subject = f"moderation:{check['id']}"
    report = get(client, h, "/v1/audit/report", subject=subject)
    assert report["record_kind"] == "moderation_check" and report["record"]["id"] == check["id"]
    assert report["record"]["reviews"][0]["reviewer"] == "Mod One"
    head = get(client, h, "/v1/audit/head")
    assert report["tree_head"]["size"] == head["size"]
    key = load_public_key(head["public_key"])
    contents = check_report(report, key)
    assert [c["kind"] for c in contents] == ["moderation.checked", "moderation.reviewed"]
    # An entry about something else slipped in, or one changed: the report does not hold.
    other = get(client, h, f"/v1/audit/entries/{contents[0]['seq'] - 1}/proof")
    moved = {k: other[k] for k in ("leaf_index", "entry", "entry_json", "leaf_hash")}
    moved["inclusion_proof"] = get(
        client, h, f"/v1/audit/entries/{moved['leaf_index']}/proof", tree_size=head["size"]
    )["inclusion_proof"]
    with pytest.raises(ValueError, match="not about"):
        check_report({**report, "entries": [moved, *report["entries"]]}, key)
    forged = json.loads(base64.b64decode(report["entries"][0]["entry"]))
    forged["data"]["verdict"] = "allow"
    bad = {**report["entries"][0], "entry": base64.b64encode(json.dumps(forged).encode()).decode()}
    with pytest.raises(ValueError):
        check_report({**report, "entries": [bad]}, key)
    r = client.get("/v1/audit/report", params={"subject": subject, "format": "pdf"}, headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    text, pictures = pdf_text(r.content)
    assert f"Audit report: {subject}" in text and "block" in text and "Mod One" in text
    assert head["root"] in text.replace(" ", "") and "moderation.reviewed" in text
    assert pictures == 2  # the upload, kept since it was blocked, beside the work it copies
    assert "the checked upload (kept)" in text


def test_an_artworks_and_a_generations_reports(client, runtime, make_key, checked):
    from service.genservice import GenerationService
    from tests.service.test_generations import b64, request

    h, work = checked["audit"], checked["work"]
    report = get(client, h, "/v1/audit/report", subject=f"artwork:{work['id']}")
    key = load_public_key(report["public_key"])
    kinds = [c["kind"] for c in check_report(report, key)]
    assert kinds == ["artwork.registered", "moderation.matched"]
    assert report["record"]["sha256"] == work["sha256"]
    lazy = GenerationService.open(runtime)  # a blocked request never loads the model
    client.app.state.generation = lazy
    try:
        r = client.post(
            "/v1/generations",
            json=request(init_image=b64(edited(7301)), strength=0.6, user="eve", seed=5),
            headers=auth(make_key("generate")),
        )
    finally:
        lazy.close()
    assert r.status_code == 403, r.text
    subject = f"generation:{r.json()['id']}"
    report = get(client, h, "/v1/audit/report", subject=subject)
    assert [c["kind"] for c in check_report(report, key)] == ["generation.blocked"]
    assert report["record"]["parameters"]["seed"] == 5
    pdf = client.get("/v1/audit/report", params={"subject": subject, "format": "pdf"}, headers=h)
    text, _ = pdf_text(pdf.content)
    assert "a lighthouse at dusk" in text and "blocked" in text


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"subject": f"moderation:{'0' * 8}-0000-0000-0000-{'0' * 12}"}, 404),
        ({"subject": "nothing:here"}, 404),
        ({"subject": "artwork:x", "format": "docx"}, 422),
        ({}, 422),
    ],
)
def test_a_report_on_nothing_recorded_is_refused(client, checked, params, code):
    r = client.get("/v1/audit/report", params=params, headers=checked["audit"])
    assert r.status_code == code, r.text


def test_report_command_writes_a_pdf_and_a_json_that_check_proof_checks(
    client, settings, checked, tmp_path, monkeypatch
):
    import typer
    from typer.testing import CliRunner

    from service.cli.proof_cmds import audit_check_proof, audit_report

    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    app = typer.Typer()
    app.command("report")(audit_report)
    app.command("check-proof")(audit_check_proof)
    runner = CliRunner()
    subject = f"moderation:{checked['check']['id']}"
    for name in ("r.pdf", "r.json"):
        out = runner.invoke(app, ["report", subject, "--out", str(tmp_path / name)])
        assert out.exit_code == 0, out.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    pem = tmp_path / "log.pem"
    pem.write_text(get(client, checked["audit"], "/v1/audit/head")["public_key"])
    out = runner.invoke(app, ["check-proof", str(tmp_path / "r.json"), "--public-key", str(pem)])
    assert out.exit_code == 0 and "all 1 entries about" in out.output, out.output
    out = runner.invoke(app, ["report", "nothing:here", "--out", str(tmp_path / "x.pdf")])
    assert out.exit_code == 2 and "nothing is recorded" in out.output
    out = runner.invoke(app, ["report", subject, "--out", str(tmp_path / "x.txt")])
    assert out.exit_code == 2


def test_a_pdf_lists_at_most_its_cap_of_entries_and_says_so() -> None:
    from datetime import UTC, datetime

    from service.audit.log import TreeHead
    from service.audit.proofs import EntryProof
    from service.audit.report import Report
    from service.audit.report_pdf import MAX_LISTED, render_pdf

    head = TreeHead(MAX_LISTED + 100, b"\x00" * 32, b"\x00" * 64)
    entries = [
        EntryProof(i, json.dumps({"seq": i, "kind": "moderation.matched"}).encode(), [], head)
        for i in range(MAX_LISTED + 20)
    ]
    text, _ = pdf_text(
        render_pdf(Report("artwork:x", datetime.now(UTC), None, None, head, entries), "KEY")
    )
    assert f"The first {MAX_LISTED} of {MAX_LISTED + 20} entries" in text
    assert f" {MAX_LISTED - 1} " in text and f" {MAX_LISTED + 5} " not in text
