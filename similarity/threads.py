"""Threads for query-time work: FAISS's OpenMP team size, and helper threads.

FAISS: a query searches small indexes many times (one per candidate in verification). An OpenMP
team per call costs more than it saves, and on a loaded machine a team whose threads wait for a
core stalls the call for whole scheduler slices (seconds were seen on 2 busy cores). Requests
already run in parallel on the server's threads, so each query uses one. OpenMP keeps the setting
per thread, hence a call at every query entry point (cheap after the first in a thread).

Helpers: a query has parts that do not depend on each other (the ORB features of the picture
and its fingerprints; halves of an index search). `Deferred` hands one part to a small shared
pool of helper threads while the caller goes on with another. A part that no helper has started
when its value is needed is taken back and done by the caller, so a busy pool never makes a
request wait for other requests' work, and the answer is the same with or without helpers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

import faiss

T = TypeVar("T")

_STATE = threading.local()
_POOL_LOCK = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_helpers: int = max(1, min(4, (os.cpu_count() or 1) - 1))


def one_openmp_thread() -> None:
    """Make FAISS calls from the current thread run on a single OpenMP thread."""
    if not getattr(_STATE, "single", False):
        faiss.omp_set_num_threads(1)
        _STATE.single = True


def helper_threads() -> int:
    """How many helper threads query work may use (0: none, everything in the caller)."""
    return _helpers


def set_helper_threads(count: int) -> None:
    """Size of the helper pool (0 turns helpers off). Work already handed out still finishes."""
    global _pool, _helpers
    if count < 0:
        raise ValueError("helper thread count must be at least 0")
    with _POOL_LOCK:
        old, _pool, _helpers = _pool, None, count
    if old is not None:
        old.shutdown(wait=False)


def _get_pool() -> ThreadPoolExecutor | None:
    global _pool
    if _helpers == 0:
        return None
    with _POOL_LOCK:
        if _pool is None:
            _pool = ThreadPoolExecutor(_helpers, thread_name_prefix="chopmark-query-helper")
        return _pool


def _forget_pool_in_child() -> None:
    """A forked child has none of the parent's threads: it makes its own pool when needed."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool_in_child)


def _run_helper(fn: Callable[[], T]) -> T:
    one_openmp_thread()
    return fn()


class Deferred(Generic[T]):
    """`fn()`, offered to a helper thread now; `result()` gives its value.

    `result()` waits for a helper that has started the work; work no helper has started yet is
    cancelled and done in the calling thread. Exceptions surface from `result()`.
    """

    __slots__ = ("_fn", "_future", "_lock")

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._lock = threading.Lock()  # one caller does work taken back; others wait for it
        pool = _get_pool()
        self._future: Future[T] | None = None
        if pool is not None:
            try:
                self._future = pool.submit(_run_helper, fn)
            except RuntimeError:  # pool shut down by set_helper_threads meanwhile
                self._future = None

    def result(self) -> T:
        with self._lock:
            future = self._future
            if future is None or future.cancel():
                value = self._fn()
                done: Future[T] = Future()
                done.set_result(value)
                self._future = done
                return value
        return future.result()
