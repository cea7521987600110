"""Compiling inner loops with numba: one pass over the pixels, no temporaries, no GIL.

Where an inner loop is many small array operations (the searches for pictures within a
picture) or a recursion (the watermark's Viterbi decoder), the interpreter's cost of each
operation outweighs the arithmetic. A compiled loop does the same arithmetic in one pass and
releases the GIL while it runs, so work on the query helper threads runs beside the request's.

Compiled on first use and cached beside the module (``NUMBA_CACHE_DIR`` moves the cache where
the package is read-only); `warm_up` compiles (or loads) the similarity kernels ahead of the
first request. Their callers hand them arrays as `frozen` makes them (C-contiguous, read-only,
of one dtype each), so each kernel has one compiled form, the one `warm_up` made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import numba
import numpy as np

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

_WARM_UPS: list[Callable[[], object]] = []


def compiled(fn: F) -> F:
    """``fn`` compiled without the GIL, cached on disk; compiled in memory at each start instead
    where no cache folder is writable (numba refuses to cache there)."""
    try:
        return numba.jit(nopython=True, nogil=True, cache=True)(fn)  # type: ignore[no-any-return]
    except RuntimeError:  # "cannot cache function ...: no locator available"
        log.warning("no writable cache folder for %s: compiled at each start", fn.__name__)
        return numba.jit(nopython=True, nogil=True)(fn)  # type: ignore[no-any-return]


def frozen(a: np.ndarray) -> np.ndarray:
    """``a`` as the compiled loops take arrays: C-contiguous and read-only (a view, or a copy
    where ``a`` is not contiguous). numba compiles a loop anew for each array type it meets, and
    a picture Pillow decoded is read-only where one OpenCV or numpy made is not: one type, one
    compiled form, made by `warm_up` rather than in a request."""
    out = np.ascontiguousarray(a)
    if out.flags.writeable:
        out = out.view()
        out.flags.writeable = False
    return out


def warms_up(call: Callable[[], object]) -> Callable[[], object]:
    """Register ``call``, which runs a module's kernels once on a small input, with `warm_up`."""
    _WARM_UPS.append(call)
    return call


def warm_up() -> None:
    """Compile (or load from the cache) every registered kernel of the similarity package."""
    # the modules that register their kernels, imported here so that none is left out
    from similarity import embedded, panels, pasted  # noqa: F401

    for call in _WARM_UPS:
        call()
