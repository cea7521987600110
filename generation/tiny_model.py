"""The default model: a tiny Stable Diffusion pipeline with seeded random weights.

No weights can be downloaded, so with no model configured the service builds this pipeline from
configs, fully offline. Every part of the path runs (text encoder, UNet, VAE, schedulers, LoRA,
img2img, inpainting) but the weights are random: THE PICTURES IT MAKES ARE NOISE. The same seed
gives the same weights, hence the same images and the same model hash. The built pipeline is
saved to a cache folder so a later start loads it instead of building it again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel

from generation.clip_tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, build_clip_tokenizer
from generation.quiet import quiet_progress

TINY_MODEL_NAME = "chopmark-tiny-sd"
TINY_SPEC_VERSION = 1
_MARKER = "chopmark_tiny.json"
M = TypeVar("M", bound=torch.nn.Module)

SCHEDULER_CONFIG: dict[str, object] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def _seeded(seed: int, build: Callable[[], M]) -> M:
    """Build a module with the global torch RNG seeded, leaving the caller's RNG state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def _unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=32,
    )


def _vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32, 64, 64),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=32,
        sample_size=256,
    )


def _text_encoder() -> CLIPTextModel:
    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        projection_dim=32,
        bos_token_id=VOCAB_SIZE - 2,
        eos_token_id=VOCAB_SIZE - 1,
        pad_token_id=VOCAB_SIZE - 1,
    )
    return CLIPTextModel(config)


def build_tiny_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """Build the tiny pipeline in memory (float32, CPU). Same seed, same weights."""
    unet = _seeded(seed * 3, _unet)
    vae = _seeded(seed * 3 + 1, _vae)
    text_encoder = _seeded(seed * 3 + 2, _text_encoder).eval()
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=build_clip_tokenizer(),
        unet=unet,
        scheduler=EulerDiscreteScheduler.from_config(SCHEDULER_CONFIG),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _marker(seed: int) -> dict[str, object]:
    return {"name": TINY_MODEL_NAME, "spec_version": TINY_SPEC_VERSION, "seed": seed}


def is_tiny_folder(folder: str | os.PathLike[str]) -> bool:
    """True when ``folder`` holds a saved tiny pipeline."""
    return (Path(folder) / _MARKER).is_file()


def ensure_tiny_pipeline(folder: str | os.PathLike[str], seed: int = 0) -> Path:
    """Make sure ``folder`` holds the tiny pipeline for ``seed``; build and save it if not.

    The folder is written under a temporary name and renamed into place, so a crash never
    leaves a half-written cache. A folder built for another seed or spec is replaced.
    """
    target = Path(folder)
    marker_path = target / _MARKER
    if marker_path.is_file():
        try:
            if json.loads(marker_path.read_text("utf-8")) == _marker(seed):
                return target
        except ValueError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        with quiet_progress():
            build_tiny_pipeline(seed).save_pretrained(staging, safe_serialization=True)
        (staging / _MARKER).write_text(json.dumps(_marker(seed), sort_keys=True), "utf-8")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def tiny_seed(folder: str | os.PathLike[str]) -> int:
    """The seed recorded in a saved tiny pipeline folder."""
    return int(json.loads((Path(folder) / _MARKER).read_text("utf-8"))["seed"])
