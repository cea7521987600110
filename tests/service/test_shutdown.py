"""A stop signal reaches the work that should end early, then the server's own handler."""

from __future__ import annotations

import signal
import threading

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
    import time
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
        stalled.close()
        assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it caught
        assert 1.5 <= took < 30, took  # the grace, then the app's own shutdown
    finally:
        if proc.poll() is None:
            proc.kill()
