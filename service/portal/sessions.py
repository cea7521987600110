"""Browser sessions of the portal: a random token in an HttpOnly cookie (only its hash is
stored), a CSRF token per session that every form posts back, and the dependencies that admit
a logged-in artist to a page or a form."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import quote
from uuid import UUID

import psycopg
from fastapi import Depends, Request

from service.api.deps import RuntimeDep
from service.portal.accounts import token_hash

COOKIE = "chopmark_portal"


@dataclass(frozen=True)
class PortalSession:
    artist_id: UUID
    display_name: str
    csrf: str
    expires_at: datetime


class LoginRequired(Exception):
    """Answered with a redirect to the login page, which comes back to ``next_path``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path

    @property
    def location(self) -> str:
        return "/portal/login?next=" + quote(self.next_path, safe="/")


class FormRefused(Exception):
    """A form posted without this session's CSRF token: answered 403."""


def start_session(conn: psycopg.Connection, artist_id: UUID, hours: int) -> str:
    """A new session's token; the artist's sessions that ended or expired a day ago or more are
    deleted meanwhile (the table holds live sessions and a day of history)."""
    token = secrets.token_urlsafe(32)
    conn.execute(
        "DELETE FROM portal_sessions WHERE artist_id = %s"
        " AND coalesce(ended_at, expires_at) < now() - interval '1 day'",
        (artist_id,),
    )
    conn.execute(
        "INSERT INTO portal_sessions (token_hash, artist_id, csrf_token, expires_at)"
        " VALUES (%s, %s, %s, now() + make_interval(hours => %s))",
        (token_hash(token), artist_id, secrets.token_urlsafe(24), hours),
    )
    conn.commit()
    return token


def session_for(conn: psycopg.Connection, token: str) -> PortalSession | None:
    row = conn.execute(
        "SELECT s.artist_id, a.display_name, s.csrf_token, s.expires_at"
        " FROM portal_sessions s JOIN artists a ON a.id = s.artist_id"
        " JOIN portal_accounts p ON p.artist_id = s.artist_id"
        " WHERE s.token_hash = %s AND s.ended_at IS NULL AND s.expires_at > now()",
        (token_hash(token),),
    ).fetchone()
    if row is None:
        return None
    return PortalSession(
        row["artist_id"], row["display_name"], row["csrf_token"], row["expires_at"]
    )


def end_session(conn: psycopg.Connection, token: str) -> None:
    conn.execute(
        "UPDATE portal_sessions SET ended_at = now() WHERE token_hash = %s AND ended_at IS NULL",
        (token_hash(token),),
    )
    conn.commit()


def current_session(request: Request, rt: RuntimeDep) -> PortalSession | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 128:
        return None
    with rt.pool.connection() as conn:
        return session_for(conn, token)


def _next_path(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def require_login(
    request: Request, session: Annotated[PortalSession | None, Depends(current_session)]
) -> PortalSession:
    """A page for a logged-in artist: anyone else is sent to the login page."""
    if session is None:
        raise LoginRequired(_next_path(request) if request.method == "GET" else "/portal/works")
    return session


async def require_form(
    request: Request, session: Annotated[PortalSession, Depends(require_login)]
) -> PortalSession:
    """A form post by a logged-in artist that carries this session's CSRF token."""
    form = await request.form()
    sent = form.get("csrf")
    if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise FormRefused("this form has expired or did not come from the portal: reload the page")
    return session


LoggedIn = Annotated[PortalSession, Depends(require_login)]
PostedForm = Annotated[PortalSession, Depends(require_form)]
MaybeLoggedIn = Annotated[PortalSession | None, Depends(current_session)]
