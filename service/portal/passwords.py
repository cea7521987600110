"""Password hashes for portal logins: scrypt (memory-hard), with the cost stored in the hash so
it can be raised later without locking anyone out."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1  # about 16 MiB and 50 ms a hash on this project's CI machine
_DKLEN = 32
MIN_LENGTH = 10
MAX_LENGTH = 256


class WeakPassword(ValueError):
    pass


def check_strength(password: str, *, email: str = "") -> None:
    """Refuse passwords too short to resist guessing, absurdly long, or equal to the address."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_LENGTH} characters")
    if email and password.strip().lower() == email.strip().lower():
        raise WeakPassword("the password must not be the e-mail address")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=256 * 1024 * 1024
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _derive(password, salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = _derive(password, _unb64(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, _unb64(digest))


@functools.cache
def decoy_hash() -> str:
    """Verified against when no account has the address, so an unknown address costs as long as
    a wrong password (the answer's timing does not tell which addresses have accounts)."""
    return hash_password(secrets.token_urlsafe(16))
