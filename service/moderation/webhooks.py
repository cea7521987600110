"""Signed webhook calls for finished moderation jobs.

The body is JSON; the header ``X-Chopmark-Signature: sha256=<hex>`` is the HMAC-SHA256 of the
exact body bytes under the job's webhook secret. The secret is made per job and returned once, in
the answer to ``POST /v1/moderation/batch`` (and again to the same key if it repeats the request
with the same ``Idempotency-Key``). A platform verifies a call by computing
``"sha256=" + hmac_sha256(secret, raw_body).hexdigest()`` and comparing it in constant time
(``verify_signature`` here does exactly that). The body names the job and the time it was sent,
so a replayed call is recognisable.

Only ``http`` and ``https`` URLs with a valid host name are accepted; redirects are not
followed. An attempt lasts at most ``TIMEOUT_SECONDS`` in all, however slowly the receiver
answers, and ends once the answer's status line and headers are in: its body is never read.

Outside development, every address that is not public (private, loopback, link-local,
reserved, shared carrier-NAT, and IPv6 forms of those) is refused (unless the operator allows
them), so a job cannot be used to probe the service's own network. Each delivery resolves
the host once, checks every address, and connects to the checked address itself (the ``Host``
header and TLS server name stay the URL's), so a name that re-resolves to an inner address
between the check and the connection (DNS rebinding) gets nowhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from service.api.text import has_control_characters

SIGNATURE_HEADER = "X-Chopmark-Signature"
# With the default 2 s base, the retries wait 2 s doubling to 10 minutes: the last of 12 attempts
# comes about 37 minutes after the first, so a receiver that is down for half an hour (a deploy,
# an outage) still gets the result. The job's results can be polled whatever happens.
MAX_ATTEMPTS = 12
MAX_URL_LENGTH = 2000
TIMEOUT_SECONDS = 10.0  # a whole attempt: connecting, sending, and the answer's status line


class WebhookUrlError(ValueError):
    """The URL cannot be used for a webhook; the message says why."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())


def _is_inner(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a public address: private, loopback, link-local, reserved, shared (carrier
    NAT, 100.64.0.0/10, where some clouds keep their metadata service), benchmarking, and IPv6
    forms that carry an inner IPv4 address (mapped, 6to4, Teredo)."""
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = addr.ipv4_mapped or addr.sixtofour or (addr.teredo[1] if addr.teredo else None)
        if embedded is not None and _is_inner(embedded):
            return True
    return (
        not addr.is_global
        or addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_reserved
        or addr.is_multicast
        or addr.is_unspecified
    )


def _host_problem(host: str) -> str | None:
    """Why ``host`` cannot be a host name or address at all, or None."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return "webhook_url's host is not a valid name (an empty or over-long label)"
    labels = ascii_host.rstrip(".").split(".")
    if len(ascii_host) > 253 or any(
        not label or len(label) > 63 or label.startswith("-") or label.endswith("-")
        for label in labels
    ):
        return "webhook_url's host is not a valid name"
    return None


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every address ``host`` resolves to now (a literal address is itself); [] if none."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # unknown now, or a name that cannot be encoded
        return []
    seen: dict[str, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
    for info in infos:
        text = str(info[4][0]).split("%")[0]  # drop an IPv6 zone
        seen.setdefault(text, ipaddress.ip_address(text))
    return list(seen.values())


def _address_is_private(host: str) -> bool:
    # Unresolvable now: the delivery will fail and be retried (and checked again then).
    return any(_is_inner(a) for a in _resolve(host))


def pinned_target(url: str, *, allow_private: bool) -> tuple[str, dict[str, str], dict]:
    """Resolve the URL's host once, check the addresses, and return the URL rewritten to the
    first address with the headers and request extensions that keep the original host for
    ``Host`` and TLS; raises ``WebhookUrlError`` for an inner address, ``OSError`` if the host
    does not resolve."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    addresses = _resolve(host)
    if not addresses:
        raise OSError(f"cannot resolve {host}")
    if not allow_private and any(_is_inner(a) for a in addresses):
        raise WebhookUrlError("webhook_url points at a private or local address")
    address = addresses[0]
    literal = f"[{address}]" if address.version == 6 else str(address)
    netloc = literal if parts.port is None else f"{literal}:{parts.port}"
    pinned = parts._replace(netloc=netloc).geturl()
    headers = {"Host": parts.netloc.rsplit("@", 1)[-1]}
    extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
    return pinned, headers, extensions


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if it may be called; raises ``WebhookUrlError`` otherwise."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    if has_control_characters(url) or any(c.isspace() for c in url):
        raise WebhookUrlError("webhook_url holds white space or control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. "Invalid IPv6 URL" for http://[::1/
        raise WebhookUrlError(f"webhook_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError("webhook_url must be an http or https URL")
    if not parts.hostname:
        raise WebhookUrlError("webhook_url names no host")
    if parts.username or parts.password:
        raise WebhookUrlError("webhook_url must not carry credentials")
    try:
        port = parts.port
    except ValueError:
        raise WebhookUrlError("webhook_url has an invalid port") from None
    if port == 0:
        raise WebhookUrlError("webhook_url has an invalid port")
    problem = _host_problem(parts.hostname)
    if problem:
        raise WebhookUrlError(problem)
    if not allow_private and _address_is_private(parts.hostname):
        raise WebhookUrlError("webhook_url points at a private or local address")
    return url


def backoff_seconds(attempts: int, base: float) -> float:
    """Delay before attempt ``attempts + 1``: base, 2*base, 4*base, ... at most 10 minutes."""
    return float(min(600.0, base * (2 ** max(0, attempts - 1))))


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    status: int | None
    error: str | None
    retry: bool


def post_once(
    url: str,
    body: bytes,
    secret: str,
    *,
    event: str,
    delivery: str,
    allow_private: bool = False,
) -> Attempt:
    """One signed POST to the address checked for this very attempt. Delivered on 2xx; 408,
    429, 5xx and network errors may be retried; an address that turned private may not."""
    try:
        target, pin_headers, extensions = pinned_target(url, allow_private=allow_private)
    except WebhookUrlError as exc:
        return Attempt(False, None, str(exc), False)
    except OSError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", True)
    except ValueError as exc:  # a URL that cannot be called at all: no retry helps
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", False)
    headers = {
        **pin_headers,
        "Content-Type": "application/json",
        "User-Agent": "chopmark-webhooks/1",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Chopmark-Event": event,
        "X-Chopmark-Delivery": delivery,
    }
    try:
        status = asyncio.run(
            asyncio.wait_for(_post(target, body, headers, extensions), TIMEOUT_SECONDS)
        )
    except TimeoutError:
        return Attempt(False, None, f"no answer within {TIMEOUT_SECONDS:.0f} s", True)
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", True)
    except (ValueError, TypeError) as exc:  # httpx refusing the URL or a header
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", False)
    if 200 <= status < 300:
        return Attempt(True, status, None, False)
    retry = status in (408, 429) or status >= 500
    return Attempt(False, status, f"HTTP {status}", retry)


async def _post(target: str, body: bytes, headers: dict[str, str], extensions: dict) -> int:
    """The status of one POST, read from the answer's status line and headers (a receiver that
    trickles its body holds nothing); ``asyncio.wait_for`` bounds the whole exchange."""
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, follow_redirects=False) as client:
        request = client.build_request(
            "POST", target, content=body, headers=headers, extensions=extensions
        )
        response = await client.send(request, stream=True)
        await response.aclose()
        return response.status_code
