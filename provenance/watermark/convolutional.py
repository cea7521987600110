"""Rate-1/3, constraint-length-7 convolutional code (generators 133, 171, 165 octal) with a
zero tail, and a soft-decision Viterbi decoder (its recursion compiled, in ``kernels``)."""

from __future__ import annotations

import numpy as np

from .kernels import viterbi_bits

CONSTRAINT = 7
GENERATORS = (0o133, 0o171, 0o165)
RATE_INV = len(GENERATORS)
_STATES = 1 << (CONSTRAINT - 1)
_TAIL = CONSTRAINT - 1


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    out = np.zeros_like(x)
    while np.any(x):
        out ^= x & 1
        x >>= 1
    return out


# Register value (7 bits, newest input at bit 0) -> the three output bits as +-1 symbols.
_REGS = np.arange(1 << CONSTRAINT)
_OUT_SYMBOLS = np.stack([2.0 * _parity(_REGS & g) - 1.0 for g in GENERATORS], axis=1)  # (128, 3)


def coded_length(n_bits: int) -> int:
    return (n_bits + _TAIL) * RATE_INV


def encode(bits: np.ndarray) -> np.ndarray:
    """Encode 0/1 bits (zero tail appended); returns 0/1 coded bits of ``coded_length`` length."""
    padded = np.concatenate([np.asarray(bits, dtype=np.int64), np.zeros(_TAIL, np.int64)])
    reg = np.zeros(len(padded), dtype=np.int64)  # register value at each step
    for k in range(CONSTRAINT):
        reg[k:] |= padded[: len(padded) - k] << k
    return (_OUT_SYMBOLS[reg] > 0).astype(np.uint8).ravel()


def viterbi(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Maximum-correlation decoding; ``soft[i] > 0`` favours coded bit 1, magnitude = confidence.

    The predecessors of next state ``ns`` are ``(ns >> 1) | (x << 5)`` for oldest bit ``x``; the
    recursion runs compiled (:func:`kernels.viterbi_bits`)."""
    soft = np.asarray(soft, dtype=np.float64).reshape(n_bits + _TAIL, RATE_INV)
    return viterbi_bits(soft, _OUT_SYMBOLS, _STATES)[:n_bits]
