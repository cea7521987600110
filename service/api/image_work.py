"""The CPU-bound image work of requests (decode, fingerprints, watermark, matching, pictures, a
generation's input images and its gate), run off the event loop on at most `workers` threads at
once.

Requests beyond that wait their turn in arrival order without holding a thread. Each check
already spreads over the query helper and watermark threads, so a few at once fill the cores;
more only share them out finer. On 2 cores, 32 moderation checks at once through the plain
thread pool (40 threads) gave 12.3 requests/s, p50 2.7 s; held to 4 at a time, 20-21
requests/s, p50 1.5 s (`bench/results/moderation_load.md`).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import anyio

from service.api.see_through import run_to_completion
from service.cpus import usable_cpus

T = TypeVar("T")


def default_workers() -> int:
    """Two per usable CPU: a request waiting on Postgres or the disk leaves its core to another."""
    return 2 * usable_cpus()


@dataclass(frozen=True)
class ImageWorkStatus:
    workers: int
    busy: int
    waiting: int


class ImageWorkStopped(RuntimeError):
    """The service is stopping: no new image work is started (answered 503, retry)."""


class ImageWork:
    """A bounded lane for image work; make it inside the running event loop (the lifespan)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("image workers must be at least 1")
        self._limiter = anyio.CapacityLimiter(workers)
        self._threads = ThreadPoolExecutor(workers, thread_name_prefix="image-work")
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker thread once one of the `workers` places is free.

        Cancelled while waiting its turn (the server's stop grace ran out), it ends there and
        nothing ran. Once running, the work is seen through and its result returned even when
        the request is cancelled meanwhile: a thread cannot be stopped midway, and what it did
        (a moderation check recorded, an artwork stored) must reach the caller rather than be
        done behind an error."""
        started = False

        def call() -> T:
            nonlocal started
            started = True
            return fn(*args)

        async with self._limiter:
            if self._closed:  # a request seen through may come back for more (another file)
                raise ImageWorkStopped("the service is stopping")
            try:
                return await run_to_completion(call, executor=self._threads)
            except RuntimeError as exc:
                # the pool refused to start it ("cannot schedule new futures after shutdown");
                # a RuntimeError of the work itself is its own
                if self._closed and not started:
                    raise ImageWorkStopped("the service is stopping") from exc
                raise

    def close(self) -> None:
        """Blocking: take no more work, and wait for the work already running (it may still be
        recording what it did when the server stops)."""
        self._closed = True
        self._threads.shutdown(wait=True)

    def status(self) -> ImageWorkStatus:
        stats = self._limiter.statistics()
        return ImageWorkStatus(
            workers=int(self._limiter.total_tokens),
            busy=stats.borrowed_tokens,
            waiting=stats.tasks_waiting,
        )
