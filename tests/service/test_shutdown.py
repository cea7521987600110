"""A stop signal reaches the work that should end early, then the server's own handler."""

from __future__ import annotations

import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from service.api.shutdown import chain_stop_signals


def test_a_stop_signal_calls_back_then_the_handler_before_and_undo_restores_it():
    seen: list[str] = []

    def servers_handler(signum, frame):
        seen.append(f"server {signum}")

    before = signal.signal(signal.SIGTERM, servers_handler)
    try:
        undo = chain_stop_signals(lambda: seen.append("stop work"))
        signal.raise_signal(signal.SIGTERM)
        assert seen == ["stop work", f"server {int(signal.SIGTERM)}"]
        undo()
        assert signal.getsignal(signal.SIGTERM) is servers_handler
    finally:
        signal.signal(signal.SIGTERM, before)


def test_outside_the_main_thread_nothing_is_installed():
    before = signal.getsignal(signal.SIGTERM)
    undos = []
    t = threading.Thread(target=lambda: undos.append(chain_stop_signals(lambda: None)))
    t.start()
    t.join()
    undos[0]()
    assert signal.getsignal(signal.SIGTERM) is before


def test_serve_stops_within_its_grace_though_an_upload_never_finishes(settings):
    """A client that stalls mid-upload cannot hold a deploy: after CHOPMARK_SHUTDOWN_GRACE_SECONDS
    the server ends the request and exits."""
    import socket
    from urllib.parse import urlsplit

    from tests.service.test_serve import serve_env, start_serve, wait_ready

    proc, url = start_serve(serve_env(settings, CHOPMARK_SHUTDOWN_GRACE_SECONDS="2"))
    try:
        wait_ready(url, proc)
        stalled = socket.create_connection(("127.0.0.1", urlsplit(url).port))
        stalled.sendall(
            b"POST /v1/matches HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data;"
            b" boundary=b\r\nContent-Length: 1000000\r\n\r\n--b\r\n"
        )
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        started = time.monotonic()
        proc.wait(60)
        took = time.monotonic() - started
        stalled.settimeout(5)
        reply = b""
        while chunk := stalled.recv(65536):
            reply += chunk
        stalled.close()
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
        assert 1.5 <= took < 30, took  # the grace, then the app's own shutdown
        # the request cut off is answered as the service is stopping, not with a bare 500
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), reply
        assert b"retry-after: 2" in head.lower() and b"application/json" in head.lower()
        assert "stopping" in json.loads(body)["detail"]
    finally:
        if proc.poll() is None:
            proc.kill()


def test_checks_queued_past_the_stop_grace_get_503_and_none_is_recorded_behind_it(
    settings, runtime, make_key
):
    """A queue of checks longer than the stop grace: every request is answered 200 with its
    check recorded, or a JSON 503 with Retry-After and no check recorded for it; never a bare
    500, and no check recorded for a client told it failed."""
    from tests.service.test_serve import serve_env, start_serve, wait_ready
    from tests.support import auth, encode, photo_like

    h = auth(make_key("moderate"))
    env = serve_env(settings, CHOPMARK_SHUTDOWN_GRACE_SECONDS="1", CHOPMARK_IMAGE_WORKERS="1")
    proc, url = start_serve(env)
    pictures = [encode(photo_like(900 + i, (2000, 1500))) for i in range(4)]

    def check(i: int) -> tuple[int, httpx.Response | None]:
        files = {"file": ("p.jpg", pictures[i % 4], "image/jpeg")}
        try:
            r = httpx.post(
                f"{url}/v1/moderation/check",
                files=files,
                data={"context": f"cut-off-{i}"},
                headers=h,
                timeout=60,
            )
        except httpx.TransportError:  # not taken in before the server stopped listening
            return i, None
        return i, r

    try:
        wait_ready(url, proc)
        with ThreadPoolExecutor(150) as pool:
            pending = [pool.submit(check, i) for i in range(150)]
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            answers = [f.result() for f in pending]
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    answered = {i: r for i, r in answers if r is not None}
    assert {r.status_code for r in answered.values()} <= {200, 503}, answered
    ok = {f"cut-off-{i}" for i, r in answered.items() if r.status_code == 200}
    cut = [r for r in answered.values() if r.status_code == 503]
    assert ok and cut, "some checks finished and some were cut off"
    for r in cut:
        assert r.headers["retry-after"] == "2" and "stopping" in r.json()["detail"]
    with runtime.pool.connection() as conn:
        rows = conn.execute(
            "SELECT context FROM moderation_checks WHERE context LIKE 'cut-off-%'"
        ).fetchall()
    assert {row["context"] for row in rows} == ok


def test_image_work_asked_for_while_the_service_stops_is_answered_503(client, make_key):
    """A request that comes back for more image work once the lane has closed (the next file of
    a registration seen through the stop grace) is answered 503 with Retry-After, not 500."""
    from tests.support import auth, encode, photo_like

    h = auth(make_key("match"))
    client.app.state.image_work.close()
    r = client.post("/v1/matches", files={"file": ("p.jpg", encode(photo_like(1)), "image/jpeg")},
                    headers=h)
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert "stopping" in r.json()["detail"]
