"""Helpers for the portal's tests: signing up, reading a page's CSRF token, posting its forms."""

from __future__ import annotations

import re

PASSWORD = "correct horse battery"


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page carries no form token"
    return found.group(1)


def sign_up(client, name: str = "Mei Lin", email: str = "mei@example.org") -> str:
    """Sign up through the form; the client holds the login cookie after. Returns the page's
    CSRF token."""
    r = client.post(
        "/portal/signup",
        data={
            "display_name": name,
            "email": email,
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
        follow_redirects=False,
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
