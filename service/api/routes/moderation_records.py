"""What moderation recorded, for a platform's moderators: checks and batch jobs listed newest
first (the review queue among them), and a person's decisions on a check. Scope: ``moderate``;
a key sees what it made, an admin key everything."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import ModerateKey, RuntimeDep, scope_doc
from service.api.lists import PageDep
from service.api.routes.moderation import (
    PolicyRef,
    ReasonPublic,
    ReviewPublic,
    Verdict,
    visible_to,
)
from service.api.schemas import ErrorBody
from service.api.text import FreeText, Name, RequestModel, StorableText
from service.auth.scopes import Scope
from service.moderation.listing import CheckFilter, JobFilter, list_checks, list_jobs
from service.moderation.reviews import NOTE_MAX_CHARS, REVIEWER_MAX_CHARS, add_review

router = APIRouter(prefix="/v1/moderation", tags=["moderation"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


class CheckSummary(BaseModel):
    id: UUID
    created_at: datetime
    job_id: UUID | None
    sha256: str
    media_type: str | None
    width: int | None
    height: int | None
    user: str | None
    context: str | None
    verdict: Verdict
    reasons: list[ReasonPublic]
    ai_generated: str | None = Field(description="declared, watermarked, matched or unknown")
    policy: PolicyRef
    review: ReviewPublic | None = Field(
        description="the decision that stands, if a person made one"
    )
    url: str = Field(description="the whole check with its evidence")


class CheckList(BaseModel):
    checks: list[CheckSummary] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


@router.get(
    "/checks",
    response_model=CheckList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="Recorded checks, newest first, by cursor: the review queue (verdict=review), a "
    "user's uploads, an image checked before (scope: moderate; a key sees its own checks, an "
    "admin key every check)",
)
def list_moderation_checks(
    rt: RuntimeDep,
    key: ModerateKey,
    page: PageDep,
    verdict: Annotated[
        list[Verdict] | None, Query(description="one or more (repeat the parameter)")
    ] = None,
    user: Annotated[str | None, Query(max_length=200, description="platform user")] = None,
    sha256: Annotated[
        str | None,
        Query(pattern="^[0-9a-fA-F]{64}$", description="the image's SHA-256, in hex"),
    ] = None,
    job_id: Annotated[UUID | None, Query(description="the checks of one batch job")] = None,
    reviewed: Annotated[
        bool | None,
        Query(
            description="whether a person decided on it since (verdict=review&reviewed=false: "
            "the checks still waiting for one)"
        ),
    ] = None,
) -> dict[str, Any]:
    where = CheckFilter(
        api_key_id=visible_to(key),
        verdicts=tuple(dict.fromkeys(verdict or ())),
        user=user,
        sha256=sha256,
        job_id=job_id,
        since=page.since,
        until=page.until,
        reviewed=reviewed,
    )
    with rt.pool.connection() as conn:
        found = list_checks(conn, where, page.limit, page.cursor)
    return {"checks": found.checks, "next_cursor": found.next_cursor}


class ReviewCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    decision: Literal["allow", "block"] = Field(description="what a person decided")
    reviewer: Annotated[str, Name] = Field(
        min_length=1,
        max_length=REVIEWER_MAX_CHARS,
        description="who decided (a moderator's name or id)",
    )
    note: Annotated[str | None, FreeText, StorableText] = Field(
        default=None, max_length=NOTE_MAX_CHARS, description="why, for the record"
    )


@router.post(
    "/checks/{check_id}/reviews",
    status_code=status.HTTP_201_CREATED,
    response_model=ReviewPublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="Record a person's decision on a check (a review verdict looked at, a block "
    "appealed): the latest stands, each is audited (scope: moderate; the key that made the "
    "check, or an admin key)",
)
def review_check(
    check_id: UUID, body: ReviewCreate, rt: RuntimeDep, key: ModerateKey
) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        review = add_review(
            rt,
            conn,
            check_id,
            actor=key.actor,
            api_key_id=key.id,
            reviewer=body.reviewer,
            decision=body.decision,
            note=body.note,
            owner=visible_to(key),
        )
    if review is None:
        raise HTTPException(404, f"no moderation check {check_id}")
    return review


class JobWebhookState(BaseModel):
    state: Literal["pending", "delivered", "failed"]
    attempts: int


class JobSummary(BaseModel):
    id: UUID
    status: Literal["queued", "running", "completed", "failed"]
    total: int
    done: int
    counts: dict[str, int] = Field(description="items by status: queued, checked, rejected, failed")
    verdicts: dict[str, int] = Field(description="checked items by verdict: allow, review, block")
    user: str | None
    context: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    webhook: JobWebhookState | None
    url: str = Field(description="the job with each item's outcome")


class JobList(BaseModel):
    jobs: list[JobSummary] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


JobStatus = Literal["queued", "running", "completed", "failed"]


@router.get(
    "/jobs",
    response_model=JobList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="Batch jobs, newest first, by cursor, with their items counted by status and "
    "verdict (scope: moderate; a key sees its own jobs, an admin key every job)",
)
def list_moderation_jobs(
    rt: RuntimeDep,
    key: ModerateKey,
    page: PageDep,
    job_status: Annotated[
        list[JobStatus] | None,
        Query(alias="status", description="one or more (repeat the parameter)"),
    ] = None,
) -> dict[str, Any]:
    where = JobFilter(
        api_key_id=visible_to(key),
        statuses=tuple(dict.fromkeys(job_status or ())),
        since=page.since,
        until=page.until,
    )
    with rt.pool.connection() as conn:
        found = list_jobs(conn, where, page.limit, page.cursor)
    return {"jobs": found.jobs, "next_cursor": found.next_cursor}
