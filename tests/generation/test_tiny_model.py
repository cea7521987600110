import json
from pathlib import Path

import torch

from generation.hashing import sha256_folder
from generation.models import LoadedModel, load_model
from generation.tiny_model import build_tiny_pipeline, ensure_tiny_pipeline


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return module.state_dict()


def test_same_seed_same_weights_different_seed_different() -> None:
    first, again, other = build_tiny_pipeline(0), build_tiny_pipeline(0), build_tiny_pipeline(1)
    for name in ("unet", "vae", "text_encoder"):
        a, b, c = (_state(getattr(p, name)) for p in (first, again, other))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
        assert not all(torch.equal(a[k], c[k]) for k in a), name


def test_vae_downsamples_eight_times() -> None:
    pipe = build_tiny_pipeline(0)
    assert pipe.vae_scale_factor == 8
    assert len(pipe.vae.config.block_out_channels) == 4
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size


def test_build_does_not_disturb_global_rng() -> None:
    torch.manual_seed(42)
    expected = torch.rand(3)
    torch.manual_seed(42)
    build_tiny_pipeline(5)
    assert torch.equal(torch.rand(3), expected)


def test_cache_is_reused_and_rebuilt_for_another_seed(tmp_path: Path) -> None:
    folder = ensure_tiny_pipeline(tmp_path / "tiny", seed=3)
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    stamp = weights.stat().st_mtime_ns
    digest = sha256_folder(folder)
    assert ensure_tiny_pipeline(folder, seed=3) == folder
    assert weights.stat().st_mtime_ns == stamp  # not rebuilt
    ensure_tiny_pipeline(folder, seed=4)
    assert json.loads((folder / "chopmark_tiny.json").read_text())["seed"] == 4
    assert sha256_folder(folder) != digest
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_model_hash_is_reproducible(tmp_path: Path, tiny_model: LoadedModel) -> None:
    rebuilt = ensure_tiny_pipeline(tmp_path / "again", seed=0)
    assert sha256_folder(rebuilt) == tiny_model.sha256


def test_loaded_default_is_flagged_as_noise(tiny_model: LoadedModel) -> None:
    info = tiny_model.info()
    assert tiny_model.is_default_tiny and info.is_default_tiny
    assert info.notice is not None and "noise" in info.notice
    assert info.autov2 == info.sha256[:10]
    assert len(info.sha256) == 64
    assert (info.device, info.dtype, info.family) == ("cpu", "float32", "sd")


def test_companion_pipelines_share_the_weights(tiny_model: LoadedModel) -> None:
    for companion in (tiny_model.img2img, tiny_model.inpaint):
        assert companion.unet is tiny_model.txt2img.unet
        assert companion.vae is tiny_model.txt2img.vae
        assert companion.text_encoder is tiny_model.txt2img.text_encoder
    assert type(tiny_model.img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(tiny_model.inpaint).__name__ == "StableDiffusionInpaintPipeline"


def test_loading_from_cache_gives_the_same_weights(
    tiny_cache: Path, tiny_model: LoadedModel
) -> None:
    again = load_model(None, cache_dir=tiny_cache)
    assert again.sha256 == tiny_model.sha256
    fresh = _state(build_tiny_pipeline(0).unet)
    loaded = _state(again.txt2img.unet)
    assert all(torch.equal(fresh[k], loaded[k]) for k in fresh)
