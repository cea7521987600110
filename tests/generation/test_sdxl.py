from pathlib import Path

from generation.diffusion import DiffusionRunner
from generation.models import load_model
from tests.generation.conftest import gradient_image, params


def test_sdxl_folder_loads_with_shared_components_and_runs(
    tiny_sdxl_folder: Path, tmp_path: Path
) -> None:
    model = load_model(tiny_sdxl_folder, cache_dir=tmp_path)
    assert model.family == "sdxl"
    assert not model.is_default_tiny
    assert model.name == "model"
    for companion in (model.img2img, model.inpaint):
        assert companion.unet is model.txt2img.unet
        assert companion.text_encoder_2 is model.txt2img.text_encoder_2
        assert companion.watermark is None  # diffusers' own SDXL watermark stays off
    assert model.txt2img.watermark is None
    runner = DiffusionRunner(model)
    result = runner.run(params(width=128, height=64))
    assert result.image.size == (128, 64)
    assert result.model.family == "sdxl"
    edited = runner.run(params(mode="img2img", init_image=gradient_image(128, 128), strength=0.5))
    assert edited.image.size == (128, 128)
