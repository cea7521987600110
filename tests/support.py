"""Helpers shared by tests: synthetic images, request headers, calls started together, a pool
held busy."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

T = TypeVar("T")


def all_at_once(calls: Sequence[Callable[[], T]]) -> tuple[list[T], list[BaseException]]:
    """Run each call in its own thread, all released together at a barrier; their results (in
    the order they finished) and whatever they raised."""
    start = threading.Barrier(len(calls))
    lock = threading.Lock()
    results: list[T] = []
    errors: list[BaseException] = []

    def run(call: Callable[[], T]) -> None:
        start.wait()
        try:
            value = call()
        except BaseException as exc:  # collected: the caller's assertion names it
            with lock:
                errors.append(exc)
            return
        with lock:
            results.append(value)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def photo_like(seed: int, size: tuple[int, int] = (640, 480)) -> Image.Image:
    """A deterministic picture with structure at several scales: smooth colour fields, shapes,
    edges and fine texture, so fingerprints and local features have something to hold on to."""
    rng = np.random.default_rng(seed)
    w, h = size
    small = rng.random((6, 8, 3))
    base = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(base)
    for _ in range(40):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=int(rng.integers(2, 8)))
        else:
            draw.line([x0, y0, x1, y1], fill=colour, width=int(rng.integers(2, 6)))
    noise = rng.normal(0, 12, (h, w, 3))
    arr = np.clip(
        np.asarray(base.filter(ImageFilter.GaussianBlur(0.7)), np.float64) + noise, 0, 255
    )
    return Image.fromarray(arr.astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **kw: object) -> bytes:
    out = io.BytesIO()
    if fmt == "JPEG":
        kw.setdefault("quality", 90)
    image.save(out, format=fmt, **kw)
    return out.getvalue()


@contextmanager
def one_connection_left(pool: Any) -> Iterator[None]:
    """While open, every connection of ``pool`` (a psycopg ``ConnectionPool``) but one is held,
    as busy requests would hold them: work that holds a connection while it waits for another
    then fails (after the pool's wait) instead of finishing."""
    stats = pool.get_stats()
    in_use = stats["pool_size"] - stats["pool_available"]
    taken = [pool.getconn() for _ in range(pool.max_size - in_use - 1)]
    try:
        yield
    finally:
        for conn in taken:
            pool.putconn(conn)
