"""Silence the diffusers/transformers progress bars while models are built, saved or loaded."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import transformers
from diffusers.utils import logging as diffusers_logging


@contextmanager
def quiet_progress() -> Iterator[None]:
    """No progress bars inside this block; the previous setting comes back after."""
    libraries = (diffusers_logging, transformers.logging)
    before = [lib.is_progress_bar_enabled() for lib in libraries]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in zip(libraries, before, strict=True):
            if enabled:
                lib.enable_progress_bar()
