"""Stamping images made elsewhere: watermark, labels, a signed C2PA manifest. Scope: `stamp`."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provenance.manifest import AdapterFact, GenerationFacts, ParentImage
from provenance.watermark import WatermarkReading
from service.api.deps import ImageWorkDep, RuntimeDep, StampKey, scope_doc
from service.api.schemas import ErrorBody
from service.api.text import FreeText, OneLine, RequestModel, StorableText
from service.api.uploads import read_upload, single_parts
from service.auth.scopes import Scope
from service.genservice.backends import RuntimeArtworkRegistry
from service.genservice.inputs import decode_input
from service.runtime import Runtime
from service.stamping.resolve import read_watermark, resolve_with_signals
from service.stamping.stamper import OutputTooLarge, stamp_and_record
from service.stamping.store import OutputRecord
from similarity import DecodedImage, ImageSignals, compute_signals, decode_image

router = APIRouter(prefix="/v1/stamps", tags=["provenance"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
Use = Literal["allowed", "notAllowed", "constrained"]
_SHA256 = r"^[0-9a-fA-F]{64}$"


class AdapterIn(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, OneLine] = Field(min_length=1, max_length=200)
    sha256: str = Field(pattern=_SHA256)
    scale: float = Field(default=1.0, ge=-10, le=10)


class StampMetadata(RequestModel):
    """What the platform knows about how the image was made."""

    # Taken as their JSON types: true is not a seed, "5" not a step count.
    model_config = ConfigDict(extra="forbid", strict=True)

    generator: Annotated[str, OneLine] = Field(
        min_length=1, max_length=200, description="the software that made it"
    )
    generator_version: Annotated[str | None, OneLine] = Field(default=None, max_length=100)
    model_name: Annotated[str, OneLine] = Field(min_length=1, max_length=300)
    model_hash: str | None = Field(default=None, pattern=_SHA256)
    prompt: Annotated[str | None, FreeText] = Field(default=None, max_length=20_000)
    negative_prompt: Annotated[str | None, FreeText] = Field(default=None, max_length=20_000)
    prompt_private: bool = Field(default=False, description="record only the prompt's SHA-256")
    seed: int | None = None
    steps: int | None = Field(default=None, ge=1, le=1000)
    guidance: float | None = None
    sampler: Annotated[str | None, OneLine] = Field(default=None, max_length=100)
    adapters: list[AdapterIn] = Field(default_factory=list, max_length=50)
    platform_user: Annotated[str | None, OneLine] = Field(default=None, max_length=200)
    input_was_image: bool = Field(
        default=False, description="img2img or inpainting: send the input as the `parent` file"
    )
    training_mining: (
        dict[
            Literal[
                "cawg.ai_inference",
                "cawg.ai_generative_training",
                "cawg.ai_training",
                "cawg.data_mining",
            ],
            Use,
        ]
        | None
    ) = None


class WatermarkInfo(BaseModel):
    alg: str
    value: str
    verified: bool = Field(description="the watermark read back from the emitted bytes")


class StampPublic(BaseModel):
    id: UUID
    manifest_id: str
    watermark: WatermarkInfo
    image_url: str
    sha256: str
    media_type: str
    width: int
    height: int
    kind: str
    platform_user: str | None
    created_at: datetime
    facts: dict[str, Any]

    @classmethod
    def of(cls, r: OutputRecord) -> StampPublic:
        v = r.watermark_verified
        return cls(
            id=r.id,
            manifest_id=r.manifest_id,
            watermark=WatermarkInfo(alg=r.watermark_alg, value=r.watermark_value, verified=v),
            image_url=f"/v1/stamps/{r.id}/image",
            sha256=r.sha256,
            media_type=r.media_type,
            width=r.width,
            height=r.height,
            kind=r.kind,
            platform_user=r.platform_user,
            created_at=r.created_at,
            facts=r.facts,
        )


def parse_metadata(raw: str) -> StampMetadata:
    try:
        return StampMetadata.model_validate(json.loads(raw))
    except json.JSONDecodeError as exc:
        raise HTTPException(422, f"metadata is not valid JSON: {exc.msg}") from None
    except RecursionError:
        raise HTTPException(422, "metadata is nested too deeply") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'metadata'}: {e['msg']}" for e in exc.errors()
        )
        raise HTTPException(422, f"invalid metadata: {problems}") from None


def to_facts(meta: StampMetadata, parent: ParentImage | None) -> GenerationFacts:
    kwargs: dict[str, Any] = {}
    if meta.training_mining is not None:
        kwargs["training_mining"] = dict(meta.training_mining)
    return GenerationFacts(
        generation_id="pending",
        kind="img2img" if meta.input_was_image else "external",
        model_name=meta.model_name,
        model_sha256=meta.model_hash.lower() if meta.model_hash else None,
        software_agent=meta.generator,
        software_version=meta.generator_version or "unknown",
        adapters=tuple(AdapterFact(a.name, a.sha256.lower(), a.scale) for a in meta.adapters),
        prompt=meta.prompt,
        negative_prompt=meta.negative_prompt,
        prompt_private=meta.prompt_private,
        seed=meta.seed,
        steps=meta.steps,
        guidance=meta.guidance,
        sampler=meta.sampler,
        platform_user=meta.platform_user,
        parent=parent,
        **kwargs,
    )


@router.post(
    "",
    dependencies=[single_parts("file", "metadata", "parent", "format")],
    status_code=status.HTTP_201_CREATED,
    response_model=StampPublic,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.stamp),
    summary="Watermark, label and sign an image made elsewhere (scope: stamp)",
)
async def create_stamp(
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: StampKey,
    file: Annotated[UploadFile, File(description="the generated image")],
    metadata: Annotated[str, Form(description="JSON: see StampMetadata"), StorableText],
    parent: Annotated[UploadFile | None, File(description="the input image, for img2img")] = None,
    format: Annotated[Literal["png", "jpeg", "webp"] | None, Form()] = None,
) -> StampPublic:
    meta = parse_metadata(metadata)
    data = await read_upload(file, rt.settings.max_upload_bytes)
    parent_bytes = await read_upload(parent, rt.settings.max_upload_bytes) if parent else None
    if parent_bytes is not None and not parent_bytes:
        raise HTTPException(400, "The `parent` upload is empty (0 bytes).")
    if meta.input_was_image and parent_bytes is None:
        raise HTTPException(422, "input_was_image is true: send the input image as `parent`")

    def work() -> StampPublic:
        decoded = decode_image(data, rt.decode_limits, target_side=None)
        signals = compute_signals(decoded.image)  # matched here, then stored with the output
        _refuse_registered_copy(rt, key.actor, data, signals, meta.platform_user, "image")
        signals.pack()
        parent_image = None
        parent_signals = None
        if parent_bytes is not None:
            # The input of an img2img: PNG, JPEG or WebP (a manifest ingredient), and under the
            # gate's own rule: not a copy of a work whose artist denies reuse, unless licensed.
            pdec = decode_input("parent", parent_bytes, rt.decode_limits)
            parent_signals = compute_signals(pdec.image)
            _refuse_registered_copy(
                rt, key.actor, parent_bytes, parent_signals, meta.platform_user, "parent"
            )
            parent_image = ParentImage(parent_bytes, pdec.media_type)
        _refuse_restamp(rt, key.actor, data, decoded, signals, parent_signals, meta.platform_user)
        facts = to_facts(meta, parent_image)
        try:
            result = stamp_and_record(
                rt,
                key.actor,
                decoded.image,
                facts,
                origin="stamp",
                output_format=format,
                fingerprints=lambda: signals,
                max_bytes=rt.settings.max_upload_bytes,
            )
        except OutputTooLarge as exc:
            raise HTTPException(413, str(exc)) from None
        except ValueError as exc:  # e.g. smaller than the watermark's minimum size
            raise HTTPException(422, f"cannot stamp this image: {exc}") from None
        return StampPublic.of(result.record)

    return await image_work.run(work)


def _refuse_registered_copy(
    rt: Runtime,
    actor: str,
    data: bytes,
    signals: ImageSignals,
    user: str | None,
    role: Literal["image", "parent"],
) -> None:
    """A stamp says "AI-generated, by us": never of a copy of a registered work whose artist
    denies reuse, nor of an image made from one (its ``parent``), unless the platform user
    holds a licence (the same rule as a generation's input). Else anyone with the stamp scope
    could have an artist's own picture traced as our output, or launder it, or an img2img of
    it, with our manifest. The refusal is audited."""
    hits = RuntimeArtworkRegistry(rt).match(signals, user).hits  # the gate's own registry
    denied = [h for h in hits if h.decision == "copy" and not h.permitted]
    if not denied:
        return
    first = denied[0].artwork_id
    with rt.pool.connection() as conn, conn.transaction():
        rt.audit.append(
            conn,
            "stamp.refused",
            actor,
            f"artwork:{first}",
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "role": role,
                "platform_user": user,
                "artworks": [h.artwork_id for h in denied],
                "scores": [h.score for h in denied],
            },
        )
    who = f"platform user {user!r} holds no licence" if user else "no platform user is named"
    if role == "parent":
        raise HTTPException(
            403,
            f"the parent (input) image is a copy of registered artwork {first}, whose artist"
            f" denies reuse; {who}: an image made from it cannot be stamped",
        )
    raise HTTPException(
        403,
        f"this image is a copy of registered artwork {first}, whose artist denies reuse;"
        f" {who}: it cannot be stamped as a generated image",
    )


def _refuse_restamp(
    rt: Runtime,
    actor: str,
    data: bytes,
    decoded: DecodedImage,
    signals: ImageSignals,
    parent_signals: ImageSignals | None,
    user: str | None,
) -> None:
    """An image that already is one of our outputs (its watermark names the output and its
    pixels agree, or, where the mark did not take or did not survive, its fingerprints are a
    verified copy of the output's) is not stamped again: a new stamp would attribute someone's
    generation to whoever asked. An image made from one of our outputs is stamped with that
    output as its ``parent``: then the parent resolves to the same output, and the stamp goes
    ahead."""
    reading, _ = read_watermark(rt, decoded)
    res = resolve_with_signals(rt, reading, signals)
    best = res.best  # the watermark's record when the pixels agree, else the closest copy
    if best is None:
        return
    earlier = best.record
    how = (
        "its watermark names it and its pixels agree"
        if best.method == "watermark+fingerprint"
        else "its pixels are a copy of it"
    )
    if parent_signals is not None:
        from_parent = resolve_with_signals(rt, _NO_MARK, parent_signals)
        if any(o.record.id == earlier.id for o in from_parent.outputs):
            return
    with rt.pool.connection() as conn, conn.transaction():
        rt.audit.append(
            conn,
            "stamp.refused",
            actor,
            f"output:{earlier.id}",
            {
                "sha256": hashlib.sha256(data).hexdigest(),
                "role": "image",
                "reason": "already_stamped",
                "method": best.method,
                "platform_user": user,
            },
        )
    raise HTTPException(
        409,
        f"this image already is chopmark output {earlier.id} ({how}): it is not stamped again;"
        " an image made from it is stamped with it as the `parent`",
    )


_NO_MARK = WatermarkReading(False, None, 0.0, None, {})


@router.get(
    "/{stamp_id}",
    response_model=StampPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.stamp),
    summary="Read a stamp record (scope: stamp)",
)
def get_stamp(stamp_id: UUID, rt: RuntimeDep, key: StampKey) -> StampPublic:
    rec = _stamp_record(rt, stamp_id)
    return StampPublic.of(rec)


@router.get(
    "/{stamp_id}/image",
    responses={**_ERRORS, 200: {"content": {"image/*": {}}}},
    openapi_extra=scope_doc(Scope.stamp),
    summary="The stamped image, byte for byte as signed (scope: stamp)",
)
def get_stamp_image(stamp_id: UUID, rt: RuntimeDep, key: StampKey) -> Response:
    rec = _stamp_record(rt, stamp_id)
    return Response(rt.blobs.get(rec.sha256), media_type=rec.media_type)


def _stamp_record(rt: Runtime, stamp_id: UUID) -> OutputRecord:
    """A stamp's record; our own generations are read under the `generate` scope instead."""
    with rt.pool.connection() as conn:
        rec = rt.outputs.get(conn, stamp_id)
    if rec is None or rec.origin != "stamp":
        raise HTTPException(404, f"no stamped image {stamp_id}")
    return rec
