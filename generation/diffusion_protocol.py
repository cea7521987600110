"""The image generator as the request pipeline sees it, and a call-counting wrapper for tests."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from generation.params import DiffusionResult, GenerationParams, ModelInfo


@runtime_checkable
class ImageGenerator(Protocol):
    """Anything that turns generation parameters into an image (``DiffusionRunner`` is one)."""

    def run(self, params: GenerationParams) -> DiffusionResult: ...

    async def run_async(self, params: GenerationParams) -> DiffusionResult: ...

    def info(self) -> ModelInfo: ...


# A generator may also offer ``loaded_info() -> ModelInfo | None``: the description without
# loading the model (None when it is not loaded yet); a blocked request's record uses it.


class CountingGenerator:
    """Wraps a real generator and counts the calls that reached it."""

    def __init__(self, inner: ImageGenerator) -> None:
        self.inner = inner
        self._lock = threading.Lock()
        self.calls: list[GenerationParams] = []

    @property
    def call_count(self) -> int:
        with self._lock:
            return len(self.calls)

    def _record(self, params: GenerationParams) -> None:
        with self._lock:
            self.calls.append(params)

    def run(self, params: GenerationParams) -> DiffusionResult:
        self._record(params)
        return self.inner.run(params)

    async def run_async(self, params: GenerationParams) -> DiffusionResult:
        self._record(params)
        return await self.inner.run_async(params)

    def info(self) -> ModelInfo:
        return self.inner.info()

    def loaded_info(self) -> ModelInfo | None:
        peek = getattr(self.inner, "loaded_info", None)
        return peek() if callable(peek) else self.inner.info()
