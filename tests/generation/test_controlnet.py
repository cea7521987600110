"""ControlNet conditioning on the tiny default model: the control image steers the picture,
deterministically; requests it cannot serve are refused with a clear error."""

from pathlib import Path

import numpy as np
import pytest
import torch

from generation.controlnet import (
    TINY_CONTROLNET_NAME,
    ControlNetUnavailable,
    load_controlnet,
    tiny_controlnet,
)
from generation.diffusion import DiffusionRunner
from generation.models import load_model
from tests.generation.conftest import SIZE, gradient_image, params
from tests.support import photo_like


def diff(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_the_control_image_steers_the_picture(runner: DiffusionRunner) -> None:
    edges = photo_like(5, (256, 256))
    other = photo_like(6, (256, 256))
    plain = runner.run(params())
    steered = runner.run(params(control_image=edges))
    again = runner.run(params(control_image=edges))
    elsewhere = runner.run(params(control_image=other))
    off = runner.run(params(control_image=edges, control_scale=0.0))
    assert steered.controlnet is not None
    assert steered.controlnet["name"] == TINY_CONTROLNET_NAME
    assert len(steered.controlnet["sha256"]) == 64
    assert plain.controlnet is None
    assert np.array_equal(np.asarray(steered.image), np.asarray(again.image))  # seeded
    assert diff(steered.image, plain.image) > 1.0
    # The tiny model's pictures are noise and its VAE flattens much of the guidance, but another
    # control image still gives other pixels.
    assert diff(steered.image, elsewhere.image) > 0.05
    assert diff(off.image, plain.image) == 0.0  # scale 0: no guidance at all


def test_img2img_takes_a_control_image_too(runner: DiffusionRunner) -> None:
    init = gradient_image(256, 256)
    result = runner.run(
        params(mode="img2img", init_image=init, strength=0.6, control_image=photo_like(7))
    )
    assert result.image.size == (SIZE, SIZE) and result.controlnet is not None


def test_the_tiny_controlnet_is_the_same_for_the_same_unet(runner: DiffusionRunner) -> None:
    unet = runner.model.txt2img.unet
    assert tiny_controlnet(unet).sha256 == tiny_controlnet(unet).sha256


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"control_scale": 3.0}, "control_scale"),
        ({"control_image": "not an image"}, "control_image"),
    ],
)
def test_bad_control_requests_are_refused(runner, overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        runner.run(params(**{"control_image": photo_like(8), **overrides}))


def test_inpainting_with_a_control_image_is_refused(runner: DiffusionRunner) -> None:
    init = gradient_image(256, 256)
    with pytest.raises(ValueError, match="inpainting"):
        runner.run(params(mode="inpaint", init_image=init, mask_image=init, control_image=init))


def test_an_sdxl_model_refuses_control_images(tiny_sdxl_folder: Path, tmp_path: Path) -> None:
    sdxl = DiffusionRunner(load_model(tiny_sdxl_folder, cache_dir=tmp_path))
    with pytest.raises(ControlNetUnavailable, match=r"SD 1\.x/2\.x"):
        sdxl.run(params(control_image=photo_like(9)))


def test_a_missing_controlnet_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlNetUnavailable, match="does not exist"):
        load_controlnet(tmp_path / "nowhere", device="cpu", dtype=torch.float32)
