import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from provenance.c2pa_io import read_manifest
from provenance.credentials import Credentials
from provenance.labels import read_labels
from provenance.manifest import GenerationFacts
from provenance.signer import FileSigner
from provenance.stamp import LabelOptions, StampError, stamp_image
from tests.provenance.assets import decode


@dataclass(frozen=True)
class TrivialReading:
    present: bool
    payload: int | None


class TestOnlyLsbWatermarker:
    """Test-only stand-in: the payload in the blue LSBs of the first 48 pixels. Not robust at all;
    it exists so these tests can see the stamping order."""

    alg = "org.chopmark.test-only-lsb"
    payload_bits = 48

    def embed(self, image: Image.Image, payload: int) -> Image.Image:
        pixels = np.asarray(image.convert("RGB")).copy()
        flat = pixels.reshape(-1, 3)
        bits = [(payload >> (47 - i)) & 1 for i in range(48)]
        flat[:48, 2] = (flat[:48, 2] & 0xFE) | np.array(bits, dtype=np.uint8)
        return Image.fromarray(pixels)

    def detect(self, image: Image.Image) -> TrivialReading:
        flat = np.asarray(image.convert("RGB")).reshape(-1, 3)
        payload = 0
        for bit in flat[:48, 2] & 1:
            payload = (payload << 1) | int(bit)
        return TrivialReading(payload != 0, payload or None)


PAYLOAD = 0xC0FFEE1234


def test_stamp_watermarks_labels_and_signs(
    picture: Image.Image,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    wm = TestOnlyLsbWatermarker()
    stamped = stamp_image(
        picture,
        txt2img_facts,
        wm,
        file_signer,
        payload=PAYLOAD,
        label_options=LabelOptions(a1111_parameters=True),
        verify_watermark=True,
    )
    assert stamped.watermark_verified is True
    assert stamped.sha256 == hashlib.sha256(stamped.data).hexdigest()
    assert stamped.watermark_value == f"{PAYLOAD:012x}"

    # Pixels of the signed file are exactly the watermarked pixels: nothing re-encoded after.
    assert np.array_equal(np.asarray(decode(stamped.data)), np.asarray(wm.embed(picture, PAYLOAD)))
    assert wm.detect(decode(stamped.data)).payload == PAYLOAD

    report = read_manifest(stamped.data, "png", dev_credentials.trust_anchors_pem)
    assert report.state == "Trusted"
    assert report.manifest_id == stamped.manifest_id
    assert [(b.alg, b.value) for b in report.soft_bindings] == [(wm.alg, stamped.watermark_value)]
    assert [a["action"] for a in report.actions] == ["c2pa.created", "c2pa.watermarked"]

    labels = read_labels(stamped.data)
    assert labels.aigc is not None
    assert labels.aigc["ProduceID"] == "gen-0001"
    assert labels.aigc["ReservedCode1"] == stamped.manifest_id
    assert labels.digital_source_type == report.digital_source_type
    assert labels.generation_parameters is not None
    assert labels.generation_parameters.prompt == txt2img_facts.prompt


def test_private_prompt_stays_out_of_the_file(
    picture: Image.Image, txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    facts = dataclasses.replace(txt2img_facts, prompt_private=True)
    stamped = stamp_image(
        picture,
        facts,
        TestOnlyLsbWatermarker(),
        file_signer,
        payload=PAYLOAD,
        output_format="webp",
        label_options=LabelOptions(a1111_parameters=True),
    )
    assert b"lighthouse" not in stamped.data
    labels = read_labels(stamped.data)
    assert labels.generation_parameters is not None
    assert labels.generation_parameters.prompt == ""
    assert labels.generation_parameters.settings["Seed"] == "1234"
    assert read_manifest(stamped.data).state == "Valid"


def test_a_watermark_lost_in_encoding_stops_the_stamp(
    picture: Image.Image, txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    with pytest.raises(StampError, match="does not read back"):
        stamp_image(
            picture,
            txt2img_facts,
            TestOnlyLsbWatermarker(),
            file_signer,
            payload=PAYLOAD,
            output_format="jpeg",
            verify_watermark=True,
        )


def test_stamp_with_the_project_watermark(
    picture: Image.Image,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    from provenance.watermark import default_watermarker, payload_to_hex

    wm = default_watermarker()
    stamped = stamp_image(
        picture,
        txt2img_facts,
        wm,
        file_signer,
        payload=PAYLOAD,
        output_format="jpeg",
        verify_watermark=True,
    )
    assert stamped.watermark_verified is True
    report = read_manifest(stamped.data, "jpeg", dev_credentials.trust_anchors_pem)
    assert report.state == "Trusted"
    assert [(b.alg, b.value) for b in report.soft_bindings] == [(wm.alg, payload_to_hex(PAYLOAD))]
