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
from dataclasses import dataclass
from typing import TypeVar

import anyio
from anyio import to_thread

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


class ImageWork:
    """A bounded lane for image work; make it inside the running event loop (the lifespan)."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("image workers must be at least 1")
        self._limiter = anyio.CapacityLimiter(workers)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` in a worker thread once one of the `workers` places is free."""
        return await to_thread.run_sync(fn, *args, limiter=self._limiter)

    def status(self) -> ImageWorkStatus:
        stats = self._limiter.statistics()
        return ImageWorkStatus(
            workers=int(self._limiter.total_tokens),
            busy=stats.borrowed_tokens,
            waiting=stats.tasks_waiting,
        )
