"""Handing independent parts of one job to other threads.

An ``Offload`` takes a function of no arguments and gives back its pending value: ``result()``
waits for it, or does the work in the caller where no thread took it. The default, ``inline``,
does the work at once in the caller; the service passes its helper threads. Either way the
answer is the same: only the time differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class Pending(Protocol):
    def result(self) -> Any: ...


Offload = Callable[[Callable[[], Any]], Pending]


class _Done:
    """``fn()``, done in the calling thread."""

    __slots__ = ("_value",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._value = fn()

    def result(self) -> Any:
        return self._value


def inline(fn: Callable[[], Any]) -> Pending:
    return _Done(fn)
