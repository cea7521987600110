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
# For each next state ns and oldest register bit x: the register is (x << 6) | ns.
_PRED_REG = np.stack([(x << (CONSTRAINT - 1)) | np.arange(_STATES) for x in (0, 1)])  # (2, 64)
_PRED_STATE = _PRED_REG >> 1


def coded_length(n_bits: int) -> int:
    return (n_bits + _TAIL) * RATE_INV


def encode(bits: np.ndarray) -> np.ndarray:
    """Encode 0/1 bits (zero tail appended); returns 0/1 coded bits of ``coded_length`` length."""
    state = 0
    out = []
    for b in np.concatenate([np.asarray(bits, dtype=np.int64), np.zeros(_TAIL, np.int64)]):
        reg = ((state << 1) | int(b)) & ((1 << CONSTRAINT) - 1)
        out.extend(int(s > 0) for s in _OUT_SYMBOLS[reg])
        state = reg & (_STATES - 1)
    return np.array(out, dtype=np.uint8)


def viterbi(soft: np.ndarray, n_bits: int) -> np.ndarray:
    """Maximum-correlation decoding; ``soft[i] > 0`` favours coded bit 1, magnitude = confidence."""
    soft = np.asarray(soft, dtype=np.float64).reshape(n_bits + _TAIL, RATE_INV)
    # (steps, 128) metric of each register value; summed by hand to stay off threaded BLAS
    branch = sum(soft[:, [i]] * _OUT_SYMBOLS[:, i] for i in range(RATE_INV))
    metric = np.full(_STATES, -np.inf)
    metric[0] = 0.0
    decisions = np.empty((len(branch), _STATES), dtype=np.uint8)
    for t, bm in enumerate(branch):
        cand = metric[_PRED_STATE] + bm[_PRED_REG]  # (2, 64)
        choice = np.argmax(cand, axis=0)
        decisions[t] = choice
        metric = cand[choice, np.arange(_STATES)]
    state = 0
    bits = np.empty(len(branch), dtype=np.uint8)
    for t in range(len(branch) - 1, -1, -1):
        bits[t] = state & 1
        state = int(_PRED_STATE[decisions[t, state], state])
    return bits[:n_bits]
