"""The informed embedding's common margin: solved piece by piece, it must be the value a plain
bisection on the margin converges to (the embedder used one until the exact solve replaced it)."""

from __future__ import annotations

import numpy as np
import pytest

from provenance.watermark.embedder import MIN_BIT_GAIN, largest_margin


def _bisected(pull: np.ndarray, gain: np.ndarray, budget: float) -> float:
    lo, hi = 0.0, float(np.max(np.abs(pull)) + 10 * np.max(gain))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        amp = np.maximum(MIN_BIT_GAIN, (mid - pull) / gain)
        if float(np.sum(amp * amp)) > budget:
            hi = mid
        else:
            lo = mid
    return lo


@pytest.mark.parametrize("seed", range(40))
def test_margin_is_the_largest_that_fits_the_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    gain = rng.uniform(0.2, 1.5, n)  # the embedder floors gains at a fifth of their median
    pull = rng.normal(0.0, rng.uniform(0.01, 1.0), n) * float(gain.mean())
    budget = float(n)
    margin = largest_margin(pull, gain, budget)
    assert margin == pytest.approx(_bisected(pull, gain, budget), rel=1e-9, abs=1e-12)
    if margin == 0.0:  # the lower bound: the picture works so hard against some bits that
        return  # even a zero margin spends more than the budget (the bisection stops there too)
    amp = np.maximum(MIN_BIT_GAIN, (margin - pull) / gain)
    assert float(np.sum(amp * amp)) <= budget * (1 + 1e-9)
    # a little more margin no longer fits
    more = np.maximum(MIN_BIT_GAIN, (margin * (1 + 1e-6) + 1e-9 - pull) / gain)
    assert float(np.sum(more * more)) > budget


def test_margin_never_falls_below_zero() -> None:
    # the picture works so hard against every bit that a zero margin is over the budget
    gain = np.full(10, 1.0)
    pull = np.full(10, -50.0)
    assert largest_margin(pull, gain, 10.0) == 0.0
    assert _bisected(pull, gain, 10.0) == 0.0
