"""Stamp a generated image: watermark the pixels, encode with labels, then sign (always last)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image

from provenance.c2pa_io import SignOptions, sign_image
from provenance.containers import normalize_mime
from provenance.labels import (
    AigcLabel,
    LabelSet,
    a1111_parameters,
    data_mining_from_policy,
    encode_with_labels,
)
from provenance.manifest import (
    GenerationFacts,
    ManifestSpec,
    build_manifest,
    encode_soft_binding_value,
)
from provenance.signer import Signer

if TYPE_CHECKING:
    from provenance.watermark import Watermarker


class StampError(Exception):
    """The stamped image failed a check made before signing."""


@dataclass(frozen=True)
class LabelOptions:
    """Which labels go into the file. The A1111 ``parameters`` text is opt-in; with a private
    prompt it carries no prompt lines."""

    aigc: bool = True
    content_producer: str = "chopmark"
    content_propagator: str = ""
    propagate_id: str = ""
    digital_source_type: bool = True
    consent: bool = True
    a1111_parameters: bool = False


@dataclass(frozen=True)
class StampedImage:
    data: bytes
    mime: str
    manifest_id: str
    manifest_bytes: bytes
    watermark_alg: str
    watermark_payload: int
    watermark_value: str
    sha256: str
    watermark_verified: bool | None = None


@dataclass(frozen=True)
class EncodedStamp:
    """A watermarked, labelled file, not yet signed. ``marked`` holds the watermarked pixels;
    for a lossless format they are exactly what the file decodes to."""

    marked: Image.Image
    encoded: bytes
    mime: str
    spec: ManifestSpec
    payload: int
    watermark_alg: str
    watermark_value: str

    @property
    def lossless(self) -> bool:
        return self.mime == "image/png"


def watermark_and_encode(
    image: Image.Image,
    facts: GenerationFacts,
    watermarker: Watermarker,
    payload: int,
    output_format: str = "png",
    label_options: LabelOptions | None = None,
    quality: int = 95,
    on_marked: Callable[[Image.Image], object] | None = None,
) -> EncodedStamp:
    """The first half of the stamp: watermark ``payload`` into ``image``, encode with labels.
    ``on_marked`` is called with the watermarked pixels before they are encoded (a caller
    starts its checks of a lossless file's pixels there)."""
    mime = normalize_mime(output_format)
    label_options = label_options or LabelOptions()
    value = encode_soft_binding_value(payload, watermarker.payload_bits)
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    marked = watermarker.embed(rgb, payload)
    if on_marked is not None:
        on_marked(marked)
    facts = dataclasses.replace(
        facts,
        watermark_alg=watermarker.alg,
        watermark_value=value,
        width=facts.width or marked.width,
        height=facts.height or marked.height,
    )
    spec = build_manifest(facts)
    labels = labels_for(facts, label_options, spec.label)
    encoded = encode_with_labels(marked, mime, labels, quality)
    return EncodedStamp(marked, encoded, mime, spec, payload, watermarker.alg, value)


def sign_encoded(
    stamp: EncodedStamp,
    signer: Signer,
    sign_options: SignOptions | None = None,
    watermark_verified: bool | None = None,
) -> StampedImage:
    """The second half: sign the encoded file (always last; the signed bytes are final)."""
    pixels = stamp.marked if stamp.lossless else None
    signed = sign_image(stamp.encoded, stamp.mime, stamp.spec, signer, sign_options, pixels)
    return StampedImage(
        data=signed.data,
        mime=stamp.mime,
        manifest_id=signed.manifest_id,
        manifest_bytes=signed.manifest_bytes,
        watermark_alg=stamp.watermark_alg,
        watermark_payload=stamp.payload,
        watermark_value=stamp.watermark_value,
        sha256=hashlib.sha256(signed.data).hexdigest(),
        watermark_verified=watermark_verified,
    )


def emitted_pixels(stamp: EncodedStamp) -> Image.Image:
    """What a recipient of the file decodes: the marked pixels themselves for PNG, else the
    decoded file (signing does not touch the pixels)."""
    if stamp.lossless:
        return stamp.marked
    with Image.open(io.BytesIO(stamp.encoded)) as decoded:
        return decoded.convert("RGB")


def stamp_image(
    image: Image.Image,
    facts: GenerationFacts,
    watermarker: Watermarker,
    signer: Signer,
    payload: int,
    output_format: str = "png",
    label_options: LabelOptions | None = None,
    sign_options: SignOptions | None = None,
    quality: int = 95,
    verify_watermark: bool = False,
) -> StampedImage:
    """Watermark ``payload`` into ``image``, encode with labels, sign; the signed bytes are final.

    ``verify_watermark`` checks the payload reads back from the encoded file's pixels before
    signing (raises :class:`StampError` if not).
    """
    stamp = watermark_and_encode(
        image, facts, watermarker, payload, output_format, label_options, quality
    )
    verified = None
    if verify_watermark:
        reading = watermarker.detect(emitted_pixels(stamp))
        verified = bool(reading.present and reading.payload == payload)
        if not verified:
            raise StampError(f"the {watermarker.alg} watermark does not read back after encoding")
    return sign_encoded(stamp, signer, sign_options, verified)


def labels_for(facts: GenerationFacts, options: LabelOptions, manifest_id: str) -> LabelSet:
    """The labels for one generation. The AIGC ``ReservedCode1`` names the C2PA manifest."""
    aigc = None
    if options.aigc:
        aigc = AigcLabel(
            content_producer=options.content_producer,
            produce_id=facts.generation_id,
            reserved_code1=manifest_id,
            content_propagator=options.content_propagator,
            propagate_id=options.propagate_id,
        )
    parameters = None
    if options.a1111_parameters:
        private = facts.prompt_private
        parameters = a1111_parameters(
            prompt="" if private else facts.prompt or "",
            negative_prompt=None if private else facts.negative_prompt,
            steps=facts.steps,
            sampler=facts.sampler_label or facts.sampler,
            cfg_scale=facts.guidance,
            seed=facts.seed,
            width=facts.width,
            height=facts.height,
            model_name=facts.model_name,
            model_sha256=facts.model_sha256,
            loras=[(a.name, a.sha256) for a in facts.adapters],
            denoising_strength=facts.strength,
        )
    policy = dict(facts.training_mining) if options.consent else None
    return LabelSet(
        aigc=aigc,
        digital_source_type=facts.digital_source_type if options.digital_source_type else None,
        parameters=parameters,
        data_mining=data_mining_from_policy(policy) if policy else None,
        training_mining=policy or None,
    )
