"""The `chopmark` command line, run as a user runs it: a subprocess with CHOPMARK_* settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import numpy as np
import pytest
from PIL import Image

from tests.support import auth, encode, photo_like


def chopmark(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, with ``env`` as its whole environment."""
    return subprocess.run(
        [sys.executable, "-m", "service.cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_create_prints_the_key_alone_on_the_last_line(cli):
    out = cli("keys", "create", "--name", "moderation", "--scope", "match", "--scope", "moderate")
    key = out.stdout.strip().splitlines()[-1]
    assert key.startswith("chm_") and " " not in key
    listing = cli("keys", "list").stdout
    assert "moderation" in listing and "match,moderate" in listing and key not in listing
    prefix = key.split("_")[1]
    assert "revoked key" in cli("keys", "revoke", prefix).stdout
    assert "was revoked already" in cli("keys", "revoke", prefix).stdout
    bad = cli("keys", "create", "--name", "x", "--scope", "superuser", ok=False)
    assert bad.returncode == 2 and "unknown scope" in bad.stderr
    long = cli("keys", "create", "--name", "n" * 201, "--scope", "match", ok=False)
    assert long.returncode == 2 and "at most 200" in long.stderr


def test_register_folder_then_match_and_verify(cli, tmp_path: Path):
    artist = cli("artists", "create", "--name", "Ana", "--email", "ana@example.org").stdout.strip()
    folder = tmp_path / "works"
    (folder / "sub").mkdir(parents=True)
    for seed in (201, 202, 203):
        (folder / f"{seed}.jpg").write_bytes(encode(photo_like(seed)))
    (folder / "sub" / "204.png").write_bytes(encode(photo_like(204), "PNG"))
    (folder / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    strip = Image.fromarray(np.random.default_rng(2).integers(0, 255, (300, 1, 3), np.uint8))
    (folder / "strip.png").write_bytes(encode(strip, "PNG"))  # too thin to be recognised
    (folder / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    out = cli("register", "--artist", artist, str(folder))
    assert "created 4, duplicate 0, rejected 3" in out.stdout, out.stdout + out.stderr
    assert "broken.jpg" in out.stderr and "gone.jpg: cannot read" in out.stderr
    assert "strip.png: the picture has too little detail" in out.stderr
    again = cli("register", "--artist", artist, str(folder / "201.jpg"))
    assert "created 0, duplicate 1, rejected 0" in again.stdout

    query = tmp_path / "query.jpg"
    img = photo_like(202)
    w, h = img.size
    query.write_bytes(encode(img.crop((0, 0, int(w * 0.85), int(h * 0.85))), quality=50))
    result = json.loads(cli("match", str(query), "--json").stdout)
    assert result["index"]["size"] == 4
    assert result["matches"][0]["decision"] == "copy"
    assert result["matches"][0]["title"] is None
    picture = tmp_path / "evidence.png"
    table = cli("match", str(query), "--picture", str(picture)).stdout
    assert "copy" in table
    with Image.open(picture) as shown:  # the query beside the one work it copies
        assert shown.format == "PNG" and shown.height > shown.width / 2

    verified = cli("audit", "verify")
    assert "intact" in verified.stdout


def test_verify_reports_a_picture_too_small_for_a_watermark(cli, tmp_path: Path):
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode(photo_like(205).resize((40, 30)), "PNG"))
    out = json.loads(cli("verify", str(tiny), "--json").stdout)
    assert out["watermark"]["present"] is False and "too small" in out["watermark"]["not_read"]
    assert out["record"] is None and out["manifest"]["state"] == "Absent"
    assert "not read (" in cli("verify", str(tiny)).stdout


def test_audit_verify_fails_on_tampering(cli, runtime):
    cli("artists", "create", "--name", "Bo", "--email", "bo@example.org")
    cli("artists", "create", "--name", "Cy", "--email", "cy@example.org")
    with runtime.pool.connection() as conn, conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update")
        conn.execute("DELETE FROM audit_log WHERE seq = 0")
    out = cli("audit", "verify", ok=False)
    assert out.returncode == 1
    assert "entry 0" in out.stderr


def test_artists_create_stores_the_address_alone_as_the_api_does(cli, runtime):
    cli("artists", "create", "--name", "Rob", "--email", "Robert <rob@EXAMPLE.org>")
    again = cli("artists", "create", "--name", "Rob", "--email", " rob@example.org ", ok=False)
    assert again.returncode == 1 and "rob@example.org" in again.stderr
    with runtime.pool.connection() as conn:
        assert [r["email"] for r in conn.execute("SELECT email FROM artists")] == [
            "rob@example.org"
        ]


def test_artists_update_changes_the_name_and_address_as_the_api_does(cli, runtime):
    rob = cli("artists", "create", "--name", "Rob", "--email", "rob@example.org").stdout.strip()
    cli("artists", "create", "--name", "Sue", "--email", "sue@example.org")
    out = cli("artists", "update", rob, "--name", " Robin ", "--email", "Robin <robin@EXAMPLE.org>")
    assert out.stdout.strip().endswith("Robin <robin@example.org>"), out.stdout
    for args, status, said in (
        ((), 2, "say --name, --email or both"),
        (("--email", "nope"), 2, "--email"),
        (("--name", "  "), 2, "--name"),
        (("--email", "SUE@example.org"), 1, "already registered"),
        (("--name", "X"), 2, "invalid"),
    ):
        who = "not-an-id" if said == "invalid" else rob
        bad = cli("artists", "update", who, *args, ok=False)
        assert bad.returncode == status and said in bad.stderr.lower(), (args, bad.stderr)
    gone = cli("artists", "update", "00000000-0000-0000-0000-000000000000", "--name", "X", ok=False)
    assert gone.returncode == 1 and "no artist" in gone.stderr
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT display_name, email FROM artists ORDER BY email").fetchall()
        kinds = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE kind = 'artist.profile_changed'"
        ).fetchone()["n"]
    assert [(r["display_name"], r["email"]) for r in rows] == [
        ("Robin", "robin@example.org"),
        ("Sue", "sue@example.org"),
    ]
    assert kinds == 1


def test_audit_head_kept_then_verified_against(cli, tmp_path: Path):
    cli("artists", "create", "--name", "Hu", "--email", "hu@example.org")
    head = json.loads(cli("audit", "head").stdout)
    assert head["size"] >= 1 and len(head["root"]) == 64 and head["signature"]
    kept = tmp_path / "head.json"
    kept.write_text(json.dumps(head))
    cli("artists", "create", "--name", "Ji", "--email", "ji@example.org")
    out = cli("audit", "verify", "--head", str(kept))
    assert "intact" in out.stdout and f"tree head of {head['size']}" in out.stdout
    kept.write_text(json.dumps({**head, "root": "00" * 32}))
    bad = cli("audit", "verify", "--head", str(kept), ok=False)
    assert bad.returncode == 1 and "not signed by this log's key" in bad.stderr


def test_db_upgrade_is_idempotent(cli):
    assert "up to date" in cli("db", "upgrade").stdout


def test_register_refuses_unknown_artist_and_bad_preferences(cli, tmp_path):
    f = tmp_path / "a.jpg"
    f.write_bytes(encode(photo_like(1)))
    out = cli("register", "--artist", "6f1c1c2e-0000-4000-8000-000000000000", str(f), ok=False)
    assert out.returncode == 1 and "no artist" in out.stderr
    artist = cli("artists", "create", "--name", "D", "--email", "d@example.org").stdout.strip()
    out = cli("register", "--artist", artist, "--preferences", "{nope", str(f), ok=False)
    assert out.returncode == 2 and "preferences" in out.stderr
    for title in ("   ", "t" * 501):
        out = cli("register", "--artist", artist, "--title", title, str(f), ok=False)
        assert out.returncode == 2 and "title" in out.stderr
    out = cli("match", str(f), "--picture", str(tmp_path / "no" / "where.png"), ok=False)
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"CHOPMARK_PORT": "70000"}, "CHOPMARK_PORT: Input should be less than or equal to 65535"),
        ({"CHOPMARK_INDEX_REFRESH_SECONDS": "0"}, "CHOPMARK_INDEX_REFRESH_SECONDS"),
        ({"CHOPMARK_OUTPUT_FORMAT": "gif"}, "CHOPMARK_OUTPUT_FORMAT"),
        ({"CHOPMARK_MODEL": "/nowhere/model"}, "CHOPMARK_MODEL: /nowhere/model does not exist"),
        ({"CHOPMARK_CONTROLNET": "/nowhere/cn"}, "CHOPMARK_CONTROLNET: /nowhere/cn does not exist"),
        ({"CHOPMARK_TRUST_ANCHORS": '["/nowhere/root.pem"]'}, "/nowhere/root.pem does not exist"),
        ({"CHOPMARK_TRUST_ANCHORS": "notjson"}, "CHOPMARK_TRUST_ANCHORS"),
        ({"CHOPMARK_SIGNING_CHAIN": "/nowhere/chain.pem"}, "name both or neither"),
        ({"CHOPMARK_INDEX_REFRESH_SECONDS": "inf"}, "CHOPMARK_INDEX_REFRESH_SECONDS"),
        ({"CHOPMARK_INDEX_NPROBE": "0"}, "CHOPMARK_INDEX_NPROBE"),
        ({"CHOPMARK_GENERATION_LEASE_SECONDS": "inf"}, "CHOPMARK_GENERATION_LEASE_SECONDS"),
        ({"CHOPMARK_MAX_REQUEST_BYTES": "10"}, "CHOPMARK_MAX_REQUEST_BYTES (10) is below"),
        ({"CHOPMARK_INDEX_STALE_SECONDS": "1"}, "CHOPMARK_INDEX_STALE_SECONDS (1.0) must be more"),
        (
            {"CHOPMARK_MODERATION_WORKERS": "9"},
            "CHOPMARK_DB_POOL_MAX (10) must be at least CHOPMARK_MODERATION_WORKERS + 2 (11)",
        ),
        ({"CHOPMARK_DATABASE_URL": "nothing"}, "the database cannot be used"),
        (
            {"CHOPMARK_ENVIRONMENT": "production", "CHOPMARK_DATABASE_URL": "postgresql://db/x"},
            "CHOPMARK_SIGNING_CHAIN and CHOPMARK_SIGNING_KEY must name",
        ),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(tmp_path: Path, env, says):
    proc = chopmark(
        "serve", env={**os.environ, "CHOPMARK_DATA_DIR": str(tmp_path), "COLUMNS": "200", **env}
    )
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_serve_refuses_an_operator_chain_whose_root_is_not_trusted(tmp_path: Path):
    """Our manifests count as ours only when Trusted: a chain without its root among the trust
    anchors would leave every output reading as one that lost its manifest."""
    from provenance.credentials import ensure_dev_credentials
    from provenance.dev_ca import dev_paths

    ensure_dev_credentials(tmp_path / "ca")
    files = dev_paths(tmp_path / "ca")
    env = {
        **os.environ,
        "CHOPMARK_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "200",
        "CHOPMARK_SIGNING_CHAIN": str(files["chain"]),
        "CHOPMARK_SIGNING_KEY": str(files["key"]),
        "CHOPMARK_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
    }
    proc = chopmark("serve", env=env)
    assert proc.returncode == 2 and "CHOPMARK_TRUST_ANCHORS" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    # with the root named, signing passes and the start goes on to the (absent) database
    env["CHOPMARK_TRUST_ANCHORS"] = json.dumps([str(files["root"])])
    proc = chopmark("serve", env=env)
    assert proc.returncode == 2 and "the database cannot be used" in proc.stderr, proc.stderr


def test_commands_refuse_a_damaged_audit_key_and_bad_settings_in_one_line(
    cli, runtime, settings, tmp_path
):
    key = settings.keys_dir / "audit-log.pem"
    kept = key.read_bytes()
    key.write_bytes(b"")
    try:
        out = cli("keys", "list", ok=False)
        assert out.returncode == 2 and "cannot be read" in out.stderr
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    finally:
        key.write_bytes(kept)
    for env, says in (
        ({"CHOPMARK_PORT": "0"}, "CHOPMARK_PORT"),
        (
            {"CHOPMARK_MODERATION_WORKERS": "9"},
            "CHOPMARK_DB_POOL_MAX (10) must be at least CHOPMARK_MODERATION_WORKERS + 2 (11)",
        ),
        ({"CHOPMARK_DATABASE_URL": "nothing"}, "the database cannot be used"),
    ):
        proc = chopmark(
            "db",
            "upgrade",
            env={**os.environ, "CHOPMARK_DATA_DIR": str(tmp_path), "COLUMNS": "200", **env},
        )
        assert proc.returncode == 2 and says in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_a_cli_command_refuses_a_log_whose_key_is_missing(cli, runtime, settings):
    cli("artists", "create", "--name", "Bo", "--email", "bo@example.org")  # an audited entry
    key = settings.keys_dir / "audit-log.pem"
    kept = key.with_name("kept.pem")
    key.rename(kept)
    try:
        out = cli("keys", "list", ok=False)
        assert out.returncode == 2 and "signing key" in out.stderr and "Traceback" not in out.stderr
        assert not key.exists()
    finally:
        kept.replace(key)


def test_text_from_outside_is_printed_as_text_not_obeyed(
    cli, client, runtime, make_key, photo, tmp_path
):
    """Rich markup in a title or a key's name is printed, not rendered; control characters never
    reach the terminal; a key name that would forge a row is refused as the API refuses it."""
    cli("keys", "create", "--name", "[link=http://evil.example]ops[/link]", "--scope", "match")
    listing = cli("keys", "list").stdout
    assert "[link=http://evil.example]ops[/link]" in listing
    forged = cli("keys", "create", "--name", "x\r\nkadmin    admin", "--scope", "match", ok=False)
    assert forged.returncode == 2 and "control characters" in forged.stderr
    h = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Lu", "email": "lu@example.org"}, headers=h
    ).json()["id"]
    r = client.post(
        f"/v1/artists/{artist}/artworks",
        data={"title": "[bold red]Innocent[/bold red]"},  # brackets are text: allowed
        files=[("files", ("w.jpg", photo(308), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 201, r.text
    with runtime.pool.connection() as conn:  # as a row written before titles were checked
        conn.execute("UPDATE artworks SET title = %s", ("[bold]Innocent[/bold] \x1b[31mRED\nx",))
    query = tmp_path / "query.jpg"
    query.write_bytes(photo(308))
    out = cli("match", str(query)).stdout
    assert "[bold]Innocent[/bold]" in out
    assert "\x1b" not in out and "\\x1b[31mRED\\x0ax" in out


def test_operator_mistakes_are_one_line_and_exit_2(cli, settings, tmp_path: Path):
    """Arguments and files the commands cannot use are said in one line, before any work."""
    one_line = []

    def refused(*args: str, says: str, env: dict[str, str] | None = None) -> None:
        proc = chopmark(*args, env=env) if env is not None else cli(*args, ok=False)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and says in proc.stderr, (args, proc.stderr)
        one_line.append(len(proc.stderr.strip().splitlines()) == 1)

    refused("storage", "gc", "--older-than", "nan", says="--older-than")
    for args in (  # option ranges, refused as usage errors (typer's own box)
        ("serve", "--port", "99999"),
        ("serve", "--workers", "0"),
        ("register", "--artist", str(uuid4()), str(tmp_path), "--workers", "0"),
    ):
        proc = cli(*args, ok=False)
        assert proc.returncode == 2 and "Invalid value" in proc.stderr, (args, proc.stderr)
    folder = tmp_path / "out"
    folder.mkdir()
    image = tmp_path / "q.png"
    image.write_bytes(encode(photo_like(3, (256, 256)), "PNG"))
    refused("match", str(image), "--picture", str(folder), says="is a folder")
    refused("match", "/dev/null", says="not a regular file")
    refused("generate", "x", "-o", str(tmp_path / "x.jpg"), says="signed as PNG")
    refused("artists", "create", "--name", " ", "--email", "a@example.org", says="--name")
    head = tmp_path / "head.json"
    for forged in ({"size": -1}, {"size": "31"}, {"size": 0, "root": "ab" * 32}):
        head.write_text(json.dumps({"size": 0, "root": "", "signature": "", **forged}))
        refused("audit", "verify", "--head", str(head), says="not a tree head")
    base = {k: v for k, v in os.environ.items() if not k.startswith("CHOPMARK_")}
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    env = {**base, "CHOPMARK_DATA_DIR": str(tmp_path / "d")}
    refused(
        "credentials",
        "show",
        says="not valid PEM",
        env={**env, "CHOPMARK_SIGNING_CHAIN": str(junk), "CHOPMARK_SIGNING_KEY": str(junk)},
    )
    refused("credentials", "show", says="CHOPMARK_PORT", env={**env, "CHOPMARK_PORT": "abc"})
    refused("keys", "list", says="data folder", env={**base, "CHOPMARK_DATA_DIR": str(image)})
    assert all(one_line), one_line


def test_a_fifo_among_the_files_is_refused_not_waited_on(cli, tmp_path: Path):
    artist = cli("artists", "create", "--name", "Fi", "--email", "fi@example.org").stdout.strip()
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    out = cli("register", "--artist", artist, str(fifo), ok=False)  # would hang before
    assert out.returncode == 1 and "not a regular file" in out.stderr, out.stderr
    image = tmp_path / "ok.png"
    image.write_bytes(encode(photo_like(4, (256, 256)), "PNG"))
    checked = cli("check", str(image), str(fifo), "--json", ok=False)
    assert checked.returncode == 2
    rows = json.loads(checked.stdout)
    assert rows[0]["file"] == str(image) and rows[0]["verdict"] == "allow"
    assert rows[1]["file"] == str(fifo) and "not a regular file" in rows[1]["error"]
