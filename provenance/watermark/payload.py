"""Payload framing (48 payload bits, then a CRC-32 check word) and the soft-binding hex form."""

from __future__ import annotations

import zlib

import numpy as np

PAYLOAD_BITS = 48
CHECK_BITS = 32
FRAME_BITS = PAYLOAD_BITS + CHECK_BITS
PAYLOAD_HEX_DIGITS = PAYLOAD_BITS // 4
_CRC_DOMAIN = b"org.chopmark.wm.v1"


def check_payload(payload: int) -> int:
    """Return ``payload`` unchanged, or raise ValueError when it is not an int in [0, 2**48)."""
    if isinstance(payload, bool) or not isinstance(payload, int | np.integer):
        raise ValueError(f"payload must be an int, got {type(payload).__name__}")
    payload = int(payload)
    if not 0 <= payload < 1 << PAYLOAD_BITS:
        raise ValueError(f"payload must be in [0, 2**{PAYLOAD_BITS}), got {payload}")
    return payload


def payload_to_hex(payload: int) -> str:
    """The soft-binding ``value`` string: 12 lowercase hex digits."""
    return f"{check_payload(payload):0{PAYLOAD_HEX_DIGITS}x}"


def hex_to_payload(s: str) -> int:
    """Inverse of :func:`payload_to_hex`; accepts upper or lower case, exactly 12 hex digits."""
    text = s.strip().lower()
    if len(text) != PAYLOAD_HEX_DIGITS or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"expected {PAYLOAD_HEX_DIGITS} hex digits, got {s!r}")
    return int(text, 16)


def _crc(payload: int) -> int:
    return zlib.crc32(payload.to_bytes(PAYLOAD_BITS // 8, "big"), zlib.crc32(_CRC_DOMAIN))


def int_to_bits(value: int, n: int) -> np.ndarray:
    """Most significant bit first, as uint8 0/1."""
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], dtype=np.uint8)


def bits_to_int(bits: np.ndarray) -> int:
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return value


def frame_bits(payload: int) -> np.ndarray:
    """Payload bits then CRC-32 bits (``FRAME_BITS`` long)."""
    payload = check_payload(payload)
    return np.concatenate(
        [int_to_bits(payload, PAYLOAD_BITS), int_to_bits(_crc(payload), CHECK_BITS)]
    )


def unframe_bits(bits: np.ndarray) -> int | None:
    """The payload when the check word matches, else None."""
    payload = bits_to_int(bits[:PAYLOAD_BITS])
    if bits_to_int(bits[PAYLOAD_BITS:FRAME_BITS]) != _crc(payload):
        return None
    return payload
