"""The artist portal in a real browser (Chromium, headless, driven by Playwright) against the
service on a real port: sign up, register works with their thumbnails shown, change a work's
choices, grant and revoke a licence, read the activity, log out."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.portal_support import PASSWORD
from tests.support import encode, photo_like

CHROMIUM = os.environ.get("CHOPMARK_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _browser_or_skip() -> str:
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    why = f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
    if os.environ.get("CHOPMARK_REQUIRE_BROWSER"):
        pytest.fail(why)  # CI installs it: its absence there is a broken install, not a skip
    pytest.skip(why)


@pytest.fixture
def served(settings, runtime) -> Iterator[str]:
    """The service on a free loopback port, in this process; its base URL."""
    import uvicorn

    from service.api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, runtime=runtime), port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture
def browser_page():
    executable = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def go(page, target) -> None:
    """Click a link or a form's button (a selector or a locator) and wait for the page it leads
    to: a click returns before the navigation it starts has loaded."""
    with page.expect_navigation():
        if isinstance(target, str):
            page.click(target)
        else:
            target.click()


def _loaded(page, selector: str) -> list[int]:
    """Natural widths of the images the selector finds: 0 for one that did not load."""
    return page.eval_on_selector_all(selector, "els => els.map(e => e.naturalWidth)")


def test_an_artist_uses_the_portal_in_a_browser(served, browser_page, tmp_path):
    page = browser_page
    files = []
    for seed in (601, 602):
        path = tmp_path / f"study-{seed}.jpg"
        path.write_bytes(encode(photo_like(seed)))
        files.append(str(path))

    # A visitor is sent to the login page, and from there to sign up.
    page.goto(f"{served}/portal/works")
    assert "/portal/login" in page.url
    go(page, "text=Sign up as an artist")
    page.fill("input[name=display_name]", "Mei Lin")
    page.fill("input[name=email]", "mei@example.org")
    page.fill("input[name=password]", PASSWORD)
    page.fill("input[name=password_again]", PASSWORD)
    go(page, "button:has-text('Create my account')")
    assert page.url.startswith(f"{served}/portal/works")
    assert "Welcome" in page.inner_text(".notice")

    # Two works at once, img2img allowed for them; their thumbnails show.
    page.set_input_files("input[name=files]", files)
    page.select_option("select[name=img2img]", "allow")
    go(page, "button:has-text('Register')")
    assert "2 registered" in page.inner_text("main")
    widths = _loaded(page, ".work img")
    assert len(widths) == 2 and all(w > 0 for w in widths)
    go(page, "a:has-text('Back to your works')")
    assert all(w > 0 for w in _loaded(page, ".work img"))
    assert page.locator(".work .badge.allow", has_text="img2img").count() == 2

    # One work: allow training, grant a licence, revoke it.
    go(page, "text=study-601.jpg")
    page.select_option("select[name=training]", "allow")
    go(page, "button:has-text('Save')")
    assert "Your choices are saved" in page.inner_text(".notice")
    assert page.locator(".badge.allow", has_text="training").count() == 1
    page.fill("input[name=grantee]", "platform-user-7")
    go(page, "button:has-text('Grant licence')")
    assert "The licence is granted" in page.inner_text(".notice")
    row = page.locator("table.licences tr", has_text="platform-user-7")
    assert "active" in row.inner_text()
    go(page, row.locator("button:has-text('Revoke')"))
    assert "revoked" in page.locator("table.licences tr", has_text="platform-user-7").inner_text()

    # The activity page lists what happened, newest first.
    go(page, "nav >> text=Activity")
    rows = page.locator("table.events tbody tr").all_inner_texts()
    assert "revoked" in rows[0]
    assert any("Licence granted to platform-user-7" in r for r in rows)
    assert sum("Registered" in r for r in rows) == 2

    # Logging out ends the session: the works page sends the browser to the login page again.
    go(page, "button:has-text('Log out')")
    assert "You are logged out" in page.inner_text(".notice")
    page.goto(f"{served}/portal/works")
    assert "/portal/login" in page.url
