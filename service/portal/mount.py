"""The portal in the application: its routers, its style sheet, and its answers to a missing
login, a refused form and a work that is not the artist's (pages, not JSON)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.db.keyset import CursorError
from service.portal import (
    account_pages,
    activity_pages,
    auth_pages,
    report_pages,
    works_pages,
)
from service.portal.render import STATIC_DIR, page
from service.portal.sessions import FormRefused, LoginRequired, PortalSession, current_session
from service.portal.works_pages import PortalNotFound
from service.registry.store import Conflict, NotFound


def install_portal(app: FastAPI) -> None:
    for module in (auth_pages, works_pages, activity_pages, account_pages, report_pages):
        app.include_router(module.router)
    app.mount("/portal/static", StaticFiles(directory=STATIC_DIR), name="portal-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> RedirectResponse:
        return RedirectResponse(exc.location, status_code=303)

    @app.exception_handler(FormRefused)
    async def _refused(request: Request, exc: FormRefused) -> HTMLResponse:
        return page(request, "error.html", await _session(request), 403, error=str(exc))

    @app.exception_handler(PortalNotFound)
    async def _not_found(request: Request, exc: PortalNotFound) -> HTMLResponse:
        return page(request, "error.html", await _session(request), 404, error=str(exc))

    _pages_for_refusals(app)


# Refusals the API answers with JSON (a malformed id in the address, no such page, a method a
# page does not take): a person at a browser gets them as a page.
_REFUSALS = (StarletteHTTPException, RequestValidationError, NotFound, Conflict, CursorError)


Handler = Callable[[Request, Exception], Awaitable[Response]]


def _pages_for_refusals(app: FastAPI) -> None:
    for kind in _REFUSALS:
        original = app.exception_handlers.get(kind)
        if original is None:
            continue

        async def as_page(
            request: Request, exc: Exception, original: Handler = original
        ) -> Response:
            response = await original(request, exc)
            portal = request.url.path == "/portal" or request.url.path.startswith("/portal/")
            if not portal or not 400 <= response.status_code < 500:
                return response
            said = _detail(response)
            return page(
                request, "error.html", await _session(request), response.status_code, error=said
            )

        app.add_exception_handler(kind, as_page)


def _detail(response: Response) -> str:
    try:
        detail = json.loads(bytes(response.body))["detail"]
    except (ValueError, KeyError, TypeError):
        return "that page or form cannot be served as asked"
    if isinstance(detail, list):
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', [])[1:]) or 'request'}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        )
    return str(detail)


async def _session(request: Request) -> PortalSession | None:
    """The session to draw the page's menu with (None when the login is gone)."""
    try:
        return await run_in_threadpool(current_session, request, request.app.state.runtime)
    except Exception:  # the error page is drawn whatever went wrong with the session
        return None
