"""Helpers for the portal's tests: signing up, reading a page's CSRF token, posting its forms."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

PASSWORD = "correct horse battery"


def signup_form(**changes: str) -> dict[str, str]:
    """The sign-up form as an artist fills it in, with ``changes``."""
    return {
        "display_name": "Mei Lin",
        "email": "mei@example.org",
        "password": PASSWORD,
        "password_again": PASSWORD,
        **changes,
    }


@contextmanager
def portal_with(settings, **changes) -> Iterator[tuple]:
    """A test client of the service with settings changed, and its runtime."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.runtime import Runtime

    changed = settings.model_copy(update=changes)
    rt = Runtime.open(changed)
    try:
        with TestClient(create_app(changed, runtime=rt)) as client:
            yield client, rt
    finally:
        rt.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page carries no form token"
    return found.group(1)


def sign_up(client, name: str = "Mei Lin", email: str = "mei@example.org") -> str:
    """Sign up through the form; the client holds the login cookie after. Returns the page's
    CSRF token."""
    r = client.post(
        "/portal/signup", data=signup_form(display_name=name, email=email), follow_redirects=False
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/portal/works?done=signed-up"
    page = client.get(r.headers["location"])
    assert page.status_code == 200
    return csrf_of(page.text)


def artist_id_of(runtime, email: str):
    with runtime.pool.connection() as conn:
        return conn.execute(
            "SELECT id FROM artists WHERE lower(email) = lower(%s)", (email,)
        ).fetchone()["id"]


def post(client, path: str, token: str, **data):
    return client.post(path, data={"csrf": token, **data}, follow_redirects=False)
