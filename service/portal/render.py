"""HTML answers of the portal: Jinja2 templates (autoescaped), the security headers every page
carries, and redirects after a form (so a reload does not post it again)."""

from __future__ import annotations

from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from service.portal.sessions import PortalSession

TEMPLATES_DIR = Path(str(resources.files("service.portal") / "templates"))
STATIC_DIR = Path(str(resources.files("service.portal") / "static"))

_templates = Jinja2Templates(directory=TEMPLATES_DIR)

# No scripts at all; images and styles from the portal itself; forms post only to it; no
# framing (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


_templates.env.filters["when"] = _when


def page(
    request: Request,
    name: str,
    session: PortalSession | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    notice = request.query_params.get("done")
    response = _templates.TemplateResponse(
        request,
        name,
        {"session": session, "notice": NOTICES.get(notice or ""), **context},
        status_code=status_code,
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def form_problems(exc: ValidationError, labels: dict[str, str]) -> str:
    """What is wrong with a form, field by field, in the words of the page (``labels`` names
    the fields as the form shows them), without echoing what was typed."""
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "form"
        parts.append(f"{labels.get(field, field)}: {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def after_post(location: str, done: str | None = None) -> RedirectResponse:
    """303 to ``location`` (a portal path), with a notice the next page shows."""
    if done:
        location += ("&" if "?" in location else "?") + "done=" + done
    response = RedirectResponse(location, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


# The notices a redirect may ask for, by name (never text from the address bar).
NOTICES = {
    "signed-up": "Welcome: your artist account is ready. Register your works below.",
    "logged-in": "You are logged in.",
    "logged-out": "You are logged out.",
    "password-set": "Your password is set: log in with it.",
    "preferences": "Your choices are saved.",
    "defaults": "Your default choices are saved; works without their own choice follow them.",
    "withdrawn": "The work is withdrawn: it no longer matches. Its record stays.",
    "licence-granted": "The licence is granted.",
    "licence-revoked": "The licence is revoked.",
    "claim-filed": "Your claim is filed; the platform will decide on it.",
    "profile-changed": "Your name and e-mail address are saved.",
    "password-changed": "Your password is changed; your logins elsewhere are ended.",
    "sessions-ended": "Your logins in other browsers are ended.",
}
