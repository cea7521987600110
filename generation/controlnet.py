"""ControlNet conditioning: the model that turns a control image (edges, depth, pose, or any
picture) into guidance for the UNet.

``CHOPMARK_CONTROLNET`` names a local diffusers ControlNet folder (``config.json`` and weights)
or a single ``.safetensors`` file. With none named and the default tiny model in use, a tiny
ControlNet shaped like the tiny UNet is built with seeded random weights (its zero convolutions are
given small random weights too, so the control image does steer the picture, as a trained one
would); with a real model and none named, control images are refused. Only SD 1.x/2.x models
take a ControlNet here.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import ControlNetModel, UNet2DConditionModel

TINY_CONTROLNET_NAME = "chopmark-tiny-controlnet"
_ZERO_CONV_STD = 0.05
_EMBED_STD = 20.0


class ControlNetUnavailable(ValueError):
    """No ControlNet is configured for this model, or the model family takes none."""


@dataclass(frozen=True)
class LoadedControlNet:
    name: str
    sha256: str
    model: Any  # diffusers ControlNetModel

    def info(self) -> dict[str, str]:
        return {"name": self.name, "sha256": self.sha256}


def tiny_controlnet(unet: Any, seed: int = 0) -> LoadedControlNet:
    """A ControlNet shaped like ``unet``, all weights seeded at random. Built from ``unet``'s
    config, not its weights: those may carry LoRA layers by now."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 101)
        model = ControlNetModel.from_unet(UNet2DConditionModel.from_config(unet.config))
        zero_convs = [*model.controlnet_down_blocks, model.controlnet_mid_block]
        with torch.no_grad():
            for conv in zero_convs:
                conv.weight.normal_(0.0, _ZERO_CONV_STD)
                conv.bias.zero_()
            embed_out = model.controlnet_cond_embedding.conv_out  # the control image's way in
            embed_out.weight.normal_(0.0, _EMBED_STD)
            embed_out.bias.zero_()
    model = model.to(device=unet.device, dtype=unet.dtype).eval()
    return LoadedControlNet(TINY_CONTROLNET_NAME, _state_sha256(model), model)


def load_controlnet(
    path: str | os.PathLike[str], *, device: str, dtype: torch.dtype
) -> LoadedControlNet:
    """Load a diffusers ControlNet folder or a single ``.safetensors`` file."""
    source = Path(path).expanduser()
    if not source.exists():
        raise ControlNetUnavailable(f"ControlNet path does not exist: {source}")
    try:
        if source.is_file():
            model = ControlNetModel.from_single_file(str(source), torch_dtype=dtype)
            digest = _file_sha256(source)
        else:
            model = ControlNetModel.from_pretrained(str(source), torch_dtype=dtype)
            digest = _folder_sha256(source)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ControlNetUnavailable(f"cannot load the ControlNet at {source}: {exc}") from exc
    model = model.to(device).eval()
    return LoadedControlNet(source.stem if source.is_file() else source.name, digest, model)


def _state_sha256(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder_sha256(folder: Path) -> str:
    """Over the folder's weight and config files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".bin", ".json"):
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(bytes.fromhex(_file_sha256(path)))
    return digest.hexdigest()
