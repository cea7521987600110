"""Worker processes for the CLI's long commands (`register`, `sources add`, `fingerprints
refresh`), and Ctrl-C for them.

Ctrl-C reaches the whole process group: the command and every worker. The workers start with it
ignored, so the command alone answers it; the command then stops after the item it is storing
(each item is stored on its own, so a later run takes up the rest) and says what it did. A
second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager

INTERRUPTED_EXIT = 130  # as a shell reports a command ended by Ctrl-C
_SPAWN = multiprocessing.get_context("spawn")


@contextmanager
def worker_pool(count: int, items: int) -> Iterator[ProcessPoolExecutor]:
    """``count`` spawned worker processes, no more than there are ``items`` to work on (each
    start costs a second or so of imports), all started now with Ctrl-C ignored."""
    count = max(1, min(count, items))
    pool = ProcessPoolExecutor(count, mp_context=_SPAWN, initializer=_ignore_ctrl_c)
    try:
        _start_workers(pool, count)
        yield pool
    except BaseException:
        # a second Ctrl-C, an error: what is queued is not done, only what runs is waited for
        # (one shutdown call: a later one would clear the request to cancel)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


@contextmanager
def ctrl_c_stops() -> Iterator[threading.Event]:
    """While open, Ctrl-C sets the event instead of raising; a second Ctrl-C raises."""
    stop = threading.Event()

    def on_ctrl_c(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def cancel_rest(futures: Iterable[Future[object]]) -> None:
    """Cancel the work no worker has started (what is running finishes, unused, before the
    pool closes)."""
    for fut in futures:
        fut.cancel()


def _start_workers(pool: ProcessPoolExecutor, count: int) -> None:
    """A worker starts within ``submit`` while none is idle, and inherits the ignored signal
    (Python then installs no Ctrl-C handler of its own): started this way, none can be caught
    by Ctrl-C half-way through its start, which would print a traceback."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for _ in range(count):
            pool.submit(_nothing)
    finally:
        signal.signal(signal.SIGINT, previous)


def _nothing() -> None:
    return None


def _ignore_ctrl_c() -> None:
    """In each worker as it starts (a worker started again after one died, say)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
