"""Moderation: one call answers whether an image is ours, a registered artwork or a training
source, with a verdict from the operator's policy; batch jobs with signed webhooks."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from service.moderation.jobs import ModerationWorker
from service.moderation.webhooks import SIGNATURE_HEADER, verify_signature
from similarity.edits import EDITS_BY_NAME
from tests.support import auth, encode, photo_like

STAMP_META = {
    "generator": "ExampleDiffusion",
    "generator_version": "2.1",
    "model_name": "example-xl",
    "prompt": "a harbour at dawn",
    "seed": 11,
}
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ZERO = "00000000-0000-0000-0000-000000000000"


def moderate(client, h, data: bytes, name="q.jpg", **form):
    r = client.post("/v1/moderation/check", files={"file": (name, data)}, data=form, headers=h)
    assert r.status_code == 200, r.text
    return r.json()


def register(client, h, *seeds, preferences=None):
    artist = client.post(
        "/v1/artists", json={"display_name": "M", "email": "m@example.org"}, headers=h
    ).json()
    files = [("files", (f"{s}.jpg", encode(photo_like(s)), "image/jpeg")) for s in seeds]
    data = {"preferences": preferences} if preferences else {}
    r = client.post(f"/v1/artists/{artist['id']}/artworks", files=files, data=data, headers=h)
    assert r.status_code == 201, r.text
    return r.json()["artworks"]


def edited(seed: int) -> bytes:
    """Crop, rotate 8 degrees, darken, re-encode: an edited copy."""
    img = photo_like(seed)
    w, h = img.size
    img = img.crop((int(w * 0.1), int(h * 0.08), int(w * 0.92), int(h * 0.93)))
    img = img.rotate(8, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(0, 0, 0))
    return encode(ImageEnhance.Brightness(img).enhance(0.8), quality=70)


def stamp(client, h, image: Image.Image) -> tuple[dict, bytes]:
    r = client.post(
        "/v1/stamps",
        files={"file": ("gen.png", encode(image, "PNG"), "image/png")},
        data={"metadata": json.dumps(STAMP_META)},
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    return body, client.get(body["image_url"], headers=h).content


def stamp_as_jpeg(client, h, image: Image.Image) -> tuple[str, Image.Image]:
    """Stamp a picture too large for a PNG under the tests' upload limit: its generation id and
    the stamped JPEG."""
    r = client.post(
        "/v1/stamps",
        files={"file": ("big.jpg", encode(image), "image/jpeg")},
        data={"metadata": json.dumps(STAMP_META), "format": "jpeg"},
        headers=h,
    )
    assert r.status_code == 201, r.text
    signed = Image.open(io.BytesIO(client.get(r.json()["image_url"], headers=h).content))
    return r.json()["id"], signed


def reasons(result: dict, rule: str) -> list[dict]:
    return [r for r in result["reasons"] if r["rule"] == rule]


def blocked_as_copy_of(result: dict, work_id: str) -> dict:
    """The registry match of a check blocked as a copy of the work, checked to be so."""
    assert result["verdict"] == "block"
    (why,) = reasons(result, "registered_copy")
    assert why["evidence"]["artwork_id"] == work_id
    match = result["registry"]["matches"][0]
    assert match["artwork_id"] == work_id and match["decision"] == "copy"
    return match


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == PNG_SIGNATURE
    pos, out = 8, []
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        out.append((data[pos + 4 : pos + 8], data[pos : pos + 12 + n]))
        pos += 12 + n
    return out


def repaint_keeping_manifest(signed: bytes) -> bytes:
    """Change some pixels of a signed PNG but keep every other chunk, the manifest included."""
    arr = np.asarray(Image.open(io.BytesIO(signed)).convert("RGB")).copy()
    arr[20:80, 20:120] = 255 - arr[20:80, 20:120]
    fresh = png_chunks(encode(Image.fromarray(arr), "PNG"))
    old = png_chunks(signed)
    assert dict(fresh)[b"IHDR"] == dict(old)[b"IHDR"]
    new_idat = b"".join(c for t, c in fresh if t == b"IDAT")
    out, placed = [PNG_SIGNATURE], False
    for kind, chunk in old:
        if kind == b"IDAT":
            if not placed:
                out.append(new_idat)
                placed = True
            continue
        out.append(chunk)
    return b"".join(out)


# ---- provenance ---------------------------------------------------------------------------


def test_another_signers_manifest_on_our_output_does_not_pass_as_ours(mclient, make_key, tmp_path):
    """Our output stripped of its manifest and signed by someone else (here claiming a camera
    capture) is still ours without our manifest: review, not allow."""
    from provenance.c2pa_io import sign_image
    from provenance.credentials import ensure_dev_credentials
    from provenance.manifest import GenerationFacts
    from provenance.signer import FileSigner

    h = auth(make_key("stamp", "moderate"))
    body, signed = stamp(mclient, h, photo_like(507, (640, 512)))
    gid = body["id"]
    stripped = encode(Image.open(io.BytesIO(signed)).convert("RGB"), "JPEG", quality=90)
    foreign = FileSigner.from_credentials(ensure_dev_credentials(tmp_path / "elsewhere"))
    facts = GenerationFacts(
        generation_id="not-ours",
        kind="txt2img",
        model_name="camera",
        model_sha256="cd" * 32,
        prompt="",
        negative_prompt="",
        seed=1,
        steps=1,
        guidance=1.0,
        sampler="none",
        width=640,
        height=512,
        platform_user="someone",
    )
    resigned = sign_image(stripped, "jpeg", facts, foreign).data

    res = moderate(mclient, h, resigned, "resigned.jpg")
    c2pa = res["provenance"]["c2pa"]
    assert c2pa["state"] == "Valid" and c2pa["generation_id"] is None
    assert res["provenance"]["watermark"]["generation_id"] == gid
    assert res["verdict"] == "review", res["reasons"]
    (why,) = reasons(res, "ai_ours_without_manifest")
    assert "not ours" in why["message"] and gid in why["message"]
    assert not reasons(res, "ai_ours_with_manifest")

    # our own manifest, still Trusted, keeps its generation and is allowed
    res = moderate(mclient, h, signed, "ours.png")
    assert res["provenance"]["c2pa"]["generation_id"] == gid
    (why,) = reasons(res, "ai_ours_with_manifest")
    assert why["evidence"]["manifest_generation_id"] == gid and res["verdict"] == "allow"


def test_our_label_on_another_trusted_signers_manifest_is_not_ours(settings, tmp_path):
    """With a second root among the trust anchors (a partner's, a commercial CA), its signers
    validate as Trusted; one that copies our manifest's label (public, in every output) onto
    its own manifest must not pass as our manifest: not on another picture, and not on an
    edited copy of our output (review, as for any copy without our manifest)."""
    from fastapi.testclient import TestClient

    from provenance.c2pa_io import read_manifest, sign_image
    from provenance.credentials import ensure_dev_credentials
    from provenance.manifest import build_manifest
    from provenance.signer import FileSigner
    from service.api.app import create_app
    from service.auth.keys import create_key
    from service.runtime import Runtime

    partner = ensure_dev_credentials(tmp_path / "partner")
    root = tmp_path / "partner-root.pem"
    root.write_text(partner.trust_anchors_pem)
    anchored = settings.model_copy(update={"trust_anchors": [root]})
    rt = Runtime.open(anchored)
    try:
        with TestClient(create_app(anchored, runtime=rt)) as c:
            with rt.pool.connection() as conn, conn.transaction():
                h = auth(create_key(conn, "t", ["stamp", "moderate"])[1])
            body, signed = stamp(c, h, photo_like(508, (640, 512)))
            gid, label = body["id"], body["manifest_id"]
            ours = read_manifest(signed, trust_anchors_pem=rt.signing.trust_anchors_pem)
            spec = build_manifest(ours_facts(ours), label=label)
            signer = FileSigner.from_credentials(partner)

            other = sign_image(encode(photo_like(509), "PNG"), "png", spec, signer).data
            brighter = ImageEnhance.Brightness(Image.open(io.BytesIO(signed))).enhance(1.1)
            edited = sign_image(encode(brighter, "PNG"), "png", spec, signer).data
            for forged in (other, edited):
                assert read_manifest(forged, trust_anchors_pem=rt.signing.trust_anchors_pem)\
                    .state == "Trusted"
            res = moderate(c, h, other, "other.png")
            c2pa = res["provenance"]["c2pa"]
            assert c2pa["state"] == "Trusted" and c2pa["manifest_id"] == label
            assert c2pa["generation_id"] is None
            assert not reasons(res, "ai_ours_with_manifest")

            res = moderate(c, h, edited, "edited.png")
            assert res["provenance"]["c2pa"]["generation_id"] is None
            assert res["verdict"] == "review", res["reasons"]
            assert reasons(res, "ai_ours_without_manifest")

            res = moderate(c, h, signed, "ours.png")
            assert res["provenance"]["c2pa"]["generation_id"] == gid
            assert res["verdict"] == "allow" and reasons(res, "ai_ours_with_manifest")
    finally:
        rt.close()


def ours_facts(report):  # type: ignore[no-untyped-def]
    """Generation facts as our manifest states them, for a look-alike manifest."""
    from provenance.manifest import GenerationFacts

    g = report.generation or {}
    return GenerationFacts(
        generation_id=str(g.get("generation_id", "copied")),
        kind="external",
        model_name=str(g.get("model_name", "example-xl")),
        width=640,
        height=512,
    )


def test_stamped_output_is_ours_with_its_generation_id_even_stripped(mclient, runtime, make_key):
    h = auth(make_key("stamp", "moderate"))
    body, signed = stamp(mclient, h, photo_like(501, (640, 512)))
    gid = body["id"]

    res = moderate(mclient, h, signed, "gen.png")
    c2pa, wm = res["provenance"]["c2pa"], res["provenance"]["watermark"]
    assert c2pa["state"] == "Trusted" and c2pa["manifest_id"] == body["manifest_id"]
    assert c2pa["generation_id"] == gid
    assert c2pa["generator"].startswith("ExampleDiffusion")
    assert c2pa["digital_source_type"].endswith("/trainedAlgorithmicMedia")
    assert c2pa["actions"][0]["action"] == "c2pa.created"
    assert c2pa["signer"]["alg"]
    assert wm["present"] and wm["generation_id"] == gid and wm["consistent_with_pixels"]
    assert res["provenance"]["outputs"][0]["generation_id"] == gid
    ai = res["provenance"]["ai_generated"]
    assert ai == {
        "status": "declared",
        "declared": True,
        "declared_by": ai["declared_by"],
        "watermarked": True,
        "matched": True,
        "generation_id": gid,
        "generation_ids": [gid],
    }
    assert any("AIGC" in d for d in ai["declared_by"])
    assert res["labels"]["aigc"]["Label"] == "1"
    assert res["verdict"] == "allow" and reasons(res, "ai_ours_with_manifest")

    stripped = encode(Image.open(io.BytesIO(signed)).convert("RGB"), "JPEG", quality=85)
    res = moderate(mclient, h, stripped)
    assert res["provenance"]["c2pa"]["state"] == "Absent"
    assert res["provenance"]["watermark"]["generation_id"] == gid
    assert res["provenance"]["ai_generated"]["status"] == "watermarked"
    assert res["labels"]["aigc"] is None
    assert res["verdict"] == "review"
    (why,) = reasons(res, "ai_ours_without_manifest")
    assert why["evidence"]["watermark_generation_id"] == gid and gid in why["message"]

    # the check is recorded with its evidence and in the audit log
    stored = mclient.get(f"/v1/moderation/checks/{res['id']}", headers=h)
    assert stored.status_code == 200 and stored.json() == res, "stored as answered, timings too"
    assert res["timings"]["total"] >= res["timings"]["record"] > 0
    with runtime.pool.connection() as conn:
        entry = conn.execute(
            "SELECT entry FROM audit_log WHERE kind = 'moderation.checked' AND subject = %s",
            (f"moderation:{res['id']}",),
        ).fetchone()["entry"]
    assert gid.encode() in bytes(entry) and b'"review"' in bytes(entry)
    # another key does not see it
    other = auth(make_key("moderate", name="other platform"))
    assert mclient.get(f"/v1/moderation/checks/{res['id']}", headers=other).status_code == 404


def test_a_large_photo_of_ours_is_read_from_a_reduced_decode(mclient, make_key):
    """A large upload is decoded reduced (to the watermark's reading size) for the check: our
    stamped 2400 x 1600 picture, re-encoded without its metadata, still reads as ours."""
    h = auth(make_key("stamp", "moderate"))
    gid, signed = stamp_as_jpeg(mclient, h, photo_like(502, (2400, 1600)))
    res = moderate(mclient, h, encode(signed.convert("RGB"), quality=88))
    assert (res["width"], res["height"]) == (2400, 1600)
    wm = res["provenance"]["watermark"]
    assert wm["present"] and wm["generation_id"] == gid
    assert res["provenance"]["ai_generated"]["status"] in ("watermarked", "matched")
    assert res["verdict"] == "review"


def test_a_crop_of_our_output_is_ours_not_a_forged_watermark(mclient, make_key):
    """A quarter of our stamped picture, re-encoded without metadata: the watermark names the
    output, and the pixels are checked against that output directly (a crop can keep it out of
    the fingerprint index's candidates), so it is ours, not a watermark pasted elsewhere."""
    h = auth(make_key("stamp", "moderate"))
    gid, signed = stamp_as_jpeg(mclient, h, photo_like(503, (2000, 1500)))
    for box in ((0, 0, 1000, 750), (500, 0, 2000, 750)):
        res = moderate(mclient, h, encode(signed.convert("RGB").crop(box), quality=85))
        wm = res["provenance"]["watermark"]
        assert wm["present"] and not wm["forged"], wm
        assert wm["generation_id"] == gid and wm["consistent_with_pixels"] is True
        assert res["verdict"] == "review" and not reasons(res, "forged_watermark")


def test_manifest_that_fails_validation_is_reported(mclient, make_key):
    h = auth(make_key("stamp", "moderate"))
    body, signed = stamp(mclient, h, photo_like(502, (640, 512)))
    tampered = repaint_keeping_manifest(signed)
    res = moderate(mclient, h, tampered, "gen.png")
    c2pa = res["provenance"]["c2pa"]
    assert c2pa["state"] == "Invalid"
    assert c2pa["failure_codes"] or c2pa["error"]
    (why,) = reasons(res, "manifest_invalid")
    assert why["signal"] == "c2pa" and why["evidence"]["state"] == "Invalid"
    # still ours by watermark and fingerprint, and no longer with a valid manifest: review
    assert res["provenance"]["watermark"]["generation_id"] == body["id"]
    assert res["verdict"] == "review" and reasons(res, "ai_ours_without_manifest")


def test_pasted_watermark_does_not_pass_as_ours(mclient, make_key):
    h = auth(make_key("stamp", "moderate"))
    src = photo_like(503, (640, 512))
    body, signed = stamp(mclient, h, src)
    residual = np.asarray(Image.open(io.BytesIO(signed)).convert("RGB"), np.float64) - np.asarray(
        src, np.float64
    )
    victim = np.asarray(photo_like(778, src.size), np.float64)
    forged = Image.fromarray(np.clip(victim + residual, 0, 255).astype(np.uint8))
    res = moderate(mclient, h, encode(forged, "PNG"), "forged.png")
    wm = res["provenance"]["watermark"]
    assert wm["present"] is True and wm["forged"] is True
    assert wm["claimed_generation_id"] == body["id"] and wm["generation_id"] is None
    assert wm["consistent_with_pixels"] is False
    assert res["provenance"]["outputs"] == []
    assert res["provenance"]["ai_generated"]["status"] == "unknown"
    (why,) = reasons(res, "forged_watermark")
    assert why["evidence"]["claimed_generation_id"] == body["id"]
    assert not reasons(res, "ai_ours_without_manifest")


# ---- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_a_copy_hidden_in_a_later_frame_is_found(mclient, make_key, fmt):
    """An animation whose first frame is harmless does not hide a registered work after it."""
    h = auth(make_key("registry", "moderate"))
    (work,) = register(mclient, h, 611)
    harmless = photo_like(9611)
    copy = Image.open(io.BytesIO(edited(611))).convert("RGB").resize(harmless.size)
    nearly = ImageEnhance.Brightness(harmless).enhance(1.03)  # an encoder merges equal frames
    frames = [harmless, nearly, copy, harmless]
    buf = io.BytesIO()
    frames[0].save(buf, fmt, save_all=True, append_images=frames[1:], duration=200)
    res = moderate(mclient, h, buf.getvalue(), name=f"anim.{fmt.lower()}")
    assert res["verdict"] == "block", res["reasons"]
    match = res["registry"]["matches"][0]
    assert match["artwork_id"] == work["id"] and match["decision"] == "copy"
    assert match["evidence"]["frame"] == 2
    # the harmless picture, repeated and nearly repeated, is matched once
    assert res["frames"] == {"total": 4, "matched": [0, 2]}
    still = moderate(mclient, h, encode(harmless))
    assert still["verdict"] == "allow" and still["frames"] == {"total": 1, "matched": [0]}


def test_registered_copy_is_blocked_unless_licensed(mclient, runtime, make_key):
    h = auth(make_key("registry", "moderate"))
    works = register(mclient, h, 601, 602)
    target = works[1]["id"]
    mclient.post(
        f"/v1/artworks/{target}/licenses",
        json={"grantee": "user-9", "scopes": ["img2img"]},
        headers=h,
    )
    query = edited(602)

    res = moderate(mclient, h, query, user="user-1", context="upload 77")
    assert res["verdict"] == "block"
    (why,) = reasons(res, "registered_copy")
    assert why["signal"] == "registry" and why["action"] == "block"
    assert why["evidence"]["artwork_id"] == target and why["evidence"]["img2img"] == "deny"
    assert "user-1" in why["message"] and why["evidence"]["licensed"] is False
    match = res["registry"]["matches"][0]
    assert match["artwork_id"] == target and match["decision"] == "copy"
    assert match["licensed"] is False
    assert match["evidence"]["stored_signals_version"] == match["evidence"]["signals_version"]
    assert res["context"] == "upload 77" and res["user"] == "user-1"

    res = moderate(mclient, h, query, user="user-9")
    assert res["verdict"] == "allow"
    (why,) = reasons(res, "registered_copy_licensed")
    assert why["evidence"]["licensed"] is True and "licence" in why["message"]
    assert res["registry"]["matches"][0]["licensed"] is True

    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT verdict FROM moderation_checks ORDER BY created_at").fetchall()
        touched = conn.execute(
            "SELECT count(*) AS n FROM audit_log WHERE kind = 'moderation.matched'"
            " AND subject = %s",
            (f"artwork:{target}",),
        ).fetchone()["n"]
    assert [r["verdict"] for r in rows] == ["block", "allow"]
    assert touched == 2, "the artist's event feed sees both moderation matches"


def test_a_tracing_of_a_registered_work_is_blocked_as_its_copy(mclient, make_key):
    h = auth(make_key("registry", "moderate", "match"))
    (work,) = register(mclient, h, 611)
    rng = np.random.default_rng(1)
    for edit in ("canny_control", "pencil_tracing"):
        drawing = encode(EDITS_BY_NAME[edit].apply(photo_like(611), rng), "PNG")
        res = moderate(mclient, h, drawing, name="lines.png", user="user-1")
        assert res["verdict"] == "block", edit
        (why,) = reasons(res, "registered_copy")
        assert why["evidence"]["artwork_id"] == work["id"]
        (found,) = res["registry"]["matches"]
        assert found["decision"] == "copy" and found["evidence"]["fired"] == ["lines"]
        # /v1/matches gives the same answer for the same bytes
        r = mclient.post("/v1/matches", files={"file": ("lines.png", drawing)}, headers=h)
        assert [(m["artwork_id"], m["decision"]) for m in r.json()["matches"]] == [
            (work["id"], "copy")
        ]
    other = encode(EDITS_BY_NAME["canny_control"].apply(photo_like(612), rng), "PNG")
    res = moderate(mclient, h, other, name="other.png")
    assert res["verdict"] == "allow" and res["registry"]["matches"] == []


def test_unrelated_photo_is_allowed(mclient, make_key):
    h = auth(make_key("registry", "moderate"))
    register(mclient, h, 611)
    res = moderate(mclient, h, encode(photo_like(9911)))
    assert res["verdict"] == "allow"
    assert [r["signal"] for r in res["reasons"]] == ["none"]
    assert res["registry"]["matches"] == [], "an unrelated photo is neither a copy nor similar"
    assert res["registry"]["index"]["size"] == 1
    assert res["provenance"]["ai_generated"]["status"] == "unknown"
    assert res["provenance"]["c2pa"]["state"] == "Absent"
    assert res["provenance"]["watermark"]["present"] is False
    assert res["training_sources"]["available"] is True
    assert res["training_sources"]["matches"] == []
    timings = res["timings"]
    for stage in ("decode", "signals", "watermark", "c2pa", "registry", "outputs", "record"):
        assert timings[stage] >= 0
    assert timings["total"] >= timings["decode"]


def _band_height(picture: Image.Image, colour: tuple[int, int, int]) -> int:
    """Rows from the top painted in the verdict's colour (at the left edge)."""
    column = np.asarray(picture.convert("RGB"))[:, 0]
    off = np.flatnonzero(np.any(column != np.array(colour), axis=1))
    return int(off[0]) if off.size else len(column)


def _likeness(a: Image.Image, b: Image.Image) -> float:
    x = np.asarray(a.convert("L").resize((48, 36)), dtype=np.float64).ravel()
    y = np.asarray(b.convert("L").resize((48, 36)), dtype=np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def test_check_picture_shows_the_verdict_and_the_matched_artwork(mclient, make_key):
    from service.moderation.picture import VERDICT_COLOURS
    from similarity.picture import GAP, PANEL

    h = auth(make_key("registry", "moderate"))
    works = register(mclient, h, 621, 622)
    r = mclient.post(
        "/v1/moderation/check/picture",
        files={"file": ("q.jpg", edited(622))},
        data={"user": "user-3", "context": "review queue"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    check = mclient.get(f"/v1/moderation/checks/{r.headers['X-Check-Id']}", headers=h).json()
    assert check["verdict"] == "block" and check["context"] == "review queue"
    assert check["registry"]["matches"][0]["artwork_id"] == works[1]["id"]

    picture = Image.open(io.BytesIO(r.content))
    assert picture.width == 2 * PANEL + 3 * GAP
    band = _band_height(picture, VERDICT_COLOURS["block"])
    assert 40 < band < picture.height - PANEL, "a red band, then at least one evidence row"
    # The first row's right-hand panel is the registered artwork the copy was made from.
    left, top = 2 * GAP + PANEL, band + GAP
    panel = picture.crop((left, top, left + PANEL, top + PANEL * 3 // 4))
    assert _likeness(panel, photo_like(622)) > 0.8
    assert _likeness(panel, photo_like(622)) > _likeness(panel, photo_like(621)) + 0.3


def test_check_picture_of_an_unrelated_photo_is_green_with_the_photo_alone(mclient, make_key):
    from service.moderation.picture import VERDICT_COLOURS
    from similarity.picture import CAPTION, GAP, PANEL

    h = auth(make_key("registry", "moderate"))
    register(mclient, h, 631)
    r = mclient.post(
        "/v1/moderation/check/picture",
        files={"file": ("q.jpg", encode(photo_like(9931)))},
        headers=h,
    )
    assert r.status_code == 200, r.text
    picture = Image.open(io.BytesIO(r.content))
    band = _band_height(picture, VERDICT_COLOURS["allow"])
    assert band > 40
    assert picture.height == band + GAP + PANEL + CAPTION + GAP, "one row: the photo alone"
    check = mclient.get(f"/v1/moderation/checks/{r.headers['X-Check-Id']}", headers=h).json()
    assert check["verdict"] == "allow"


def test_copy_of_a_training_source_names_its_dataset_and_licence(mclient, make_key):
    h = auth(make_key("moderate", "admin"))
    source = photo_like(7301, (512, 384))
    r = mclient.post(
        "/v1/sources",
        data={"dataset": "museum-scans", "licence": "CC-BY 4.0"},
        files=[("files", ("scan.jpg", encode(source), "image/jpeg"))],
        headers=h,
    )
    assert r.status_code == 201, r.text
    source_id = r.json()["sources"][0]["id"]
    edited = ImageEnhance.Brightness(source.crop((20, 10, 492, 374))).enhance(1.15)
    res = moderate(mclient, h, encode(edited, quality=80))
    matches = res["training_sources"]["matches"]
    assert [(m["source_id"], m["decision"]) for m in matches] == [(source_id, "copy")]
    assert matches[0]["dataset"] == "museum-scans"
    assert matches[0]["licence"] == "CC-BY 4.0"
    assert matches[0]["original_filename"] == "scan.jpg"
    # The default policy allows it, but the reason names the source and its dataset.
    assert res["verdict"] == "allow"
    reason = next(x for x in res["reasons"] if x["signal"] == "training_sources")
    assert reason["rule"] == "training_source_copy"
    assert "museum-scans" in reason["message"]
    assert reason["evidence"]["source_id"] == source_id
    assert moderate(mclient, h, encode(photo_like(7302)))["training_sources"]["matches"] == []

    # Its picture shows the source's kept thumbnail beside the query.
    from service.moderation.picture import VERDICT_COLOURS
    from similarity.picture import GAP, PANEL

    r = mclient.post(
        "/v1/moderation/check/picture",
        files={"file": ("q.jpg", encode(edited, quality=80))},
        headers=h,
    )
    assert r.status_code == 200, r.text
    picture = Image.open(io.BytesIO(r.content))
    band = _band_height(picture, VERDICT_COLOURS["allow"])
    left, top = 2 * GAP + PANEL, band + GAP
    panel = picture.crop((left, top, left + PANEL, top + PANEL * 3 // 4))
    assert _likeness(panel, source) > 0.8


def test_policy_file_and_per_key_override(mclient, make_key, tmp_path, monkeypatch):
    h = auth(make_key("registry", "moderate"))
    strict_secret = make_key("moderate", name="strict platform")
    prefix = strict_secret.split("_")[1]
    policy = tmp_path / "policy.toml"
    policy.write_text(
        'name = "community"\n'
        "[rules]\n"
        'registered_copy = "review"\n'
        f'[keys."{prefix}"]\n'
        'name = "strict"\n'
        'rules = { registered_copy = "block" }\n'
    )
    monkeypatch.setenv("CHOPMARK_MODERATION_POLICY", str(policy))
    register(mclient, h, 621)

    shown = mclient.get("/v1/moderation/policy", headers=h).json()
    assert shown["name"] == "community" and shown["rules"]["registered_copy"] == "review"
    assert shown["source"] == policy.name and "registered_copy" in shown["rule_descriptions"]
    strict = mclient.get("/v1/moderation/policy", headers=auth(strict_secret)).json()
    assert strict["key_override"] == prefix and strict["rules"]["registered_copy"] == "block"
    assert strict["version"] != shown["version"]

    res = moderate(mclient, h, edited(621))
    assert res["verdict"] == "review" and res["policy"]["name"] == "community"
    res = moderate(mclient, auth(strict_secret), edited(621))
    assert res["verdict"] == "block" and res["policy"]["key_override"] == prefix

    policy.write_text('[rules]\nregistered_copy = "maybe"\n')
    r = mclient.post("/v1/moderation/check", files={"file": ("q.jpg", edited(621))}, headers=h)
    assert r.status_code == 503 and "registered_copy" in r.json()["detail"]
    assert str(policy.parent) not in r.text and r.headers["Retry-After"] == "5"
    policy.write_text('name = "x\\u0000y"\n')  # a name no record can hold
    r = mclient.post("/v1/moderation/check", files={"file": ("q.jpg", edited(621))}, headers=h)
    assert r.status_code == 503 and "control characters" in r.json()["detail"]


# ---- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", 400),
        (b"this is not an image at all", 415),
        (encode(photo_like(1))[:3000], 422),
    ],
)
def test_malformed_upload_is_refused_and_not_recorded(mclient, runtime, make_key, data, code):
    h = auth(make_key("moderate"))
    for route in ("/v1/moderation/check", "/v1/moderation/check/picture"):
        r = mclient.post(route, files={"file": ("x.jpg", data)}, headers=h)
        assert r.status_code == code, r.text
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM moderation_checks").fetchone()["n"] == 0


def test_image_too_small_for_a_watermark_is_still_moderated(mclient, make_key):
    res = moderate(mclient, auth(make_key("moderate")), encode(photo_like(7, (64, 48)), "PNG"))
    wm = res["provenance"]["watermark"]
    assert wm["checked"] is False and "too small" in wm["note"] and wm["present"] is False
    assert res["verdict"] == "allow" and (res["width"], res["height"]) == (64, 48)


# ---- batch jobs ---------------------------------------------------------------------------


class Receiver:
    """A webhook receiver on 127.0.0.1 answering with the given status codes in turn."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.calls: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls.append((dict(self.headers), body))
                code = receiver.statuses[min(len(receiver.calls), len(receiver.statuses)) - 1]
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def wait(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.calls) >= n, f"{len(self.calls)} webhook calls, expected {n}"


class SlowReceiver(Receiver):
    """A receiver that takes ``seconds`` to answer each call (200)."""

    def __init__(self, seconds: float) -> None:
        super().__init__([200])
        handler = self.server.RequestHandlerClass
        answer = handler.do_POST

        def slow_post(handler_self) -> None:
            time.sleep(seconds)
            answer(handler_self)

        handler.do_POST = slow_post


def one_photo_batch(client, h, seed: int, *, name: str = "a.jpg", data: dict | None = None):
    """A batch of one synthetic photo (``data``: the form's other fields): the response."""
    return client.post(
        "/v1/moderation/batch",
        files=[("files", (name, encode(photo_like(seed)), "image/jpeg"))],
        data=data or {},
        headers=h,
    )


def wait_job(client, h, job_id: str, timeout: float = 60) -> tuple[dict, list[int]]:
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/moderation/jobs/{job_id}", headers=h).json()
        seen.append(job["done"])
        if job["status"] in ("completed", "failed"):
            return job, seen
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_batch_job_completes_and_its_webhook_signature_verifies(mclient, make_key):
    h = auth(make_key("registry", "moderate"))
    works = register(mclient, h, 631)
    files = [
        ("files", ("copy.jpg", edited(631), "image/jpeg")),
        ("files", ("other.jpg", encode(photo_like(9931)), "image/jpeg")),
        ("files", ("broken.jpg", b"not an image", "image/jpeg")),
    ]
    with Receiver([200]) as hook:
        r = mclient.post(
            "/v1/moderation/batch",
            files=files,
            data={"webhook_url": hook.url, "user": "user-3", "context": "nightly"},
            headers=h,
        )
        assert r.status_code == 202, r.text
        created = r.json()
        assert created["total"] == 3 and created["status"] in ("queued", "running")
        assert r.headers["Location"] == created["status_url"]
        secret = created["webhook_secret"]
        assert secret.startswith("whsec_")

        job, seen = wait_job(mclient, h, created["id"])
        assert job["status"] == "completed" and job["done"] == job["total"] == 3
        assert seen == sorted(seen), "progress only goes forward"
        assert job["counts"] == {"queued": 0, "checked": 2, "rejected": 1, "failed": 0}
        by_name = {i["filename"]: i for i in job["items"]}
        assert by_name["copy.jpg"]["verdict"] == "block"
        assert by_name["copy.jpg"]["reasons"][0]["evidence"]["artwork_id"] == works[0]["id"]
        assert by_name["other.jpg"]["verdict"] == "allow"
        assert by_name["broken.jpg"]["status"] == "rejected"
        assert by_name["broken.jpg"]["error_status"] == 415
        check = mclient.get(
            f"/v1/moderation/checks/{by_name['copy.jpg']['check_id']}", headers=h
        ).json()
        assert check["job_id"] == created["id"] and check["user"] == "user-3"
        full = mclient.get(f"/v1/moderation/jobs/{created['id']}?full=true", headers=h).json()
        assert full["items"][0]["result"]["registry"]["matches"]

        hook.wait(1)
        headers, body = hook.calls[0]
        signature = headers[SIGNATURE_HEADER]
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert signature == expected and verify_signature(secret, body, signature)
        assert not verify_signature(secret, body + b" ", signature)
        assert not verify_signature("whsec_other", body, signature)
        sent = json.loads(body)
        assert sent["event"] == "moderation.job.finished"
        assert sent["job"]["id"] == created["id"] and sent["job"]["status"] == "completed"
        assert [i["verdict"] for i in sent["job"]["items"]] == ["block", "allow", None]
        assert "webhook" not in sent["job"]
    deadline = time.monotonic() + 30  # returns as soon as it holds
    while time.monotonic() < deadline:
        state = mclient.get(f"/v1/moderation/jobs/{created['id']}", headers=h).json()["webhook"]
        if state["state"] == "delivered":
            break
        time.sleep(0.05)
    assert state["state"] == "delivered" and state["attempts"] == 1


def test_webhook_is_retried_with_backoff_then_delivered(mclient, make_key):
    h = auth(make_key("moderate"))
    with Receiver([503, 500, 200]) as hook:
        r = one_photo_batch(mclient, h, 9941, data={"webhook_url": hook.url})
        assert r.status_code == 202, r.text
        hook.wait(3)
        bodies = [b for _, b in hook.calls]
        assert all(
            verify_signature(r.json()["webhook_secret"], b, hd[SIGNATURE_HEADER])
            for hd, b in hook.calls
        )
        assert len(set(bodies)) == 3, "each attempt is sent afresh (its own sent_at)"
    deadline = time.monotonic() + 30  # returns as soon as it holds
    while time.monotonic() < deadline:
        job = mclient.get(f"/v1/moderation/jobs/{r.json()['id']}", headers=h).json()
        if job["webhook"]["state"] == "delivered":
            break
        time.sleep(0.05)
    assert job["webhook"] == {**job["webhook"], "state": "delivered", "attempts": 3}
    # a one-item job is started and finished within one item's work: in that order
    times = [datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")]
    assert times == sorted(times), job


def test_a_finished_jobs_webhook_can_be_sent_again(mclient, runtime, make_key):
    h = auth(make_key("moderate"))
    plain = one_photo_batch(mclient, h, 9945).json()
    with Receiver([200, 200]) as hook:
        r = one_photo_batch(mclient, h, 9946, data={"webhook_url": hook.url})
        job_id, secret = r.json()["id"], r.json()["webhook_secret"]
        wait_job(mclient, h, job_id)
        hook.wait(1)
        again = mclient.post(f"/v1/moderation/jobs/{job_id}/webhook", headers=h)
        assert again.status_code == 202, again.text
        hook.wait(2)
        assert all(verify_signature(secret, b, hd[SIGNATURE_HEADER]) for hd, b in hook.calls)
    other = auth(make_key("moderate"))
    assert mclient.post(f"/v1/moderation/jobs/{job_id}/webhook", headers=other).status_code == 404
    wait_job(mclient, h, plain["id"])
    r = mclient.post(f"/v1/moderation/jobs/{plain['id']}/webhook", headers=h)
    assert r.status_code == 409 and "without a webhook" in r.json()["detail"]
    with runtime.pool.connection() as conn:
        kinds = [row["kind"] for row in conn.execute("SELECT kind FROM audit_log")]
    assert kinds.count("moderation.webhook_requeued") == 1


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/x",
        "file:///etc/passwd",
        "http://user:pw@example.org/",
        "nope",
        "http://a..b/h",
        "http://" + "a" * 64 + ".example/h",
        "http://exa mple.com/",
    ],
)
def test_batch_refuses_non_http_webhooks(mclient, make_key, url):
    r = mclient.post(
        "/v1/moderation/batch",
        files=[("files", ("a.jpg", encode(photo_like(1)), "image/jpeg"))],
        data={"webhook_url": url},
        headers=auth(make_key("moderate")),
    )
    assert r.status_code == 422


def test_idempotency_key_returns_the_first_job(mclient, runtime, make_key):
    secret = make_key("moderate")
    h = {**auth(secret), "Idempotency-Key": "upload-batch-42"}
    files = [("files", ("a.jpg", encode(photo_like(9951)), "image/jpeg"))]
    first = mclient.post("/v1/moderation/batch", files=files, data={"user": "u"}, headers=h)
    again = mclient.post("/v1/moderation/batch", files=files, data={"user": "u"}, headers=h)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other_bytes = encode(photo_like(9952))
    other_body = mclient.post(
        "/v1/moderation/batch",
        files=[("files", ("a.jpg", other_bytes, "image/jpeg"))],
        data={"user": "u"},
        headers=h,
    )
    assert other_body.status_code == 409 and "Idempotency-Key" in other_body.json()["detail"]
    assert not runtime.blobs.exists(hashlib.sha256(other_bytes).hexdigest()), "nothing kept"
    other_key = mclient.post(
        "/v1/moderation/batch",
        files=files,
        data={"user": "u"},
        headers={**auth(make_key("moderate", name="b")), "Idempotency-Key": "upload-batch-42"},
    )
    assert other_key.status_code == 202 and other_key.json()["id"] != first.json()["id"]
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM moderation_jobs").fetchone()["n"] == 2
    # another key cannot read the first key's job
    r = mclient.get(f"/v1/moderation/jobs/{first.json()['id']}", headers=auth(make_key("moderate")))
    assert r.status_code == 404


def test_a_batch_waits_out_an_unusable_policy_file_and_then_finishes(
    mclient, runtime, make_key, tmp_path, monkeypatch
):
    """A policy file broken while a batch waits (an operator mid-edit) makes its items wait and
    keep their attempts, as a single check answers 503 then; once mended, the job finishes."""
    from service.moderation import jobs

    for worker in list(jobs._live_workers):  # this test works the items itself
        worker.stop()
    policy = tmp_path / "policy.toml"
    policy.write_text('name = "community"\n')
    monkeypatch.setenv("CHOPMARK_MODERATION_POLICY", str(policy))
    h = auth(make_key("moderate"))
    files = [("files", (f"{i}.jpg", encode(photo_like(9970 + i)), "image/jpeg")) for i in range(2)]
    job_id = mclient.post("/v1/moderation/batch", files=files, headers=h).json()["id"]
    policy.write_text("rules = 5\n")
    worker = ModerationWorker(runtime, poll_seconds=0.05, policy_retry_seconds=0.5)
    assert worker.process_item() and worker.process_item(), "each item is taken once"
    assert worker.process_item() is False, "both wait: none is due"
    job = mclient.get(f"/v1/moderation/jobs/{job_id}", headers=h).json()
    assert job["status"] == "running" and job["counts"]["queued"] == 2
    for item in job["items"]:
        assert "moderation is unavailable" in item["error"] and item["retry_at"] is not None
        assert "policy.toml" in item["error"] and str(tmp_path) not in item["error"]
    ready = mclient.get("/readyz")  # the rest of the service still serves: ready, and says why
    state = ready.json()["moderation_policy"]
    assert ready.status_code == 200 and state["state"] == "unusable"
    assert "policy.toml" in state["reason"] and str(tmp_path) not in state["reason"]
    # a broken override is reported without the key it is for (any key, or none, reads this)
    policy.write_text('[keys."partner-acme-7f3a"]\nrules = { registered_copy = "alow" }\n')
    said = mclient.get("/readyz").json()["moderation_policy"]["reason"]
    r = mclient.post("/v1/moderation/check", files={"file": ("a.jpg", encode(photo_like(1)))},
                     headers=h)
    assert r.status_code == 503 and "registered_copy" in said
    for text in (said, r.json()["detail"]):
        assert "partner-acme" not in text and "a key's override" in text, text
    policy.write_text("rules = 5\n")
    with runtime.pool.connection() as conn:
        attempts = conn.execute(
            "SELECT attempts FROM moderation_job_items WHERE job_id = %s", (job_id,)
        ).fetchall()
    assert [a["attempts"] for a in attempts] == [0, 0]
    policy.write_text('name = "community, mended"\n')
    assert mclient.get("/readyz").json()["moderation_policy"] == {
        "state": "ok", "name": "community, mended", "source": "policy.toml"
    }
    worker.start()
    try:
        job, _ = wait_job(mclient, h, job_id)
    finally:
        worker.stop()
    assert job["status"] == "completed"
    assert [(i["status"], i["error"], i["retry_at"]) for i in job["items"]] == [
        ("checked", None, None)
    ] * 2
    created, started, finished = (
        datetime.fromisoformat(job[k]) for k in ("created_at", "started_at", "finished_at")
    )
    assert created <= started <= finished


def test_an_item_that_cannot_be_checked_fails_without_showing_the_servers_files(
    mclient, runtime, make_key
):
    """An item whose kept upload is gone (a disk restored without it): tried three times, then
    failed with a 500, its error naming the kind of failure but no path on the server."""
    from service.moderation import jobs

    for worker in list(jobs._live_workers):  # this test works the items itself
        worker.stop()
    h = auth(make_key("moderate"))
    job_id = one_photo_batch(mclient, h, 9962).json()["id"]
    with runtime.pool.connection() as conn:
        sha = conn.execute(
            "SELECT sha256 FROM moderation_job_items WHERE job_id = %s", (job_id,)
        ).fetchone()["sha256"]
    path = runtime.blobs.path(sha)
    path.unlink()
    worker = ModerationWorker(runtime, poll_seconds=0.05, item_retry_seconds=0.01)
    for _ in range(jobs.MAX_ITEM_ATTEMPTS):
        deadline = time.monotonic() + 5
        while not worker.process_item():
            assert time.monotonic() < deadline, "the item never came due again"
            time.sleep(0.02)
    job = mclient.get(f"/v1/moderation/jobs/{job_id}", headers=h).json()
    (item,) = job["items"]
    assert job["status"] == "failed" and item["status"] == "failed"
    assert item["error_status"] == 500 and "FileNotFoundError" in item["error"]
    assert str(path.parent.parent) not in item["error"] and "/" not in item["error"]


def test_jobs_take_turns_so_a_big_batch_keeps_no_one_waiting(mclient, runtime, make_key):
    """A 5-image batch queued first, then another platform's single image: the single image
    is checked second, not after the whole batch."""
    from service.moderation import jobs

    for worker in list(jobs._live_workers):  # this test works the items itself
        worker.stop()
    a, b = auth(make_key("moderate", name="a")), auth(make_key("moderate", name="b"))
    big = mclient.post(
        "/v1/moderation/batch",
        files=[("files", (f"{i}.jpg", encode(photo_like(9980 + i)), "image/jpeg"))
               for i in range(5)],
        headers=a,
    ).json()["id"]
    small = one_photo_batch(mclient, b, 9990, name="b.jpg").json()["id"]
    worker = ModerationWorker(runtime, poll_seconds=0.05)
    assert worker.process_item() and worker.process_item()
    assert mclient.get(f"/v1/moderation/jobs/{small}", headers=b).json()["status"] == "completed"
    assert mclient.get(f"/v1/moderation/jobs/{big}", headers=a).json()["done"] == 1
    while worker.process_item():
        pass
    assert mclient.get(f"/v1/moderation/jobs/{big}", headers=a).json()["status"] == "completed"


def test_an_item_abandoned_by_a_dead_worker_is_taken_up_by_another(
    mclient, runtime, settings, make_key
):
    """A worker holds its item's row lock while it works; when its connection dies, another
    worker takes the item up, and a locked item is never worked twice."""
    import psycopg

    from service.moderation import jobs

    for worker in list(jobs._live_workers):  # no worker of this process may race the test
        worker.stop()
    h = auth(make_key("moderate"))
    r = one_photo_batch(mclient, h, 9961)
    job_id = r.json()["id"]
    dead = psycopg.connect(settings.database_url)  # a process that claimed the item...
    dead.execute("SELECT 1 FROM moderation_job_items WHERE job_id = %s FOR UPDATE", (job_id,))
    rescuer = ModerationWorker(runtime, poll_seconds=0.1)
    rescuer.start()
    try:
        assert rescuer.process_item() is False, "a locked item is skipped"
        time.sleep(0.3)
        assert mclient.get(f"/v1/moderation/jobs/{job_id}", headers=h).json()["done"] == 0
        dead.close()  # ...and died
        job, _ = wait_job(mclient, h, job_id)
    finally:
        rescuer.stop()
    assert job["status"] == "completed" and job["items"][0]["status"] == "checked"


# ---- access -------------------------------------------------------------------------------

ROUTES = [
    ("post", "/v1/moderation/check", {"files": {"file": ("a.jpg", b"x", "image/jpeg")}}),
    ("post", "/v1/moderation/check/picture", {"files": {"file": ("a.jpg", b"x", "image/jpeg")}}),
    ("post", "/v1/moderation/batch", {"files": {"files": ("a.jpg", b"x", "image/jpeg")}}),
    ("get", f"/v1/moderation/jobs/{ZERO}", {}),
    ("post", f"/v1/moderation/jobs/{ZERO}/webhook", {}),
    ("get", f"/v1/moderation/checks/{ZERO}", {}),
    ("get", f"/v1/moderation/checks/{ZERO}/picture", {}),
    ("get", "/v1/moderation/checks", {}),
    ("get", "/v1/moderation/jobs", {}),
    (
        "post",
        f"/v1/moderation/checks/{ZERO}/reviews",
        {"json": {"decision": "allow", "reviewer": "m"}},
    ),
    ("get", "/v1/moderation/policy", {}),
]


@pytest.mark.parametrize(("method", "path", "kw"), ROUTES)
def test_moderation_routes_need_a_key_with_the_moderate_scope(mclient, make_key, method, path, kw):
    call = getattr(mclient, method)
    assert call(path, **kw).status_code == 401
    r = call(path, headers=auth(make_key("match", "registry", "stamp")), **kw)
    assert r.status_code == 403 and "'moderate'" in r.json()["detail"]
    assert call(path, headers=auth(make_key("moderate")), **kw).status_code not in (401, 403)
    assert call(path, headers=auth(make_key("admin")), **kw).status_code not in (401, 403)
    spec = mclient.get("/openapi.json").json()

    def same_route(spec_path: str) -> bool:  # a {parameter} in the spec stands for ZERO
        ours, theirs = path.split("/"), spec_path.split("/")
        return len(ours) == len(theirs) and all(
            a == b or (a == ZERO and b.startswith("{")) for a, b in zip(ours, theirs, strict=True)
        )

    ops = [
        op
        for p, item in spec["paths"].items()
        for m, op in item.items()
        if m == method and same_route(p)
    ]
    assert ops and all(op["x-required-scope"] == "moderate" for op in ops)


# ---- command line -------------------------------------------------------------------------


def test_check_command_prints_verdicts_and_json(mclient, settings, make_key, tmp_path, monkeypatch):
    import typer
    from typer.testing import CliRunner

    from service.cli.check_cmd import check

    h = auth(make_key("registry", "moderate"))
    register(mclient, h, 641)
    (tmp_path / "copy.jpg").write_bytes(edited(641))
    (tmp_path / "other.jpg").write_bytes(encode(photo_like(9971)))
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    app = typer.Typer()
    app.command()(check)
    app.command("other")(lambda: None)  # keep `check` a named sub-command
    runner = CliRunner()
    out = runner.invoke(
        app, ["check", str(tmp_path / "copy.jpg"), str(tmp_path / "other.jpg"), "--user", "u1"]
    )
    assert out.exit_code == 0, out.output
    assert "block" in out.output and "allow" in out.output and "registered artwork" in out.output
    out = runner.invoke(app, ["check", str(tmp_path / "copy.jpg"), "--json"])
    assert out.exit_code == 0, out.output
    (report,) = json.loads(out.output)
    assert report["verdict"] == "block" and report["registry"]["matches"]
    out = runner.invoke(app, ["check", str(tmp_path / "bad.jpg")])
    assert out.exit_code == 2

    from service.moderation.picture import VERDICT_COLOURS

    shots = tmp_path / "shots"
    both = [str(tmp_path / "copy.jpg"), str(tmp_path / "other.jpg")]
    out = runner.invoke(app, ["check", *both, "--pictures", str(shots)])
    assert out.exit_code == 0, out.output
    assert sorted(p.name for p in shots.iterdir()) == ["copy.png", "other.png"]
    for name, verdict in (("copy", "block"), ("other", "allow")):
        picture = Image.open(shots / f"{name}.png")
        assert picture.convert("RGB").getpixel((2, 2)) == VERDICT_COLOURS[verdict]


def test_a_webhook_that_cannot_be_called_fails_alone_and_jams_nothing(mclient, runtime, make_key):
    """A URL stored before the checks that now refuse it (or one that fails in a way nobody
    foresaw) ends its own webhook as failed; another job's webhook is delivered meanwhile."""
    h = auth(make_key("moderate"))
    files = [("files", ("a.jpg", encode(photo_like(9971)), "image/jpeg"))]
    with Receiver([200]) as rx:
        bad = mclient.post(
            "/v1/moderation/batch", files=files, data={"webhook_url": rx.url}, headers=h
        )
        with runtime.pool.connection() as conn:  # as an older version let it in
            conn.execute(
                "UPDATE moderation_jobs SET webhook_url = %s WHERE id = %s",
                ("http://" + "a" * 64 + ".example/h", bad.json()["id"]),
            )
        good = one_photo_batch(mclient, h, 9972, name="b.jpg", data={"webhook_url": rx.url})
        rx.wait(1)
        assert good.json()["id"].encode() in rx.calls[0][1]
    deadline = time.monotonic() + 20
    while True:
        job = mclient.get(f"/v1/moderation/jobs/{bad.json()['id']}", headers=h).json()
        if job["webhook"]["state"] == "failed":
            break
        assert time.monotonic() < deadline, job["webhook"]
        time.sleep(0.1)
    assert job["webhook"]["attempts"] == 1 and "valid name" in job["webhook"]["last_error"]


def test_a_slow_webhook_receiver_delays_no_ones_checks(mclient, make_key):
    """The receiver sleeps for 4 s; another platform's batch finishes meanwhile."""

    a, b = auth(make_key("moderate", name="a")), auth(make_key("moderate", name="b"))
    with SlowReceiver(4) as rx:
        first = one_photo_batch(mclient, a, 9973, data={"webhook_url": rx.url}).json()
        wait_job(mclient, a, first["id"])
        time.sleep(0.5)  # its webhook is being posted now
        started = time.monotonic()
        second = one_photo_batch(mclient, b, 9974, name="b.jpg").json()
        wait_job(mclient, b, second["id"])
        took = time.monotonic() - started
        redo = mclient.post(f"/v1/moderation/jobs/{first['id']}/webhook", headers=a)
        assert redo.status_code == 202 and time.monotonic() - started < 3.0
        rx.wait(1, timeout=15)
    assert took < 3.0, took


def test_a_slow_webhook_receiver_delays_no_one_elses_webhook(mclient, make_key):
    """One platform's receiver takes 8 s to answer; another platform's webhook, due meanwhile,
    is delivered at once (a single webhook thread made it wait its turn)."""

    a, b = auth(make_key("moderate", name="a")), auth(make_key("moderate", name="b"))
    with SlowReceiver(8) as slow, Receiver([200]) as quick:
        for seed in (9975, 9978):  # more slow webhooks at once than one thread per worker
            first = one_photo_batch(mclient, a, seed, data={"webhook_url": slow.url}).json()
            wait_job(mclient, a, first["id"])
        time.sleep(0.5)  # their webhooks are being posted now
        hook = {"webhook_url": quick.url}
        second = one_photo_batch(mclient, b, 9976, name="b.jpg", data=hook).json()
        wait_job(mclient, b, second["id"])
        finished = time.monotonic()
        quick.wait(1, timeout=15)
        waited = time.monotonic() - finished
        slow.wait(2, timeout=20)
    assert waited < 2.0, waited


class Stalling:
    """A receiver on 127.0.0.1 that takes every connection and never answers."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.held: list = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_many_webhooks_to_a_receiver_that_never_answers_hold_up_no_one_else(mclient, make_key):
    """More jobs wait on a stalled receiver than a process has sending threads: a process sends
    to one receiver one webhook at a time, so another platform's webhook still goes out."""
    from service.moderation.jobs import WEBHOOK_THREADS

    a, b = auth(make_key("moderate", name="a")), auth(make_key("moderate", name="b"))
    small = encode(photo_like(9979, (64, 48)), "PNG")
    stalled = Stalling()

    def batch_done(h: dict[str, str], webhook_url: str) -> None:
        job = mclient.post(
            "/v1/moderation/batch",
            files=[("files", ("s.png", small, "image/png"))],
            data={"webhook_url": webhook_url},
            headers=h,
        ).json()
        wait_job(mclient, h, job["id"])

    try:
        with Receiver([200]) as quick:
            for _ in range(2 * WEBHOOK_THREADS + 2):  # more than both workers' threads
                batch_done(a, stalled.url)
            time.sleep(0.5)
            batch_done(b, quick.url)
            finished = time.monotonic()
            quick.wait(1, timeout=30)
            waited = time.monotonic() - finished
    finally:
        stalled.close()
    assert waited < 3.0, waited


def test_a_webhook_is_not_attempted_beyond_its_limit(mclient, runtime, make_key):
    """A job whose last allowed attempt was claimed by a process that died: the attempt it
    held runs out, and the webhook is given up rather than tried a thirteenth time."""
    from service.moderation.webhooks import MAX_ATTEMPTS

    h = auth(make_key("moderate"))
    with Receiver([200]) as rx:
        job = one_photo_batch(mclient, h, 9977, data={"webhook_url": rx.url}).json()
        wait_job(mclient, h, job["id"])
        rx.wait(1)
        with runtime.pool.connection() as conn:
            conn.execute(
                "UPDATE moderation_jobs SET webhook_state = 'pending', webhook_attempts = %s,"
                " webhook_next_at = now() - interval '1 second' WHERE id = %s",
                (MAX_ATTEMPTS, job["id"]),
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hook = mclient.get(f"/v1/moderation/jobs/{job['id']}", headers=h).json()["webhook"]
            if hook["state"] != "pending":
                break
            time.sleep(0.1)
        assert hook["state"] == "failed" and hook["attempts"] == MAX_ATTEMPTS
        assert f"gave up after {MAX_ATTEMPTS} attempts" in hook["last_error"]
        assert len(rx.calls) == 1


def test_registered_work_in_a_page_screenshot_is_blocked(mclient, make_key):
    """A registered work shown at a tenth of a page screenshot, among text and icons: the page
    as a whole matches nothing, the picture in it is found and blocked, its box in evidence."""
    from similarity.edits import EDITS_BY_NAME

    h = auth(make_key("registry", "moderate"))
    (work,) = register(mclient, h, 631)
    shot = EDITS_BY_NAME["page_screenshot_10"].apply(photo_like(631), np.random.default_rng(2))
    res = moderate(mclient, h, encode(shot, quality=85))
    match = blocked_as_copy_of(res, work["id"])
    x0, y0, x1, y1 = match["evidence"]["region"]
    assert 0 <= x0 < x1 <= shot.width and 0 <= y0 < y1 <= shot.height
    assert 0.05 < (x1 - x0) * (y1 - y0) / (shot.width * shot.height) < 0.2


def test_registered_work_pasted_into_a_photo_is_blocked(mclient, make_key):
    """A registered work scaled down and pasted into a larger photo: found by its outline and
    blocked, the pasted picture's box (in the upload's pixels) in the evidence; the same photo
    with an unregistered picture pasted in is allowed."""
    h = auth(make_key("registry", "moderate"))
    (work,) = register(mclient, h, 691)
    box = (300, 180, 860, 600)
    photo = photo_like(692, (1024, 768))

    def with_pasted(picture: Image.Image) -> Image.Image:
        out = photo.copy()
        out.paste(picture.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS),
                  box[:2])
        return out

    res = moderate(mclient, h, encode(with_pasted(photo_like(691)), quality=85))
    match = blocked_as_copy_of(res, work["id"])
    assert match["evidence"]["region_kind"] == "pasted"
    region = match["evidence"]["region"]
    assert all(abs(a - b) <= 6 for a, b in zip(region, box, strict=True)), region
    unrelated = with_pasted(photo_like(699))
    assert moderate(mclient, h, encode(unrelated, quality=85))["verdict"] == "allow"


def test_registered_work_in_a_collage_is_blocked(mclient, make_key):
    """A registered work in one cell of a 2x2 collage of other pictures, edge to edge: the
    collage is blocked for the work, the cell's box in the evidence; the same collage without
    the work is allowed."""
    from similarity.edits import grid

    h = auth(make_key("registry", "moderate"))
    (work,) = register(mclient, h, 671)
    fillers = [photo_like(672 + k) for k in range(3)]
    collage = grid(2, 2, fillers)(photo_like(671), np.random.default_rng(3))
    res = moderate(mclient, h, encode(collage, quality=85))
    match = blocked_as_copy_of(res, work["id"])
    assert match["evidence"]["region_kind"] == "grid_cell"
    x0, y0, x1, y1 = match["evidence"]["region"]
    cell = collage.width // 2
    assert abs((x1 - x0) - cell) < 0.05 * cell and abs((y1 - y0) - cell) < 0.05 * cell
    assert x0 % cell < 0.05 * cell and y0 % cell < 0.05 * cell
    unrelated = grid(2, 2, fillers)(photo_like(679), np.random.default_rng(3))
    assert moderate(mclient, h, encode(unrelated, quality=85))["verdict"] == "allow"


def test_an_automatic1111_parameters_label_declares_ai(mclient, make_key):
    """The generation settings Stable Diffusion front ends write into PNG text or EXIF say the
    picture was generated; a text chunk named 'parameters' without them does not."""
    from provenance.labels import LabelSet, a1111_parameters, encode_with_labels

    h = auth(make_key("moderate"))
    text = a1111_parameters(prompt="a harbour", steps=20, sampler="Euler a", seed=3,
                            cfg_scale=7.0, width=640, height=480)
    for mime in ("image/png", "image/jpeg"):
        data = encode_with_labels(photo_like(661), mime, LabelSet(parameters=text))
        ai = moderate(mclient, h, data, "a1111." + mime.split("/")[1])["provenance"]["ai_generated"]
        assert ai["declared"] and ai["status"] == "declared", mime
        assert any("AUTOMATIC1111" in d for d in ai["declared_by"])
    plain = encode_with_labels(photo_like(662), "image/png", LabelSet(parameters="my notes"))
    ai = moderate(mclient, h, plain, "notes.png")["provenance"]["ai_generated"]
    assert not ai["declared"] and ai["status"] == "unknown"
