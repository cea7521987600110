"""Signed webhook calls for finished moderation jobs.

The body is JSON; the header ``X-Chopmark-Signature: sha256=<hex>`` is the HMAC-SHA256 of the
exact body bytes under the job's webhook secret. The secret is made per job and returned once, in
the answer to ``POST /v1/moderation/batch`` (and again to the same key if it repeats the request
with the same ``Idempotency-Key``). A platform verifies a call by computing
``"sha256=" + hmac_sha256(secret, raw_body).hexdigest()`` and comparing it in constant time
(``verify_signature`` here does exactly that). The body names the job and the time it was sent,
so a replayed call is recognisable.

Only ``http`` and ``https`` URLs are accepted; redirects are not followed. Outside development,
addresses in private, loopback, link-local and reserved ranges are refused (unless the operator
allows them), so a job cannot be used to probe the service's own network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

SIGNATURE_HEADER = "X-Chopmark-Signature"
MAX_ATTEMPTS = 6
MAX_URL_LENGTH = 2000
TIMEOUT_SECONDS = 10.0


class WebhookUrlError(ValueError):
    """The URL cannot be used for a webhook; the message says why."""


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, body: bytes, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(sign(secret, body), header.strip())


def _address_is_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable now: delivery will fail and be retried
    for info in infos:
        addr = ipaddress.ip_address(info[4][0])
        if (
            addr.is_private
            or addr.is_loopback
            or addr.is_link_local
            or addr.is_reserved
            or addr.is_multicast
            or addr.is_unspecified
        ):
            return True
    return False


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, if it may be called; raises ``WebhookUrlError`` otherwise."""
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise WebhookUrlError(f"webhook_url is longer than {MAX_URL_LENGTH} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise WebhookUrlError("webhook_url must be an http or https URL")
    if not parts.hostname:
        raise WebhookUrlError("webhook_url names no host")
    if parts.username or parts.password:
        raise WebhookUrlError("webhook_url must not carry credentials")
    try:
        _ = parts.port
    except ValueError:
        raise WebhookUrlError("webhook_url has an invalid port") from None
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


def post_once(url: str, body: bytes, secret: str, *, event: str, delivery: str) -> Attempt:
    """One signed POST. Delivered on 2xx; 408, 429, 5xx and network errors may be retried."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "chopmark-webhooks/1",
        SIGNATURE_HEADER: sign(secret, body),
        "X-Chopmark-Event": event,
        "X-Chopmark-Delivery": delivery,
    }
    try:
        r = httpx.post(
            url, content=body, headers=headers, timeout=TIMEOUT_SECONDS, follow_redirects=False
        )
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"{type(exc).__name__}: {exc}", True)
    if 200 <= r.status_code < 300:
        return Attempt(True, r.status_code, None, False)
    retry = r.status_code in (408, 429) or r.status_code >= 500
    return Attempt(False, r.status_code, f"HTTP {r.status_code}", retry)
