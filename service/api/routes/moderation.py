"""Moderation for platforms: one image or a batch, a verdict with its reasons and evidence.
Scope: ``moderate``."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, File, Form, Header, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from service.api.deps import ImageWorkDep, ModerateKey, RuntimeDep, scope_doc
from service.api.schemas import ErrorBody, IndexInfo, MatchPublic
from service.api.text import FreeText, OneLine, StorableText
from service.api.uploads import read_upload, single_parts, upload_name
from service.auth.keys import ApiKey
from service.auth.scopes import Scope
from service.moderation import webhooks
from service.moderation.check import CheckOutcome, get_check, run_check
from service.moderation.jobs import (
    MAX_FILES,
    BatchFile,
    IdempotencyConflict,
    allow_private_webhooks,
    create_job,
    get_job,
    notify_workers,
    requeue_webhook,
)
from service.moderation.picture import UploadNotKept, moderation_picture, recorded_picture
from service.moderation.policy import POLICIES, Policy, PolicyError
from service.runtime import Runtime

router = APIRouter(prefix="/v1/moderation", tags=["moderation"])
log = logging.getLogger(__name__)
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
_UPLOAD_ERRORS = {
    **_ERRORS,
    400: {"model": ErrorBody},
    413: {"model": ErrorBody},
    415: {"model": ErrorBody},
    422: {"model": ErrorBody},
    503: {"model": ErrorBody},
}
Verdict = Literal["allow", "review", "block"]


class ReasonPublic(BaseModel):
    signal: str = Field(
        description="registry, c2pa, watermark, ai_generated, claims, training_sources; none when"
        " nothing was found (the one reason of a plain allow)"
    )
    rule: str | None = Field(description="the policy rule that applies (see /policy)")
    action: Verdict
    message: str
    evidence: dict[str, Any]


class PolicyRef(BaseModel):
    name: str
    version: str = Field(description="digest of the rules and thresholds applied")
    key_override: str | None


class C2paPublic(BaseModel):
    state: Literal["Trusted", "Valid", "Invalid", "Absent", "Error"]
    manifest_id: str | None
    generation_id: str | None = Field(description="our output record, if we signed it")
    signer: dict[str, Any] | None
    generator: str | None
    digital_source_type: str | None
    actions: list[dict[str, Any]]
    ingredients: list[dict[str, Any]]
    training_mining: dict[str, str] | None
    failure_codes: list[str]
    error: str | None


class WatermarkPublic(BaseModel):
    alg: str
    checked: bool
    present: bool
    value: str | None
    confidence: float
    generation_id: str | None = Field(description="set only when the pixels are that output")
    claimed_generation_id: str | None = Field(description="the output the payload names")
    consistent_with_pixels: bool | None
    forged: bool
    note: str | None


class OutputMatchPublic(BaseModel):
    generation_id: str
    manifest_id: str
    method: Literal["watermark+fingerprint", "fingerprint"]
    score: float
    kind: str
    origin: str
    created_at: datetime
    sha256: str | None = Field(default=None, description="the output's bytes as we made them")
    decision: str | None = Field(
        default=None, description="the fingerprint match's decision (copy, similar)"
    )
    evidence: dict[str, Any] | None = Field(
        default=None, description="the fingerprint match's evidence, as for registry matches"
    )


class AiGeneratedPublic(BaseModel):
    status: Literal["declared", "watermarked", "matched", "unknown"]
    declared: bool
    declared_by: list[str]
    watermarked: bool
    matched: bool
    generation_id: str | None = Field(
        description="the one generation the image resolves to; null when it is none of ours, "
        "or when several of our outputs match it equally (see generation_ids)"
    )
    generation_ids: list[str] = Field(
        description="every generation the image resolves to equally: one, or several when "
        "the same picture was made more than once (same prompt and seed)"
    )


class ProvenancePublic(BaseModel):
    c2pa: C2paPublic
    watermark: WatermarkPublic
    outputs: list[OutputMatchPublic] = Field(description="fingerprint matches with our outputs")
    ai_generated: AiGeneratedPublic


class RegistryPublic(BaseModel):
    matches: list[MatchPublic]
    index: IndexInfo


class FramesPublic(BaseModel):
    total: int = Field(description="frames or pages in the file")
    matched: list[int] = Field(
        description="frames matched against the registry and the training sources (0 is the "
        "first; later ones evenly spaced, those repeating an earlier one skipped); provenance "
        "(C2PA, watermark, our outputs) is read on the first"
    )


class ReviewPublic(BaseModel):
    id: UUID
    check_id: UUID
    reviewer: str = Field(description="the person who decided")
    decision: Literal["allow", "block"]
    note: str | None
    created_at: datetime


class ModerationResult(BaseModel):
    id: UUID
    created_at: datetime
    job_id: UUID | None
    sha256: str
    media_type: str
    width: int
    height: int
    user: str | None
    context: str | None
    verdict: Verdict
    reasons: list[ReasonPublic]
    policy: PolicyRef
    provenance: ProvenancePublic
    registry: RegistryPublic
    training_sources: dict[str, Any] = Field(description='{"available": false} without a bank')
    labels: dict[str, Any]
    frames: FramesPublic | None = Field(
        default=None,
        description="the frames in the file (1 for a still image) and those matched",
    )
    timings: dict[str, float] = Field(description="milliseconds per stage")
    upload_kept: bool = Field(
        default=False,
        description="the upload is kept for the check's picture (/checks/{id}/picture); "
        "which verdicts keep it, and for how long, is the operator's setting",
    )
    reviews: list[ReviewPublic] = Field(
        default_factory=list,
        description="decisions people made on this check since, oldest first (the last stands)",
    )


class JobItemPublic(BaseModel):
    position: int
    filename: str | None
    sha256: str
    status: Literal["queued", "checked", "rejected", "failed"]
    check_id: UUID | None
    verdict: Verdict | None
    reasons: list[ReasonPublic] | None
    error: str | None = Field(description="why the last try failed (a queued item is retried)")
    error_status: int | None
    retry_at: datetime | None = Field(
        default=None, description="a queued item whose last try failed waits until then"
    )
    result: ModerationResult | None = None


class WebhookStatus(BaseModel):
    url: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    last_error: str | None
    delivered_at: datetime | None


class JobPublic(BaseModel):
    id: UUID
    status: Literal["queued", "running", "completed", "failed"]
    total: int
    done: int
    counts: dict[str, int]
    user: str | None
    context: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    webhook: WebhookStatus | None
    items: list[JobItemPublic]


class JobCreated(JobPublic):
    status_url: str
    webhook_secret: str | None = Field(
        description="signs the webhook: X-Chopmark-Signature is sha256=HMAC-SHA256(secret, "
        "body) in hex. Shown only to the key that made the job; keep it."
    )


class PolicyPublic(BaseModel):
    name: str
    version: str
    source: str
    key_override: str | None
    rules: dict[str, Verdict]
    thresholds: dict[str, float]
    rule_descriptions: dict[str, str]
    threshold_descriptions: dict[str, str]


def _policy(rt: Runtime, key: ApiKey) -> Policy:
    try:
        return POLICIES.for_key(rt.settings, key.prefix, key.name)
    except PolicyError as exc:
        log.error("the moderation policy cannot be used: %s", exc)
        said = POLICIES.public_reason(rt.settings, exc)
        raise HTTPException(
            503, f"moderation is unavailable: {said}", headers={"Retry-After": "5"}
        ) from None


def visible_to(key: ApiKey) -> int | None:
    """Checks and jobs are visible to the key that made them, or to an admin key."""
    return None if Scope.admin.value in key.scopes else key.id


ImageFile = Annotated[UploadFile, File(description="the image to moderate")]
UserForm = Annotated[
    str | None,
    Form(max_length=200, description="platform user, for licences"),
    StorableText,
    OneLine,
]
ContextForm = Annotated[
    str | None,
    Form(max_length=500, description="free text kept with the record"),
    StorableText,
    FreeText,
]


def _run(
    rt: Runtime, key: ApiKey, data: bytes, policy: Policy, user: str | None, context: str | None
) -> CheckOutcome:
    """One check made with ``key``, recorded (blocking)."""
    return run_check(
        rt,
        data,
        policy,
        actor=key.actor,
        api_key_id=key.id,
        user=user or None,
        context=context or None,
    )


@router.post(
    "/check",
    dependencies=[single_parts("file", "user", "context")],
    response_model=ModerationResult,
    responses=_UPLOAD_ERRORS,
    openapi_extra=scope_doc(Scope.moderate),
    summary="Moderate one image: provenance, registry, training sources, verdict (scope: moderate)",
)
async def check_image(
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: ModerateKey,
    file: ImageFile,
    user: UserForm = None,
    context: ContextForm = None,
) -> dict[str, Any]:
    policy = _policy(rt, key)
    data = await read_upload(file, rt.settings.max_upload_bytes)
    outcome = await image_work.run(_run, rt, key, data, policy, user, context)
    return outcome.report


@router.post(
    "/check/picture",
    dependencies=[single_parts("file", "user", "context")],
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "the verdict band over the evidence rows; the header "
            "`X-Check-Id` names the recorded check",
        },
        **_UPLOAD_ERRORS,
    },
    openapi_extra=scope_doc(Scope.moderate),
    summary="The same check, recorded, as a picture: verdict, reasons, provenance and the "
    "image beside each match (scope: moderate)",
)
async def check_picture(
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: ModerateKey,
    file: ImageFile,
    user: UserForm = None,
    context: ContextForm = None,
) -> Response:
    policy = _policy(rt, key)
    data = await read_upload(file, rt.settings.max_upload_bytes)

    def work() -> tuple[str, bytes]:
        outcome = _run(rt, key, data, policy, user, context)
        return outcome.report["id"], moderation_picture(rt, data, outcome.report)

    check_id, png = await image_work.run(work)
    return Response(png, media_type="image/png", headers={"X-Check-Id": check_id})


@router.get(
    "/checks/{check_id}",
    response_model=ModerationResult,
    responses={**_ERRORS, 404: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="A recorded check with its evidence (scope: moderate)",
)
def read_check(check_id: UUID, rt: RuntimeDep, key: ModerateKey) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        found = get_check(conn, check_id, visible_to(key))
    if found is None:
        raise HTTPException(404, f"no moderation check {check_id}")
    return found


@router.get(
    "/checks/{check_id}/picture",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "the verdict band (with the latest review) over the evidence rows",
        },
        **_ERRORS,
        404: {"model": ErrorBody, "description": "no such check, or its upload was not kept"},
    },
    openapi_extra=scope_doc(Scope.moderate),
    summary="A recorded check as a picture, from its kept upload: verdict, reasons, the latest "
    "review and the image beside each match (scope: moderate)",
)
async def read_check_picture(
    check_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, key: ModerateKey
) -> Response:
    try:
        png = await image_work.run(recorded_picture, rt, check_id, visible_to(key))
    except UploadNotKept as exc:
        raise HTTPException(404, str(exc)) from None
    if png is None:
        raise HTTPException(404, f"no moderation check {check_id}")
    return Response(png, media_type="image/png", headers={"X-Check-Id": str(check_id)})


@router.get(
    "/policy",
    response_model=PolicyPublic,
    responses={**_ERRORS, 503: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="The policy that decides this key's verdicts (scope: moderate)",
)
def read_policy(rt: RuntimeDep, key: ModerateKey) -> dict[str, Any]:
    return _policy(rt, key).to_dict()


@router.post(
    "/batch",
    dependencies=[single_parts("user", "context", "webhook_url")],
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobCreated,
    responses={**_UPLOAD_ERRORS, 409: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary=f"Queue up to {MAX_FILES} images for moderation (scope: moderate)",
)
async def create_batch(
    rt: RuntimeDep,
    key: ModerateKey,
    files: Annotated[list[UploadFile], File(description=f"1 to {MAX_FILES} images")],
    user: UserForm = None,
    context: ContextForm = None,
    webhook_url: Annotated[
        str | None,
        Form(description="http(s) URL called with the results when done"),
        StorableText,
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="repeat a request safely: the same key returns the first job",
        ),
    ] = None,
) -> JSONResponse:
    _policy(rt, key)  # refuse early when the policy file is unusable
    limit = min(MAX_FILES, rt.settings.max_files_per_request)
    if len(files) > limit:
        raise HTTPException(413, f"at most {limit} files per batch")
    url = None
    if webhook_url:
        try:
            url = await run_in_threadpool(  # the address check may wait on DNS
                webhooks.check_url,
                webhook_url,
                allow_private=allow_private_webhooks(rt.settings),
            )
        except webhooks.WebhookUrlError as exc:
            raise HTTPException(422, str(exc)) from None
    batch = [
        BatchFile(upload_name(f), await read_upload(f, rt.settings.max_upload_bytes)) for f in files
    ]
    try:
        made = await run_in_threadpool(
            create_job,
            rt,
            key,
            batch,
            user=user or None,
            context=context or None,
            webhook_url=url,
            idempotency_key=idempotency_key or None,
        )
    except IdempotencyConflict as exc:
        raise HTTPException(409, str(exc)) from None
    body = JobCreated.model_validate(
        {
            **made.job,
            "status_url": f"/v1/moderation/jobs/{made.job['id']}",
            "webhook_secret": made.webhook_secret,
        }
    )
    headers = {"Location": body.status_url}
    if not made.created:
        headers["Idempotent-Replayed"] = "true"
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers=headers)


@router.get(
    "/jobs/{job_id}",
    response_model=JobPublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="A batch job's progress and results (scope: moderate)",
)
def read_job(
    job_id: UUID,
    rt: RuntimeDep,
    key: ModerateKey,
    full: Annotated[bool, Query(description="embed each item's full result")] = False,
) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        job = get_job(conn, job_id, visible_to(key), full=full)
    if job is None:
        raise HTTPException(404, f"no moderation job {job_id}")
    return job


@router.post(
    "/jobs/{job_id}/webhook",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={**_ERRORS, 404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="Send a finished job's webhook again, e.g. after its retries ran out (scope: moderate)",
)
def redeliver_webhook(job_id: UUID, rt: RuntimeDep, key: ModerateKey) -> dict[str, Any]:
    with rt.pool.connection() as conn, conn.transaction():
        job = get_job(conn, job_id, visible_to(key))
        if job is None:
            raise HTTPException(404, f"no moderation job {job_id}")
        if job["webhook"] is None:
            raise HTTPException(409, "this job was created without a webhook URL")
        if job["status"] not in ("completed", "failed"):
            raise HTTPException(409, "the job is not finished: its webhook is sent when it is")
        requeue_webhook(rt, conn, job_id, key.actor)
        job = get_job(conn, job_id, visible_to(key))
    notify_workers()
    return job
