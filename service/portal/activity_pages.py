"""Portal pages of what touched an artist's works, and of their claims against our outputs
(filing one, following the decision, its picture). Portal login needed."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import Field, ValidationError
from starlette.datastructures import UploadFile

from service.api.deps import ImageWorkDep, RuntimeDep
from service.api.errors import rejection_status
from service.api.schemas import ClaimReason
from service.api.text import OneLine, RequestModel
from service.db.keyset import CursorError
from service.genservice.service import adapter_store
from service.portal.accounts import actor_for
from service.portal.event_text import describe
from service.portal.render import after_post, form_problems, page
from service.portal.sessions import LoggedIn, PortalSession, PostedForm
from service.portal.works_pages import PortalNotFound
from service.registry.claims import (
    ClaimFilter,
    ClaimInvalid,
    drawn_claim,
    file_claim,
    list_claims,
)
from service.registry.events import EventFilter, list_events
from service.registry.store import Conflict, NotFound
from service.runtime import Runtime
from service.stamping.resolve import output_of_image
from similarity import ImageRejected

router = APIRouter(prefix="/portal", include_in_schema=False)


class ClaimForm(RequestModel):
    """The claim form, checked as the API checks a claim; the output named by its id, or by the
    picture the artist found (traced to it by watermark or fingerprints)."""

    output_id: UUID | None = None
    artwork_id: UUID | None = None
    reason: ClaimReason


class NotOurs(LookupError):
    pass


_CLAIM_FIELDS = {"output_id": "output id", "artwork_id": "work", "adapter": "adapter"}


class AdapterClaimForm(RequestModel):
    adapter: Annotated[str, OneLine] = Field(min_length=1, max_length=200)
    reason: ClaimReason


PAGE = 50
# The kinds an artist may narrow the activity page to, with their names on the page.
KINDS = {
    "moderation.matched": "moderation matches",
    "generation.input_matched": "generations from your works",
    "stamp.refused": "refused stamps",
    "license.granted": "licences granted",
    "license.revoked": "licences revoked",
    "artwork.registered": "registrations",
    "artwork.updated": "changes",
    "artwork.withdrawn": "withdrawals",
    "artwork.disputed": "ownership disputes",
    "artwork.dispute_decided": "dispute decisions",
    "claim.filed": "claims filed",
    "claim.decided": "claim decisions",
    "adapter.claim_filed": "adapter claims filed",
    "adapter.claim_decided": "adapter claim decisions",
}


@router.get("/events", response_class=HTMLResponse)
def events_page(
    request: Request,
    rt: RuntimeDep,
    session: LoggedIn,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    artwork: UUID | None = None,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
) -> HTMLResponse:
    if kind and kind not in KINDS:
        return page(request, "error.html", session, 422, error=f"unknown kind of event {kind!r}")
    where = EventFilter(kinds=(kind,) if kind else (), artwork_id=artwork)
    try:
        with rt.pool.connection() as conn:
            found = list_events(conn, session.artist_id, where, PAGE, cursor)
            titles = _titles(conn, session.artist_id, found.events)
    except CursorError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    return page(
        request,
        "events.html",
        session,
        events=[{**e, "said": describe(e["kind"], e["data"])} for e in found.events],
        titles=titles,
        kinds=KINDS,
        kind=kind,
        artwork=artwork,
        next_cursor=found.next_cursor,
    )


def _titles(
    conn: psycopg.Connection, artist_id: UUID, events: list[dict[str, Any]]
) -> dict[UUID, str]:
    ids = {e["artwork_id"] for e in events if e["artwork_id"] is not None}
    if not ids:
        return {}
    rows = conn.execute(
        "SELECT id, coalesce(title, original_filename, left(sha256, 12)) AS name FROM artworks"
        " WHERE artist_id = %s AND id = ANY(%s)",
        (artist_id, list(ids)),
    ).fetchall()
    return {r["id"]: r["name"] for r in rows}


@router.get("/claims", response_class=HTMLResponse)
def claims_page(
    request: Request,
    rt: RuntimeDep,
    session: LoggedIn,
    cursor: Annotated[str | None, Query(max_length=300)] = None,
    output: UUID | None = None,
) -> HTMLResponse:
    return _claims(request, rt, session, cursor, {"output_id": str(output or "")})


def _claims(
    request: Request,
    rt: Runtime,
    session: PortalSession,
    cursor: str | None,
    form: dict[str, str],
    status_code: int = 200,
    error: str | None = None,
) -> HTMLResponse:
    try:
        with rt.pool.connection() as conn:
            found = list_claims(conn, ClaimFilter(artist_id=session.artist_id), PAGE, cursor)
            works = rt.registry.list_artworks(conn, session.artist_id, 500, None, False)
            adapter_claims = conn.execute(
                "SELECT c.*, a.name AS adapter_name, a.status AS adapter_status"
                " FROM adapter_claims c JOIN adapters a ON a.id = c.adapter_id"
                " WHERE c.artist_id = %s ORDER BY c.created_at DESC, c.id DESC LIMIT 200",
                (session.artist_id,),
            ).fetchall()
    except CursorError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    return page(
        request,
        "claims.html",
        session,
        status_code,
        claims=found.claims,
        next_cursor=found.next_cursor,
        works=works,
        adapter_claims=adapter_claims,
        form=form,
        error=error,
    )


@router.post("/claims", response_class=HTMLResponse)
async def file_claim_page(
    request: Request, rt: RuntimeDep, image_work: ImageWorkDep, session: PostedForm
) -> Response:
    raw = await request.form()
    fields = {k: v for k, v in raw.items() if isinstance(v, str)}
    form = {k: fields.get(k, "") for k in ("output_id", "artwork_id", "reason")}

    async def refuse(status: int, why: str) -> HTMLResponse:
        return await run_in_threadpool(_claims, request, rt, session, None, form, status, why)

    found = raw.get("image")
    image = found if isinstance(found, UploadFile) and (found.filename or found.size) else None
    try:
        body = ClaimForm.model_validate(
            {
                "output_id": form["output_id"].strip() or None,
                "artwork_id": form["artwork_id"] or None,
                "reason": form["reason"],
            }
        )
    except ValidationError as exc:
        return await refuse(422, form_problems(exc, _CLAIM_FIELDS))
    if body.output_id is None and image is None:
        why = "name the output by its id, or give the picture you found"
        return await refuse(422, why)
    # The picture is read only to trace the output when no id names it.
    data = b""
    if body.output_id is None and image is not None:
        data = await image.read(rt.settings.max_upload_bytes + 1)

    def work() -> dict[str, Any]:
        output_id = body.output_id
        if output_id is None:
            record = output_of_image(rt, data)
            if record is None:
                raise NotOurs(
                    "this picture is none of our outputs (no watermark of ours, no fingerprint "
                    "match with them): a claim here is against a picture made through this service"
                )
            output_id = record.id
        return file_claim(
            rt,
            actor=actor_for(session.artist_id),
            output_id=output_id,
            artist_id=session.artist_id,
            artwork_id=body.artwork_id,
            reason=body.reason,
        )

    try:
        await image_work.run(work)
    except ImageRejected as exc:
        return await refuse(rejection_status(exc), str(exc))
    except (NotFound, NotOurs) as exc:
        return await refuse(404, str(exc))
    except ClaimInvalid as exc:
        return await refuse(422, str(exc))
    except Conflict as exc:
        return await refuse(409, str(exc))
    return after_post("/portal/claims", "claim-filed")


@router.post("/claims/adapter", response_class=HTMLResponse)
async def file_adapter_claim(request: Request, rt: RuntimeDep, session: PostedForm) -> Response:
    """An artist's claim that a style adapter (LoRA) imitates their style."""
    fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    form = {k: fields.get(k, "") for k in ("adapter", "adapter_reason")}

    async def refuse(status: int, why: str) -> HTMLResponse:
        return await run_in_threadpool(_claims, request, rt, session, None, form, status, why)

    try:
        body = AdapterClaimForm.model_validate(
            {"adapter": form["adapter"].strip(), "reason": form["adapter_reason"]}
        )
    except ValidationError as exc:
        return await refuse(422, form_problems(exc, _CLAIM_FIELDS))

    def work() -> None:
        with rt.pool.connection() as conn:
            adapter_store(rt).file_claim(
                conn, actor_for(session.artist_id), body.adapter, session.artist_id, body.reason
            )

    try:
        await run_in_threadpool(work)
    except NotFound as exc:
        return await refuse(404, str(exc))
    except Conflict:
        why = "you have this claim open on that adapter already; it awaits a decision"
        return await refuse(409, why)
    return after_post("/portal/claims", "claim-filed")


@router.get("/claims/{claim_id}/picture")
async def claim_picture_page(
    claim_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, session: LoggedIn
) -> Response:
    png = await image_work.run(drawn_claim, rt, claim_id, session.artist_id)
    if png is None:
        raise PortalNotFound(f"you have no claim {claim_id}")
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-store"})
