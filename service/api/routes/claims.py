"""Artists' claims against our outputs ("this generation copies my work"), filed for them by the
registry (scope ``registry``) and decided by a person with an admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import AdminKey, ImageWorkDep, RegistryKey, RuntimeDep, scope_doc
from service.api.lists import PageDep
from service.api.schemas import ClaimDecision, ClaimReason, ErrorBody
from service.api.text import RequestModel
from service.auth.scopes import Scope
from service.registry.claims import (
    ClaimFilter,
    ClaimInvalid,
    decide_claim,
    drawn_claim,
    file_claim,
    get_claim,
    list_claims,
)

router = APIRouter(prefix="/v1/claims", tags=["claims"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
Status = Literal["open", "upheld", "rejected"]


class ClaimCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    output_id: UUID = Field(
        description="the output claimed against: a generation's id, or a stamped image's "
        "(the generation id its watermark and manifest name)"
    )
    artist_id: UUID
    artwork_id: UUID | None = Field(default=None, description="which of their works, if known")
    reason: ClaimReason


class ClaimMatch(BaseModel):
    artwork_id: UUID
    title: str | None
    decision: Literal["copy", "similar"]
    score: float
    evidence: dict[str, Any]


class ClaimPublic(BaseModel):
    id: UUID
    output_id: UUID
    output_origin: Literal["generation", "stamp"]
    output_sha256: str
    artist_id: UUID
    artwork_id: UUID | None
    reason: str
    matches: list[ClaimMatch] = Field(
        description="the artist's works the matcher found in the output when the claim was filed"
    )
    status: Status
    decision_note: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_by: str
    created_at: datetime
    url: str


class ClaimList(BaseModel):
    claims: list[ClaimPublic] = Field(description="newest first")
    next_cursor: str | None


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ClaimPublic,
    responses={
        **_ERRORS,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.registry),
    summary="An artist claims that one of our outputs copies their work; the output is matched "
    "against their works and the matches kept with the claim (scope: registry)",
)
async def create_claim(
    body: ClaimCreate, rt: RuntimeDep, image_work: ImageWorkDep, key: RegistryKey
) -> dict[str, Any]:
    def work() -> dict[str, Any]:
        return file_claim(
            rt,
            actor=key.actor,
            output_id=body.output_id,
            artist_id=body.artist_id,
            artwork_id=body.artwork_id,
            reason=body.reason,
        )

    try:
        return await image_work.run(work)
    except ClaimInvalid as exc:
        raise HTTPException(422, str(exc)) from None


@router.get(
    "",
    response_model=ClaimList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Claims newest first, by cursor, narrowed by artist, output, status and when they "
    "were filed (since, until) (scope: registry)",
)
def read_claims(
    rt: RuntimeDep,
    key: RegistryKey,
    page: PageDep,
    artist_id: UUID | None = None,
    output_id: UUID | None = None,
    claim_status: Annotated[
        list[Status] | None, Query(alias="status", description="repeat for more than one")
    ] = None,
) -> dict[str, Any]:
    where = ClaimFilter(
        artist_id=artist_id,
        output_id=output_id,
        statuses=tuple(dict.fromkeys(claim_status or ())),
        since=page.since,
        until=page.until,
    )
    with rt.pool.connection() as conn:
        found = list_claims(conn, where, page.limit, page.cursor)
    return {"claims": found.claims, "next_cursor": found.next_cursor}


@router.get(
    "/{claim_id}",
    response_model=ClaimPublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="A claim with the matches kept when it was filed and its decision (scope: registry)",
)
def read_claim(claim_id: UUID, rt: RuntimeDep, key: RegistryKey) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        found = get_claim(conn, claim_id)
    if found is None:
        raise HTTPException(404, f"no claim {claim_id}")
    return found


@router.get(
    "/{claim_id}/picture",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the output beside the works found"},
        **_ERRORS,
        404: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.registry),
    summary="The claimed output beside each of the artist's works found in it, with the fitted "
    "outline (scope: registry)",
)
async def read_claim_picture(
    claim_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, key: RegistryKey
) -> Response:
    png = await image_work.run(drawn_claim, rt, claim_id)
    if png is None:
        raise HTTPException(404, f"no claim {claim_id}")
    return Response(png, media_type="image/png")


@router.post(
    "/{claim_id}/decision",
    response_model=ClaimPublic,
    responses={
        **_ERRORS,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.admin),
    summary="Uphold or reject an open claim, once (scope: admin)",
)
def decide(claim_id: UUID, body: ClaimDecision, rt: RuntimeDep, key: AdminKey) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        return decide_claim(rt, conn, claim_id, actor=key.actor, uphold=body.uphold, note=body.note)
