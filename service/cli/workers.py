"""Worker processes for the CLI's long commands (`register`, `sources add`, `fingerprints
refresh`), and how Ctrl-C and SIGTERM stop them.

Ctrl-C reaches the whole process group: the command and every worker; so may SIGTERM (a service
manager stopping a unit), or it reaches the command alone (``kill``, a container stopping). The
workers start with both ignored, so the command alone answers them; it then stops after the
item it is storing (each item is stored on its own, so a later run takes up the rest) and says
what it did. A second Ctrl-C interrupts at once.
"""

from __future__ import annotations

import multiprocessing
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from types import FrameType

INTERRUPTED_EXIT = 130  # as a shell reports a command ended by Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_SPAWN = multiprocessing.get_context("spawn")


@contextmanager
def worker_pool(count: int, items: int) -> Iterator[ProcessPoolExecutor]:
    """``count`` spawned worker processes, no more than there are ``items`` to work on (each
    start costs a second or so of imports), all started now with Ctrl-C and SIGTERM ignored."""
    count = max(1, min(count, items))
    pool = ProcessPoolExecutor(count, mp_context=_SPAWN, initializer=_ignore_stop_signals)
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
def stop_on_signal(
    on_stop: Callable[[], None] | None = None,
) -> Iterator[threading.Event]:
    """While open, the first Ctrl-C or SIGTERM sets the event (and calls ``on_stop``) instead of
    ending the process; a second Ctrl-C raises KeyboardInterrupt, a second SIGTERM changes
    nothing (the command is stopping already)."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        stop.set()
        if on_stop is not None:
            on_stop()

    with _stop_signals_go_to(handler):
        yield stop


def cancel_rest(futures: Iterable[Future[object]]) -> None:
    """Cancel the work no worker has started (what is running finishes, unused, before the
    pool closes)."""
    for fut in futures:
        fut.cancel()


def _start_workers(pool: ProcessPoolExecutor, count: int) -> None:
    """A worker starts within ``submit`` while none is idle, and inherits the ignored signals
    (Python then installs no Ctrl-C handler of its own): started this way, none can be caught
    by Ctrl-C or SIGTERM half-way through its start, which would print a traceback or leave the
    pool broken."""
    with _stop_signals_go_to(signal.SIG_IGN):
        for _ in range(count):
            pool.submit(_nothing)


@contextmanager
def _stop_signals_go_to(
    handler: Callable[[int, FrameType | None], object] | signal.Handlers,
) -> Iterator[None]:
    """While open, Ctrl-C and SIGTERM are handled by ``handler``; then as before."""
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _nothing() -> None:
    return None


def _ignore_stop_signals() -> None:
    """In each worker as it starts (a worker started again after one died, say)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
