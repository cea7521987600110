"""Ownership disputes: a work registered later that copies another artist's registered work,
opened by registration (`service.registry.disputes`), read with scope ``registry`` and decided
by a person with an admin key."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Response
from fastapi.concurrency import run_in_threadpool

from service.api.deps import AdminKey, ImageWorkDep, RegistryKey, RuntimeDep, scope_doc
from service.api.lists import PageDep
from service.api.schemas import DisputeDecision, DisputeList, DisputePublic, ErrorBody
from service.auth.scopes import Scope
from service.registry.disputes import (
    DisputeFilter,
    DisputeInvalid,
    decide_dispute,
    drawn_dispute,
    get_dispute,
    list_disputes,
)

router = APIRouter(prefix="/v1/disputes", tags=["disputes"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
Status = Literal["open", "upheld", "dismissed"]


@router.get(
    "",
    response_model=DisputeList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Ownership disputes newest first, by cursor, narrowed by artist or work (either "
    "side), status and when they were opened (since, until) (scope: registry)",
)
def read_disputes(
    rt: RuntimeDep,
    key: RegistryKey,
    page: PageDep,
    artist_id: UUID | None = None,
    artwork_id: UUID | None = None,
    dispute_status: Annotated[
        list[Status] | None, Query(alias="status", description="repeat for more than one")
    ] = None,
) -> dict[str, Any]:
    where = DisputeFilter(
        artist_id=artist_id,
        artwork_id=artwork_id,
        statuses=tuple(dict.fromkeys(dispute_status or ())),
        since=page.since,
        until=page.until,
    )
    with rt.pool.connection() as conn:
        found = list_disputes(conn, where, page.limit, page.cursor)
    return {"disputes": found.disputes, "next_cursor": found.next_cursor}


@router.get(
    "/{dispute_id}",
    response_model=DisputePublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="An ownership dispute: both works, the match between them and the decision "
    "(scope: registry)",
)
def read_dispute(dispute_id: UUID, rt: RuntimeDep, key: RegistryKey) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        found = get_dispute(conn, dispute_id)
    if found is None:
        raise HTTPException(404, f"no dispute {dispute_id}")
    return found


@router.get(
    "/{dispute_id}/picture",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the later work beside the earlier"},
        **_ERRORS,
        404: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.registry),
    summary="The work registered later beside the one registered first, with the fitted "
    "outline and the decision (scope: registry)",
)
async def read_dispute_picture(
    dispute_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, key: RegistryKey
) -> Response:
    png = await image_work.run(drawn_dispute, rt, dispute_id)
    if png is None:
        raise HTTPException(404, f"no dispute {dispute_id}")
    return Response(png, media_type="image/png")


@router.post(
    "/{dispute_id}/decision",
    response_model=DisputePublic,
    responses={
        **_ERRORS,
        404: {"model": ErrorBody},
        409: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.admin),
    summary="Decide an open dispute, once: withdraw one of its works (upheld) or let both "
    "stand (dismissed) (scope: admin)",
)
async def decide(
    dispute_id: UUID, body: DisputeDecision, rt: RuntimeDep, key: AdminKey
) -> dict[str, Any]:
    try:
        return await run_in_threadpool(
            decide_dispute, rt, dispute_id, actor=key.actor, withdraw=body.withdraw, note=body.note
        )
    except DisputeInvalid as exc:
        raise HTTPException(422, str(exc)) from None
