"""The portal's account page: the artist's name and address (a new address, which is the login,
needs the current password), and a password change (which ends the artist's logins in other
browsers). Portal login needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from service.api.deps import RuntimeDep
from service.api.schemas import ArtistCreate
from service.portal.accounts import (
    LoginFailed,
    actor_for,
    change_password,
    check_current_password,
    end_other_sessions,
)
from service.portal.passwords import MAX_LENGTH, WeakPassword
from service.portal.render import after_post, form_problems, page
from service.portal.sessions import COOKIE, LoggedIn, PortalSession, PostedForm
from service.registry.store import Conflict
from service.runtime import Runtime

router = APIRouter(prefix="/portal", include_in_schema=False)


def _account(
    request: Request,
    rt: Runtime,
    session: PortalSession,
    status: int = 200,
    error: str | None = None,
    profile_error: str | None = None,
    typed: dict[str, str] | None = None,
) -> HTMLResponse:
    with rt.pool.connection() as conn:
        artist = rt.registry.get_artist(conn, session.artist_id)
        live = conn.execute(
            "SELECT count(*) FROM portal_sessions WHERE artist_id = %s AND ended_at IS NULL"
            " AND expires_at > now()",
            (session.artist_id,),
        ).fetchone()["count"]
    return page(
        request,
        "account.html",
        session,
        status,
        artist=artist,
        live=live,
        error=error,
        profile_error=profile_error,
        typed=typed or {},
    )


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request, rt: RuntimeDep, session: LoggedIn) -> HTMLResponse:
    return _account(request, rt, session)


@router.post("/account/profile", response_class=HTMLResponse)
async def new_profile(request: Request, rt: RuntimeDep, session: PostedForm) -> Response:
    """The artist's name and e-mail address; a new address needs the current password."""
    form = await request.form()
    typed = {k: str(form.get(k) or "")[:400] for k in ("display_name", "email")}
    current = str(form.get("current") or "")[: MAX_LENGTH + 1]

    async def refuse(status: int, why: str) -> HTMLResponse:
        return await run_in_threadpool(_account, request, rt, session, status, None, why, typed)

    try:
        who = ArtistCreate(display_name=typed["display_name"], email=typed["email"])
    except ValidationError as exc:
        return await refuse(
            422, form_problems(exc, {"display_name": "name", "email": "e-mail address"})
        )

    def change() -> None:
        with rt.pool.connection() as conn:
            before = rt.registry.get_artist(conn, session.artist_id)
            if str(who.email).lower() != before.email.lower():  # the login: not for a session alone
                check_current_password(conn, session.artist_id, current)
            rt.registry.update_artist_profile(
                conn,
                actor_for(session.artist_id),
                session.artist_id,
                display_name=who.display_name,
                email=str(who.email),
            )

    try:
        await run_in_threadpool(change)
    except LoginFailed:
        return await refuse(403, "the current password is wrong: a new e-mail address needs it")
    except Conflict:
        return await refuse(409, "another artist logs in with this e-mail address")
    return after_post("/portal/account", "profile-changed")


@router.post("/account/password", response_class=HTMLResponse)
async def new_password(request: Request, rt: RuntimeDep, session: PostedForm) -> Response:
    form = await request.form()

    async def refuse(status: int, why: str) -> HTMLResponse:
        return await run_in_threadpool(_account, request, rt, session, status, why)

    current, new, again = (
        str(form.get(k) or "")[: MAX_LENGTH + 1] for k in ("current", "password", "password_again")
    )
    if new != again:
        return await refuse(422, "the two new passwords differ")

    def change() -> None:
        with rt.pool.connection() as conn:
            change_password(conn, session.artist_id, current, new)
            end_other_sessions(conn, session.artist_id, request.cookies[COOKIE])

    try:
        await run_in_threadpool(change)
    except LoginFailed as exc:
        return await refuse(403, str(exc))
    except WeakPassword as exc:
        return await refuse(422, str(exc))
    return after_post("/portal/account", "password-changed")


@router.post("/account/sessions/end")
def end_sessions(request: Request, rt: RuntimeDep, session: PostedForm) -> Response:
    with rt.pool.connection() as conn:
        end_other_sessions(conn, session.artist_id, request.cookies[COOKIE])
    return after_post("/portal/account", "sessions-ended")
