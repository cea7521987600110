"""Load the generation model: a diffusers folder, a single-file checkpoint, or the tiny default.

Nothing is ever downloaded. Device is CUDA when present, else CPU; dtype float16 on CUDA, float32
on CPU. The img2img and inpainting pipelines share the txt2img pipeline's components, so the
weights are held once.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    DiffusionPipeline,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionInpaintPipeline,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLInpaintPipeline,
    StableDiffusionXLPipeline,
)

from generation.checkpoint_kind import detect_checkpoint_kind
from generation.hashing import HashCache, autov2, sha256_folder
from generation.params import TINY_NOTICE, ModelInfo
from generation.quiet import quiet_progress
from generation.single_file_configs import write_config_folder
from generation.tiny_model import (
    TINY_MODEL_NAME,
    ensure_tiny_pipeline,
    is_tiny_folder,
    tiny_seed,
)

MODEL_ENV = "CHOPMARK_MODEL"
MODEL_CONFIG_ENV = "CHOPMARK_MODEL_CONFIG"
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")

_FAMILIES: dict[str, tuple[type[DiffusionPipeline], ...]] = {
    "sd": (StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline),
    "sdxl": (
        StableDiffusionXLPipeline,
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLInpaintPipeline,
    ),
}
_CLASS_FAMILY = {"StableDiffusionPipeline": "sd", "StableDiffusionXLPipeline": "sdxl"}


class ModelLoadError(RuntimeError):
    """The configured model cannot be loaded (missing, unsupported, or incomplete)."""


@dataclass
class LoadedModel:
    name: str
    source: str
    family: str
    sha256: str
    autov2: str
    is_default_tiny: bool
    device: str
    dtype: torch.dtype
    txt2img: DiffusionPipeline
    img2img: DiffusionPipeline
    inpaint: DiffusionPipeline

    @property
    def notice(self) -> str | None:
        """A plain warning to show wherever the default tiny model is in use."""
        return TINY_NOTICE if self.is_default_tiny else None

    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            family=self.family,
            sha256=self.sha256,
            autov2=self.autov2,
            is_default_tiny=self.is_default_tiny,
            device=self.device,
            dtype=str(self.dtype).removeprefix("torch."),
            notice=self.notice,
        )


def pick_device() -> tuple[str, torch.dtype]:
    """``("cuda", float16)`` when a GPU is visible, else ``("cpu", float32)``."""
    if torch.cuda.is_available():
        return "cuda", torch.float16
    return "cpu", torch.float32


def default_model_path() -> Path | None:
    """The model named by ``CHOPMARK_MODEL``, or None for the tiny default."""
    value = os.environ.get(MODEL_ENV, "").strip()
    return Path(value).expanduser() if value else None


def default_model_config() -> Path | None:
    """The config folder named by ``CHOPMARK_MODEL_CONFIG`` for single-file checkpoints, if any."""
    value = os.environ.get(MODEL_CONFIG_ENV, "").strip()
    return Path(value).expanduser() if value else None


def _pipeline_options(family: str) -> dict[str, Any]:
    if family == "sdxl":
        # diffusers would add its own invisible watermark to SDXL output; chopmark stamps its own.
        return {"add_watermarker": False}
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _folder_family(folder: Path) -> str:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(f"{folder} is not a diffusers model folder (no model_index.json)")
    class_name = json.loads(index_path.read_text("utf-8")).get("_class_name", "")
    if class_name not in _CLASS_FAMILY:
        raise ModelLoadError(
            f"{folder}: pipeline {class_name!r} is not supported; "
            "use an SD 1.x/2.x or SDXL text-to-image model"
        )
    return _CLASS_FAMILY[class_name]


def _fp16_only(folder: Path) -> bool:
    unet = folder / "unet"
    has_plain = any(unet.glob("diffusion_pytorch_model.safetensors")) or any(
        unet.glob("diffusion_pytorch_model.bin")
    )
    return not has_plain and any(unet.glob("diffusion_pytorch_model.fp16.*"))


def _load_folder(folder: Path, family: str, dtype: torch.dtype) -> DiffusionPipeline:
    pipeline_class = _FAMILIES[family][0]
    options = _pipeline_options(family)
    if _fp16_only(folder):
        options["variant"] = "fp16"
    return pipeline_class.from_pretrained(folder, local_files_only=True, dtype=dtype, **options)


def _load_single_file(
    path: Path, dtype: torch.dtype, config_dir: Path | None
) -> tuple[DiffusionPipeline, str]:
    """Load an original-layout checkpoint with a local config folder: the operator's, or ours."""
    if config_dir is not None:
        family = _folder_family(config_dir)
        return _from_single_file(path, family, config_dir, dtype), family
    kind = detect_checkpoint_kind(path)
    family = "sdxl" if kind == "sdxl" else "sd"
    with tempfile.TemporaryDirectory(prefix=f"chopmark-{kind}-config-") as tmp:
        return _from_single_file(path, family, write_config_folder(kind, tmp), dtype), family


def _from_single_file(
    path: Path, family: str, config_dir: Path, dtype: torch.dtype
) -> DiffusionPipeline:
    return _FAMILIES[family][0].from_single_file(
        str(path),
        config=str(config_dir),
        local_files_only=True,
        dtype=dtype,
        **_pipeline_options(family),
    )


def _companions(
    pipe: DiffusionPipeline, family: str
) -> tuple[DiffusionPipeline, DiffusionPipeline]:
    """img2img and inpainting pipelines over the same component objects (no weight copies).

    Built from ``pipe.components`` directly: ``from_pipe`` would cast the shared modules to
    float32 unless told otherwise.
    """
    _, img2img_class, inpaint_class = _FAMILIES[family]
    options = _pipeline_options(family)
    options.pop("safety_checker", None)
    options.pop("feature_extractor", None)
    if family == "sdxl":
        options["force_zeros_for_empty_prompt"] = pipe.config.get(
            "force_zeros_for_empty_prompt", True
        )
    built = []
    for pipeline_class in (img2img_class, inpaint_class):
        expected, _ = pipeline_class._get_signature_keys(pipeline_class)
        components = {k: v for k, v in pipe.components.items() if k in expected}
        built.append(pipeline_class(**components, **options))
    return built[0], built[1]


def _load_any(
    path: Path, dtype: torch.dtype, hash_cache: HashCache, config_dir: Path | None
) -> tuple[DiffusionPipeline, str, str]:
    """Load a folder or a single file; return the pipeline, its family and its SHA-256."""
    if path.is_dir():
        family = _folder_family(path)
        return _load_folder(path, family, dtype), family, sha256_folder(path, hash_cache)
    if path.suffix.lower() in SINGLE_FILE_SUFFIXES:
        pipe, family = _load_single_file(path, dtype, config_dir)
        return pipe, family, hash_cache.sha256(path)
    raise ModelLoadError(
        f"{path}: expected a diffusers folder or a {'/'.join(SINGLE_FILE_SUFFIXES)} file"
    )


def load_model(
    model_path: str | os.PathLike[str] | None,
    *,
    cache_dir: str | os.PathLike[str],
    device: str | None = None,
    dtype: torch.dtype | None = None,
    tiny_seed_value: int = 0,
    hash_cache: HashCache | None = None,
    config_dir: str | os.PathLike[str] | None = None,
) -> LoadedModel:
    """Load the model at ``model_path``; with None the tiny default, built once into ``cache_dir``.

    ``model_path`` may be a diffusers folder (``model_index.json``) or a ``.safetensors``/``.ckpt``
    single-file checkpoint. Single files are recognised as SD 1.5 or SDXL and converted with the
    built-in configs; ``config_dir`` (a diffusers folder of configs, no weights needed) replaces
    them for other variants.
    """
    device = device or pick_device()[0]
    dtype = dtype or (torch.float16 if device.startswith("cuda") else torch.float32)
    cache_root = Path(cache_dir)
    if hash_cache is None:
        hash_cache = HashCache(cache_root / "hashes.json")

    is_tiny = model_path is None
    if model_path is None:
        path = ensure_tiny_pipeline(cache_root / f"tiny-sd-seed{tiny_seed_value}", tiny_seed_value)
    else:
        path = Path(model_path).expanduser()
        if not path.exists():
            raise ModelLoadError(f"model path does not exist: {path}")

    try:
        with quiet_progress():
            configs = Path(config_dir) if config_dir is not None else None
            pipe, family, sha = _load_any(path, dtype, hash_cache, configs)
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load model from {path}: {exc}") from exc

    if device != "cpu":
        pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    img2img, inpaint = _companions(pipe, family)
    for companion in (img2img, inpaint):
        companion.set_progress_bar_config(disable=True)

    if is_tiny or is_tiny_folder(path):
        name = f"{TINY_MODEL_NAME}-seed{tiny_seed(path)}"
    else:
        name = path.stem if path.is_file() else path.name
    return LoadedModel(
        name=name,
        source=str(path),
        family=family,
        sha256=sha,
        autov2=autov2(sha),
        is_default_tiny=is_tiny or is_tiny_folder(path),
        device=device,
        dtype=dtype,
        txt2img=pipe,
        img2img=img2img,
        inpaint=inpaint,
    )
