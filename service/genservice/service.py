"""One process's generation service: the pipeline built over the runtime, and the model runner.

The runner is loaded on first use (``CHOPMARK_MODEL``, else the default tiny model, cached under
``<data dir>/models``) and is one per process.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.diffusion_protocol import Admit, ImageGenerator
from generation.gate import Gate, MetadataConsentReader
from generation.params import TINY_NOTICE, DiffusionResult, GenerationParams, ModelInfo
from generation.pipeline import GenerationPipeline
from generation.screen import DEFAULT_CLIP_THRESHOLD, Screen
from service.genservice.adapters import AdapterStore, StoreAdapterRegistry
from service.genservice.backends import RuntimeArtworkRegistry, RuntimeStamper
from service.genservice.records import GenerationStore
from service.genservice.sources import BankSourceIndex, SourceEmbeddingIndex, SourceStore
from similarity import Embedder, load_embedder

if TYPE_CHECKING:
    from service.runtime import Runtime


def model_cache_dir(rt: Runtime) -> Path:
    return rt.settings.data_path / "models"


def adapter_store(rt: Runtime) -> AdapterStore:
    return AdapterStore(rt.audit, rt.blobs, rt.settings.data_path / "adapters")


def source_store(rt: Runtime) -> SourceStore:
    return SourceStore(rt.audit)


def runtime_embedder(rt: Runtime) -> Embedder:
    """The runtime's CLIP embedder if it has one, else one loaded from the settings."""
    found = getattr(rt, "embedder", None)
    if found is not None:
        return found
    return load_embedder(rt.settings.clip_checkpoint, rt.settings.clip_model)


class LazyRunner:
    """An ``ImageGenerator`` that loads the process's diffusion runner on first use."""

    def __init__(
        self, model_path: Path | None, cache_dir: Path, controlnet_path: Path | None = None
    ) -> None:
        self.model_path = model_path
        self.cache_dir = cache_dir
        self.controlnet_path = controlnet_path
        self._lock = threading.Lock()
        self._runner: Any = None
        self._stopping = False

    @property
    def runner(self) -> Any:
        with self._lock:
            if self._runner is None:
                from generation.diffusion import shared_runner  # torch loads here, not at import

                self._runner = shared_runner(
                    self.model_path,
                    cache_dir=self.cache_dir,
                    controlnet_path=self.controlnet_path,
                )
                if self._stopping:  # told to stop while the model was loading
                    self._runner.stop()
            return self._runner

    @property
    def queue_depth(self) -> int:
        """Requests running or waiting on the model (none before it is loaded)."""
        with self._lock:
            runner = self._runner
        return runner.queue_depth if runner is not None else 0

    def run(self, params: GenerationParams, admit: Admit | None = None) -> DiffusionResult:
        return self.runner.run(params, admit)

    async def run_async(
        self, params: GenerationParams, admit: Admit | None = None
    ) -> DiffusionResult:
        return await self.runner.run_async(params, admit)

    def info(self) -> ModelInfo:
        return self.runner.info()

    def loaded_info(self) -> ModelInfo | None:
        """The model's description if it is loaded; None (and no loading) otherwise."""
        with self._lock:
            runner = self._runner
        return runner.info() if runner is not None else None

    def describe(self) -> dict[str, Any]:
        """What ``/readyz`` says of the model, without loading it."""
        loaded = self.loaded_info()
        if loaded is not None:
            return {"loaded": True, **dataclasses.asdict(loaded)}
        default = self.model_path is None
        return {
            "loaded": False,
            "configured": None if default else str(self.model_path),
            "is_default_tiny": default,
            "notice": TINY_NOTICE if default else None,
        }

    def stop(self) -> None:
        """See ``DiffusionRunner.stop``; a model still loading is stopped once it is loaded."""
        self._stopping = True
        with self._lock:
            runner = self._runner
        if runner is not None:
            runner.stop()

    def close(self) -> None:
        with self._lock:
            runner, self._runner = self._runner, None
        if runner is not None:
            runner.close()


class GenerationService:
    def __init__(
        self,
        rt: Runtime,
        generator: ImageGenerator,
        *,
        embedder: Embedder | None = None,
        screen_policy: str | None = None,
    ) -> None:
        settings = rt.settings
        self.rt = rt
        self.generator = generator
        self.embedder = embedder if embedder is not None else runtime_embedder(rt)
        self.adapters = adapter_store(rt)
        self.sources = source_store(rt)
        self.records = GenerationStore(
            rt.pool, rt.audit, lease_seconds=getattr(settings, "generation_lease_seconds", 60.0)
        )
        with rt.pool.connection() as conn:  # what a dead process left behind
            self.records.expire_abandoned(conn)
        gate = Gate(
            RuntimeArtworkRegistry(rt),
            StoreAdapterRegistry(rt.pool, self.adapters),
            MetadataConsentReader(rt.signing.trust_anchors_pem),
        )
        screen = Screen(
            BankSourceIndex(rt.pool, rt.banks["source"], self.sources),
            embedder=self.embedder,
            embeddings=SourceEmbeddingIndex(rt.pool),
            clip_threshold=float(
                getattr(settings, "clip_screen_threshold", DEFAULT_CLIP_THRESHOLD)
            ),
        )
        self.pipeline = GenerationPipeline(
            generator,
            gate,
            screen,
            RuntimeStamper(rt),
            self.records,
            screen_policy=screen_policy or getattr(settings, "screen_policy", "flag"),
        )

    @classmethod
    def open(cls, rt: Runtime, **kwargs: Any) -> GenerationService:
        """The service with the configured model, loaded lazily."""
        model = getattr(rt.settings, "model", None)
        controlnet = getattr(rt.settings, "controlnet", None)
        return cls(rt, LazyRunner(model, model_cache_dir(rt), controlnet), **kwargs)

    def stop(self) -> None:
        """The process is stopping: generations waiting for the model end as failed, and the
        one running stops at its next step (each recorded as interrupted)."""
        stop = getattr(self.generator, "stop", None)
        if callable(stop):
            stop()

    def close(self) -> None:
        self.records.close()
        close = getattr(self.generator, "close", None)
        if callable(close):
            close()


_CREATE_LOCK = threading.Lock()


def get_generation_service(holder: Any, rt: Runtime) -> GenerationService:
    """``holder.generation`` (e.g. ``app.state``), created on first use when the app's lifespan
    did not create one."""
    with _CREATE_LOCK:
        service = getattr(holder, "generation", None)
        if service is None:
            service = GenerationService.open(rt)
            holder.generation = service
        return service
