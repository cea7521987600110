import pytest
from PIL import Image

from provenance.c2pa_io import read_manifest, sign_image
from provenance.containers import UnsupportedFormat
from provenance.labels import (
    DMI_PROHIBITED_AIML,
    AigcLabel,
    LabelSet,
    a1111_parameters,
    autov2,
    data_mining_from_policy,
    encode_with_labels,
    parse_a1111_parameters,
    read_labels,
)
from provenance.manifest import TRAINED_ALGORITHMIC_MEDIA, GenerationFacts
from provenance.signer import FileSigner
from tests.support import encode

MODEL_SHA = "0123456789abcdef" * 4
LORA_SHA = "fedcba9876543210" * 4
POLICY = {
    "cawg.ai_inference": "allowed",
    "cawg.ai_generative_training": "notAllowed",
    "cawg.ai_training": "constrained",
    "cawg.data_mining": "allowed",
}


def _labels() -> LabelSet:
    return LabelSet(
        aigc=AigcLabel(content_producer="智绘平台 chopmark", produce_id="gen-42"),
        digital_source_type=TRAINED_ALGORITHMIC_MEDIA,
        parameters=a1111_parameters(
            prompt="a red fox, snow",
            negative_prompt="lowres, text",
            steps=25,
            sampler="DPM++ 2M",
            cfg_scale=6.5,
            seed=77,
            width=256,
            height=256,
            model_name="tiny-sd",
            model_sha256=MODEL_SHA,
            loras=[("ink", LORA_SHA), ("paper", MODEL_SHA)],
        ),
        data_mining=data_mining_from_policy(POLICY),
        training_mining=POLICY,
    )


@pytest.mark.parametrize("mime", ["image/png", "image/jpeg", "image/webp"])
def test_every_label_reads_back(picture: Image.Image, mime: str) -> None:
    data = encode_with_labels(picture, mime, _labels())
    labels = read_labels(data)
    assert labels.mime == mime and labels.errors == ()
    assert labels.aigc == {
        "Label": "1",
        "ContentProducer": "智绘平台 chopmark",
        "ProduceID": "gen-42",
        "ReservedCode1": "",
        "ContentPropagator": "",
        "PropagateID": "",
        "ReservedCode2": "",
    }
    assert labels.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert labels.data_mining == DMI_PROHIBITED_AIML
    assert labels.training_mining == POLICY
    params = labels.generation_parameters
    assert params is not None
    assert params.prompt == "a red fox, snow" and params.negative_prompt == "lowres, text"
    assert params.settings["Steps"] == "25" and params.settings["Seed"] == "77"
    assert params.settings["CFG scale"] == "6.5" and params.settings["Size"] == "256x256"
    assert params.settings["Model hash"] == MODEL_SHA[:10]
    assert params.lora_hashes() == {"ink": LORA_SHA[:10], "paper": MODEL_SHA[:10]}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "webp"])
def test_labels_survive_signing(
    picture: Image.Image, fmt: str, txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    labelled = encode_with_labels(picture, fmt, _labels())
    signed = sign_image(labelled, fmt, txt2img_facts, file_signer)
    labels = read_labels(signed.data)
    assert labels.c2pa_container
    assert labels.aigc is not None and labels.aigc["ProduceID"] == "gen-42"
    assert labels.generation_parameters is not None
    assert read_manifest(signed.data).state == "Valid"


def test_a1111_text_matches_the_community_format() -> None:
    text = a1111_parameters(
        prompt="castle",
        steps=20,
        sampler="Euler a",
        cfg_scale=7.0,
        seed=1,
        width=512,
        height=768,
        model_name="sd15",
        model_sha256=MODEL_SHA,
        loras=[("a", LORA_SHA)],
    )
    assert text == (
        "castle\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x768, "
        'Model hash: 0123456789, Model: sd15, Lora hashes: "a: fedcba9876"'
    )
    parsed = parse_a1111_parameters(text)
    assert parsed.prompt == "castle" and parsed.negative_prompt == ""
    assert parsed.settings["Sampler"] == "Euler a"


def test_autov2_is_the_first_ten_hex_digits() -> None:
    assert autov2(MODEL_SHA.upper()) == "0123456789"
    with pytest.raises(ValueError):
        autov2("abc")


def test_third_party_xmp_consent_is_read(picture: Image.Image) -> None:
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description rdf:about="" xmlns:plus="http://ns.useplus.org/ldf/xmp/1.0/" '
        b'xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
        b'digitalCapture">'
        b'<plus:DataMining rdf:resource="http://ns.useplus.org/ldf/vocab/DMI-PROHIBITED"/>'
        b"</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    labels = read_labels(encode(picture, "JPEG", xmp=xmp))
    assert labels.digital_source_type.endswith("/digitalCapture")
    assert labels.data_mining.endswith("DMI-PROHIBITED")
    consent = labels.consent()
    assert consent["cawg.ai_training"] == "notAllowed"
    assert consent["cawg.data_mining"] == "notAllowed"
    assert "cawg.ai_inference" not in consent


def test_consent_takes_the_most_restrictive_statement(picture: Image.Image) -> None:
    labels = read_labels(encode_with_labels(picture, "png", _labels()))
    consent = labels.consent()
    assert consent["cawg.ai_training"] == "notAllowed"  # constrained counts as not allowed
    assert consent["cawg.ai_generative_training"] == "notAllowed"
    assert consent["cawg.ai_inference"] == "allowed"


def test_hostile_or_broken_metadata_is_reported_not_raised(picture: Image.Image) -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>'
    )
    labels = read_labels(encode(picture, "WEBP", xmp=bomb))
    assert any(e.startswith("xmp") for e in labels.errors)

    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("AIGC", "{not json")
    labels = read_labels(encode(picture, "PNG", pnginfo=info))
    assert labels.aigc is None and any("AIGC" in e for e in labels.errors)

    with pytest.raises(UnsupportedFormat):
        read_labels(encode(Image.new("RGB", (8, 8)), "GIF"))
    assert read_labels(encode(picture, "PNG")[:200]).aigc is None


def _png_with_text_chunks(picture: Image.Image, chunks: list[bytes]) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        return struct.pack(">I", len(body)) + kind + body + crc

    png = encode(picture, "PNG")
    return png[:33] + b"".join(chunk(b"iTXt", body) for body in chunks) + png[33:]


def test_compressed_text_inflates_within_a_budget_and_only_by_png_s_method(
    picture: Image.Image,
) -> None:
    """Each chunk may hold a megabyte of zeros in a kilobyte: all of a file's text chunks
    together inflate to at most MAX_INFLATED_BYTES, a keyword seen once is not inflated again,
    and a compression method PNG does not define (Pillow skips such chunks) is not inflated."""
    import zlib

    from provenance.containers import MAX_INFLATED_BYTES, MAX_TEXT_BYTES, read_container

    zeros = zlib.compress(b"\x00" * MAX_TEXT_BYTES, 9)
    distinct = [f"k{i}".encode() + b"\x00\x01\x00\x00\x00" + zeros for i in range(40)]
    meta = read_container(_png_with_text_chunks(picture, distinct))
    read = sum(len(v) for v in meta.text.values())
    assert 0 < read <= MAX_INFLATED_BYTES and len(meta.text) < 40
    odd_method = b"odd\x00\x01\x01\x00\x00" + zlib.compress(b"hidden text")
    plain = b"Software\x00\x00\x00\x00\x00chopmark"
    meta = read_container(_png_with_text_chunks(picture, [odd_method, plain]))
    assert "odd" not in meta.text and meta.text["Software"] == "chopmark"
