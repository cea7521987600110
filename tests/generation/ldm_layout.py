"""Write a diffusers SD pipeline's weights in the original (LDM) single-file layout.

The inverse of the key mapping diffusers applies in ``from_single_file``, for tests: it lets the
single-file path run end to end on the tiny model. Covers UNet2DConditionModel with
Down/CrossAttnDown blocks, AutoencoderKL and a CLIP text encoder.
"""

from __future__ import annotations

import re

import torch
from diffusers import StableDiffusionPipeline

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_VAE_ATTENTION = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)


def _resnet_tail(tail: str) -> str:
    head, _, param = tail.rpartition(".")
    for new, old in _RESNET:
        if head == new:
            return f"{old}.{param}"
    raise KeyError(tail)


def _unet_key(key: str, per_level: int, attention_levels: set[str]) -> str:
    head, _, param = key.rpartition(".")
    if head in _UNET_FIXED:
        return f"{_UNET_FIXED[head]}.{param}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        index = 1 + int(m[1]) * (per_level + 1) + int(m[2])
        return f"input_blocks.{index}.0.{_resnet_tail(m[3])}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * (per_level + 1) + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"input_blocks.{1 + int(m[1]) * (per_level + 1) + per_level}.0.op.{m[2]}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"middle_block.{2 * int(m[1])}.{_resnet_tail(m[2])}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        index = int(m[1]) * (per_level + 1) + int(m[2])
        return f"output_blocks.{index}.0.{_resnet_tail(m[3])}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        return f"output_blocks.{int(m[1]) * (per_level + 1) + int(m[2])}.1.{m[3]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        slot = 2 if m[1] in attention_levels else 1
        return f"output_blocks.{int(m[1]) * (per_level + 1) + per_level}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def _vae_resnet(tail: str) -> str:
    return tail.replace("conv_shortcut", "nin_shortcut")


def _vae_key(key: str, levels: int) -> tuple[str, bool]:
    """LDM key, and whether the tensor is a VAE attention weight stored as a 1x1 conv."""
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)", key):
        name = dict(_VAE_ATTENTION)[m[2]]
        return f"{m[1]}.mid.attn_1.{name}.{m[3]}", m[3] == "weight" and name != "norm"
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        return f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        block = levels - 1 - int(m[1])
        return f"decoder.up.{block}.block.{m[2]}.{_vae_resnet(m[3])}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    return key.replace("conv_norm_out", "norm_out"), False


def to_ldm_checkpoint(pipe: StableDiffusionPipeline) -> dict[str, torch.Tensor]:
    """The pipeline's UNet, VAE and text encoder weights under original single-file key names."""
    out: dict[str, torch.Tensor] = {}
    unet_config = pipe.unet.config
    per_level = unet_config.layers_per_block
    attention_levels = {
        str(i) for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind
    }
    for key, tensor in pipe.unet.state_dict().items():
        out["model.diffusion_model." + _unet_key(key, per_level, attention_levels)] = tensor
    levels = len(pipe.vae.config.block_out_channels)
    for key, tensor in pipe.vae.state_dict().items():
        ldm, as_conv = _vae_key(key, levels)
        out["first_stage_model." + ldm] = tensor[:, :, None, None] if as_conv else tensor
    for key, tensor in pipe.text_encoder.state_dict().items():
        name = key if key.startswith("text_model.") else "text_model." + key
        out["cond_stage_model.transformer." + name] = tensor
    return {k: v.contiguous() for k, v in out.items()}
