import dataclasses
import hashlib

import pytest
from PIL import Image

from provenance.c2pa_io import read_manifest, sign_image
from provenance.credentials import Credentials
from provenance.manifest import (
    COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
    TRAINED_ALGORITHMIC_MEDIA,
    AdapterFact,
    GenerationFacts,
    ParentImage,
    build_manifest,
    decode_soft_binding_value,
    encode_soft_binding_value,
)
from provenance.signer import FileSigner
from provenance.watermark import payload_to_hex
from tests.support import encode, photo_like


def _assertion(definition: dict, label: str) -> dict:
    return next(a["data"] for a in definition["assertions"] if a["label"] == label)


def test_txt2img_definition_has_the_required_parts(txt2img_facts: GenerationFacts) -> None:
    spec = build_manifest(txt2img_facts)
    actions = _assertion(spec.definition, "c2pa.actions.v2")["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert actions[0]["softwareAgent"]["name"] == "chopmark"
    assert [a["action"] for a in actions] == ["c2pa.created", "c2pa.watermarked"]
    binding = _assertion(spec.definition, "c2pa.soft-binding")
    assert binding == {
        "alg": "org.chopmark.test",
        "blocks": [{"scope": {}, "value": "00000000002a"}],
    }
    entries = _assertion(spec.definition, "cawg.training-mining")["entries"]
    assert set(entries) == {
        "cawg.ai_inference",
        "cawg.ai_generative_training",
        "cawg.ai_training",
        "cawg.data_mining",
    }
    assert all(e["use"] in ("allowed", "notAllowed", "constrained") for e in entries.values())
    generation = _assertion(spec.definition, "org.chopmark.generation")
    assert generation["model"] == {"name": "tiny-sd", "sha256": "ab" * 32, "autov2": "ab" * 5}
    assert generation["seed"] == 1234 and generation["platform_user"] == "user-7"
    assert spec.ingredients == ()


def test_img2img_is_composite_with_a_parent_ingredient(
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
    png_bytes: bytes,
) -> None:
    parent = encode(photo_like(3, (320, 240)), "JPEG")
    facts = dataclasses.replace(
        txt2img_facts,
        kind="img2img",
        parent=ParentImage(parent, "image/jpeg", "init.jpg"),
        adapters=(AdapterFact("inkwash", "cd" * 32, 0.7),),
    )
    signed = sign_image(png_bytes, "png", facts, file_signer)
    report = read_manifest(signed.data, "png", dev_credentials.trust_anchors_pem)
    assert report.state == "Trusted", report.failure_codes
    assert report.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert report.actions[0]["action"] == "c2pa.created"
    assert [(i.title, i.relationship) for i in report.ingredients] == [("init.jpg", "parentOf")]
    assert report.generation is not None
    assert report.generation["adapters"][0]["autov2"] == "cd" * 5
    assert report.generation["adapters"][0]["scale"] == pytest.approx(0.7)


def test_inpaint_is_composite_too(txt2img_facts: GenerationFacts) -> None:
    parent = ParentImage(encode(Image.new("RGB", (8, 8)), "PNG"), "png")
    facts = dataclasses.replace(txt2img_facts, kind="inpaint", parent=parent)
    assert facts.digital_source_type == COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
    assert build_manifest(facts).ingredients[0].definition["relationship"] == "parentOf"


def test_private_prompt_is_stored_as_its_hash_only(
    txt2img_facts: GenerationFacts, file_signer: FileSigner, png_bytes: bytes
) -> None:
    facts = dataclasses.replace(txt2img_facts, prompt_private=True)
    signed = sign_image(png_bytes, "png", facts, file_signer)
    generation = read_manifest(signed.data).generation
    assert generation is not None
    assert "prompt" not in generation and "negative_prompt" not in generation
    expected = hashlib.sha256(txt2img_facts.prompt.encode()).hexdigest()
    assert generation["prompt_sha256"] == expected
    assert generation["prompt_private"] is True
    assert txt2img_facts.prompt.encode() not in signed.data
    assert b"blurry" not in signed.manifest_bytes


def test_bad_facts_are_refused(txt2img_facts: GenerationFacts) -> None:
    with pytest.raises(ValueError, match="input image"):
        dataclasses.replace(txt2img_facts, kind="img2img")
    with pytest.raises(ValueError, match="kind"):
        dataclasses.replace(txt2img_facts, kind="txt2video")
    with pytest.raises(ValueError, match="training-mining"):
        dataclasses.replace(txt2img_facts, training_mining={"cawg.ai_training": "maybe"})


def test_soft_binding_value_matches_the_watermark_form() -> None:
    for payload in (0, 42, (1 << 48) - 1):
        value = encode_soft_binding_value(payload)
        assert value == payload_to_hex(payload)
        assert decode_soft_binding_value(value) == payload
    with pytest.raises(ValueError):
        encode_soft_binding_value(1 << 48)
