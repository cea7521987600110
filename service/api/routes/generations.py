"""Generation through chopmark: gate, diffuse, screen, stamp, record. Scope: ``generate``.

A blocked request never reaches the model and is answered 403 with its reasons; it is recorded
like any other. ``"async": true`` answers 202 once the gate has passed; poll
``GET /v1/generations/{id}``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import ConfigDict, Field, field_validator, model_validator

from generation.gate import AdapterRequest, GateResult, InputImage
from generation.params import MAX_PROMPT_CHARS
from generation.pipeline import GenerationOutcome, GenerationRecord, GenerationRequest
from generation.schedulers import resolve_scheduler_name
from provenance.manifest import COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, TRAINED_ALGORITHMIC_MEDIA
from service.api.deps import ImageWorkDep, RuntimeDep, require, scope_doc
from service.api.errors import refused, rejection_status, storage_failure
from service.api.schemas import ErrorBody
from service.api.text import FreeText, OneLine, RequestModel
from service.auth.keys import ApiKey
from service.auth.scopes import Scope
from service.genservice.adapters import NAME_PATTERN
from service.genservice.inputs import decode_input, input_problem
from service.genservice.service import GenerationService, get_generation_service
from service.runtime import Runtime
from similarity import ImageRejected

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/generations", tags=["generation"])
GenerateKey = Annotated[ApiKey, Depends(require(Scope.generate))]
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
MAX_SEED = 2**63 - 1


class AdapterChoice(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "1" is not a scale

    name: str = Field(pattern=NAME_PATTERN, description="a registered adapter's name")
    scale: float = Field(default=1.0, ge=-5, le=5)


class GenerationCreate(RequestModel):
    """A generation request. Images are base64 (PNG, JPEG or WebP); an init image makes it
    img2img, an init image with a mask inpainting."""

    # Strict: true is not a step count nor "yes" a boolean (a number may be an int or a float).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    prompt: Annotated[str, FreeText] = Field(min_length=1, max_length=4000)
    negative_prompt: Annotated[str, FreeText] = Field(default="", max_length=4000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED, description="unset: random")
    steps: int = Field(default=20, ge=1, le=150)
    guidance: float = Field(default=7.0, ge=0, le=30)
    width: int = Field(default=512, ge=256, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=256, le=2048, multiple_of=8)
    user: Annotated[str | None, OneLine] = Field(
        default=None, min_length=1, max_length=200, description="the platform user asking"
    )
    init_image: str | None = Field(default=None, description="base64: img2img / inpainting")
    strength: float = Field(default=0.75, gt=0, le=1)
    mask_image: str | None = Field(default=None, description="base64: white = repaint")
    control_image: str | None = Field(
        default=None, description="base64: ControlNet conditioning (txt2img or img2img)"
    )
    control_scale: float = Field(default=1.0, ge=0, le=2, description="ControlNet strength")
    adapters: list[AdapterChoice] = Field(default_factory=list, max_length=8)
    scheduler: str | None = Field(
        default=None,
        validate_default=True,  # None becomes the default's canonical name
        max_length=50,
        description="ours (euler, euler_a, ddim, pndm, heun, dpmpp_2m, dpmpp_2m_karras, unipc) or"
        " AUTOMATIC1111's label, any case; default: euler",
    )
    prompt_private: bool = Field(default=False, description="record only the prompt's SHA-256")
    run_async: bool = Field(default=False, alias="async", description="answer 202 and poll")

    @field_validator("prompt")
    @classmethod
    def _says_something(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("prompt must hold more than white space")
        return v

    @field_validator("adapters")
    @classmethod
    def _unique(cls, v: list[AdapterChoice]) -> list[AdapterChoice]:
        names = [a.name for a in v]
        if len(set(names)) != len(names):
            raise ValueError("an adapter is named twice")
        return v

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str | None) -> str:
        return resolve_scheduler_name(v)  # the canonical name, or ValueError naming the known

    @model_validator(mode="after")
    def _prompts_fit(self) -> GenerationCreate:
        if len(self.prompt) + len(self.negative_prompt) > MAX_PROMPT_CHARS:
            raise ValueError(
                f"prompt and negative_prompt together exceed {MAX_PROMPT_CHARS} characters"
            )
        return self


_URL_SAFE = str.maketrans("-_", "+/")


def _decode_input(rt: Runtime, role: str, text: str) -> InputImage:
    if text.startswith("data:"):
        text = text.partition(",")[2]
    limit = rt.settings.max_upload_bytes
    if len(text) > ((limit + 2) // 3 * 4 + 4) * 78 // 76:  # room for MIME line breaks
        raise HTTPException(413, f"{role}_image is larger than the limit of {limit} bytes")
    # Line breaks (MIME wraps at 76) and the URL-safe alphabet are accepted; other characters
    # outside the alphabet are refused rather than skipped.
    text = "".join(text.split()).translate(_URL_SAFE)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(422, f"{role}_image is not valid base64") from None
    try:
        return decode_input(role, data, rt.decode_limits)
    except ImageRejected as exc:
        raise HTTPException(rejection_status(exc), f"{role}_image: {exc}") from None


def to_request(body: GenerationCreate, key: ApiKey, rt: Runtime) -> GenerationRequest:
    """Validate and decode a request body (blocking: decodes images)."""
    if body.mask_image is not None and body.init_image is None:
        raise HTTPException(422, "mask_image needs an init_image to inpaint")
    init = _decode_input(rt, "init", body.init_image) if body.init_image is not None else None
    mask = _decode_input(rt, "mask", body.mask_image) if body.mask_image is not None else None
    if body.control_image is not None and mask is not None:
        raise HTTPException(422, "control_image is not offered with inpainting")
    problem = input_problem(init, mask, body.steps, body.strength)
    if problem is not None:
        raise HTTPException(422, problem)
    control = (
        _decode_input(rt, "control", body.control_image)
        if body.control_image is not None
        else None
    )
    return GenerationRequest(
        id=uuid4(),
        actor=key.actor,
        api_key_id=key.id,
        prompt=body.prompt,
        negative_prompt=body.negative_prompt,
        seed=body.seed if body.seed is not None else secrets.randbelow(2**32),
        steps=body.steps,
        guidance=body.guidance,
        width=body.width,
        height=body.height,
        scheduler=str(body.scheduler),
        strength=body.strength,
        platform_user=body.user,
        init=init,
        mask=mask,
        controls=(control,) if control is not None else (),
        control_scale=body.control_scale,
        adapters=tuple(AdapterRequest(a.name, a.scale) for a in body.adapters),
        # the operator's CHOPMARK_PROMPT_PRIVACY keeps every prompt out of the records too
        prompt_private=body.prompt_private or rt.settings.prompt_privacy,
    )


def public_view(row: dict[str, Any]) -> dict[str, Any]:
    """A generation record as the API shows it."""
    gid = row["id"]
    out: dict[str, Any] = {
        "id": str(gid),
        "status": row["status"],
        "stage": row["stage"],
        "mode": row["mode"],
        "platform_user": row["platform_user"],
        "created_at": row["created_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
        "parameters": {
            "prompt": row["prompt"],
            "negative_prompt": row["negative_prompt"],
            "prompt_sha256": row["prompt_sha256"],
            "prompt_private": row["prompt_private"],
            "seed": row["seed"],
            "steps": row["steps"],
            "guidance": row["guidance"],
            "width": row["width"],
            "height": row["height"],
            "scheduler": row["scheduler"],
            "strength": row["strength"],
        },
        "model": row["model"],
        # where the server keeps an adapter's file is its own business
        "adapters": [{k: v for k, v in a.items() if k != "path"} for a in row["adapters"] or []],
        "inputs": row["inputs"],
        "reasons": row["reasons"],
        "flags": row["flags"],
        "decisions": row["decisions"],
        "image_url": None,
        "output": None,
        "watermark": None,
        "manifest": None,
        "timings_ms": row["timings"],
        "error": row["error"],
    }
    if row["output_id"] is not None:
        out["image_url"] = f"/v1/generations/{gid}/image"
        out["output"] = {
            "id": str(row["output_id"]),
            "sha256": row["output_sha256"],
            "pdq": row["output_pdq"],
            "media_type": row["output_media_type"],
            "width": row["output_width"],
            "height": row["output_height"],
        }
        out["watermark"] = {
            "alg": row["watermark_alg"],
            "value": row["watermark_value"],
            "verified": row["watermark_verified"],
        }
        out["manifest"] = {
            "id": row["manifest_id"],
            "url": f"/sbr/manifests/{row['manifest_id']}",
            "digital_source_type": TRAINED_ALGORITHMIC_MEDIA
            if row["mode"] == "txt2img"
            else COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA,
            "generation_assertion": row["output_facts"],
        }
    return out


def _model_notice(svc: GenerationService) -> dict[str, str]:
    """``{"model_notice": ...}`` while the default tiny model serves (it makes noise), else {}."""
    describe = getattr(svc.generator, "describe", None)  # says so without loading the model
    if callable(describe):
        notice = describe().get("notice")
    else:
        peek = getattr(svc.generator, "loaded_info", None)
        info = peek() if callable(peek) else None
        notice = info.notice if info is not None else None
    return {"model_notice": notice} if notice else {}


def _blocked(request: Request, record: GenerationRecord, svc: GenerationService) -> JSONResponse:
    """The 403 of a blocked generation, logged like any refusal."""
    body = _blocked_body(record, svc)
    refused(request, 403, f"generation {record.id} {body['detail']}")
    return JSONResponse(body, 403)


def _blocked_body(record: GenerationRecord, svc: GenerationService) -> dict[str, Any]:
    gate = record.gate
    reasons = record.reasons
    return {
        **_model_notice(svc),
        "id": str(record.id),
        "status": "blocked",
        "stage": record.stage,
        "detail": "generation blocked: " + "; ".join(r["message"] for r in reasons),
        "reasons": reasons,
        "matches": gate.blocking_matches() if gate is not None else [],
        "flags": record.flags,
    }


def _failure(outcome: GenerationOutcome, svc: GenerationService) -> JSONResponse:
    from generation.diffusion import QueueFullError, ServiceStopping

    exc, record = outcome.error, outcome.record
    body = {
        "id": str(record.id),
        "status": "failed",
        "stage": record.stage,
        **_model_notice(svc),
    }
    storage = storage_failure(exc) if exc is not None else None
    if storage is not None:
        log.error("generation %s failed at %s: %s", record.id, record.stage, record.error)
        return JSONResponse({**body, "detail": storage[1]}, storage[0])
    if isinstance(exc, ServiceStopping):
        return JSONResponse({**body, "detail": str(exc)}, 503, headers={"Retry-After": "10"})
    if isinstance(exc, QueueFullError):
        return JSONResponse(
            {**body, "detail": f"the model is busy: {exc}"}, 503, headers={"Retry-After": "10"}
        )
    if isinstance(exc, ValueError):
        return JSONResponse({**body, "detail": f"cannot generate this request: {exc}"}, 422)
    log.error("generation %s failed at %s: %s", record.id, record.stage, record.error)
    return JSONResponse({**body, "detail": f"generation failed: {record.error}"}, 500)


def _service(request: Request, rt: RuntimeDep) -> GenerationService:
    return get_generation_service(request.app.state, rt)


ServiceDep = Annotated[GenerationService, Depends(_service)]


async def _run_queued(svc: GenerationService, req: GenerationRequest, gate: GateResult) -> None:
    try:
        await svc.pipeline.run_async(req, gate)
    except Exception:
        log.exception("queued generation %s failed", req.id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        **_ERRORS,
        202: {"description": "queued (async): poll GET /v1/generations/{id}"},
        403: {"description": "blocked: reasons, matches; or the key lacks the scope"},
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.generate),
    summary="Generate an image through the gate, the screen and the stamp (scope: generate)",
)
async def create_generation(
    request: Request,
    body: GenerationCreate,
    rt: RuntimeDep,
    key: GenerateKey,
    svc: ServiceDep,
    background: BackgroundTasks,
    image_work: ImageWorkDep,
) -> JSONResponse:
    # Decoding input images and the gate's fingerprints and registry search are image work:
    # they take their turn in the process's lane with other requests' (moderation, matching).
    # Without input images the gate only looks adapters up.
    has_images = any(i is not None for i in (body.init_image, body.mask_image, body.control_image))
    lane = image_work.run if has_images else run_in_threadpool
    req = await lane(to_request, body, key, rt)
    pipeline = svc.pipeline
    gate = await lane(pipeline.check, req)
    if body.run_async:
        if gate.blocked:
            outcome = await run_in_threadpool(pipeline.record_blocked, req, gate)
            return _blocked(request, outcome.record, svc)
        queued = GenerationRecord(req, "queued", gate=gate)
        await run_in_threadpool(svc.records.record, queued)
        background.add_task(_run_queued, svc, req, gate)
        queued_body = {
            "id": str(req.id),
            "status": "queued",
            "status_url": f"/v1/generations/{req.id}",
            **_model_notice(svc),
        }
        return JSONResponse(queued_body, 202)
    outcome = await pipeline.run_async(req, gate)
    if outcome.status == "blocked":
        return _blocked(request, outcome.record, svc)
    if outcome.status == "failed":
        return _failure(outcome, svc)

    def stored() -> dict[str, Any] | None:
        with rt.pool.connection() as conn:
            return svc.records.get(conn, req.id)

    row = await run_in_threadpool(stored)
    assert row is not None
    return JSONResponse(public_view(row), 201)


def _owned(rt: Runtime, svc: GenerationService, key: ApiKey, gid: UUID) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        svc.records.expire_abandoned(conn)
        row = svc.records.get(conn, gid)
    if row is None or (row["api_key_id"] != key.id and not key.allows(Scope.admin.value)):
        raise HTTPException(404, f"no generation {gid}")
    return row


@router.get(
    "/{generation_id}",
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.generate),
    summary="A generation's status and record (scope: generate; own generations, or admin)",
)
def get_generation(
    generation_id: UUID, rt: RuntimeDep, key: GenerateKey, svc: ServiceDep
) -> JSONResponse:
    return JSONResponse(public_view(_owned(rt, svc, key, generation_id)))


@router.get(
    "/{generation_id}/image",
    responses={**_ERRORS, 200: {"content": {"image/*": {}}}},
    openapi_extra=scope_doc(Scope.generate),
    summary="The stamped output, byte for byte as signed (scope: generate)",
)
def get_generation_image(
    generation_id: UUID, rt: RuntimeDep, key: GenerateKey, svc: ServiceDep
) -> Response:
    row = _owned(rt, svc, key, generation_id)
    if row["output_sha256"] is None:
        raise HTTPException(404, f"generation {generation_id} has no image (it is {row['status']})")
    return Response(rt.blobs.get(row["output_sha256"]), media_type=row["output_media_type"])
