"""Diffusers config folders for SD 1.5 and SDXL, so ``from_single_file`` never reaches the Hub.

``from_single_file`` needs a diffusers-layout folder of configs (no weights) to know how to
convert a checkpoint. Without one it downloads the configs, even with ``local_files_only``. These
are the published architecture configs of the two model families, written out locally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from generation.checkpoint_kind import CheckpointKind
from generation.clip_tokenizer import MODEL_MAX_LENGTH, VOCAB_SIZE, write_tokenizer_files

_SCHEDULER: dict[str, Any] = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "interpolation_type": "linear",
    "use_karras_sigmas": False,
}

_VAE_COMMON: dict[str, Any] = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
}

_CLIP_L: dict[str, Any] = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": MODEL_MAX_LENGTH,
    "hidden_act": "quick_gelu",
    "layer_norm_eps": 1e-5,
    "projection_dim": 768,
    "bos_token_id": VOCAB_SIZE - 2,
    "eos_token_id": VOCAB_SIZE - 1,
    "pad_token_id": 1,
}

_CLIP_BIG_G: dict[str, Any] = {
    **_CLIP_L,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}

SD15: dict[str, dict[str, Any]] = {
    "model_index.json": {
        "_class_name": "StableDiffusionPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "safety_checker": [None, None],
        "feature_extractor": [None, None],
        "image_encoder": [None, None],
        "requires_safety_checker": False,
    },
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 768,
        "down_block_types": [
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": [
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ],
    },
    "vae/config.json": {**_VAE_COMMON, "sample_size": 512, "scaling_factor": 0.18215},
    "text_encoder/config.json": _CLIP_L,
    "scheduler/scheduler_config.json": _SCHEDULER,
}

SDXL: dict[str, dict[str, Any]] = {
    "model_index.json": {
        "_class_name": "StableDiffusionXLPipeline",
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "image_encoder": [None, None],
        "feature_extractor": [None, None],
        "force_zeros_for_empty_prompt": True,
    },
    "unet/config.json": {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256,
        "attention_head_dim": [5, 10, 20],
        "block_out_channels": [320, 640, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 2048,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 4,
        "layers_per_block": 2,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-5,
        "norm_num_groups": 32,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": 2816,
        "sample_size": 128,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
        "use_linear_projection": True,
    },
    "vae/config.json": {
        **_VAE_COMMON,
        "sample_size": 1024,
        "scaling_factor": 0.13025,
        "force_upcast": True,
    },
    "text_encoder/config.json": _CLIP_L,
    "text_encoder_2/config.json": _CLIP_BIG_G,
    "scheduler/scheduler_config.json": _SCHEDULER,
}

CONFIGS: dict[CheckpointKind, dict[str, dict[str, Any]]] = {"sd15": SD15, "sdxl": SDXL}
_TOKENIZER_PADS: dict[CheckpointKind, dict[str, str]] = {
    "sd15": {"tokenizer": "<|endoftext|>"},
    "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
}


def write_config_folder(kind: CheckpointKind, folder: str | os.PathLike[str]) -> Path:
    """Write the diffusers config layout (configs and tokenizers, no weights) for ``kind``."""
    root = Path(folder)
    for relative, config in CONFIGS[kind].items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(config, indent=2, sort_keys=True), "utf-8")
    for subfolder, pad in _TOKENIZER_PADS[kind].items():
        tokenizer_dir = write_tokenizer_files(root / subfolder)
        tokenizer_config = {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": MODEL_MAX_LENGTH,
            "bos_token": "<|startoftext|>",
            "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>",
            "pad_token": pad,
        }
        (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), "utf-8")
    return root
