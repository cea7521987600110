"""Tell an SD 1.x single-file checkpoint from an SDXL one by its tensor names and shapes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from generation.safetensors_header import read_safetensors_header

CheckpointKind = Literal["sd15", "sdxl"]

_UNET = "model.diffusion_model."
_CONV_IN = _UNET + "input_blocks.0.0.weight"
_SD1_TO_K = _UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
_SDXL_SECOND_ENCODER = "conditioner.embedders.1.model."
_SD1_TEXT = "cond_stage_model.transformer."
_SD2_TEXT = "cond_stage_model.model."


class UnsupportedCheckpointError(ValueError):
    """A checkpoint that is not an SD 1.x or SDXL base text-to-image model."""


def tensor_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Name → shape of every tensor in a ``.safetensors`` (header only) or ``.ckpt`` file."""
    file_path = Path(path)
    if file_path.suffix.lower() == ".safetensors":
        header = read_safetensors_header(file_path)
        return {name: entry.shape for name, entry in header.tensors.items()}
    try:
        loaded = torch.load(file_path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:
        raise UnsupportedCheckpointError(
            f"{file_path.name}: cannot be read as a plain tensor checkpoint ({exc}); "
            "convert it to .safetensors"
        ) from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise UnsupportedCheckpointError(f"{file_path.name}: no state dict inside")
    return {k: tuple(v.shape) for k, v in loaded.items() if isinstance(v, torch.Tensor)}


def classify_shapes(shapes: dict[str, tuple[int, ...]]) -> CheckpointKind:
    """``sd15`` or ``sdxl`` from the original (LDM) key layout; raise for anything else."""
    if _CONV_IN not in shapes:
        raise UnsupportedCheckpointError(
            "not an original-layout Stable Diffusion checkpoint (no model.diffusion_model.*)"
        )
    in_channels = shapes[_CONV_IN][1] if len(shapes[_CONV_IN]) == 4 else -1
    if in_channels != 4:
        raise UnsupportedCheckpointError(
            f"UNet takes {in_channels} input channels; only 4-channel text-to-image models "
            "are supported (inpainting-only checkpoints are not)"
        )
    if any(k.startswith(_SDXL_SECOND_ENCODER) for k in shapes):
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in shapes):
        raise UnsupportedCheckpointError("SDXL refiner checkpoints are not supported")
    if any(k.startswith(_SD2_TEXT) for k in shapes):
        raise UnsupportedCheckpointError("SD 2.x checkpoints are not supported as single files")
    context_dim = shapes.get(_SD1_TO_K, (0, 0))[-1]
    if any(k.startswith(_SD1_TEXT) for k in shapes) and context_dim == 768:
        return "sd15"
    raise UnsupportedCheckpointError(
        f"unrecognised checkpoint layout (cross-attention width {context_dim})"
    )


def detect_checkpoint_kind(path: str | os.PathLike[str]) -> CheckpointKind:
    """Classify a single-file checkpoint without building the model."""
    return classify_shapes(tensor_shapes(path))
