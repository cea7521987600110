"""The image generator as the request pipeline sees it, and a call-counting wrapper for tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from generation.params import DiffusionResult, GenerationParams, ModelInfo

# Called by a generator once the model is this request's, just before it runs, with whether the
# request had to wait for it (the model was busy when it came). Raising stops the request there:
# the model does not run, and the exception reaches the caller.
Admit = Callable[[bool], None]


@runtime_checkable
class ImageGenerator(Protocol):
    """Anything that turns generation parameters into an image (``DiffusionRunner`` is one)."""

    def run(self, params: GenerationParams, admit: Admit | None = None) -> DiffusionResult: ...

    async def run_async(
        self, params: GenerationParams, admit: Admit | None = None
    ) -> DiffusionResult: ...

    def info(self) -> ModelInfo: ...


# A generator may also offer ``loaded_info() -> ModelInfo | None``: the description without
# loading the model (None when it is not loaded yet); a blocked request's record uses it; and
# ``queue_depth``: requests running or waiting on it (a request arriving then is recorded
# ``queued`` until its turn).


class CountingGenerator:
    """Wraps a real generator and counts the calls that reached it."""

    def __init__(self, inner: ImageGenerator) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.calls: list[GenerationParams] = []

    @property
    def queue_depth(self) -> int:
        return int(getattr(self.inner, "queue_depth", 0))

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def _record(self, params: GenerationParams) -> None:
        with self._lock:
            self.calls.append(params)

    def _admitted(self, params: GenerationParams, admit: Admit | None) -> Admit:
        """A call counts once it is admitted: a request stopped at admission never reached
        the model."""

        def counted(waited: bool) -> None:
            if admit is not None:
                admit(waited)
            self._record(params)

        return counted

    def run(self, params: GenerationParams, admit: Admit | None = None) -> DiffusionResult:
        return self.inner.run(params, self._admitted(params, admit))

    async def run_async(
        self, params: GenerationParams, admit: Admit | None = None
    ) -> DiffusionResult:
        return await self.inner.run_async(params, self._admitted(params, admit))

    def info(self) -> ModelInfo:
        return self.inner.info()

    def loaded_info(self) -> ModelInfo | None:
        peek = getattr(self.inner, "loaded_info", None)
        return peek() if callable(peek) else self.inner.info()
