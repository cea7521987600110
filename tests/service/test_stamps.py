"""POST /v1/stamps, the soft-binding resolution API and `chopmark verify`: a stamped image keeps
its provenance after its metadata is stripped, and a copied watermark does not pass as ours."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from provenance.c2pa_io import read_manifest
from provenance.labels import read_labels
from tests.support import auth, encode, photo_like

META = {
    "generator": "ExampleDiffusion",
    "generator_version": "2.1",
    "model_name": "example-xl",
    "model_hash": "ab" * 32,
    "prompt": "a lighthouse at dusk",
    "seed": 7,
    "platform_user": "user-1",
    "adapters": [{"name": "inkwash", "sha256": "cd" * 32, "scale": 0.8}],
}


def stamp(client, h, image: Image.Image, meta=META, **extra):
    files = {"file": ("gen.png", encode(image, "PNG"), "image/png")}
    if "parent" in extra:
        files["parent"] = ("in.jpg", extra.pop("parent"), "image/jpeg")
    r = client.post(
        "/v1/stamps", files=files, data={"metadata": json.dumps(meta), **extra}, headers=h
    )
    return r


def register_work(client, h, email: str, work: Image.Image) -> dict:
    """``work`` registered for a new artist (img2img denied by default); its artwork record."""
    artist = client.post(
        "/v1/artists", json={"display_name": "Artist", "email": email}, headers=h
    ).json()
    r = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("w.jpg", encode(work), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 201, r.text
    return r.json()["artworks"][0]


@pytest.fixture
def stamped(client, make_key):
    h = auth(make_key("stamp", "moderate"))
    src = photo_like(401, (640, 512))
    r = stamp(client, h, src)
    assert r.status_code == 201, r.text
    body = r.json()
    image = client.get(body["image_url"], headers=h).content
    return h, src, body, image


def test_stamp_is_signed_labelled_and_watermarked(client, runtime, stamped):
    h, _src, body, data = stamped
    assert body["watermark"]["alg"] == runtime.watermarker.alg
    assert body["watermark"]["verified"] is True
    assert body["media_type"] == "image/png"
    trusted = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert trusted.state == "Trusted"
    assert trusted.manifest_id == body["manifest_id"]
    assert trusted.digital_source_type.endswith("/trainedAlgorithmicMedia")
    assert [b.alg for b in trusted.soft_bindings] == [body["watermark"]["alg"]]
    assert read_manifest(data, "image/png").state == "Valid"
    labels = read_labels(data)
    assert labels.aigc is not None and labels.digital_source_type.endswith("AlgorithmicMedia")
    assert (
        client.get(f"/v1/stamps/{body['id']}", headers=h).json()["manifest_id"]
        == body["manifest_id"]
    )
    # the record in Postgres: manifest bytes, fingerprints, an audit entry
    with runtime.pool.connection() as conn:
        row = conn.execute("SELECT manifest_bytes, fingerprint_id FROM outputs").fetchone()
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM audit_log").fetchall()]
    assert len(bytes(row["manifest_bytes"])) > 1000 and row["fingerprint_id"]
    assert "stamp.stamped" in kinds


def test_stripped_copy_is_traced_through_watermark_and_fingerprint(client, runtime, stamped):
    h, src, body, data = stamped
    stripped = encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG", quality=80)
    assert read_manifest(stripped, "image/jpeg").state == "Absent"
    r = client.post(
        "/sbr/matches/byContent", content=stripped, headers={**h, "Content-Type": "image/jpeg"}
    )
    assert r.status_code == 200, r.text
    matches = r.json()["matches"]
    assert matches[0]["manifestId"] == body["manifest_id"]
    assert 0 <= matches[0]["similarityScore"] <= 100
    # asked by algorithm: the unmarked original matches by fingerprint only
    h_jpeg = {**h, "Content-Type": "image/jpeg"}
    wm_alg = body["watermark"]["alg"]
    fp_alg = client.get("/sbr/services/supportedAlgorithms", headers=h).json()["fingerprints"][0]
    original = encode(src, "JPEG", quality=90)
    for image, alg, found in (
        (stripped, wm_alg, True),
        (original, fp_alg["alg"], True),
        (original, wm_alg, False),
    ):
        r = client.post(
            "/sbr/matches/byContent", params={"alg": alg}, content=image, headers=h_jpeg
        )
        ids = [m["manifestId"] for m in r.json()["matches"]]
        assert (body["manifest_id"] in ids) is found, (alg, ids)
    too_big = client.post("/sbr/matches/byContent", content=b"\xff" * (3 << 20), headers=h_jpeg)
    assert too_big.status_code == 413
    store = client.get(f"/sbr/manifests/{body['manifest_id']}", headers=h)
    assert store.status_code == 200
    assert store.headers["content-type"] == "application/c2pa"
    with runtime.pool.connection() as conn:
        kept = conn.execute("SELECT manifest_bytes FROM outputs").fetchone()["manifest_bytes"]
    assert store.content == bytes(kept)


def test_by_binding_accepts_base64_and_hex(client, runtime, stamped):
    h, _, body, _ = stamped
    alg, value = body["watermark"]["alg"], body["watermark"]["value"]
    b64 = base64.b64encode(int(value, 16).to_bytes(6, "big")).decode()
    for v in (value, b64):
        got = client.get("/sbr/matches/byBinding", params={"alg": alg, "value": v}, headers=h)
        assert got.json()["matches"][0]["manifestId"] == body["manifest_id"]
    got = client.post(
        "/sbr/matches/byBinding", json={"alg": alg, "value": "000000000001"}, headers=h
    )
    assert got.json() == {"matches": []}
    bad = client.get(
        "/sbr/matches/byBinding", params={"alg": "other.alg", "value": value}, headers=h
    )
    assert bad.status_code == 400
    bad = client.get("/sbr/matches/byBinding", params={"alg": alg, "value": "***"}, headers=h)
    assert bad.status_code == 400
    for params in (
        {"alg": "", "value": value},
        {"alg": alg, "value": ""},
        {"alg": "a" * 300, "value": value},
        {"alg": alg, "value": "v" * 5000},
        {"alg": alg, "value": "zz\x00"},
    ):
        bad = client.get("/sbr/matches/byBinding", params=params, headers=h)
        assert bad.status_code == 422 and "query" in bad.text, (params, bad.text)
    algs = client.get("/sbr/services/supportedAlgorithms", headers=h).json()
    assert algs["watermarks"] == [{"alg": alg}] and algs["fingerprints"][0]["alg"]


def test_watermark_pasted_onto_another_image_is_caught(client, runtime, stamped):
    h, src, _body, data = stamped
    marked = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
    residual = marked - np.asarray(src, np.float64)
    victim = np.asarray(photo_like(777, src.size), np.float64)
    forged = Image.fromarray(np.clip(victim + residual, 0, 255).astype(np.uint8))
    from service.stamping.resolve import resolve_image
    from similarity import decode_image

    res = resolve_image(runtime, decode_image(encode(forged, "PNG"), target_side=None))
    assert res.watermark.present and res.watermark_record is not None
    assert res.forged_watermark is True
    assert res.outputs == []
    r = client.post(
        "/sbr/matches/byContent",
        content=encode(forged, "PNG"),
        headers={**h, "Content-Type": "image/png"},
    )
    assert r.json() == {"matches": []}


def test_unrelated_image_resolves_to_nothing(client, stamped):
    h, *_ = stamped
    r = client.post(
        "/sbr/matches/byContent",
        content=encode(photo_like(12345), "JPEG"),
        headers={**h, "Content-Type": "image/jpeg"},
    )
    assert r.status_code == 200 and r.json() == {"matches": []}


def test_an_image_too_small_to_carry_a_watermark_resolves_to_nothing(client, stamped):
    h, *_ = stamped
    for size in ((1, 1), (95, 300)):
        r = client.post(
            "/sbr/matches/byContent",
            content=encode(photo_like(12346).resize(size), "PNG"),
            headers={**h, "Content-Type": "image/png"},
        )
        assert r.status_code == 200 and r.json() == {"matches": []}, (size, r.text)


def test_a_registered_work_that_denies_reuse_cannot_be_stamped_as_ours(client, runtime, make_key):
    """Else a stamp key could have an artist's own picture traced as our AI output."""
    h = auth(make_key("stamp", "registry", "moderate"))
    work = photo_like(403)
    art = register_work(client, h, "ines@example.org", work)
    with runtime.pool.connection() as conn:
        before = conn.execute("SELECT count(*) AS n FROM outputs").fetchone()["n"]
    refused = client.post(
        "/v1/stamps",
        files={"file": ("gen.png", encode(work, "PNG"), "image/png")},
        data={"metadata": json.dumps({**META, "platform_user": "mallory"})},
        headers=h,
    )
    assert refused.status_code == 403 and art["id"] in refused.json()["detail"]
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM outputs").fetchone()["n"] == before
        kinds = [r["kind"] for r in conn.execute("SELECT kind FROM audit_log ORDER BY seq")]
    assert kinds[-1] == "stamp.refused"
    # the artist's own picture is not taken for ours
    check = client.post(
        "/v1/moderation/check", files={"file": ("w.jpg", encode(work))}, headers=h
    ).json()
    assert check["provenance"]["outputs"] == []
    # a licence holder may stamp their licensed rework; so may anyone once the artist allows it
    client.post(
        f"/v1/artworks/{art['id']}/licenses",
        json={"grantee": "lee", "scopes": ["img2img"]},
        headers=h,
    )
    licensed = stamp(client, h, work, {**META, "platform_user": "lee"})
    assert licensed.status_code == 201, licensed.text


def test_an_image_made_from_a_registered_work_that_denies_reuse_is_not_stamped(
    client, runtime, make_key
):
    """The parent of an img2img is held to the gate's rule: a copy of a work whose artist
    denies reuse, unlicensed, is refused (before, it went into the manifest as an ingredient)."""
    h = auth(make_key("stamp", "registry"))
    work = photo_like(404)
    art = register_work(client, h, "ora@example.org", work)
    meta = {**META, "input_was_image": True, "platform_user": "mallory"}
    edited = encode(work.resize((560, 420)), quality=70)
    refused = stamp(client, h, photo_like(405), meta, parent=edited)
    assert refused.status_code == 403, refused.text
    assert "parent" in refused.json()["detail"] and art["id"] in refused.json()["detail"]
    with runtime.pool.connection() as conn:
        last = conn.execute("SELECT entry FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    entry = json.loads(bytes(last["entry"]))
    assert entry["kind"] == "stamp.refused" and entry["data"]["role"] == "parent"
    lee = stamp(client, h, photo_like(405), {**meta, "platform_user": "lee"}, parent=edited)
    assert lee.status_code == 403
    client.post(
        f"/v1/artworks/{art['id']}/licenses",
        json={"grantee": "lee", "scopes": ["img2img"]},
        headers=h,
    )
    lee = stamp(client, h, photo_like(405), {**meta, "platform_user": "lee"}, parent=edited)
    assert lee.status_code == 201, lee.text


def test_parent_formats(client, make_key):
    """A palette PNG parent is taken; a GIF or BMP one, whose consent metadata is not read and
    which a manifest cannot hold as an ingredient, is refused with a message naming the parent
    (before, a GIF gave 500 and a BMP a message that blamed the stamped image)."""
    h = auth(make_key("stamp"))
    meta = {**META, "input_was_image": True}
    r = stamp(client, h, photo_like(407), meta, parent=encode(photo_like(406).convert("P"), "PNG"))
    assert r.status_code == 201, r.text
    for fmt in ("GIF", "BMP"):
        r = stamp(client, h, photo_like(407), meta, parent=encode(photo_like(406), fmt))
        assert r.status_code == 415, r.text
        assert "the parent image must be PNG, JPEG or WebP" in r.text and fmt in r.text


def test_img2img_stamp_carries_its_input_as_parent(client, runtime, make_key):
    h = auth(make_key("stamp"))
    meta = {**META, "input_was_image": True}
    r = stamp(client, h, photo_like(402), meta)
    assert r.status_code == 422 and "parent" in r.json()["detail"]
    r = stamp(client, h, photo_like(402), meta, parent=encode(photo_like(403)), format="jpeg")
    assert r.status_code == 201, r.text
    data = client.get(r.json()["image_url"], headers=h).content
    report = read_manifest(data, "image/jpeg", runtime.signing.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.digital_source_type.endswith("/compositeWithTrainedAlgorithmicMedia")
    assert [i.relationship for i in report.ingredients] == ["parentOf"]
    # the read-back of a lossy file reads the decoded file, and its record has the file's size
    body = r.json()
    assert body["watermark"]["verified"] is True, body["watermark"]
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.size == (body["width"], body["height"]) == photo_like(402).size


@pytest.mark.parametrize(
    ("meta", "words"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"model_name": "x"}), "generator"),
        (json.dumps({**META, "model_hash": "xyz"}), "model_hash"),
        (json.dumps({**META, "surprise": 1}), "surprise"),
    ],
)
def test_bad_metadata_is_refused_and_nothing_is_written(client, runtime, make_key, meta, words):
    h = auth(make_key("stamp"))
    r = client.post(
        "/v1/stamps",
        files={"file": ("a.png", encode(photo_like(1), "PNG"))},
        data={"metadata": meta},
        headers=h,
    )
    assert r.status_code == 422 and words in r.json()["detail"]
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM outputs").fetchone()["n"] == 0


def test_bad_image_and_tiny_image_are_refused(client, runtime, make_key):
    h = auth(make_key("stamp"))
    r = client.post(
        "/v1/stamps",
        files={"file": ("a.png", b"not an image")},
        data={"metadata": json.dumps(META)},
        headers=h,
    )
    assert r.status_code == 415
    r = stamp(client, h, photo_like(5, (64, 64)))
    assert r.status_code == 422
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM outputs").fetchone()["n"] == 0


def test_sbr_can_be_public(client, runtime, stamped):
    _, _, body, _ = stamped
    assert client.get("/sbr/services/supportedAlgorithms").status_code == 401
    runtime.settings.sbr_public = True
    try:
        assert client.get(f"/sbr/manifests/{body['manifest_id']}").status_code == 200
    finally:
        runtime.settings.sbr_public = False


def test_cli_verify_and_credentials_show(client, runtime, settings, stamped, tmp_path):
    import os
    import subprocess
    import sys

    _, _, body, data = stamped
    env = {
        **os.environ,
        "CHOPMARK_DATABASE_URL": settings.database_url,
        "CHOPMARK_DATA_DIR": str(settings.data_dir),
        "COLUMNS": "200",
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "service.cli.main", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    stripped = tmp_path / "stripped.jpg"
    stripped.write_bytes(encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG", quality=85))
    out = cli("verify", str(stripped), "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["manifest"]["state"] == "Absent" and got["manifest"]["ours"] is False
    assert got["watermark"]["present"] is True and got["watermark"]["forged"] is False
    assert got["record"]["id"] == body["id"]
    assert got["record"]["manifest_id"] == body["manifest_id"]
    # re-saved where labels cannot be read: still ours, the labels said to be unread
    for fmt in ("BMP", "GIF", "TIFF"):
        resaved = tmp_path / f"resaved.{fmt.lower()}"
        resaved.write_bytes(encode(Image.open(io.BytesIO(data)).convert("RGB"), fmt))
        out = cli("verify", str(resaved), "--json")
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout)
        assert "PNG, JPEG and WebP only" in got["labels"]["not_read"]
        assert got["record"]["id"] == body["id"], fmt
    signed = tmp_path / "signed.png"
    signed.write_bytes(data)
    text = " ".join(cli("verify", str(signed)).stdout.split())  # as one line, unwrapped
    assert "Trusted" in text and f"signed by us for output {body['id']}" in text
    got = json.loads(cli("verify", str(signed), "--json").stdout)
    assert got["manifest"]["ours"] is True and got["manifest"]["output_id"] == body["id"]
    # a chunk added after signing breaks our manifest: Invalid, and not blamed on another signer
    import struct
    import zlib

    chunk = b"tEXt" + b"Comment\x00added later"
    extra = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    changed = tmp_path / "changed.png"
    changed.write_bytes(data[:-12] + extra + data[-12:])  # before IEND
    text = " ".join(cli("verify", str(changed)).stdout.split())
    assert "C2PA manifest: Invalid" in text and "another signer" not in text, text
    creds = cli("credentials", "show", "--json")
    assert creds.returncode == 0, creds.stderr
    desc = json.loads(creds.stdout)
    assert desc["origin"] and desc["chain"][0]["sha256_fingerprint"]
    assert "O=" in desc["signer_subject"] or desc["signer_organization"]


def _nothing_recorded(runtime, output_id) -> bool:
    """No output row and no audit entry for ``output_id``."""
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT count(*) AS n FROM outputs WHERE id = %s", (output_id,)
        ).fetchone()
        audit = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE subject = %s", (str(output_id),)
        ).fetchone()
    return rows["n"] == 0 and audit["n"] == 0


def test_a_failed_blob_write_leaves_no_output_record(runtime, monkeypatch) -> None:
    """The bytes are written beside the record's insert, which commits only once they are
    on disk."""
    from uuid import uuid4

    from provenance.manifest import GenerationFacts
    from service.stamping.stamper import stamp_and_record

    def full_disk(data: bytes) -> str:
        raise OSError(28, "No space left on device")

    runtime.load_indexes()
    monkeypatch.setattr(runtime.blobs, "put", full_disk)
    output_id = uuid4()
    facts = GenerationFacts(generation_id=str(output_id), kind="txt2img", model_name="example")
    with pytest.raises(OSError, match="No space left"):
        stamp_and_record(
            runtime, "tester", photo_like(3), facts, origin="stamp", output_id=output_id
        )
    assert _nothing_recorded(runtime, output_id)
    monkeypatch.undo()
    ok = stamp_and_record(
        runtime, "tester", photo_like(3), facts, origin="stamp", output_id=output_id
    )
    assert runtime.blobs.exists(ok.record.sha256)


def test_a_payload_already_taken_is_drawn_again(runtime, monkeypatch) -> None:
    """Payloads are drawn at random without a lookup; the unique constraint catches a clash and
    the stamp is made again with a fresh payload."""
    from uuid import uuid4

    from provenance.manifest import GenerationFacts
    from service.stamping import stamper

    runtime.load_indexes()
    facts = GenerationFacts(generation_id="", kind="txt2img", model_name="example")
    first = stamper.stamp_and_record(runtime, "tester", photo_like(4), facts, origin="stamp")
    taken = first.record.watermark_payload
    draws = iter([taken, taken ^ 0x5A5A5A])
    monkeypatch.setattr(stamper.secrets, "randbits", lambda bits: next(draws))
    second_id = uuid4()
    second = stamper.stamp_and_record(
        runtime, "tester", photo_like(5), facts, origin="stamp", output_id=second_id
    )
    assert second.record.id == second_id
    assert second.record.watermark_payload == taken ^ 0x5A5A5A
    assert second.watermark_verified
    with runtime.pool.connection() as conn:
        n = conn.execute(
            "SELECT count(*) AS n FROM outputs WHERE watermark_payload = %s", (taken,)
        ).fetchone()["n"]
    assert n == 1


def test_a_signature_that_does_not_validate_leaves_no_output_record(runtime, monkeypatch) -> None:
    """The signed file is read back and validated beside the insert, which commits only if it
    is intact: a signer whose key does not match its certificate stamps nothing."""
    import dataclasses
    from uuid import uuid4

    from cryptography.hazmat.primitives.asymmetric import ec

    from provenance.manifest import GenerationFacts
    from provenance.signer import FileSigner, SigningError
    from service.stamping.stamper import stamp_and_record

    runtime.load_indexes()
    good = runtime.signing.signer
    wrong_key = FileSigner(
        good.certificate_chain_pem, ec.generate_private_key(ec.SECP256R1()), good.alg
    )
    monkeypatch.setattr(runtime, "signing", dataclasses.replace(runtime.signing, signer=wrong_key))
    output_id = uuid4()
    facts = GenerationFacts(generation_id=str(output_id), kind="txt2img", model_name="example")
    blobs_before = {p for p in runtime.settings.blob_dir.rglob("*") if p.is_file()}
    with pytest.raises(SigningError, match="does not validate"):
        stamp_and_record(
            runtime, "tester", photo_like(6), facts, origin="stamp", output_id=output_id
        )
    # the bytes written beside the insert are removed again
    assert {p for p in runtime.settings.blob_dir.rglob("*") if p.is_file()} == blobs_before
    assert _nothing_recorded(runtime, output_id)
    monkeypatch.undo()
    ok = stamp_and_record(
        runtime, "tester", photo_like(6), facts, origin="stamp", output_id=output_id
    )
    assert read_manifest(runtime.blobs.get(ok.record.sha256), "image/png").state == "Valid"


def test_a_stamp_too_large_to_be_checked_again_is_refused(client, runtime, settings, make_key):
    """What we stamp must fit through our own upload limit, or no one could check it later."""
    h = auth(make_key("stamp"))
    noise = Image.fromarray(np.random.default_rng(8).integers(0, 255, (1000, 1100, 3), np.uint8))
    body = encode(noise, "JPEG", quality=70)
    assert len(body) < settings.max_upload_bytes  # the upload fits; its PNG stamp does not
    r = client.post(
        "/v1/stamps",
        files={"file": ("n.jpg", body, "image/jpeg")},
        data={"metadata": json.dumps(META)},
        headers=h,
    )
    assert r.status_code == 413 and "format jpeg or webp" in r.json()["detail"], r.text
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM outputs").fetchone()["n"] == 0
    r = client.post(
        "/v1/stamps",
        files={"file": ("n.jpg", body, "image/jpeg")},
        data={
            "metadata": json.dumps({**META, "training_mining": {"cawg.ai_training": "allowed"}}),
            "format": "jpeg",
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    assert r.json()["facts"]["training_mining"]["cawg.ai_training"] == "allowed"


def test_our_output_is_not_stamped_again_unless_made_from_it(client, runtime, stamped):
    """Else any stamp key could put its own name on someone's generation."""
    stamp_key, _, body, data = stamped
    again = client.post(
        "/v1/stamps",
        files={"file": ("again.png", data, "image/png")},
        data={
            "metadata": json.dumps({**META, "generator": "Someone Else", "platform_user": "eve"})
        },
        headers=stamp_key,
    )
    assert again.status_code == 409 and body["id"] in again.json()["detail"], again.text
    with runtime.pool.connection() as conn:
        last = conn.execute(
            "SELECT kind, subject FROM audit_log ORDER BY seq DESC LIMIT 1"
        ).fetchone()
    assert last["kind"] == "stamp.refused" and last["subject"] == f"output:{body['id']}"
    # stripped and re-encoded, still ours: refused too
    stripped = encode(Image.open(io.BytesIO(data)).convert("RGB"), "JPEG", quality=90)
    r = client.post(
        "/v1/stamps",
        files={"file": ("s.jpg", stripped, "image/jpeg")},
        data={"metadata": json.dumps(META)},
        headers=stamp_key,
    )
    assert r.status_code == 409, r.text
    # a light rework of it, stamped with it as the parent, goes ahead
    rework = ImageEnhance.Brightness(Image.open(io.BytesIO(data)).convert("RGB")).enhance(1.05)
    r = client.post(
        "/v1/stamps",
        files={
            "file": ("r.png", encode(rework, "PNG"), "image/png"),
            "parent": ("p.png", data, "image/png"),
        },
        data={"metadata": json.dumps({**META, "input_was_image": True})},
        headers=stamp_key,
    )
    assert r.status_code == 201, r.text


def test_our_output_whose_mark_did_not_take_is_not_stamped_again(client, runtime, make_key):
    """Noise hides no watermark that reads back (the stamp says so, `verified: false`); the
    output is still ours by its pixels, and stamping it again is refused all the same."""
    h = auth(make_key("stamp"))
    noise = Image.effect_noise((300, 300), 60).convert("RGB")  # grey: the mark saturates away
    first = stamp(client, h, noise)
    assert first.status_code == 201, first.text
    assert first.json()["watermark"]["verified"] is False
    data = client.get(first.json()["image_url"], headers=h).content
    again = client.post(
        "/v1/stamps",
        files={"file": ("again.png", data, "image/png")},
        data={"metadata": json.dumps({**META, "generator": "Someone Else"})},
        headers=h,
    )
    assert again.status_code == 409, again.text
    assert first.json()["id"] in again.json()["detail"]
    assert "pixels are a copy" in again.json()["detail"]


def test_an_empty_parent_is_refused_as_empty(client, make_key, photo):
    h = auth(make_key("stamp"))
    for input_was_image in (True, False):
        r = client.post(
            "/v1/stamps",
            files={
                "file": ("a.jpg", photo(309), "image/jpeg"),
                "parent": ("p.png", b"", "image/png"),
            },
            data={"metadata": json.dumps({**META, "input_was_image": input_was_image})},
            headers=h,
        )
        assert r.status_code == 400 and "`parent` upload is empty" in r.text, r.text
