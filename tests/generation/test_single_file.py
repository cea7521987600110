"""Single-file checkpoints: kind detection from the header, and the offline config folders.

No real SD 1.5 / SDXL checkpoint can be had here: the tiny model, rewritten in the original
layout, runs the single-file path end to end, and the built-in configs are checked against the
published parameter counts of each component.
"""

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from generation.checkpoint_kind import (
    CheckpointKind,
    UnsupportedCheckpointError,
    detect_checkpoint_kind,
)
from generation.diffusion import DiffusionRunner
from generation.models import LoadedModel, ModelLoadError, load_model
from generation.single_file_configs import write_config_folder
from generation.tiny_model import build_tiny_pipeline
from tests.generation.conftest import params
from tests.generation.ldm_layout import to_ldm_checkpoint

UNET = "model.diffusion_model."


def _checkpoint(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    save_file(
        {k: torch.zeros(shape, dtype=torch.float16) for k, shape in shapes.items()}, str(path)
    )
    return path


SD15 = {
    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
    "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
}
SDXL = {
    UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
    "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight": (768,),
    "conditioner.embedders.1.model.ln_final.weight": (1280,),
}


def test_detects_sd15_and_sdxl(tmp_path: Path) -> None:
    assert detect_checkpoint_kind(_checkpoint(tmp_path / "a.safetensors", SD15)) == "sd15"
    assert detect_checkpoint_kind(_checkpoint(tmp_path / "b.safetensors", SDXL)) == "sdxl"


def test_detects_from_ckpt_too(tmp_path: Path) -> None:
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {k: torch.zeros(s) for k, s in SD15.items()}}, path)
    assert detect_checkpoint_kind(path) == "sd15"


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({**SD15, UNET + "input_blocks.0.0.weight": (320, 9, 3, 3)}, "9 input channels"),
        (
            {
                UNET + "input_blocks.0.0.weight": (320, 4, 3, 3),
                "cond_stage_model.model.ln_final.weight": (1024,),
            },
            "SD 2",
        ),
        ({"first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}, "not an original-layout"),
    ],
)
def test_rejects_other_checkpoints(tmp_path: Path, shapes: dict, message: str) -> None:
    path = _checkpoint(tmp_path / "x.safetensors", shapes)
    with pytest.raises(UnsupportedCheckpointError, match=message):
        detect_checkpoint_kind(path)


def test_load_model_refuses_unsupported_paths(tmp_path: Path) -> None:
    path = _checkpoint(
        tmp_path / "inpaint.safetensors", {**SD15, UNET + "input_blocks.0.0.weight": (320, 9, 3, 3)}
    )
    with pytest.raises(ModelLoadError, match="input channels"):
        load_model(path, cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_model(tmp_path / "nothing.safetensors", cache_dir=tmp_path / "cache")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelLoadError, match="expected a diffusers folder"):
        load_model(tmp_path / "notes.txt", cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError, match=r"model_index\.json"):
        load_model(tmp_path, cache_dir=tmp_path / "cache")


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    ("kind", "unet_params", "second_encoder_params"),
    [("sd15", 859_520_964, None), ("sdxl", 2_567_463_684, 694_659_840)],
)
def test_config_folders_match_published_architectures(
    tmp_path: Path, kind: CheckpointKind, unet_params: int, second_encoder_params: int | None
) -> None:
    folder = write_config_folder(kind, tmp_path / kind)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet"))
        vae = AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae"))
        text = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        assert _count(unet) == unet_params
        assert _count(vae) == 83_653_863
        assert _count(text) == 123_060_480
        if second_encoder_params is not None:
            config = CLIPTextConfig.from_pretrained(folder / "text_encoder_2")
            assert _count(CLIPTextModelWithProjection(config)) == second_encoder_params
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True)
    assert tokenizer("a cat").input_ids == [49406, 320, 2368, 49407]


def test_single_file_checkpoint_loads_offline_with_a_config_folder(
    tmp_path: Path, tiny_model: LoadedModel, runner: DiffusionRunner
) -> None:
    original = build_tiny_pipeline(0)  # same weights as the session model, no adapters attached
    path = tmp_path / "tiny-original-layout.safetensors"
    save_file(to_ldm_checkpoint(original), str(path))
    loaded = load_model(path, cache_dir=tmp_path / "cache", config_dir=tiny_model.source)
    assert loaded.family == "sd"
    assert loaded.name == "tiny-original-layout"
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.img2img.unet is loaded.txt2img.unet
    for component in ("unet", "vae", "text_encoder"):
        expected = getattr(original, component).state_dict()
        got = getattr(loaded.txt2img, component).state_dict()
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), component
    request = params(seed=8)
    from_file = DiffusionRunner(loaded).run(request).image
    assert np.array_equal(np.asarray(from_file), np.asarray(runner.run(request).image))
