"""Webhook delivery connects to the address it checked: a name that re-resolves to an inner
address (DNS rebinding) is refused, and the Host header and TLS name stay the URL's."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from service.moderation import webhooks


def fake_resolver(monkeypatch, *answers: str) -> list[str]:
    """getaddrinfo answering each call with the next address (the last one repeats)."""
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        addr = answers[min(len(asked), len(answers)) - 1]
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (addr, port or 0))]

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", getaddrinfo)
    return asked


def test_the_checked_address_is_the_one_connected_to(monkeypatch):
    fake_resolver(monkeypatch, "8.8.8.8")
    url, headers, extensions = webhooks.pinned_target(
        "https://hooks.example.com:8443/done?job=1", allow_private=False
    )
    assert url == "https://8.8.8.8:8443/done?job=1"
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {"sni_hostname": "hooks.example.com"}
    fake_resolver(monkeypatch, "2001:4860:4860::8888")
    url, headers, _ = webhooks.pinned_target("http://hooks.example.com/x", allow_private=False)
    assert url == "http://[2001:4860:4860::8888]/x" and headers["Host"] == "hooks.example.com"


def test_a_name_rebound_to_an_inner_address_is_refused(monkeypatch):
    asked = fake_resolver(monkeypatch, "8.8.8.8", "127.0.0.1")
    url = webhooks.check_url("http://rebind.example.com/hook", allow_private=False)  # public now
    result = webhooks.post_once(url, b"{}", "whsec_x", event="e", delivery="d")
    assert asked == ["rebind.example.com", "rebind.example.com"]
    assert not result.delivered and result.retry is False
    assert result.status is None and "private or local" in (result.error or "")


def test_an_unresolvable_host_is_retried_later(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror("no such host")

    monkeypatch.setattr(webhooks.socket, "getaddrinfo", fail)
    result = webhooks.post_once("http://gone.example.com/", b"{}", "s", event="e", delivery="d")
    assert not result.delivered and result.retry is True


@pytest.fixture
def receiver():
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(dict(self.headers))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], seen
    server.shutdown()


def test_delivery_keeps_the_urls_host_header(receiver, monkeypatch):
    port, seen = receiver
    fake_resolver(monkeypatch, "127.0.0.1")
    url = f"http://hooks.internal.test:{port}/done"
    refused = webhooks.post_once(url, b"{}", "s", event="e", delivery="d")
    assert not refused.delivered and seen == []  # loopback is refused unless allowed
    sent = webhooks.post_once(url, b"{}", "s", event="e", delivery="d", allow_private=True)
    assert sent.delivered and sent.status == 204
    assert seen[0]["Host"] == f"hooks.internal.test:{port}"
    assert webhooks.verify_signature("s", b"{}", seen[0][webhooks.SIGNATURE_HEADER])


def test_a_receiver_down_for_half_an_hour_still_gets_the_result():
    waits = [webhooks.backoff_seconds(n, 2.0) for n in range(1, webhooks.MAX_ATTEMPTS)]
    assert waits[:3] == [2.0, 4.0, 8.0] and max(waits) == 600.0
    assert 30 * 60 < sum(waits) < 60 * 60


@pytest.mark.parametrize(
    "address",
    [
        "100.64.0.1",
        "100.100.100.200",
        "198.18.0.1",
        "2002:7f00:1::1",
        "::ffff:10.0.0.1",
        "127.0.0.1",
        "169.254.169.254",
        "fd00::1",
        "0.0.0.0",
    ],
)
def test_every_address_that_is_not_public_is_inner(address):
    import ipaddress

    assert webhooks._is_inner(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "2002:808:808::1"])
def test_public_addresses_are_not_inner(address):
    import ipaddress

    assert not webhooks._is_inner(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://" + "a" * 64 + ".example/h", "not a valid name"),
        ("http://a..b/h", "not a valid name"),
        ("http://-bad-.example/", "not a valid name"),
        ("http://exa mple.com/", "white space"),
        ("http://x.example/h\r\nX-Inj: 1", "control characters"),
        ("http://127.0.0.1:0/", "invalid port"),
    ],
)
def test_urls_that_can_never_be_called_are_refused_at_once(url, says):
    """Even where inner addresses are allowed (development): such a URL was accepted, then
    retried for half an hour, or jammed the delivery of every webhook behind it."""
    with pytest.raises(webhooks.WebhookUrlError, match=says):
        webhooks.check_url(url, allow_private=True)


class Trickle:
    """A receiver on 127.0.0.1 that answers a byte at a time, 0.3 s apart: its status line
    (``head=True``), or after a whole head, its body."""

    def __init__(self, head: bool) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.head = head
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.recv(65536)
            head = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n"
            answer = head + b"x" * 40
            if not self.head:
                conn.sendall(head)
                answer = answer[len(head):]
            for byte in answer:
                if self.stop.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def timed_post(rx: Trickle) -> tuple[webhooks.Attempt, float]:
    """One delivery attempt to ``rx``, and how long it took."""
    try:
        started = time.monotonic()
        result = webhooks.post_once(rx.url, b"{}", "s", event="e", delivery="d",
                                    allow_private=True)
        return result, time.monotonic() - started
    finally:
        rx.close()


def test_an_attempt_ends_at_its_time_limit_however_slowly_the_receiver_answers(monkeypatch):
    """A receiver trickling its status line kept an attempt (and the webhook thread) busy for as
    long as it liked: every byte reset the per-read timeout."""
    monkeypatch.setattr(webhooks, "TIMEOUT_SECONDS", 1.5)
    result, took = timed_post(Trickle(head=True))
    assert not result.delivered and result.retry is True and "no answer within" in result.error
    assert took < 3.0, took


def test_an_answer_is_taken_at_its_status_line():
    """The status is all a delivery needs: a body sent slowly holds nothing."""
    result, took = timed_post(Trickle(head=False))
    assert result.delivered and result.status == 200
    assert took < 2.0, took  # the 40-byte body would take 12 s
