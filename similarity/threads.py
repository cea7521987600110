"""FAISS's OpenMP team size for query-time work.

A query searches small indexes many times (one per candidate in verification). An OpenMP team
per call costs more than it saves, and on a loaded machine a team whose threads wait for a core
stalls the call for whole scheduler slices (seconds were seen on 2 busy cores). Requests already
run in parallel on the server's threads, so each query uses one. OpenMP keeps the setting per
thread, hence a call at every query entry point (cheap after the first in a thread).
"""

from __future__ import annotations

import threading

import faiss

_STATE = threading.local()


def one_openmp_thread() -> None:
    """Make FAISS calls from the current thread run on a single OpenMP thread."""
    if not getattr(_STATE, "single", False):
        faiss.omp_set_num_threads(1)
        _STATE.single = True
