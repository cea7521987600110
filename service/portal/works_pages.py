"""Portal pages of an artist's works: the list with the upload form, one work with its choices,
licences and events, withdrawing it, the artist's default choices. Portal login needed."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated
from uuid import UUID

import psycopg
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from service.api.deps import ImageWorkDep, RuntimeDep
from service.api.registration import register_uploads
from service.api.schemas import LicenseCreate
from service.api.text import clean_title
from service.db.keyset import CursorError, decode_cursor, encode_cursor
from service.portal.accounts import actor_for
from service.portal.event_text import describe
from service.portal.render import after_post, form_problems, page
from service.portal.sessions import LoggedIn, PortalSession, PostedForm
from service.registry.disputes import disputes_of_artwork
from service.registry.events import EventFilter, list_events
from service.registry.preferences import SYSTEM_DEFAULT, USES, effective
from service.registry.records import Artwork
from service.registry.store import NotFound
from service.runtime import Runtime

router = APIRouter(prefix="/portal", include_in_schema=False)

PAGE = 48
CHOICES = ("allow", "deny")


class PortalNotFound(LookupError):
    """Answered 404 with a page: no such work among the logged-in artist's."""


def own_artwork(
    rt: Runtime, conn: psycopg.Connection, session: PortalSession, artwork_id: UUID
) -> Artwork:
    try:
        art = rt.registry.get_artwork(conn, artwork_id)
    except NotFound:
        art = None
    if art is None or art.artist_id != session.artist_id:
        raise PortalNotFound(f"you have no work {artwork_id}")
    return art


def _choices(form: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(explicit choices, uses set back to the default) from a form's use selects."""
    chosen, cleared = {}, []
    for use in USES:
        value = form.get(use, "")
        if value in CHOICES:
            chosen[use] = value
        elif value == "":
            cleared.append(use)
        else:
            raise ValueError(f"{use}: choose allow, deny or the default")
    return chosen, cleared


@router.get("/works", response_class=HTMLResponse)
def works_page(
    request: Request,
    rt: RuntimeDep,
    session: LoggedIn,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    withdrawn: bool = False,
    q: Annotated[str | None, Query(max_length=200, description="in the title or file name")] = None,
) -> HTMLResponse:
    q = (q or "").strip() or None
    try:
        after = decode_cursor(cursor) if cursor else None
    except CursorError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    with rt.pool.connection() as conn:
        artist = rt.registry.get_artist(conn, session.artist_id)
        rows = rt.registry.list_artworks(
            conn, session.artist_id, PAGE + 1, after, withdrawn, newest_first=True, named=q
        )
    works, more = rows[:PAGE], len(rows) > PAGE
    return page(
        request,
        "works.html",
        session,
        works=works,
        defaults=effective(None, artist.default_preferences),
        next_cursor=encode_cursor(works[-1].created_at, works[-1].id) if more else None,
        withdrawn=withdrawn,
        q=q,
        max_files=rt.settings.max_files_per_request,
        max_mb=rt.settings.max_upload_bytes // (1024 * 1024),
    )


@router.post("/works", response_class=HTMLResponse)
async def upload_works(
    request: Request, rt: RuntimeDep, image_work: ImageWorkDep, session: PostedForm
) -> HTMLResponse:
    form = await request.form()
    files = [
        f for f in form.getlist("files") if isinstance(f, UploadFile) and (f.filename or f.size)
    ]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}

    def refuse(status: int, why: str) -> HTMLResponse:
        return page(request, "uploaded.html", session, status, error=why, stored=[], rejected=[])

    if not files:
        return refuse(422, "choose one or more image files")
    if len(files) > rt.settings.max_files_per_request:
        return refuse(413, f"at most {rt.settings.max_files_per_request} files at once")
    try:
        title = clean_title(fields.get("title") or None)
        chosen, _ = _choices(fields)
    except ValueError as exc:
        return refuse(422, str(exc))
    done = await register_uploads(
        rt, image_work, actor_for(session.artist_id), session.artist_id, files, title, chosen
    )
    return page(
        request,
        "uploaded.html",
        session,
        201 if done.stored else done.worst_status,
        stored=done.stored,
        rejected=done.rejected,
        disputed={d[side]["artwork_id"] for d in done.disputes for side in ("later", "earlier")},
        error=None if done.stored else "no file could be registered",
    )


@router.get("/works/{artwork_id}", response_class=HTMLResponse)
def work_page(
    request: Request, artwork_id: UUID, rt: RuntimeDep, session: LoggedIn
) -> HTMLResponse:
    now = datetime.now(UTC)
    with rt.pool.connection() as conn:
        art = own_artwork(rt, conn, session, artwork_id)
        licences = rt.registry.list_licenses(conn, artwork_id)
        events = list_events(conn, session.artist_id, EventFilter(artwork_id=artwork_id), 20)
        disputes = disputes_of_artwork(conn, artwork_id)
    return page(
        request,
        "work.html",
        session,
        art=art,
        defaults=effective(None, art.artist_default_preferences),
        licences=[(lic, lic.active_at(now)) for lic in licences],
        events=[{**e, "said": describe(e["kind"], e["data"])} for e in events.events],
        more_events=events.next_cursor is not None,
        disputes=disputes,
        uses=USES,
    )


@router.get("/works/{artwork_id}/thumbnail")
def work_thumbnail(artwork_id: UUID, rt: RuntimeDep, session: LoggedIn) -> Response:
    with rt.pool.connection() as conn:
        art = own_artwork(rt, conn, session, artwork_id)
    return Response(
        rt.thumbnails.get(art.sha256),
        media_type="image/webp",
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@router.post("/works/{artwork_id}/preferences", response_class=HTMLResponse)
async def change_work(
    request: Request, artwork_id: UUID, rt: RuntimeDep, session: PostedForm
) -> Response:
    fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}

    def change() -> None:
        chosen, cleared = _choices(fields)
        title = clean_title(fields.get("title") or None)
        with rt.pool.connection() as conn:
            own_artwork(rt, conn, session, artwork_id)
            rt.registry.update_artwork(
                conn,
                actor_for(session.artist_id),
                artwork_id,
                title=title,
                set_title="title" in fields,
                preferences=chosen,
                clear=cleared,
            )

    try:
        await run_in_threadpool(change)
    except ValueError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    return after_post(f"/portal/works/{artwork_id}", "preferences")


@router.post("/works/{artwork_id}/withdraw")
def withdraw_work(artwork_id: UUID, rt: RuntimeDep, session: PostedForm) -> RedirectResponse:
    with rt.pool.connection() as conn:
        own_artwork(rt, conn, session, artwork_id)
        rt.registry.withdraw_artwork(conn, actor_for(session.artist_id), artwork_id)
    rt.banks["artwork"].catch_up()
    return after_post(f"/portal/works/{artwork_id}", "withdrawn")


def _expiry(day: str) -> datetime | None:
    """A licence given until a day lasts through that day (UTC)."""
    if not day:
        return None
    try:
        last = datetime.strptime(day, "%Y-%m-%d").date()
    except ValueError:
        raise ValueError("the end date must be a day such as 2027-06-30") from None
    return datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)


@router.post("/works/{artwork_id}/licenses", response_class=HTMLResponse)
async def grant_licence(
    request: Request, artwork_id: UUID, rt: RuntimeDep, session: PostedForm
) -> Response:
    form = await request.form()
    try:
        expires = _expiry(str(form.get("expires") or ""))
        if expires is not None and expires <= datetime.now(UTC):
            raise ValueError("the end date has passed already")
        body = LicenseCreate(
            grantee=str(form.get("grantee") or ""),
            scopes=[s for s in form.getlist("scopes") if isinstance(s, str)],  # type: ignore[misc]
            expires_at=expires,
        )
    except ValidationError as exc:
        return page(
            request,
            "error.html",
            session,
            422,
            error=form_problems(exc, {"grantee": "platform user", "scopes": "uses"}),
        )
    except ValueError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    with rt.pool.connection() as conn:
        own_artwork(rt, conn, session, artwork_id)
        rt.registry.create_license(
            conn,
            actor_for(session.artist_id),
            artwork_id,
            body.grantee,
            sorted(set(body.scopes)),
            body.expires_at,
        )
    return after_post(f"/portal/works/{artwork_id}", "licence-granted")


@router.post("/works/{artwork_id}/licenses/{license_id}/revoke")
def revoke_licence(
    artwork_id: UUID, license_id: UUID, rt: RuntimeDep, session: PostedForm
) -> RedirectResponse:
    with rt.pool.connection() as conn:
        own_artwork(rt, conn, session, artwork_id)
        try:
            rt.registry.revoke_license(conn, actor_for(session.artist_id), artwork_id, license_id)
        except NotFound:
            raise PortalNotFound(f"this work has no licence {license_id}") from None
    return after_post(f"/portal/works/{artwork_id}", "licence-revoked")


@router.get("/defaults", response_class=HTMLResponse)
def defaults_page(request: Request, rt: RuntimeDep, session: LoggedIn) -> HTMLResponse:
    with rt.pool.connection() as conn:
        artist = rt.registry.get_artist(conn, session.artist_id)
    return page(
        request,
        "defaults.html",
        session,
        artist=artist,
        uses=USES,
        system=SYSTEM_DEFAULT,
    )


@router.post("/defaults", response_class=HTMLResponse)
async def change_defaults(request: Request, rt: RuntimeDep, session: PostedForm) -> Response:
    fields = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        chosen, cleared = _choices(fields)
    except ValueError as exc:
        return page(request, "error.html", session, 422, error=str(exc))
    with rt.pool.connection() as conn:
        rt.registry.update_artist_defaults(
            conn, actor_for(session.artist_id), session.artist_id, chosen, clear=cleared
        )
    return after_post("/portal/defaults", "defaults")
