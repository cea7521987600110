"""Rate-1/3, constraint-length-7 convolutional code (generators 133, 171, 165 octal) with a
zero tail, and a soft-decision Viterbi decoder vectorised over the 64 states."""

from __future__ import annotations

import numpy as np

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

    The predecessors of next state ``ns`` are ``(ns >> 1) | (x << 5)`` for oldest bit ``x``, so
    the two candidate metrics of all 64 states are the state metrics each repeated twice."""
    soft = np.asarray(soft, dtype=np.float64).reshape(n_bits + _TAIL, RATE_INV)
    # (steps, 128) metric of each register value; summed by hand to stay off threaded BLAS
    branch = sum(soft[:, [i]] * _OUT_SYMBOLS[:, i] for i in range(RATE_INV))
    branch = branch.reshape(len(branch), 2, _STATES)  # [t, x, ns]: register (x << 6) | ns
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    decisions = np.empty((len(branch), _STATES), dtype=bool)  # True: oldest bit x was 1
    for t, bm in enumerate(branch):
        cand = np.repeat(metric, 2).reshape(2, _STATES) + bm
        np.greater(cand[1], cand[0], out=decisions[t])
        metric = np.maximum(cand[0], cand[1])
    state = 0
    bits = np.empty(len(branch), dtype=np.uint8)
    top = _STATES >> 1
    chosen = decisions.tolist()
    for t in range(len(branch) - 1, -1, -1):
        bits[t] = state & 1
        state = (top if chosen[t][state] else 0) | (state >> 1)
    return bits[:n_bits]
