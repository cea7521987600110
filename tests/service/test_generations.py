"""POST /v1/generations end to end on the tiny default model: the gate blocks img2img on denied
artworks (the model is never called), licences lift the block, consent carried by the input
blocks, a failing check blocks, outputs are stamped (Trusted manifest, readable watermark) and
recorded with every decision; adapters are hashed, logged and applied; training-source copies
are flagged (or blocked)."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from generation.diffusion_protocol import CountingGenerator
from generation.params import DiffusionResult, GenerationParams
from provenance.c2pa_io import read_manifest
from provenance.labels import DMI_PROHIBITED, LabelSet, encode_with_labels, read_labels
from provenance.watermark import payload_to_hex
from service.genservice import GenerationService
from service.indexing.bank import BankIndex
from similarity.edits import EDITS_BY_NAME
from tests.support import auth, encode, photo_like

SIZE = 256
STEPS = 2


class KeepingGenerator(CountingGenerator):
    """The real runner, counted, keeping each raw (unstamped) result."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.results: list[DiffusionResult] = []

    async def run_async(self, params: GenerationParams, admit: Any = None) -> DiffusionResult:
        result = await super().run_async(params, admit)
        self.results.append(result)
        return result

    def run(self, params: GenerationParams, admit: Any = None) -> DiffusionResult:
        result = super().run(params, admit)
        self.results.append(result)
        return result


@pytest.fixture(scope="session")
def tiny_runner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The process's runner over the tiny default model, built once per test session."""
    import torch

    from generation.diffusion import shared_runner

    torch.set_num_threads(1)
    runner = shared_runner(None, cache_dir=tmp_path_factory.getbasetemp() / "chopmark-models")
    yield runner
    runner.close()


@pytest.fixture
def gen(client, runtime, tiny_runner):
    """(client, counting generator): the app's generation service over the shared tiny runner."""
    counting = KeepingGenerator(tiny_runner)
    client.app.state.generation = GenerationService(runtime, counting)
    yield client, counting


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(**overrides: Any) -> dict[str, Any]:
    body = {
        "prompt": "a lighthouse at dusk, ink wash",
        "negative_prompt": "blurry",
        "seed": 42,
        "steps": STEPS,
        "guidance": 5.0,
        "width": SIZE,
        "height": SIZE,
    }
    body.update(overrides)
    return body


def register_artwork(client, h, image: Image.Image, preferences: str) -> dict:
    r = client.post(
        "/v1/artists", json={"display_name": "Mei", "email": "mei@example.org"}, headers=h
    )
    assert r.status_code == 201, r.text
    artist = r.json()
    r = client.post(
        f"/v1/artists/{artist['id']}/artworks",
        files=[("files", ("work.jpg", encode(image, "JPEG"), "image/jpeg"))],
        data={"title": "Harbour", "preferences": preferences},
        headers=h,
    )
    assert r.status_code == 201, r.text
    return r.json()["artworks"][0]


def edited_copy(image: Image.Image) -> bytes:
    """Cropped, resized, brightened and re-encoded: still the same work."""
    w, h = image.size
    crop = image.crop((w // 12, h // 12, w - w // 10, h - h // 12)).resize((480, 360))
    return encode(ImageEnhance.Brightness(crop).enhance(1.12), "JPEG", quality=80)


def audit_kinds(runtime) -> list[str]:
    with runtime.pool.connection() as conn:
        return [r["kind"] for r in conn.execute("SELECT kind FROM audit_log ORDER BY seq")]


def generation_row(runtime, gid: str) -> dict:
    with runtime.pool.connection() as conn:
        return conn.execute("SELECT * FROM generations WHERE id = %s", (gid,)).fetchone()


def test_txt2img_is_stamped_recorded_and_says_the_model_is_the_tiny_default(gen, runtime, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    r = client.post("/v1/generations", json=request(user="alice"), headers=h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "completed" and body["mode"] == "txt2img" and body["flags"] == []
    assert body["model"]["is_default_tiny"] is True and "noise" in body["model"]["notice"]
    assert model.call_count == 1

    data = client.get(body["image_url"], headers=h).content
    report = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.manifest_id == body["manifest"]["id"]
    assert report.digital_source_type.endswith("/trainedAlgorithmicMedia")
    assert report.generation["generation_id"] == body["id"]
    assert report.generation["prompt"] == "a lighthouse at dusk, ink wash"
    assert report.generation["model"]["sha256"] == body["model"]["sha256"]
    assert report.generation["seed"] == 42 and report.generation["platform_user"] == "alice"

    image = Image.open(io.BytesIO(data)).convert("RGB")
    reading = runtime.watermarker.detect(image)
    assert reading.present and payload_to_hex(reading.payload) == body["watermark"]["value"]
    assert body["watermark"]["verified"] is True

    row = generation_row(runtime, body["id"])
    assert row["status"] == "completed" and row["platform_user"] == "alice"
    assert row["prompt"] == "a lighthouse at dusk, ink wash" and row["negative_prompt"] == "blurry"
    assert (row["seed"], row["steps"], row["width"], row["height"]) == (42, STEPS, SIZE, SIZE)
    assert row["scheduler"] == "euler" and row["model_sha256"] == body["model"]["sha256"]
    assert row["output_sha256"] == body["output"]["sha256"] and len(row["output_pdq"]) == 64
    assert row["manifest_id"] == report.manifest_id
    assert row["watermark_value"] == body["watermark"]["value"]
    assert [d["check"] for d in row["decisions"]] == ["screen"]
    assert row["decisions"][0]["evidence"]["clip"] == {
        "available": False,
        "reason": "no CLIP checkpoint configured",
    }
    kinds = audit_kinds(runtime)
    assert kinds.index("generation.stamped") < kinds.index("generation.completed")
    got = client.get(f"/v1/generations/{body['id']}", headers=h).json()
    assert got["status"] == "completed" and got["output"] == body["output"]
    # another key's generations stay private
    other = auth(make_key("generate"))
    assert client.get(f"/v1/generations/{body['id']}", headers=other).status_code == 404


def test_the_output_and_the_completed_record_commit_together(gen, runtime, make_key, monkeypatch):
    """The completed generation is written in its output's transaction: when that write fails,
    no output row is left behind, and the generation ends as failed at the stamp."""
    from service.genservice.records import GenerationStore

    client, _model = gen
    h = auth(make_key("generate"))
    ok = client.post("/v1/generations", json=request(seed=7), headers=h)
    assert ok.status_code == 201, ok.text
    with runtime.pool.connection() as conn:
        stored = conn.execute(
            "SELECT g.status, o.id AS output FROM generations g JOIN outputs o ON o.id = g.id"
            " WHERE g.id = %s",
            (ok.json()["id"],),
        ).fetchone()
    assert stored is not None and stored["status"] == "completed"

    real = GenerationStore.record_within

    def broken(self, transaction, record):
        real(self, transaction, record)  # written, then the connection fails before commit
        raise ConnectionError("the database went away")

    monkeypatch.setattr(GenerationStore, "record_within", broken)
    r = client.post("/v1/generations", json=request(seed=8), headers=h)
    assert r.status_code == 500 and r.json()["stage"] == "stamp"
    gid = r.json()["id"]
    row = generation_row(runtime, gid)
    assert row["status"] == "failed" and row["stage"] == "stamp"
    assert row["output_sha256"] is None
    with runtime.pool.connection() as conn:
        outputs = conn.execute("SELECT count(*) AS n FROM outputs WHERE id = %s", (gid,))
        assert outputs.fetchone()["n"] == 0
    kinds = audit_kinds(runtime)
    assert kinds.count("generation.completed") == 1 and kinds[-1] == "generation.failed"


def test_img2img_on_a_denied_artwork_is_blocked_before_the_model(gen, runtime, make_key, caplog):
    client, model = gen
    art = photo_like(11, (640, 480))
    work = register_artwork(client, auth(make_key("registry")), art, '{"img2img": "deny"}')
    h = auth(make_key("generate"))
    with caplog.at_level("INFO", logger="service.api.errors"):
        r = client.post(
            "/v1/generations",
            json=request(init_image=b64(edited_copy(art)), strength=0.6, user="bob"),
            headers=h,
        )
    assert r.status_code == 403, r.text
    said = [rec.getMessage() for rec in caplog.records if rec.name == "service.api.errors"]
    assert any("with 403" in m and r.json()["id"] in m and "blocked" in m for m in said), said
    body = r.json()
    assert body["status"] == "blocked"
    assert [x["code"] for x in body["reasons"]] == ["registered_artwork_denied"]
    assert body["matches"][0]["artwork_id"] == work["id"]
    assert body["matches"][0]["decision"] == "copy" and body["matches"][0]["img2img"] == "deny"
    assert model.call_count == 0  # never reached the model

    row = generation_row(runtime, body["id"])
    assert row["status"] == "blocked" and row["stage"] == "gate" and row["output_id"] is None
    assert row["mode"] == "img2img" and row["platform_user"] == "bob"
    assert row["inputs"][0]["role"] == "init" and len(row["inputs"][0]["pdq"]) == 64
    registry = next(d for d in row["decisions"] if d["check"] == "registry")
    assert registry["outcome"] == "block"
    assert registry["evidence"]["matches"][0]["artwork_id"] == work["id"]
    with runtime.pool.connection() as conn:
        hit = conn.execute("SELECT * FROM generation_matches").fetchone()
    assert str(hit["artwork_id"]) == work["id"] and hit["outcome"] == "blocked"
    assert "generation.blocked" in audit_kinds(runtime)
    got = client.get(f"/v1/generations/{body['id']}", headers=h).json()
    assert got["status"] == "blocked" and got["image_url"] is None


def test_a_collage_holding_a_denied_artwork_is_refused_as_an_init_image(gen, make_key):
    """A denied work in one cell of a 2x2 collage of other pictures: the gate finds it in its
    cell and refuses the request before the model."""
    from similarity.edits import grid

    client, model = gen
    art = photo_like(12, (640, 480))
    work = register_artwork(client, auth(make_key("registry")), art, '{"img2img": "deny"}')
    collage = grid(2, 2, [photo_like(13 + k) for k in range(3)])(art, np.random.default_rng(4))
    r = client.post(
        "/v1/generations",
        json=request(init_image=b64(encode(collage, quality=90)), strength=0.6),
        headers=auth(make_key("generate")),
    )
    assert r.status_code == 403, r.text
    body = r.json()
    assert [x["code"] for x in body["reasons"]] == ["registered_artwork_denied"]
    assert body["matches"][0]["artwork_id"] == work["id"]
    assert model.call_count == 0


def test_a_blocked_request_never_loads_the_model(client, runtime, make_key):
    """The gate runs before any model exists in the process: a blocked request loads none."""
    lazy = GenerationService.open(runtime)  # the configured model, loaded on first use
    client.app.state.generation = lazy
    try:
        art = photo_like(12, (640, 480))
        register_artwork(client, auth(make_key("registry")), art, '{"img2img": "deny"}')
        r = client.post(
            "/v1/generations",
            json=request(init_image=b64(edited_copy(art)), strength=0.6, user="eve"),
            headers=auth(make_key("generate")),
        )
        assert r.status_code == 403, r.text
        assert lazy.generator.loaded_info() is None  # nothing was loaded
        assert generation_row(runtime, r.json()["id"])["model"] is None
        model = client.get("/readyz").json()["generation"]["model"]
        assert model["loaded"] is False and model["is_default_tiny"] is True

        r = client.post("/v1/generations", json=request(), headers=auth(make_key("generate")))
        assert r.status_code == 201, r.text
        model = client.get("/readyz").json()["generation"]["model"]  # now with its identity
        assert model["loaded"] is True and model["is_default_tiny"] is True
        assert model["sha256"] == r.json()["model"]["sha256"] and "noise" in model["notice"]
    finally:
        lazy.close()


def test_a_licence_holder_may_rework_the_same_artwork(gen, runtime, make_key):
    client, model = gen
    reg = auth(make_key("registry"))
    art = photo_like(12, (640, 480))
    work = register_artwork(client, reg, art, '{"img2img": "deny"}')
    r = client.post(
        f"/v1/artworks/{work['id']}/licenses",
        json={"grantee": "carol", "scopes": ["img2img"]},
        headers=reg,
    )
    assert r.status_code == 201, r.text
    h = auth(make_key("generate"))
    init = edited_copy(art)
    denied = client.post(
        "/v1/generations", json=request(init_image=b64(init), strength=0.6, user="dave"), headers=h
    )
    assert denied.status_code == 403
    r = client.post(
        "/v1/generations", json=request(init_image=b64(init), strength=0.6, user="carol"), headers=h
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert model.call_count == 1 and model.calls[0].mode == "img2img"
    registry = next(d for d in body["decisions"] if d["check"] == "registry")
    assert registry["code"] == "registered_artwork_permitted"
    data = client.get(body["image_url"], headers=h).content
    report = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.digital_source_type.endswith("/compositeWithTrainedAlgorithmicMedia")
    assert [i.relationship for i in report.ingredients] == ["parentOf"]
    with runtime.pool.connection() as conn:
        rows = conn.execute("SELECT outcome FROM generation_matches").fetchall()
    outcomes = sorted(r["outcome"] for r in rows)
    assert outcomes == ["blocked", "licensed"]


def test_an_edge_map_of_a_denied_work_is_refused_as_a_control_image(gen, runtime, make_key):
    """The usual way to launder a composition: trace the work's edges, steer with them; the
    control image at the work's shape, or fitted to a square the three ways front ends do."""
    client, model = gen
    art = photo_like(16, (640, 480))
    work = register_artwork(client, auth(make_key("registry")), art, '{"img2img": "deny"}')
    h = auth(make_key("generate"))
    rng = np.random.default_rng(0)
    for edit, fit in [("canny_control", "stretched"), ("canny_control_square", "stretched"),
                      ("canny_control_padded", "padded"), ("canny_control_cropped", "cropped")]:
        edges = encode(EDITS_BY_NAME[edit].apply(art, rng), "PNG")
        r = client.post("/v1/generations", json=request(control_image=b64(edges)), headers=h)
        assert r.status_code == 403, (edit, r.text)
        body = r.json()
        assert [x["code"] for x in body["reasons"]] == ["registered_artwork_denied"]
        (found,) = body["matches"]
        assert found["artwork_id"] == work["id"] and found["decision"] == "copy"
        assert found["evidence"]["fired"] == ["lines"]
        assert found["evidence"]["lines"]["fit"] == fit, edit
    assert model.call_count == 0
    # the edge map of a picture nobody registered steers as before
    free = encode(EDITS_BY_NAME["canny_control"].apply(photo_like(17, (640, 480)), rng), "PNG")
    r = client.post("/v1/generations", json=request(control_image=b64(free)), headers=h)
    assert r.status_code == 201, r.text
    assert model.call_count == 1


def test_a_control_image_is_gated_then_steers_and_is_cited(gen, runtime, make_key):
    client, model = gen
    art = photo_like(14, (640, 480))
    work = register_artwork(client, auth(make_key("registry")), art, '{"img2img": "deny"}')
    h = auth(make_key("generate"))
    # A conditioning image is an input like any other: a copy of a denied work is blocked.
    r = client.post("/v1/generations", json=request(control_image=b64(edited_copy(art))), headers=h)
    assert r.status_code == 403, r.text
    body = r.json()
    assert [x["code"] for x in body["reasons"]] == ["registered_artwork_denied"]
    assert body["matches"][0]["artwork_id"] == work["id"]
    assert model.call_count == 0
    assert generation_row(runtime, body["id"])["inputs"][0]["role"] == "control"

    sketch = encode(photo_like(15, (320, 320)), "PNG")
    r = client.post(
        "/v1/generations",
        json=request(control_image=b64(sketch), control_scale=0.8, user="fay"),
        headers=h,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert model.call_count == 1
    sent = model.calls[0]
    assert sent.control_image is not None and sent.control_scale == 0.8
    row = generation_row(runtime, body["id"])
    assert row["model"]["controlnet"]["name"] == "chopmark-tiny-controlnet"
    assert row["model"]["controlnet"]["scale"] == 0.8
    assert [i["role"] for i in row["inputs"]] == ["control"]
    data = client.get(body["image_url"], headers=h).content
    report = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.digital_source_type.endswith("/trainedAlgorithmicMedia")
    assert [i.relationship for i in report.ingredients] == ["inputTo"]
    cited = report.generation
    assert cited["controlnet"]["sha256"] == row["model"]["controlnet"]["sha256"]
    assert cited["conditioning"][0]["sha256"] == row["inputs"][0]["sha256"]

    inpaint = request(init_image=b64(sketch), mask_image=b64(sketch), control_image=b64(sketch))
    refused = client.post("/v1/generations", json=inpaint, headers=h)
    assert refused.status_code == 422 and "inpainting" in refused.json()["detail"]


CONSENT_REFUSALS = {
    "cawg-notAllowed": LabelSet(training_mining={"cawg.ai_inference": "notAllowed"}),
    "cawg-constrained": LabelSet(training_mining={"cawg.ai_inference": "constrained"}),
    "iptc-prohibited": LabelSet(data_mining=DMI_PROHIBITED),
}


def test_consent_carried_by_the_input_blocks(gen, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    for case, labels in CONSENT_REFUSALS.items():
        data = encode_with_labels(photo_like(21, (320, 320)), "image/png", labels)
        assert read_labels(data).consent(), case  # the statement is really in the file
        r = client.post(
            "/v1/generations", json=request(init_image=b64(data), strength=0.5), headers=h
        )
        assert r.status_code == 403, (case, r.text)
        assert [x["code"] for x in r.json()["reasons"]] == ["input_consent_refused"], case
    assert model.call_count == 0


def test_our_own_output_may_be_reworked(gen, runtime, make_key):
    """chopmark's outputs say training is refused (IPTC DMI-PROHIBITED) but inference allowed."""
    client, _ = gen
    h = auth(make_key("generate"))
    first = client.post("/v1/generations", json=request(), headers=h).json()
    data = client.get(first["image_url"], headers=h).content
    assert read_labels(data).data_mining == DMI_PROHIBITED
    r = client.post(
        "/v1/generations", json=request(init_image=b64(data), strength=0.5, seed=3), headers=h
    )
    assert r.status_code == 201, r.text
    consent = next(d for d in r.json()["decisions"] if d["check"] == "consent")
    assert consent["code"] == "consent_allows"
    assert consent["evidence"]["manifest_state"] == "Trusted"


def test_a_check_that_cannot_run_blocks(gen, runtime, make_key, tmp_path):
    client, model = gen
    loaded = runtime.banks["artwork"]
    runtime.banks["artwork"] = BankIndex("artwork", runtime.pool, tmp_path)  # not loaded
    try:
        r = client.post(
            "/v1/generations",
            json=request(init_image=b64(encode(photo_like(31), "PNG")), strength=0.5),
            headers=auth(make_key("generate")),
        )
    finally:
        runtime.banks["artwork"] = loaded
    assert r.status_code == 403, r.text
    reasons = r.json()["reasons"]
    assert [(x["check"], x["code"]) for x in reasons] == [("registry", "check_failed")]
    assert "IndexNotReady" in reasons[0]["message"]
    assert model.call_count == 0


def _register_lora(client, admin, tiny_runner, tmp_path: Path, name: str, seed: int) -> dict:
    from generation.adapters import make_test_lora

    path = make_test_lora(tiny_runner.model.txt2img, tmp_path / f"{name}.safetensors", seed=seed)
    r = client.post(
        "/v1/adapters",
        data={"name": name},
        files={"file": (path.name, path.read_bytes(), "application/octet-stream")},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_adapters_are_hashed_logged_and_applied(gen, runtime, make_key, tiny_runner, tmp_path):
    client, model = gen
    adapter = _register_lora(client, auth(make_key("admin")), tiny_runner, tmp_path, "inkwash", 7)
    h = auth(make_key("generate"))
    plain = client.post("/v1/generations", json=request(seed=5), headers=h)
    styled = client.post(
        "/v1/generations",
        json=request(seed=5, adapters=[{"name": "inkwash", "scale": 0.8}]),
        headers=h,
    )
    assert plain.status_code == 201 and styled.status_code == 201, styled.text
    body = styled.json()
    assert (
        body["adapters"]
        == [
            {
                "name": "inkwash",  # and not where the server keeps the file
                "scale": 0.8,
                "sha256": adapter["sha256"],
                "autov2": adapter["sha256"][:10],
            }
        ]
    )
    row = generation_row(runtime, body["id"])
    assert row["adapters"][0]["sha256"] == adapter["sha256"]
    check = next(d for d in row["decisions"] if d["check"] == "adapter")
    assert check["code"] == "adapter_allowed" and check["evidence"]["autov2"] == adapter["autov2"]
    data = client.get(body["image_url"], headers=h).content
    report = read_manifest(data, "image/png", runtime.signing.trust_anchors_pem)
    assert report.generation["adapters"] == [
        {"name": "inkwash", "sha256": adapter["sha256"], "autov2": adapter["autov2"], "scale": 0.8}
    ]
    # applied: the raw pictures of the same seed differ with and without the adapter
    without, with_ = (np.asarray(r.image, np.int16) for r in model.results)
    assert np.abs(with_ - without).mean() > 2.0


def test_unregistered_and_blocked_adapters_are_refused(gen, make_key, tiny_runner, tmp_path):
    client, model = gen
    admin = auth(make_key("admin"))
    _register_lora(client, admin, tiny_runner, tmp_path, "copycat", 9)
    h = auth(make_key("generate"))
    r = client.post("/v1/generations", json=request(adapters=[{"name": "nobody"}]), headers=h)
    assert r.status_code == 403
    assert r.json()["reasons"][0]["code"] == "adapter_not_registered"
    assert "nobody" in r.json()["detail"]
    reg = auth(make_key("registry"))
    artist = client.post(
        "/v1/artists", json={"display_name": "Ana", "email": "ana@example.org"}, headers=reg
    ).json()
    claim = client.post(
        "/v1/adapters/copycat/claims",
        json={"artist_id": artist["id"], "reason": "trained on my portfolio"},
        headers=reg,
    )
    assert claim.status_code == 201, claim.text
    for body, status in (
        ({"artist_id": artist["id"], "reason": "trained on my portfolio "}, 409),  # the same
        ({"artist_id": artist["id"], "reason": "   "}, 422),
    ):
        again = client.post("/v1/adapters/copycat/claims", json=body, headers=reg)
        assert again.status_code == status, again.text
    decided = client.post(
        f"/v1/adapters/copycat/claims/{claim.json()['id']}/decision",
        json={"uphold": True},
        headers=admin,
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["adapter"]["status"] == "blocked"
    r = client.post("/v1/generations", json=request(adapters=[{"name": "copycat"}]), headers=h)
    assert r.status_code == 403
    reason = r.json()["reasons"][0]
    assert reason["code"] == "adapter_blocked" and "upheld" in reason["message"]
    assert model.call_count == 0


def test_async_generation_is_polled(gen, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    r = client.post("/v1/generations", json=request(**{"async": True}), headers=h)
    assert r.status_code == 202, r.text
    status_url = r.json()["status_url"]
    body = client.get(status_url, headers=h).json()  # the test client ran the queued work
    assert body["status"] == "completed" and body["image_url"]
    assert client.get(body["image_url"], headers=h).status_code == 200
    blocked = client.post(
        "/v1/generations", json=request(adapters=[{"name": "none"}], **{"async": True}), headers=h
    )
    assert blocked.status_code == 403 and model.call_count == 1


def _queued_elsewhere(runtime, key_name: str, lease: float, heartbeat: bool):
    """A generation queued by another process's store (its own worker id and lease)."""
    from uuid import uuid4

    from generation.gate import GateResult
    from generation.pipeline import GenerationRecord, GenerationRequest
    from service.genservice.records import GenerationStore

    with runtime.pool.connection() as conn:
        key_id = conn.execute("SELECT id FROM api_keys WHERE name = %s", (key_name,)).fetchone()
    store = GenerationStore(runtime.pool, runtime.audit, lease_seconds=lease, heartbeat=heartbeat)
    req = GenerationRequest(id=uuid4(), actor="other-process", prompt="p", api_key_id=key_id["id"])
    store.record(GenerationRecord(req, "queued", gate=GateResult([], [], [], [])))
    return store, req.id


def test_input_images_take_their_turn_in_the_image_work_lane(gen, make_key, monkeypatch):
    """Decoding and gating input images wait, like moderation checks, for a place in the
    process's image-work lane; a text-only request does not."""
    client, model = gen
    h = auth(make_key("generate"))
    pipeline = client.app.state.generation.pipeline
    gated: list[str] = []
    check = pipeline.check

    def watched(req):
        gated.append(req.mode)
        return check(req)

    monkeypatch.setattr(pipeline, "check", watched)
    work = client.app.state.image_work
    release = threading.Event()
    holders = [
        client.portal.start_task_soon(work.run, release.wait) for _ in range(work.status().workers)
    ]
    answers: dict[str, int] = {}

    def post(name: str, body: dict[str, Any]) -> None:
        answers[name] = client.post("/v1/generations", json=body, headers=h).status_code

    init = b64(encode(photo_like(41), "PNG"))
    image = threading.Thread(target=post, args=("img2img", request(init_image=init)))
    try:
        deadline = time.monotonic() + 30
        while work.status().busy < work.status().workers and time.monotonic() < deadline:
            time.sleep(0.01)
        assert work.status().busy == work.status().workers, "the lane is held"
        text = threading.Thread(target=post, args=("txt2img", request()))
        text.start()
        text.join(timeout=120)
        assert answers.get("txt2img") == 201, "a text-only request does not wait for the lane"
        image.start()
        time.sleep(0.5)
        assert gated == ["txt2img"] and "img2img" not in answers, "it waits for a place"
        assert work.status().waiting >= 1
    finally:
        release.set()
        for holder in holders:
            holder.result(timeout=30)
        if image.ident is not None:  # answered before the client closes, pass or fail
            image.join(timeout=120)
    assert answers.get("img2img") == 201 and gated == ["txt2img", "img2img"]
    assert model.call_count == 2


def _wait_for_lease_to_run_out(runtime, gid, within: float = 15.0) -> None:
    """Wait, on the database's clock, until the generation's lease has passed."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with runtime.pool.connection() as conn:
            row = conn.execute(
                "SELECT lease_expires_at < now() AS passed FROM generations WHERE id = %s", (gid,)
            ).fetchone()
        if row["passed"]:
            return
        time.sleep(0.1)
    raise AssertionError(f"the lease of {gid} did not run out within {within} s")


def test_a_generation_abandoned_by_a_dead_process_ends_as_interrupted(gen, runtime, make_key):
    client, _ = gen
    h = auth(make_key("generate", name="poller"))
    # a lease long enough that the first look surely falls inside it, even on a slow machine
    _, gid = _queued_elsewhere(runtime, "poller", lease=2.0, heartbeat=False)
    assert client.get(f"/v1/generations/{gid}", headers=h).json()["status"] == "queued"
    _wait_for_lease_to_run_out(runtime, gid)  # the other process died: nobody renews its lease
    body = client.get(f"/v1/generations/{gid}", headers=h).json()
    assert body["status"] == "failed"
    assert body["error"].startswith("interrupted") and body["finished_at"]
    with runtime.pool.connection() as conn:
        entry = conn.execute(
            "SELECT kind, entry FROM audit_log WHERE subject = %s", (f"generation:{gid}",)
        ).fetchone()
    assert entry["kind"] == "generation.failed"
    assert json.loads(bytes(entry["entry"]))["data"]["error"].startswith("interrupted")


def test_a_live_process_keeps_its_generations_leased(runtime, make_key):
    make_key("generate", name="keeper")
    store, gid = _queued_elsewhere(runtime, "keeper", lease=1.5, heartbeat=True)
    try:
        time.sleep(3.5)  # more than two leases: only the heartbeat (every 0.5 s) kept it alive
        with runtime.pool.connection() as conn:
            assert store.expire_abandoned(conn) == []
            row = conn.execute("SELECT status FROM generations WHERE id = %s", (gid,)).fetchone()
        assert row["status"] == "queued"
    finally:
        store.close()
    _wait_for_lease_to_run_out(runtime, gid)  # its process stopped renewing
    with runtime.pool.connection() as conn:
        assert store.expire_abandoned(conn) == [gid]


def test_training_source_copies_are_flagged_then_blocked(gen, runtime, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    first = client.post("/v1/generations", json=request(seed=77), headers=h).json()
    assert first["flags"] == []
    source = encode(model.results[0].image, "PNG")  # the raw picture joins a training set
    r = client.post(
        "/v1/sources",
        data={"dataset": "scrape-2024", "licence": "unknown"},
        files=[("files", ("s.png", source, "image/png"))],
        headers=auth(make_key("admin")),
    )
    assert r.status_code == 201, r.text
    again = client.post("/v1/generations", json=request(seed=77), headers=h)
    assert again.status_code == 201
    flags = again.json()["flags"]
    assert [f["code"] for f in flags] == ["likely_memorized_copy"]
    assert flags[0]["evidence"]["dataset"] == "scrape-2024"
    client.app.state.generation = GenerationService(runtime, model, screen_policy="block")
    blocked = client.post("/v1/generations", json=request(seed=77), headers=h)
    assert blocked.status_code == 403
    assert blocked.json()["stage"] == "screen"
    assert blocked.json()["reasons"][0]["code"] == "likely_memorized_copy"
    assert generation_row(runtime, blocked.json()["id"])["output_id"] is None


BAD_REQUESTS = {
    "too-small": (request(width=128, height=128), 422),
    "mask-without-init": (request(mask_image=b64(encode(photo_like(1, (256, 256)), "PNG"))), 422),
    "bad-base64": (request(init_image="not base64!"), 422),
    "not-an-image": (request(init_image=b64(b"GIF89a" + b"\0" * 20)), 415),
    "truncated": (request(init_image=b64(encode(photo_like(3, (256, 256)), "PNG")[:2000])), 422),
    "bmp": (request(init_image=b64(encode(photo_like(2, (300, 300)), "BMP"))), 415),
    "adapter-twice": (request(adapters=[{"name": "a"}, {"name": "a"}]), 422),
    "unknown-field": (request(sampler="euler"), 422),
    "unknown-scheduler": (request(scheduler="bogus"), 422),
    "prompts-too-long-together": (request(prompt="p" * 3000, negative_prompt="n" * 1500), 422),
    "empty-init": (request(init_image=""), 400),
    "empty-mask": (
        request(init_image=b64(encode(photo_like(4, (256, 256)), "PNG")), mask_image=""),
        400,
    ),
    "mask-of-another-size": (
        request(
            init_image=b64(encode(photo_like(5, (256, 256)), "PNG")),
            mask_image=b64(encode(photo_like(5, (320, 256)), "PNG")),
        ),
        422,
    ),
}


def test_bad_requests_are_refused_before_the_gate(gen, runtime, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    for case, (body, status) in BAD_REQUESTS.items():
        r = client.post("/v1/generations", json=body, headers=h)
        assert r.status_code == status, (case, r.text)
    assert model.call_count == 0
    with runtime.pool.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM generations").fetchone()["n"] == 0


def test_request_forms_clients_send_are_understood(gen, runtime, make_key):
    """MIME-wrapped base64, an A1111 sampler label in any case; the record keeps the canonical
    name, and the answers say when the default tiny model serves."""
    client, _ = gen
    h = auth(make_key("generate"))
    wrapped = base64.encodebytes(encode(photo_like(6, (256, 256)), "PNG")).decode()
    assert "\n" in wrapped
    body = request(init_image=wrapped, strength=0.5, scheduler=" Euler A ", user="alice")
    r = client.post("/v1/generations", json=body, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["parameters"]["scheduler"] == "euler_a"
    assert generation_row(runtime, r.json()["id"])["scheduler"] == "euler_a"
    queued = client.post("/v1/generations", json=request(**{"async": True}), headers=h)
    assert queued.status_code == 202 and "random weights" in queued.json()["model_notice"]


NEW_ROUTES = [
    ("post", "/v1/generations", "generate", {"json": {}}),
    ("get", "/v1/generations/00000000-0000-0000-0000-000000000000", "generate", {}),
    ("get", "/v1/generations/00000000-0000-0000-0000-000000000000/image", "generate", {}),
    ("post", "/v1/adapters", "admin", {"data": {"name": "x"}}),
    ("get", "/v1/adapters", "admin", {}),
    ("get", "/v1/adapters/x", "admin", {}),
    ("patch", "/v1/adapters/x", "admin", {"json": {"status": "blocked"}}),
    ("post", "/v1/adapters/x/claims", "registry", {"json": {}}),
    ("get", "/v1/adapters/x/claims", "registry", {}),
    (
        "post",
        "/v1/adapters/x/claims/00000000-0000-0000-0000-000000000000/decision",
        "admin",
        {"json": {"uphold": True}},
    ),
    ("post", "/v1/sources", "admin", {"data": {"dataset": "d"}}),
    ("get", "/v1/sources", "admin", {}),
]


def test_new_routes_refuse_missing_and_wrong_scope_keys(gen, make_key):
    client, _ = gen
    keys = {scope: auth(make_key(scope)) for scope in ("generate", "admin", "registry", "audit")}
    bad = auth("chm_deadbeef_not-a-real-key")
    for method, path, scope, kw in NEW_ROUTES:
        call = getattr(client, method)
        assert call(path, **kw).status_code == 401, (method, path)
        assert call(path, headers=bad, **kw).status_code == 401, (method, path)
        r = call(path, headers=keys["audit"], **kw)
        assert r.status_code == 403 and f"'{scope}'" in r.json()["detail"], (method, path)
        r = call(path, headers=keys[scope], **kw)
        assert r.status_code not in (401, 403), (method, path, r.text)


def test_openapi_states_the_new_routes_scopes(gen):
    client, _ = gen
    paths = client.get("/openapi.json").json()["paths"]
    for method, path, scope, _ in NEW_ROUTES:
        template = path.replace("00000000-0000-0000-0000-000000000000", "{x}")
        template = template.replace("/x", "/{name}")
        ops = [
            item[method]
            for p, item in paths.items()
            if method in item
            and p.count("/") == template.count("/")
            and all(
                a == b or b.startswith("{")
                for a, b in zip(template.split("/"), p.split("/"), strict=True)
            )
        ]
        assert ops and ops[0]["x-required-scope"] == scope, (method, path)


def test_a_stamp_key_reads_stamps_not_generation_records(gen, make_key):
    """A generation's record (prompt, platform user) is read under `generate`; the stamp routes
    answer 404 for it, as for any id that is not a stamp."""
    client, _ = gen
    made = client.post("/v1/generations", json=request(), headers=auth(make_key("generate")))
    assert made.status_code == 201, made.text
    gid = made.json()["id"]
    stamp_key = auth(make_key("stamp"))
    assert client.get(f"/v1/stamps/{gid}", headers=stamp_key).status_code == 404
    assert client.get(f"/v1/stamps/{gid}/image", headers=stamp_key).status_code == 404
    assert client.get(f"/v1/generations/{gid}", headers=stamp_key).status_code == 403


@pytest.mark.parametrize("how", ["request", "operator"])
def test_a_private_prompt_is_kept_nowhere_in_clear(gen, runtime, make_key, monkeypatch, how):
    """Asked for by the request, or by the operator for all (CHOPMARK_PROMPT_PRIVACY): the
    answer, the record and the audit log hold the prompt's SHA-256, never its words."""
    client, _ = gen
    words, negative = "a secret harbour at dawn", "secret blur"
    extra = {"prompt_private": True} if how == "request" else {}
    if how == "operator":
        monkeypatch.setattr(runtime.settings, "prompt_privacy", True)
    r = client.post(
        "/v1/generations",
        json=request(prompt=words, negative_prompt=negative, **extra),
        headers=auth(make_key("generate")),
    )
    assert r.status_code == 201, r.text
    assert words not in r.text and negative not in r.text
    row = generation_row(runtime, r.json()["id"])
    assert words not in str(row) and negative not in str(row) and row["prompt_private"]
    with runtime.pool.connection() as conn:
        entries = b"".join(bytes(e["entry"]) for e in conn.execute("SELECT entry FROM audit_log"))
    assert words.encode() not in entries and negative.encode() not in entries


def test_request_fields_are_taken_as_their_types_only(gen, make_key):
    client, model = gen
    h = auth(make_key("generate"))
    for bad in (
        {"steps": True},
        {"async": "yes"},
        {"adapters": [{"name": "x", "scale": "1"}]},
        {"prompt": "   "},
    ):
        r = client.post("/v1/generations", json=request(**bad), headers=h)
        assert r.status_code == 422, (bad, r.text)
    assert model.call_count == 0
    assert client.post("/v1/generations", json=request(guidance=7), headers=h).status_code == 201


def test_the_same_picture_made_twice_is_not_pinned_on_one_user(
    gen, runtime, make_key, settings, monkeypatch
):
    """The same prompt and seed for two users make the same picture. A copy that has lost its
    watermark and manifest matches both equally: moderation names neither as the generation,
    lists both; the file with its own manifest still names its own."""
    client, _ = gen
    h = auth(make_key("generate", "moderate"))
    made = {}
    for user in ("alice", "bob"):
        r = client.post("/v1/generations", json=request(user=user, seed=77), headers=h)
        assert r.status_code == 201, r.text
        made[user] = (r.json()["id"], client.get(r.json()["image_url"], headers=h).content)
    (a, _), (b, b_png) = made["alice"], made["bob"]

    pixels = Image.open(io.BytesIO(b_png)).convert("RGB")
    framed = Image.new("RGB", (pixels.width * 2, pixels.height * 2), (240, 240, 240))
    framed.paste(pixels, (pixels.width // 2, pixels.height // 2))
    r = client.post("/v1/moderation/check", files={"file": ("b.jpg", encode(framed))}, headers=h)
    assert r.status_code == 200, r.text
    res = r.json()
    assert not res["provenance"]["watermark"]["present"]
    ai = res["provenance"]["ai_generated"]
    assert ai["matched"] and ai["generation_id"] is None
    assert sorted(ai["generation_ids"]) == sorted([a, b])
    (why,) = [x for x in res["reasons"] if x["rule"] == "ai_ours_without_manifest"]
    assert "one of 2 generations" in why["message"]
    assert why["evidence"]["fingerprint_generation_id"] is None
    assert res["verdict"] == "review"

    from service.cli.provenance_cmds import verify_image

    monkeypatch.setenv("CHOPMARK_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CHOPMARK_DATA_DIR", str(settings.data_dir))
    record = verify_image(encode(framed))["record"]
    assert sorted([record["id"], *record["equally"]]) == sorted([a, b])

    r = client.post("/v1/moderation/check", files={"file": ("b.png", b_png)}, headers=h)
    ai = r.json()["provenance"]["ai_generated"]
    assert ai["generation_id"] == b and ai["generation_ids"] == [b]
