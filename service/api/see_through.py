"""Blocking work with effects, seen through when its request is cut off.

When the server's stop grace runs out it cancels the requests still going. A thread cannot be
stopped midway, so work already running (a check recorded, artworks stored) would finish behind
the request's back while the client is told it failed. Awaited through here, it finishes and its
result is returned as usual instead: the request is answered with what was done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from contextvars import copy_context
from functools import partial
from typing import TypeVar

T = TypeVar("T")


async def finished(future: asyncio.Future[T]) -> T:
    """The result of ``future``, awaited to the end even if this task is cancelled meanwhile."""
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is None or future.cancelled():
            raise
        task.uncancel()
        return await future


async def run_to_completion(
    fn: Callable[..., T], *args: object, executor: Executor | None = None
) -> T:
    """``fn(*args)`` in a thread of ``executor`` (the loop's default one if None), seen
    through (see :func:`finished`)."""
    call = partial(copy_context().run, fn, *args)
    return await finished(asyncio.get_running_loop().run_in_executor(executor, call))
