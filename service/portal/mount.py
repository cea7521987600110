"""The portal in the application: its routers, its style sheet, and its answers to a missing
login, a refused form and a work that is not the artist's (pages, not JSON)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from service.portal import account_pages, activity_pages, auth_pages, works_pages
from service.portal.render import STATIC_DIR, page
from service.portal.sessions import FormRefused, LoginRequired, PortalSession, current_session
from service.portal.works_pages import PortalNotFound


def install_portal(app: FastAPI) -> None:
    for module in (auth_pages, works_pages, activity_pages, account_pages):
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


async def _session(request: Request) -> PortalSession | None:
    """The session to draw the page's menu with (None when the login is gone)."""
    try:
        return await run_in_threadpool(current_session, request, request.app.state.runtime)
    except Exception:  # the error page is drawn whatever went wrong with the session
        return None
