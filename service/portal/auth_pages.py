"""Portal pages anyone may open: sign up, log in, accept an invitation; and logging out."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from service.api.deps import RuntimeDep
from service.api.schemas import ArtistCreate
from service.portal import throttle
from service.portal.accounts import (
    InviteInvalid,
    LockedOut,
    LoginFailed,
    accept_invite,
    invited_artist,
    log_in,
    sign_up,
)
from service.portal.passwords import MAX_LENGTH, WeakPassword, check_strength
from service.portal.render import after_post, form_problems, page
from service.portal.sessions import (
    COOKIE,
    FormRefused,
    MaybeLoggedIn,
    PostedForm,
    end_session,
    start_session,
)
from service.portal.throttle import Throttled, client_of
from service.registry.records import Artist
from service.registry.store import Conflict
from service.runtime import Runtime

router = APIRouter(prefix="/portal", include_in_schema=False)

Password = Annotated[str, Form(max_length=MAX_LENGTH + 1)]


def _safe_next(target: str | None) -> str:
    """Only a portal path: never another site (an open redirect)."""
    if not target:
        return "/portal/works"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/portal/") or "\\" in target:
        return "/portal/works"
    return target


def same_origin(request: Request) -> None:
    """Forms posted before a login carry no session token: a post from another site (its
    Origin header names that site, neither this request's host nor ``CHOPMARK_PORTAL_URL``'s,
    for a proxy that changes the host; or ``null``, as from a sandboxed frame) is refused
    instead."""
    origin = request.headers.get("origin")
    if not origin:  # not sent by a browser's form post: nothing to go by
        return
    ours = {request.url.netloc}
    portal_url = request.app.state.runtime.settings.portal_url
    if portal_url:
        ours.add(urlsplit(portal_url).netloc)
    if urlsplit(origin).netloc not in ours:
        raise FormRefused("this form was posted from another site")


def _logged_in(rt: Runtime, artist_id: UUID, location: str) -> RedirectResponse:
    with rt.pool.connection() as conn:
        token = start_session(conn, artist_id, rt.settings.portal_session_hours)
    response = after_post(location)
    response.set_cookie(
        COOKIE,
        token,
        max_age=rt.settings.portal_session_hours * 3600,
        httponly=True,
        samesite="lax",
        secure=rt.settings.portal_cookie_secure,
        path="/portal",
    )
    return response


@router.get("")
def portal_home(session: MaybeLoggedIn) -> RedirectResponse:
    return after_post("/portal/works" if session else "/portal/login")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, session: MaybeLoggedIn, next: str | None = None) -> HTMLResponse:
    return page(request, "login.html", session, next=_safe_next(next), email="")


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    rt: RuntimeDep,
    email: Annotated[str, Form(max_length=320)],
    password: Password,
    next: Annotated[str | None, Form()] = None,
) -> Response:
    same_origin(request)
    client = client_of(request.client)

    def attempt() -> RedirectResponse:
        with rt.pool.connection() as conn:
            throttle.check(conn, client, "login_failed")
            try:
                artist_id = log_in(conn, email, password)
            except LoginFailed:
                throttle.record(conn, client, "login_failed")
                raise
        return _logged_in(rt, artist_id, _safe_next(next))

    try:
        return await run_in_threadpool(attempt)
    except (LoginFailed, LockedOut, Throttled) as exc:
        status = 401 if isinstance(exc, LoginFailed) else 429
        return page(
            request, "login.html", None, status, error=str(exc), next=_safe_next(next), email=email
        )


@router.get("/signup", response_class=HTMLResponse)
def signup_page(request: Request, rt: RuntimeDep, session: MaybeLoggedIn) -> HTMLResponse:
    return page(request, "signup.html", session, open=rt.settings.portal_signup == "open")


@router.post("/signup", response_class=HTMLResponse)
async def signup(
    request: Request,
    rt: RuntimeDep,
    display_name: Annotated[str, Form(max_length=400)],
    email: Annotated[str, Form(max_length=400)],
    password: Password,
    password_again: Password,
) -> Response:
    same_origin(request)
    if rt.settings.portal_signup != "open":
        return page(request, "signup.html", None, 403, open=False)
    again = {"display_name": display_name, "email": email}

    def refuse(status: int, why: str) -> HTMLResponse:
        return page(request, "signup.html", None, status, open=True, error=why, **again)

    try:
        who = ArtistCreate(display_name=display_name, email=email)
    except ValidationError as exc:
        return refuse(422, form_problems(exc, {"display_name": "name", "email": "e-mail address"}))
    if password != password_again:
        return refuse(422, "the two passwords differ")

    client = client_of(request.client)

    def create() -> RedirectResponse:
        check_strength(password, email=str(who.email))  # a weak password is not an attempt
        with rt.pool.connection() as conn:
            throttle.check(conn, client, "signup")
            throttle.record(conn, client, "signup")  # a refused address counts too
            artist = sign_up(conn, rt.registry, who.display_name, str(who.email), password)
        return _logged_in(rt, artist.id, "/portal/works?done=signed-up")

    try:
        return await run_in_threadpool(create)
    except Throttled as exc:
        return refuse(429, str(exc))
    except WeakPassword as exc:
        return refuse(422, str(exc))
    except Conflict:
        return refuse(
            409,
            "an artist with this e-mail address is registered already: log in, or ask the "
            "platform for an invitation link if your works were registered for you",
        )


@router.post("/logout")
def logout(request: Request, rt: RuntimeDep, session: PostedForm) -> RedirectResponse:
    with rt.pool.connection() as conn:
        end_session(conn, request.cookies[COOKIE])
    response = after_post("/portal/login", "logged-out")
    response.delete_cookie(COOKIE, path="/portal")
    return response


@router.get("/invite/{token}", response_class=HTMLResponse)
def invite_page(request: Request, token: str, rt: RuntimeDep) -> HTMLResponse:
    with rt.pool.connection() as conn:
        try:
            artist = rt.registry.get_artist(conn, invited_artist(conn, token))
        except InviteInvalid as exc:
            return page(request, "invite.html", None, 404, error=str(exc), artist=None)
    return page(request, "invite.html", None, artist=artist, token=token)


@router.post("/invite/{token}", response_class=HTMLResponse)
async def invite_accept(
    request: Request, token: str, rt: RuntimeDep, password: Password, password_again: Password
) -> Response:
    same_origin(request)

    def accept() -> RedirectResponse:
        with rt.pool.connection() as conn:
            accept_invite(conn, token, password)
        return after_post("/portal/login", "password-set")

    if password != password_again:
        error, status = "the two passwords differ", 422
    else:
        try:
            return await run_in_threadpool(accept)
        except WeakPassword as exc:
            error, status = str(exc), 422
        except InviteInvalid as exc:
            return page(request, "invite.html", None, 404, error=str(exc), artist=None)

    def invited() -> Artist:
        with rt.pool.connection() as conn:
            return rt.registry.get_artist(conn, invited_artist(conn, token))

    artist = await run_in_threadpool(invited)
    return page(request, "invite.html", None, status, error=error, artist=artist, token=token)
