"""The adapter registry (files, hashes, training metadata, status, artists' claims) and training
sources (fingerprints in bank 'source'), through the API and the CLI; `chopmark generate`."""

from __future__ import annotations

import hashlib
import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image, ImageEnhance
from safetensors.numpy import save_file
from typer.testing import CliRunner

from provenance.c2pa_io import read_manifest
from service.cli.generation_cmds import adapters_app, generate, sources_app
from similarity import compute_signals, decode_image
from tests.service.test_generations import tiny_runner  # noqa: F401
from tests.support import auth, encode, photo_like

KOHYA_META = {
    "ss_network_module": "networks.lora",
    "ss_network_dim": "4",
    "ss_network_alpha": "2",
    "ss_base_model_version": "sd_v1",
    "ss_output_name": "inkwash",
    "ss_tag_frequency": '{"ink": {"wash": 3}}',
}


def kohya_lora(path: Path, seed: int = 0, metadata: dict[str, str] | None = None) -> Path:
    """A small kohya-layout LoRA for an SD 1.x model (cross-attention 768); random weights."""
    rng = np.random.default_rng(seed)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    tensors = {
        f"{key}.lora_down.weight": rng.standard_normal((4, 768)).astype(np.float16),
        f"{key}.lora_up.weight": rng.standard_normal((320, 4)).astype(np.float16),
        f"{key}.alpha": np.array(2.0, np.float16),
    }
    save_file(tensors, str(path), metadata=KOHYA_META if metadata is None else metadata)
    return path


@pytest.fixture
def api(client):
    return client


def post_adapter(client, h, name: str, data: bytes, filename: str = "a.safetensors"):
    return client.post(
        "/v1/adapters",
        data={"name": name},
        files={"file": (filename, data, "application/octet-stream")},
        headers=h,
    )


def test_register_adapter_records_hashes_and_training_metadata(api, runtime, make_key, tmp_path):
    admin = auth(make_key("admin"))
    data = kohya_lora(tmp_path / "inkwash.safetensors").read_bytes()
    r = post_adapter(api, admin, "inkwash", data, "inkwash.safetensors")
    assert r.status_code == 201, r.text
    body = r.json()
    sha = hashlib.sha256(data).hexdigest()
    assert body["sha256"] == sha and body["autov2"] == sha[:10]
    assert body["status"] == "allowed" and body["size_bytes"] == len(data)
    assert body["training"]["ss_tag_frequency"] == {"ink": {"wash": 3}}
    assert body["metadata"]["ss_network_dim"] == "4"
    assert body["details"]["rank"] == 4 and body["details"]["key_format"] == "kohya"
    assert body["details"]["base_family"] == "sd1"
    assert runtime.blobs.get(sha) == data  # the file is in the blob store
    assert api.get("/v1/adapters/inkwash", headers=admin).json()["sha256"] == sha
    assert [a["name"] for a in api.get("/v1/adapters", headers=admin).json()] == ["inkwash"]
    # same name, or the same bytes under another name: conflicts
    assert post_adapter(api, admin, "inkwash", data).status_code == 409
    again = post_adapter(api, admin, "inkwash-2", data)
    assert again.status_code == 409 and "inkwash" in again.json()["detail"]
    # not a safetensors LoRA, or a bad name
    assert post_adapter(api, admin, "junk", b"not a safetensors file at all").status_code == 422
    plain = tmp_path / "plain.safetensors"  # a safetensors file, but no LoRA in it
    save_file({"foo": np.zeros((4, 4), np.float16)}, str(plain))
    r = post_adapter(api, admin, "plain", plain.read_bytes())
    assert r.status_code == 422 and "no LoRA weights" in r.json()["detail"]
    assert post_adapter(api, admin, "../evil", data).status_code == 422
    assert api.get("/v1/adapters/nothing", headers=admin).status_code == 404
    blocked = api.patch(
        "/v1/adapters/inkwash",
        json={"status": "blocked", "reason": "licence unclear"},
        headers=admin,
    )
    assert blocked.status_code == 200 and blocked.json()["status_reason"] == "licence unclear"
    with runtime.pool.connection() as conn:
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds[-2:] == ["adapter.registered", "adapter.status_changed"]


def test_truncated_safetensors_header_is_refused(api, make_key):
    bad = struct.pack("<Q", 10_000) + b"{}"
    r = post_adapter(api, auth(make_key("admin")), "short", bad)
    assert r.status_code == 422 and "header" in r.json()["detail"]


def test_claims_are_filed_by_artists_and_decided_by_admins(api, make_key, tmp_path):
    admin, reg = auth(make_key("admin")), auth(make_key("registry"))
    post_adapter(api, admin, "copycat", kohya_lora(tmp_path / "c.safetensors", 1).read_bytes())
    artist = api.post(
        "/v1/artists", json={"display_name": "Ana", "email": "ana@example.org"}, headers=reg
    ).json()
    unknown = api.post(
        "/v1/adapters/copycat/claims",
        json={"artist_id": "6f1c1c2e-0000-4000-8000-000000000000", "reason": "mine"},
        headers=reg,
    )
    assert unknown.status_code == 404
    first = api.post(
        "/v1/adapters/copycat/claims",
        json={"artist_id": artist["id"], "reason": "imitates my linework"},
        headers=reg,
    ).json()
    second = api.post(
        "/v1/adapters/copycat/claims",
        json={"artist_id": artist["id"], "reason": "and my palette"},
        headers=reg,
    ).json()
    rejected = api.post(
        f"/v1/adapters/copycat/claims/{first['id']}/decision",
        json={"uphold": False, "note": "no resemblance found"},
        headers=admin,
    )
    assert rejected.status_code == 200
    assert rejected.json()["claim"]["status"] == "rejected"
    assert rejected.json()["adapter"]["status"] == "allowed"
    again = api.post(
        f"/v1/adapters/copycat/claims/{first['id']}/decision", json={"uphold": True}, headers=admin
    )
    assert again.status_code == 409
    upheld = api.post(
        f"/v1/adapters/copycat/claims/{second['id']}/decision", json={"uphold": True}, headers=admin
    ).json()
    assert upheld["claim"]["status"] == "upheld" and upheld["adapter"]["status"] == "blocked"
    assert second["id"] in upheld["adapter"]["status_reason"]
    listed = api.get("/v1/adapters/copycat/claims", headers=reg).json()
    assert [c["status"] for c in listed] == ["rejected", "upheld"]


def test_sources_are_fingerprinted_into_the_source_bank(api, runtime, make_key):
    admin = auth(make_key("admin"))
    a, b = photo_like(61, (512, 384)), photo_like(62, (512, 384))
    files = [
        ("files", ("a.jpg", encode(a), "image/jpeg")),
        ("files", ("b.png", encode(b, "PNG"), "image/png")),
        ("files", ("broken.jpg", b"\xff\xd8\xff not an image", "image/jpeg")),
    ]
    r = api.post(
        "/v1/sources",
        data={"dataset": "laion-sample", "licence": "CC-BY 4.0"},
        files=files,
        headers=admin,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert [s["original_filename"] for s in body["sources"]] == ["a.jpg", "b.png"]
    assert all(s["licence"] == "CC-BY 4.0" and s["clip_model"] is None for s in body["sources"])
    assert [x["filename"] for x in body["rejected"]] == ["broken.jpg"]
    assert body["index"]["size"] == 2
    dup = api.post(
        "/v1/sources", data={"dataset": "laion-sample"}, files=files[:1], headers=admin
    ).json()
    assert dup["sources"][0]["duplicate"] is True and dup["index"]["size"] == 2
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT s.id, f.subject_id, f.bank FROM training_sources s"
            " JOIN fingerprints f ON f.id = s.fingerprint_id"
        ).fetchall()
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM audit_log")]
    assert len(rows) == 2 and all(
        r["bank"] == "source" and r["id"] == r["subject_id"] for r in rows
    )
    assert kinds.count("source.added") == 2
    # an edited copy of a source is found in the bank
    edited = ImageEnhance.Contrast(a.crop((20, 20, 480, 360))).enhance(1.2)
    found = runtime.banks["source"].match(compute_signals(decode_image(encode(edited))))
    assert found and found[0].decision == "copy"
    datasets = api.get("/v1/sources", headers=admin).json()["datasets"]
    assert [(d["dataset"], d["sources"]) for d in datasets] == [("laion-sample", 2)]
    only_bad = api.post("/v1/sources", data={"dataset": "x"}, files=files[2:], headers=admin)
    assert only_bad.status_code in (415, 422)


# the command line ------------------------------------------------------------------------------
@pytest.fixture
def cli(settings, monkeypatch, tmp_path_factory, tiny_runner):  # noqa: F811
    """The CLI commands in this process, on the test database; the model cache is the session's,
    so `generate` reuses the tiny runner already loaded."""
    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    models = settings.data_path / "models"
    if not models.exists():
        models.symlink_to(tmp_path_factory.getbasetemp() / "chopmark-models")
    app = typer.Typer()
    app.add_typer(adapters_app, name="adapters")
    app.add_typer(sources_app, name="sources")
    app.command()(generate)
    runner = CliRunner()

    def run(*args: str, code: int = 0):
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, (result.output, result.exception)
        return result

    return run


def test_cli_adapters_sources_and_generate(cli, runtime, tmp_path):
    lora = kohya_lora(tmp_path / "inkwash.safetensors")
    out = cli("adapters", "add", str(lora), "--name", "inkwash").output
    assert "registered inkwash" in out and hashlib.sha256(lora.read_bytes()).hexdigest() in out
    cli("adapters", "add", str(lora), "--name", "other", code=1)
    bad_name = cli("adapters", "add", str(lora), "--name", "nl\n", code=2).output
    assert "must be 1-100 letters" in bad_name
    listed = json.loads(cli("adapters", "list", "--json").output)
    assert [(a["name"], a["status"]) for a in listed] == [("inkwash", "allowed")]
    assert "blocked (tests)" in cli("adapters", "block", "inkwash", "--reason", "tests").output

    folder = tmp_path / "set"
    folder.mkdir()
    for seed in (71, 72):
        (folder / f"{seed}.jpg").write_bytes(encode(photo_like(seed, (400, 300))))
    out = cli("sources", "add", str(folder), "--dataset", "web-2023", "--workers", "1").output
    assert "added 2" in out and "no CLIP" in out
    with runtime.pool.connection() as conn:
        n = conn.execute("SELECT count(*) AS n FROM training_sources").fetchone()["n"]
    assert n == 2

    image = tmp_path / "out.png"
    args = ["a harbour at night", "-o", str(image), "--steps", "2", "--width", "256"]
    blocked = cli("generate", *args, "--height", "256", "--lora", "inkwash:0.5", code=3)
    assert "adapter_blocked" in blocked.output and not image.exists()
    done = cli("generate", *args, "--height", "256", "--seed", "9", "--json")
    record = json.loads(done.output[done.output.index("{") :])
    assert record["status"] == "completed" and record["model"]["is_default_tiny"] is True
    data = image.read_bytes()
    report = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert report.state == "Trusted" and report.generation["generation_id"] == record["id"]
    assert Image.open(io.BytesIO(data)).size == (256, 256)
    sketch = tmp_path / "sketch.png"
    sketch.write_bytes(encode(photo_like(71, (256, 256)), "PNG"))
    steered = cli("generate", *args, "--height", "256", "--control", str(sketch), "--json")
    record = json.loads(steered.output[steered.output.index("{") :])
    assert record["status"] == "completed"
    cited = read_manifest(image.read_bytes(), "image/png", runtime.signing.trust_anchors_pem)
    assert [i.relationship for i in cited.ingredients] == ["inputTo"]
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT status FROM generations ORDER BY created_at").fetchall()
    assert [r["status"] for r in rows] == ["blocked", "completed", "completed"]


def test_cli_refuses_what_the_api_refuses_before_recording_anything(cli, runtime, tmp_path):
    image = tmp_path / "out.png"
    base = ["a harbour", "-o", str(image), "--steps", "2", "--width", "256", "--height", "256"]
    refusals = {
        "scheduler": (["--scheduler", "bogus"], "unknown scheduler"),
        "size": (["--width", "300"], "multiple of 8"),
        "lora name": (["--lora", "../x"], "adapters.0.name"),
        "lora scale": (["--lora", "ink:nan"], "finite"),
        "lora twice": (["--lora", "ink", "--lora", "ink:0.5"], "named twice"),
        "prompts too long": (["--negative", "n" * 4000], "together exceed"),
        "no folder": (["-o", str(tmp_path / "missing" / "x.png")], "is not a folder"),
        "a folder": (["-o", str(tmp_path)], "it is a folder"),
        "blank prompt": (["-o", str(image)], "more than white space"),
    }
    for case, (extra, words) in refusals.items():
        args = ["   ", *base[1:]] if case == "blank prompt" else base
        out = cli("generate", *args, *extra, code=2).output
        assert words in out, (case, out)
    sketch = tmp_path / "s.png"
    sketch.write_bytes(encode(photo_like(73, (256, 256)), "PNG"))
    out = cli("generate", *base, "--init", str(sketch), "--strength", "0.2", code=2).output
    assert "at least 1" in out
    for blank in ("", "   ", "a\x01b"):
        out = cli("sources", "add", str(sketch), "--dataset", blank, code=2).output
        assert "--dataset" in out, (blank, out)
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM generations").fetchone()["n"] == 0
        assert conn.execute("SELECT count(*) AS n FROM training_sources").fetchone()["n"] == 0
    assert not image.exists()


def test_ctrl_c_on_cli_generate_ends_the_record_as_interrupted(
    settings, runtime, tmp_path_factory, tiny_runner  # noqa: F811 (the model cache is built)
):
    """The first Ctrl-C stops the generation at its next denoising step: the command exits 130,
    writes no file, and the record says failed at diffuse, not ``running`` until its lease ends."""
    import signal
    import subprocess
    import sys
    import time

    from tests.service.test_serve import serve_env

    models = settings.data_path / "models"
    if not models.exists():
        models.parent.mkdir(parents=True, exist_ok=True)
        models.symlink_to(tmp_path_factory.getbasetemp() / "chopmark-models")
    out = tmp_path_factory.mktemp("interrupted") / "never.png"
    args = ["generate", "a long one", "-o", str(out), "--steps", "150", "--seed", "3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", *args],
        env=serve_env(settings, OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        row = None
        while time.monotonic() < deadline and proc.poll() is None:
            with runtime.pool.connection() as conn:
                row = conn.execute("SELECT id, status FROM generations").fetchone()
            if row is not None and row["status"] == "running":
                break
            time.sleep(0.2)
        assert row is not None and row["status"] == "running", proc.communicate()
        time.sleep(1.0)  # into the denoising loop
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    assert not out.exists()
    with runtime.pool.connection() as conn:
        final = conn.execute(
            "SELECT status, stage, error FROM generations WHERE id = %s", (row["id"],)
        ).fetchone()
    assert (final["status"], final["stage"]) == ("failed", "diffuse")
    assert "stopping" in final["error"]


def test_blocking_again_without_a_reason_keeps_the_reason(api, runtime, make_key, tmp_path):
    admin = auth(make_key("admin"))
    data = kohya_lora(tmp_path / "keep.safetensors", seed=7).read_bytes()
    assert post_adapter(api, admin, "keep", data).status_code == 201
    r = api.patch(
        "/v1/adapters/keep", json={"status": "blocked", "reason": "claim upheld"}, headers=admin
    )
    assert r.status_code == 200 and r.json()["status_reason"] == "claim upheld"
    again = api.patch("/v1/adapters/keep", json={"status": "blocked"}, headers=admin)
    assert again.status_code == 200 and again.json()["status_reason"] == "claim upheld"
    with runtime.pool.connection() as conn:
        changes = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE kind = 'adapter.status_changed'"
        ).fetchone()["n"]
    assert changes == 1
