"""Run one generation request on the loaded model: txt2img, img2img or inpainting, with adapters.

One :class:`DiffusionRunner` holds the process's model. Requests are serialised by a lock, so
concurrent callers queue instead of racing on the pipeline (schedulers and adapters are state);
``run_async`` hands the work to a dedicated single worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionControlNetImg2ImgPipeline, StableDiffusionControlNetPipeline
from PIL import Image

from generation.adapters import apply_adapters
from generation.controlnet import (
    ControlNetUnavailable,
    LoadedControlNet,
    load_controlnet,
    tiny_controlnet,
)
from generation.diffusion_protocol import Admit
from generation.hashing import HashCache
from generation.models import LoadedModel, load_model
from generation.params import (
    MAX_PROMPT_CHARS,
    MODES,
    AdapterUse,
    AppliedAdapter,
    DiffusionResult,
    GenerationParams,
    ModelInfo,
)
from generation.schedulers import make_scheduler, resolve_scheduler_name

__all__ = [
    "AdapterUse",
    "DiffusionResult",
    "DiffusionRunner",
    "GenerationParams",
    "QueueFullError",
    "shared_runner",
]

MIN_SIDE = 64
MAX_SEED = 2**63 - 1


class QueueFullError(RuntimeError):
    """Too many requests are already waiting for the model."""


class ServiceStopping(RuntimeError):
    """The process is stopping: a request waiting for the model is refused, and the one running
    is interrupted at its next denoising step."""


@dataclasses.dataclass(frozen=True)
class RunnerLimits:
    max_side: int = 2048
    max_pixels: int = 2048 * 2048
    max_steps: int = 150
    max_guidance: float = 30.0
    max_queue: int = 32


def _check_image(image: object, label: str) -> None:
    if not isinstance(image, Image.Image):
        raise ValueError(f"{label} must be a PIL image")


def validate_params(params: GenerationParams, limits: RunnerLimits) -> GenerationParams:
    """Check a request and return a copy with the scheduler name made canonical."""
    if not isinstance(params.prompt, str) or not isinstance(params.negative_prompt, str):
        raise ValueError("prompt and negative_prompt must be strings")
    if len(params.prompt) + len(params.negative_prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt and negative prompt exceed {MAX_PROMPT_CHARS} characters")
    if params.mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {params.mode!r}")
    for label, side in (("width", params.width), ("height", params.height)):
        if not isinstance(side, int) or isinstance(side, bool):
            raise ValueError(f"{label} must be an integer")
        if side % 8 != 0:
            raise ValueError(f"{label} {side} is not a multiple of 8")
        if not MIN_SIDE <= side <= limits.max_side:
            raise ValueError(f"{label} {side} outside {MIN_SIDE}..{limits.max_side}")
    if params.width * params.height > limits.max_pixels:
        raise ValueError(f"{params.width}x{params.height} exceeds {limits.max_pixels} pixels")
    if not isinstance(params.steps, int) or not 1 <= params.steps <= limits.max_steps:
        raise ValueError(f"steps must be an integer in 1..{limits.max_steps}")
    if not math.isfinite(params.guidance) or not 0 <= params.guidance <= limits.max_guidance:
        raise ValueError(f"guidance must be in 0..{limits.max_guidance}")
    if not isinstance(params.seed, int) or not 0 <= params.seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..{MAX_SEED}")
    if not math.isfinite(params.strength) or not 0 < params.strength <= 1:
        raise ValueError("strength must be in (0, 1]")
    if params.mode == "txt2img":
        if params.init_image is not None or params.mask_image is not None:
            raise ValueError("txt2img takes no init or mask image")
    else:
        _check_image(params.init_image, "init_image")
        if int(params.steps * params.strength) < 1:
            raise ValueError("steps x strength must be at least 1 for image-to-image")
    if params.mode == "inpaint":
        _check_image(params.mask_image, "mask_image")
    elif params.mask_image is not None:
        raise ValueError(f"{params.mode} takes no mask image")
    for adapter in params.adapters:
        if not isinstance(adapter, AdapterUse):
            raise ValueError("adapters must be AdapterUse values")
    if params.control_image is not None:
        _check_image(params.control_image, "control_image")
        if params.mode == "inpaint":
            raise ValueError("ControlNet conditioning is not offered with inpainting")
        if not math.isfinite(params.control_scale) or not 0 <= params.control_scale <= 2:
            raise ValueError("control_scale must be in 0..2")
    return dataclasses.replace(params, scheduler=resolve_scheduler_name(params.scheduler))


class DiffusionRunner:
    """The process's model and the queue in front of it."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        limits: RunnerLimits | None = None,
        hash_cache: HashCache | None = None,
        controlnet_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._model = model
        self._limits = limits or RunnerLimits()
        self._hash_cache = hash_cache
        self._run_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None
        self._base_scheduler = dict(model.txt2img.scheduler.config)
        self._controlnet_path = controlnet_path
        self._loaded_controlnet: LoadedControlNet | None = None
        self._control_pipes: dict[str, Any] = {}

    @classmethod
    def from_path(
        cls,
        model_path: str | os.PathLike[str] | None,
        *,
        cache_dir: str | os.PathLike[str],
        config_dir: str | os.PathLike[str] | None = None,
        limits: RunnerLimits | None = None,
        controlnet_path: str | os.PathLike[str] | None = None,
    ) -> DiffusionRunner:
        """Load ``model_path`` (None: the tiny default, cached in ``cache_dir``) and wrap it.
        ``controlnet_path`` is loaded when a request first brings a control image."""
        hash_cache = HashCache(Path(cache_dir) / "hashes.json")
        model = load_model(
            model_path, cache_dir=cache_dir, hash_cache=hash_cache, config_dir=config_dir
        )
        return cls(model, limits=limits, hash_cache=hash_cache, controlnet_path=controlnet_path)

    @property
    def model(self) -> LoadedModel:
        return self._model

    def info(self) -> ModelInfo:
        return self._model.info()

    @property
    def queue_depth(self) -> int:
        """Requests running or waiting right now."""
        with self._count_lock:
            return self._pending

    def _enter(self) -> int:
        with self._count_lock:
            if self._pending >= self._limits.max_queue:
                raise QueueFullError(f"{self._pending} requests already waiting for the model")
            ahead = self._pending
            self._pending += 1
            return ahead

    def _leave(self) -> None:
        with self._count_lock:
            self._pending -= 1

    def run(self, params: GenerationParams, admit: Admit | None = None) -> DiffusionResult:
        """Generate one image; blocks while earlier requests finish. ``admit`` is called once
        the model is free for this request, before it runs (see ``Admit``)."""
        checked = validate_params(params, self._limits)
        ahead = self._enter()
        try:
            return self._generate(checked, ahead, admit)
        finally:
            self._leave()

    async def run_async(
        self, params: GenerationParams, admit: Admit | None = None
    ) -> DiffusionResult:
        """Like :meth:`run`, on the runner's single worker thread; the event loop stays free."""
        checked = validate_params(params, self._limits)
        ahead = self._enter()
        try:
            future: Future[DiffusionResult] = self._worker().submit(
                self._generate, checked, ahead, admit
            )
        except BaseException:
            self._leave()
            raise
        future.add_done_callback(lambda _: self._leave())
        return await asyncio.wrap_future(future)

    def _worker(self) -> ThreadPoolExecutor:
        with self._count_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffusion")
            return self._executor

    def close(self) -> None:
        """Stop the worker thread after the queued requests finish."""
        with self._count_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)

    def _generate(
        self, params: GenerationParams, ahead: int, admit: Admit | None = None
    ) -> DiffusionResult:
        # Waited: queued behind another request (on the worker, as every async one is) or held
        # up by one that got the model first (a synchronous caller).
        free = self._run_lock.acquire(blocking=False)
        if not free:
            self._run_lock.acquire()
        waited = ahead > 0 or not free
        try:
            self._refuse_if_stopping()
            if admit is not None:
                admit(waited)
            return self._generate_admitted(params, ahead)
        finally:
            self._run_lock.release()

    def stop(self) -> None:
        """The process is stopping: requests waiting for the model are refused, and the one
        running stops at its next denoising step; each raises :class:`ServiceStopping`, so its
        record says it was interrupted rather than waiting for the lease to run out."""
        self._stopping.set()

    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise ServiceStopping("the service is stopping; submit the generation again")

    def _interrupt_when_stopping(
        self, pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        # Raised out of the denoising loop: diffusers' own interrupt flag would still decode
        # the latents, seconds at large sizes, for a picture nobody will see.
        self._refuse_if_stopping()
        return tensors

    def _step_ended(
        self, on_step: Callable[[int, int], None] | None
    ) -> Callable[[Any, int, Any, dict[str, Any]], dict[str, Any]]:
        """diffusers' end-of-step callback: stop when the process is stopping, and tell
        ``on_step`` how far the denoising is."""
        if on_step is None:
            return self._interrupt_when_stopping

        def ended(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            tensors = self._interrupt_when_stopping(pipe, step, timestep, tensors)
            total = int(getattr(pipe, "num_timesteps", 0) or step + 1)
            on_step(step + 1, total)
            return tensors

        return ended

    def _generate_admitted(self, params: GenerationParams, ahead: int) -> DiffusionResult:
        start = time.perf_counter()
        model = self._model
        applied: list[AppliedAdapter] = apply_adapters(
            model.txt2img, params.adapters, hash_cache=self._hash_cache
        )
        controlnet = None
        if params.control_image is not None:
            controlnet = self._controlnet()
            pipe = self._control_pipe(params.mode, controlnet)
        else:
            pipe = {
                "txt2img": model.txt2img,
                "img2img": model.img2img,
                "inpaint": model.inpaint,
            }[params.mode]
        pipe.scheduler = make_scheduler(params.scheduler, self._base_scheduler)
        size = (params.width, params.height)
        kwargs: dict[str, object] = {
            "prompt": params.prompt,
            "negative_prompt": params.negative_prompt,
            "num_inference_steps": params.steps,
            "guidance_scale": params.guidance,
            "generator": torch.Generator(device=model.device).manual_seed(params.seed),
            "output_type": "pil",
            "callback_on_step_end": self._step_ended(params.on_step),
        }
        if params.mode != "txt2img":
            assert params.init_image is not None
            kwargs["image"] = _fit(
                params.init_image.convert("RGB"), size, Image.Resampling.LANCZOS
            )
            kwargs["strength"] = params.strength
        if params.mode == "inpaint":
            assert params.mask_image is not None
            kwargs["mask_image"] = _fit(
                params.mask_image.convert("L"), size, Image.Resampling.BILINEAR
            )
        if params.mode != "img2img":
            kwargs["width"], kwargs["height"] = size
        if params.control_image is not None:
            control = _fit(params.control_image.convert("RGB"), size, Image.Resampling.LANCZOS)
            kwargs["control_image" if params.mode == "img2img" else "image"] = control
            kwargs["controlnet_conditioning_scale"] = params.control_scale
        with torch.inference_mode():
            output = pipe(**kwargs)
        image = output.images[0].convert("RGB")
        elapsed = time.perf_counter() - start
        return DiffusionResult(
            image=image,
            params=params,
            elapsed_s=elapsed,
            model=model.info(),
            adapters=applied,
            queued_behind=ahead,
            controlnet=controlnet.info() if controlnet is not None else None,
        )

    # ControlNet ---------------------------------------------------------------------------------
    def _controlnet(self) -> LoadedControlNet:
        """The ControlNet for this model, loaded on first use (under the run lock)."""
        if self._loaded_controlnet is None:
            model = self._model
            if model.family != "sd":
                raise ControlNetUnavailable(
                    f"ControlNet conditioning is offered for SD 1.x/2.x models, not {model.family}"
                )
            if self._controlnet_path is not None:
                self._loaded_controlnet = load_controlnet(
                    self._controlnet_path, device=model.device, dtype=model.dtype
                )
            elif model.is_default_tiny:
                self._loaded_controlnet = tiny_controlnet(model.txt2img.unet)
            else:
                raise ControlNetUnavailable(
                    "no ControlNet is configured for this model (CHOPMARK_CONTROLNET)"
                )
        return self._loaded_controlnet

    def _control_pipe(self, mode: str, controlnet: LoadedControlNet) -> Any:
        pipe = self._control_pipes.get(mode)
        if pipe is None:
            cls = (
                StableDiffusionControlNetImg2ImgPipeline
                if mode == "img2img"
                else StableDiffusionControlNetPipeline
            )
            pipe = cls.from_pipe(self._model.txt2img, controlnet=controlnet.model)
            pipe.set_progress_bar_config(disable=True)
            self._control_pipes[mode] = pipe
        return pipe


def _fit(image: Image.Image, size: tuple[int, int], resample: Image.Resampling) -> Image.Image:
    return image if image.size == size else image.resize(size, resample)


_SHARED: dict[tuple[str | None, str, str | None], DiffusionRunner] = {}
_SHARED_LOCK = threading.Lock()


def shared_runner(
    model_path: str | os.PathLike[str] | None,
    *,
    cache_dir: str | os.PathLike[str],
    config_dir: str | os.PathLike[str] | None = None,
    controlnet_path: str | os.PathLike[str] | None = None,
) -> DiffusionRunner:
    """The one runner per process for this model, loaded on first call."""
    key = (
        str(Path(model_path).resolve()) if model_path is not None else None,
        str(Path(cache_dir).resolve()),
        str(Path(controlnet_path).resolve()) if controlnet_path is not None else None,
    )
    with _SHARED_LOCK:
        runner = _SHARED.get(key)
        if runner is None:
            runner = DiffusionRunner.from_path(
                model_path,
                cache_dir=cache_dir,
                config_dir=config_dir,
                controlnet_path=controlnet_path,
            )
            _SHARED[key] = runner
        return runner
