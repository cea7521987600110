"""Make a real (untrained) LoRA file for a pipeline, for tests and demos.

The adapter is built with peft on the UNet's attention projections, filled with seeded random
non-zero weights, saved through diffusers' ``save_lora_weights`` and given kohya-style training
metadata in its safetensors header. It changes the pictures; it has learned nothing.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import torch
from diffusers import DiffusionPipeline, ModelMixin
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_ENCODER_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _fresh_like(module: torch.nn.Module) -> torch.nn.Module:
    """A new float32 CPU module of the same architecture (the LoRA depends only on the shapes)."""
    config = module.config
    if isinstance(module, ModelMixin):
        return type(module).from_config(config)
    return type(module)(config)


def _random_lora(
    module: torch.nn.Module, targets: tuple[str, ...], rank: int, seed: int
) -> tuple[dict[str, torch.Tensor], LoraConfig]:
    """Attach a peft LoRA to a fresh copy of ``module``, fill it with seeded random weights, and
    return its diffusers-format state dict and config."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        clone = _fresh_like(module)
    config = LoraConfig(
        r=rank, lora_alpha=rank, target_modules=list(targets), init_lora_weights=True
    )
    inject_adapter_in_model(config, clone)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(clone.named_parameters()):
            if "lora_A" in name:
                scale = 1.0 / math.sqrt(param.shape[1])
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
            elif "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(rank))
    return convert_state_dict_to_diffusers(get_peft_model_state_dict(clone)), config


def make_test_lora(
    pipe: DiffusionPipeline,
    path: str | os.PathLike[str],
    seed: int = 0,
    rank: int = 4,
    *,
    include_text_encoder: bool = False,
    title: str = "chopmark test LoRA",
) -> Path:
    """Write a LoRA for ``pipe``'s UNet (and optionally text encoder) to ``path`` (.safetensors).

    The adapter is attached to fresh models of the same architecture, so ``pipe`` itself is left
    untouched. Meant for the tiny default pipeline: for a full-size model the fresh copy costs as
    much memory as the model.
    """
    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError("the LoRA path must end in .safetensors")
    unet_layers, unet_config = _random_lora(pipe.unet, UNET_TARGETS, rank, seed)
    text_layers, text_config = None, None
    if include_text_encoder:
        text_layers, text_config = _random_lora(
            pipe.text_encoder, TEXT_ENCODER_TARGETS, rank, seed + 1
        )

    context_dim = pipe.unet.config.cross_attention_dim
    training_metadata = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(rank),
        "ss_base_model_version": "chopmark_tiny_sd",
        "ss_sd_model_name": str(getattr(pipe, "name_or_path", "") or "in-memory pipeline"),
        "ss_output_name": target.stem,
        "ss_seed": str(seed),
        "ss_training_comment": "random weights for tests and demos; not trained on anything",
        "ss_tag_frequency": '{"demo": {"noise": 1}}',
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": f"chopmark-tiny-sd/lora (cross-attention {context_dim})",
        "modelspec.title": title,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".lora-") as tmp:
        type(pipe).save_lora_weights(
            tmp,
            unet_lora_layers=unet_layers,
            text_encoder_lora_layers=text_layers,
            weight_name="lora.safetensors",
            unet_lora_adapter_metadata=unet_config.to_dict(),
            text_encoder_lora_adapter_metadata=text_config.to_dict() if text_config else None,
        )
        saved = Path(tmp) / "lora.safetensors"
        with safe_open(str(saved), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        staged = Path(tmp) / "final.safetensors"
        save_file(tensors, str(staged), metadata={**metadata, **training_metadata})
        os.replace(staged, target)
    return target
