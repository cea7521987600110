"""Fixtures for the generation room: the tiny pipeline cached once per session, a runner over it,
a demo LoRA, and a tiny SDXL folder for the SDXL code paths. All weights are seeded random."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from generation.adapters import make_test_lora
from generation.diffusion import DiffusionRunner, GenerationParams
from generation.hashing import HashCache
from generation.models import LoadedModel, load_model
from tests.generation.tiny_sdxl import build_tiny_sdxl_pipeline

SIZE = 128
STEPS = 2


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """The test machine is small and shared: one thread is faster than fighting over cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("generation-cache")


@pytest.fixture(scope="session")
def tiny_model(tiny_cache: Path) -> LoadedModel:
    return load_model(None, cache_dir=tiny_cache)


@pytest.fixture(scope="session")
def runner(tiny_model: LoadedModel, tiny_cache: Path) -> Iterator[DiffusionRunner]:
    shared = DiffusionRunner(tiny_model, hash_cache=HashCache(tiny_cache / "hashes.json"))
    yield shared
    shared.close()


@pytest.fixture(scope="session")
def demo_lora(tiny_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("loras")
    return make_test_lora(tiny_model.txt2img, folder / "demo-style.safetensors", seed=7, rank=4)


@pytest.fixture(scope="session")
def tiny_sdxl_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-sdxl") / "model"
    build_tiny_sdxl_pipeline(seed=0).save_pretrained(folder)
    return folder


def params(**overrides: Any) -> GenerationParams:
    """A small, fast request; override any field."""
    base = GenerationParams(
        prompt="a lighthouse at dusk, oil painting",
        negative_prompt="blurry",
        seed=1234,
        steps=STEPS,
        guidance=5.0,
        width=SIZE,
        height=SIZE,
    )
    return dataclasses.replace(base, **overrides)


def gradient_image(width: int, height: int) -> Image.Image:
    """A smooth synthetic RGB picture."""
    import numpy as np

    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")
