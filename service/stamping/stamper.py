"""The stamp step shared by /v1/stamps and generation: watermark, labels, signed manifest, then
the record (manifest, watermark payload, fingerprints) in Postgres and the bytes in the blob store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

from PIL import Image

from provenance.manifest import GenerationFacts, generation_assertion_data
from provenance.stamp import LabelOptions, StampedImage, stamp_image
from service.stamping.store import OutputRecord
from similarity import SIGNALS_VERSION, compute_signals, decode_image

if TYPE_CHECKING:
    from service.runtime import Runtime

_MAX_PAYLOAD_TRIES = 8


@dataclass(frozen=True)
class StampResult:
    record: OutputRecord
    stamped: StampedImage
    watermark_verified: bool


def facts_json(facts: GenerationFacts) -> dict:
    """What the record keeps of the facts: the manifest's own assertion (private prompts hashed)."""
    data = generation_assertion_data(facts)
    if facts.parent is not None:
        data["parent"] = {
            "sha256": hashlib.sha256(facts.parent.data).hexdigest(),
            "mime": facts.parent.mime,
        }
    return data


def new_payload(rt: Runtime, bits: int) -> int:
    with rt.pool.connection() as conn:
        for _ in range(_MAX_PAYLOAD_TRIES):
            payload = secrets.randbits(bits)
            if payload and not rt.outputs.payload_taken(conn, payload):
                return payload
    raise RuntimeError("could not find a free watermark payload")


def stamp_and_record(
    rt: Runtime,
    actor: str,
    image: Image.Image,
    facts: GenerationFacts,
    *,
    origin: str,
    output_id: UUID | None = None,
    output_format: str | None = None,
    audit_extra: dict | None = None,
) -> StampResult:
    """Blocking: run it off the event loop."""
    settings = rt.settings
    watermarker = rt.watermarker
    output_id = output_id or uuid4()
    private = facts.prompt_private or settings.prompt_privacy
    facts = dataclasses.replace(facts, generation_id=str(output_id), prompt_private=private)
    payload = new_payload(rt, watermarker.payload_bits)
    stamped = stamp_image(
        image,
        facts,
        watermarker,
        rt.signing.signer,
        payload,
        output_format=output_format or settings.output_format,
        label_options=LabelOptions(a1111_parameters=settings.write_parameters),
    )
    # The record keeps the fingerprints of what was emitted, decoded as any recipient would.
    decoded = decode_image(stamped.data, target_side=None)
    reading = watermarker.detect(decoded.image)
    verified = bool(reading.present and reading.payload == payload)
    signals = compute_signals(decoded)
    rt.blobs.put(stamped.data)
    with rt.pool.connection() as conn:
        record = rt.outputs.insert(
            conn,
            actor,
            output_id=output_id,
            origin=origin,
            kind=facts.kind,
            platform_user=facts.platform_user,
            facts=facts_json(facts),
            manifest_id=stamped.manifest_id,
            manifest_bytes=stamped.manifest_bytes,
            watermark_alg=stamped.watermark_alg,
            watermark_payload=payload,
            watermark_value=stamped.watermark_value,
            watermark_verified=verified,
            sha256=stamped.sha256,
            media_type=stamped.mime,
            width=decoded.width,
            height=decoded.height,
            signals={**signals.pack(), "signals_version": SIGNALS_VERSION},
            audit_extra=audit_extra,
        )
    rt.banks["output"].refresh()
    return StampResult(record, stamped, verified)
