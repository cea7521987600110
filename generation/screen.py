"""The screen after the model: the output against the training sources.

A fingerprint ``copy`` of a training source flags a likely memorised copy. With a CLIP embedder
configured, a cosine similarity above the threshold to a source's embedding flags a semantic
near-duplicate; without one the screen says CLIP is unavailable, and why. The screen never raises:
a failure is reported as a ``screen_failed`` flag (the policy decides whether flags block).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from PIL import Image

from similarity import Embedder, ImageSignals, compute_signals

DEFAULT_CLIP_THRESHOLD = 0.95


@dataclass(frozen=True)
class SourceHit:
    """A training source the output resembles."""

    source_id: str
    dataset: str
    licence: str | None
    decision: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SourceAnswer:
    hits: list[SourceHit]
    index: dict[str, Any]


class SourceIndex(Protocol):
    """Fingerprint matches against the training-source bank (service: FAISS + Postgres)."""

    def match(self, signals: ImageSignals) -> SourceAnswer: ...


class SourceEmbeddings(Protocol):
    """Nearest training sources by CLIP embedding (cosine), for one embedder's model."""

    def nearest(self, vector: np.ndarray, model: str, k: int) -> SourceAnswer: ...


@dataclass(frozen=True)
class Flag:
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ScreenResult:
    flags: list[Flag]
    fingerprint: dict[str, Any]
    clip: dict[str, Any]
    signals: ImageSignals | None = None
    elapsed_s: float = 0.0

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flags": [f.to_dict() for f in self.flags],
            "fingerprint": self.fingerprint,
            "clip": self.clip,
        }


class Screen:
    def __init__(
        self,
        sources: SourceIndex,
        *,
        embedder: Embedder | None = None,
        embeddings: SourceEmbeddings | None = None,
        clip_threshold: float = DEFAULT_CLIP_THRESHOLD,
        clip_neighbours: int = 5,
        signals: Callable[[Image.Image], ImageSignals] = compute_signals,
    ) -> None:
        self.sources = sources
        self.embedder = embedder
        self.embeddings = embeddings
        self.clip_threshold = clip_threshold
        self.clip_neighbours = clip_neighbours
        self._signals = signals

    def screen(self, image: Image.Image, signals: ImageSignals | None = None) -> ScreenResult:
        """Screen ``image``; ``signals``, when the caller already holds them (query-side, of
        the image as emitted), spare computing them again."""
        start = time.perf_counter()
        flags: list[Flag] = []
        try:
            if signals is None:
                signals = self._signals(image)
            fingerprint = self._fingerprint(signals, flags)
        except Exception as exc:
            fingerprint = {"error": f"{type(exc).__name__}: {exc}"}
            flags.append(
                Flag(
                    "screen_failed",
                    f"the training-source fingerprint screen could "
                    f"not run: {type(exc).__name__}: {exc}",
                )
            )
        clip = self._clip(image, flags)
        return ScreenResult(flags, fingerprint, clip, signals, time.perf_counter() - start)

    def _fingerprint(self, signals: ImageSignals, flags: list[Flag]) -> dict[str, Any]:
        answer = self.sources.match(signals)
        for hit in answer.hits:
            if hit.decision == "copy":
                flags.append(
                    Flag(
                        "likely_memorized_copy",
                        f"the output is a fingerprint copy of training source {hit.source_id} "
                        f"(dataset {hit.dataset!r}): likely memorised",
                        {"signal": "fingerprint", **hit.to_dict()},
                    )
                )
        return {"index": answer.index, "matches": [h.to_dict() for h in answer.hits]}

    def _clip(self, image: Image.Image, flags: list[Flag]) -> dict[str, Any]:
        embedder = self.embedder
        if embedder is None or not embedder.available:
            reason = embedder.reason if embedder is not None else "no CLIP embedder configured"
            return {"available": False, "reason": reason}
        if self.embeddings is None:
            return {"available": False, "reason": "no training-source embeddings configured"}
        info: dict[str, Any] = {
            "available": True,
            "model": embedder.name,
            "threshold": self.clip_threshold,
        }
        try:
            vector = embedder.embed([image])[0]
            answer = self.embeddings.nearest(vector, embedder.name, self.clip_neighbours)
        except Exception as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
            flags.append(Flag("screen_failed", f"the CLIP screen could not run: {info['error']}"))
            return info
        info["index"] = answer.index
        info["nearest"] = [h.to_dict() for h in answer.hits]
        for hit in answer.hits:
            if hit.score >= self.clip_threshold:
                flags.append(
                    Flag(
                        "semantic_near_duplicate",
                        f"the output's CLIP embedding is {hit.score:.3f} similar to training "
                        f"source {hit.source_id} (dataset {hit.dataset!r}; threshold "
                        f"{self.clip_threshold})",
                        {"signal": "clip", "model": embedder.name, **hit.to_dict()},
                    )
                )
        return info
