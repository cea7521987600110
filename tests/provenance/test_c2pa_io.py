import io
import json
from dataclasses import dataclass

import c2pa
import numpy as np
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from PIL import Image

from provenance.c2pa_io import SignOptions, read_manifest, read_manifest_store, sign_image
from provenance.credentials import Credentials, load_private_key
from provenance.manifest import TRAINED_ALGORITHMIC_MEDIA, GenerationFacts
from provenance.signer import FileSigner, SigningError
from tests.provenance.assets import build_png, decode, png_chunks, replace_png_pixels
from tests.support import encode

FORMATS = [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")]


@dataclass
class KmsStyleSigner:
    """A signer outside the key-file path: holds only a signing function and returns DER."""

    certificate_chain_pem: str
    key: ec.EllipticCurvePrivateKey
    alg: str = "es256"
    tsa_url: str | None = None
    calls: int = 0

    def sign(self, data: bytes) -> bytes:
        self.calls += 1
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))


@pytest.mark.parametrize(("fmt", "mime"), FORMATS)
def test_signed_image_is_valid_and_trusted_with_our_root(
    picture: Image.Image,
    fmt: str,
    mime: str,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    signed = sign_image(encode(picture, fmt), mime, txt2img_facts, file_signer)
    assert signed.manifest_id.startswith("urn:c2pa:")
    assert signed.manifest_bytes[4:8] == b"jumb"

    plain = read_manifest(signed.data, mime)
    assert plain.state == "Valid"
    assert "signingCredential.untrusted" in plain.failure_codes

    report = read_manifest(signed.data, mime, dev_credentials.trust_anchors_pem)
    assert report.state == "Trusted", report.failure_codes
    assert report.manifest_id == signed.manifest_id
    assert report.digital_source_type == TRAINED_ALGORITHMIC_MEDIA
    assert report.signer is not None
    assert report.signer.common_name == "chopmark development signer"
    assert report.signer.issuer == "chopmark (development)"
    assert report.generation is not None
    assert report.generation["generation_id"] == "gen-0001"
    assert report.generation["prompt"] == txt2img_facts.prompt
    extension = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}[fmt]
    assert report.title == f"generation-gen-0001.{extension}"
    assert decode(signed.data).size == picture.size


def test_changed_pixels_make_the_manifest_invalid(
    picture: Image.Image,
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    signed = sign_image(png_bytes, "png", txt2img_facts, file_signer)
    pixels = np.asarray(picture).copy()
    pixels[100:110, 100:110] = 0
    tampered = replace_png_pixels(signed.data, Image.fromarray(pixels))
    assert any(c == b"caBX" for c, _ in png_chunks(tampered))

    report = read_manifest(tampered, "image/png", dev_credentials.trust_anchors_pem)
    assert report.state == "Invalid"
    assert "assertion.dataHash.mismatch" in report.failure_codes


def test_changed_jpeg_scan_data_is_invalid(
    picture: Image.Image,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    signed = sign_image(encode(picture, "JPEG"), "jpeg", txt2img_facts, file_signer).data
    at = len(signed) - 500
    tampered = signed[:at] + bytes([signed[at] ^ 0x55]) + signed[at + 1 :]
    assert read_manifest(tampered, None, dev_credentials.trust_anchors_pem).state == "Invalid"


def test_reencoding_after_signing_strips_the_manifest(
    png_bytes: bytes, txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    signed = sign_image(png_bytes, "png", txt2img_facts, file_signer)
    reencoded = encode(decode(signed.data), "PNG")
    assert read_manifest(reencoded).state == "Absent"
    assert read_manifest(png_bytes).state == "Absent"


def test_untrusted_ca_is_valid_but_not_trusted(
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    foreign_credentials: Credentials,
    dev_credentials: Credentials,
) -> None:
    signed = sign_image(
        png_bytes, "png", txt2img_facts, FileSigner.from_credentials(foreign_credentials)
    )
    report = read_manifest(signed.data, "png", dev_credentials.trust_anchors_pem)
    assert report.state == "Valid"
    assert "signingCredential.untrusted" in report.failure_codes
    assert read_manifest(signed.data, "png", foreign_credentials.trust_anchors_pem).state == (
        "Trusted"
    )


def test_our_manifest_resigned_by_another_ca_is_not_trusted(
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    foreign_credentials: Credentials,
    dev_credentials: Credentials,
) -> None:
    ours = sign_image(png_bytes, "png", txt2img_facts, file_signer)
    forged = sign_image(
        ours.data, "png", txt2img_facts, FileSigner.from_credentials(foreign_credentials)
    )
    report = read_manifest(forged.data, "png", dev_credentials.trust_anchors_pem)
    assert report.state == "Valid"
    assert report.manifest_id == forged.manifest_id != ours.manifest_id


def _garbled_png(signed: bytes, how: str) -> bytes:
    chunks = []
    for ctype, body in png_chunks(signed):
        if ctype == b"caBX":
            if how == "garbage":
                body = b"garbage!" * 300
            elif how == "truncated":
                body = body[: len(body) // 2]
            else:
                mid = len(body) // 2
                body = body[:mid] + bytes([body[mid] ^ 0xFF]) + body[mid + 1 :]
        chunks.append((ctype, body))
    return build_png(chunks)


@pytest.mark.parametrize("how", ["garbage", "truncated", "flipped"])
def test_malformed_png_manifest_is_invalid_not_a_crash(
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
    how: str,
) -> None:
    signed = sign_image(png_bytes, "png", txt2img_facts, file_signer).data
    report = read_manifest(_garbled_png(signed, how), "png", dev_credentials.trust_anchors_pem)
    assert report.state == "Invalid"
    assert report.error or report.failure_codes


@pytest.mark.parametrize("how", ["flip", "zeros"])
def test_corrupted_jpeg_app11_gives_a_clear_state(
    picture: Image.Image,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    how: str,
) -> None:
    signed = sign_image(encode(picture, "JPEG"), "jpeg", txt2img_facts, file_signer).data
    at = signed.index(b"\xff\xeb")
    length = int.from_bytes(signed[at + 2 : at + 4], "big")
    if how == "flip":
        mid = at + length // 2
        bad = signed[:mid] + bytes([signed[mid] ^ 0xFF]) + signed[mid + 1 :]
        expected = {"Invalid"}
    else:
        bad = signed[: at + 4] + bytes(length - 2) + signed[at + 2 + length :]
        expected = {"Invalid", "Absent"}  # zeroed: no JUMBF left to recognise
    report = read_manifest(bad, "image/jpeg")
    assert report.state in expected
    assert decode(bad).size == picture.size


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_assets_are_reported_not_raised(data: bytes) -> None:
    report = read_manifest(data, "image/png")
    assert report.state == "Error"
    assert report.error


def test_an_image_in_a_format_without_c2pa_embedding_is_absent_not_an_error() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 30)).save(buf, "BMP")
    for mime in ("image/bmp", None):  # named by the caller, or found from the bytes
        report = read_manifest(buf.getvalue(), mime)
        assert report.state == "Absent" and report.error is None
    # bytes that are no image at all, whatever the caller calls them, stay an error
    assert read_manifest(b"BM not really a bitmap", "image/bmp").state == "Error"


def test_detached_store_reads_with_and_without_the_asset(
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    dev_credentials: Credentials,
) -> None:
    signed = sign_image(png_bytes, "png", txt2img_facts, file_signer)
    anchors = dev_credentials.trust_anchors_pem
    alone = read_manifest_store(signed.manifest_bytes, anchors)
    assert alone.state == "Trusted" and not alone.asset_checked
    assert alone.manifest_id == signed.manifest_id
    assert "assertion.dataHash.mismatch" not in alone.failure_codes
    with_asset = read_manifest_store(signed.manifest_bytes, anchors, signed.data, "image/png")
    assert with_asset.state == "Trusted" and with_asset.asset_checked

    store = signed.manifest_bytes
    mid = len(store) // 2
    tampered = store[:mid] + bytes([store[mid] ^ 0xFF]) + store[mid + 1 :]
    assert read_manifest_store(tampered, anchors).state == "Invalid"
    assert read_manifest_store(b"\x00" * 64, anchors).state == "Invalid"


def test_a_callback_signer_replaces_the_key_file(
    png_bytes: bytes, txt2img_facts: GenerationFacts, dev_credentials: Credentials
) -> None:
    key = load_private_key(dev_credentials.private_key_pem)
    kms = KmsStyleSigner(dev_credentials.chain_pem, key)
    signed = sign_image(png_bytes, "png", txt2img_facts, kms)
    assert kms.calls == 1
    assert read_manifest(signed.data, "png", dev_credentials.trust_anchors_pem).state == "Trusted"


def test_a_failing_signer_raises_its_own_error(
    png_bytes: bytes, txt2img_facts: GenerationFacts, dev_credentials: Credentials
) -> None:
    class DownSigner(KmsStyleSigner):
        def sign(self, data: bytes) -> bytes:
            raise ConnectionError("KMS unreachable")

    down = DownSigner(dev_credentials.chain_pem, load_private_key(dev_credentials.private_key_pem))
    with pytest.raises(SigningError, match="KMS unreachable"):
        sign_image(png_bytes, "png", txt2img_facts, down)


def test_thumbnail_can_be_left_out(
    png_bytes: bytes, txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    small = sign_image(png_bytes, "png", txt2img_facts, file_signer, SignOptions(None))
    with_thumb = sign_image(png_bytes, "png", txt2img_facts, file_signer)
    assert len(small.manifest_bytes) < len(with_thumb.manifest_bytes)
    assert read_manifest(small.data).state == "Valid"


@pytest.mark.parametrize("given_pixels", [True, False])
def test_claim_thumbnail_shows_the_signed_picture(
    picture: Image.Image,
    png_bytes: bytes,
    txt2img_facts: GenerationFacts,
    file_signer: FileSigner,
    given_pixels: bool,
) -> None:
    pixels = picture if given_pixels else None
    signed = sign_image(png_bytes, "png", txt2img_facts, file_signer, pixels=pixels)
    reader = c2pa.Reader("image/png", io.BytesIO(signed.data))
    with reader:
        store = json.loads(reader.json())
        manifest = store["manifests"][store["active_manifest"]]
        assert manifest["thumbnail"]["format"] == "image/jpeg"
        out = io.BytesIO()
        reader.resource_to_stream(manifest["thumbnail"]["identifier"], out)
    thumb = Image.open(io.BytesIO(out.getvalue())).convert("RGB")
    assert max(thumb.size) == 256
    small = np.asarray(picture.convert("RGB").resize(thumb.size), dtype=np.float32)
    assert np.abs(np.asarray(thumb, dtype=np.float32) - small).mean() < 12


def test_unsupported_output_format_is_refused(
    txt2img_facts: GenerationFacts, file_signer: FileSigner
) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        sign_image(io.BytesIO().getvalue(), "image/gif", txt2img_facts, file_signer)
