import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.diffusion import (
    DiffusionResult,
    DiffusionRunner,
    QueueFullError,
    RunnerLimits,
    ServiceStopping,
    shared_runner,
)
from generation.diffusion_protocol import CountingGenerator, ImageGenerator
from generation.models import LoadedModel
from generation.tiny_model import build_tiny_pipeline
from tests.generation.conftest import gradient_image, params


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_pixels_other_seed_other_pixels(runner: DiffusionRunner) -> None:
    first = runner.run(params(seed=11))
    again = runner.run(params(seed=11))
    other = runner.run(params(seed=12))
    assert np.array_equal(pixels(first.image), pixels(again.image))
    assert np.abs(pixels(first.image) - pixels(other.image)).mean() > 1.0
    assert pixels(first.image).std() > 5  # a picture (of noise), not a flat fill


def test_same_seed_matches_a_freshly_built_pipeline(runner: DiffusionRunner) -> None:
    import torch

    pipe = build_tiny_pipeline(0)
    p = params(seed=5)
    expected = pipe(
        prompt=p.prompt,
        negative_prompt=p.negative_prompt,
        num_inference_steps=p.steps,
        guidance_scale=p.guidance,
        width=p.width,
        height=p.height,
        generator=torch.Generator().manual_seed(p.seed),
    ).images[0]
    assert np.array_equal(pixels(runner.run(p).image), pixels(expected))


def test_txt2img_size_and_result_fields(runner: DiffusionRunner) -> None:
    result = runner.run(params(width=192, height=128, scheduler="Euler a"))
    assert result.image.size == (192, 128)
    assert result.image.mode == "RGB"
    assert result.params.scheduler == "euler_a"
    assert result.elapsed_s > 0
    assert result.model.is_default_tiny
    assert result.adapters == []


def test_each_denoising_step_is_told_with_the_steps_in_all(runner: DiffusionRunner) -> None:
    """(img2img runs steps x strength of them: 4 x 0.5 = 2)"""
    told: list[tuple[int, int]] = []
    runner.run(params(steps=3, on_step=lambda done, total: told.append((done, total))))
    assert told == [(1, 3), (2, 3), (3, 3)]
    told.clear()
    init = gradient_image(128, 128)
    def keep(done: int, total: int) -> None:
        told.append((done, total))

    runner.run(params(mode="img2img", init_image=init, strength=0.5, steps=4, on_step=keep))
    assert told == [(1, 2), (2, 2)]


def test_img2img_output_has_requested_size(runner: DiffusionRunner) -> None:
    init = gradient_image(200, 150)  # resized to the requested size
    result = runner.run(params(mode="img2img", init_image=init, strength=0.5, steps=4))
    assert result.image.size == (128, 128)
    low = runner.run(params(mode="img2img", init_image=init, strength=0.25, steps=4, seed=9))
    high = runner.run(params(mode="img2img", init_image=init, strength=1.0, steps=4, seed=9))
    start = pixels(init.resize((128, 128)))
    # less strength keeps more of the input picture
    assert np.abs(pixels(low.image) - start).mean() < np.abs(pixels(high.image) - start).mean()


def test_inpaint_output_has_requested_size(runner: DiffusionRunner) -> None:
    mask = Image.new("L", (128, 64), 0)
    mask.paste(255, (32, 16, 96, 48))
    result = runner.run(
        params(
            mode="inpaint",
            width=128,
            height=64,
            init_image=gradient_image(128, 64),
            mask_image=mask,
            strength=1.0,
        )
    )
    assert result.image.size == (128, 64)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"width": 130}, "multiple of 8"),
        ({"height": 100}, "multiple of 8"),
        ({"width": 32}, "outside"),
        ({"width": 4096}, "outside"),
        ({"steps": 0}, "steps"),
        ({"guidance": float("nan")}, "guidance"),
        ({"seed": -1}, "seed"),
        ({"scheduler": "karras-magic"}, "unknown scheduler"),
        ({"mode": "outpaint"}, "mode"),
        ({"mode": "img2img"}, "init_image"),
        ({"mode": "inpaint", "init_image": Image.new("RGB", (64, 64))}, "mask_image"),
        ({"init_image": Image.new("RGB", (64, 64))}, "txt2img takes no"),
        (
            {"mode": "img2img", "init_image": Image.new("RGB", (64, 64)), "strength": 0.1},
            "strength",
        ),
    ],
)
def test_bad_requests_are_rejected(
    runner: DiffusionRunner, overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        runner.run(params(**overrides))
    assert runner.queue_depth == 0


def test_concurrent_calls_queue_and_both_succeed(runner: DiffusionRunner) -> None:
    results: dict[int, DiffusionResult] = {}
    errors: list[BaseException] = []

    def call(seed: int) -> None:
        try:
            results[seed] = runner.run(params(seed=seed))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(seed,)) for seed in (21, 22)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors
    assert sorted(results) == [21, 22]
    alone = runner.run(params(seed=21))
    assert np.array_equal(pixels(results[21].image), pixels(alone.image))
    assert sorted(r.queued_behind for r in results.values()) in ([0, 0], [0, 1])


def test_run_async_uses_one_worker_and_reports_queue(runner: DiffusionRunner) -> None:
    async def main() -> list[int]:
        tasks = [asyncio.create_task(runner.run_async(params(seed=s))) for s in (31, 32, 33)]
        await asyncio.sleep(0)
        results = await asyncio.gather(*tasks)
        return [r.queued_behind for r in results]

    assert asyncio.run(main()) == [0, 1, 2]
    assert runner.queue_depth == 0


def test_queue_limit(tiny_model: LoadedModel) -> None:
    small = DiffusionRunner(tiny_model, limits=RunnerLimits(max_queue=1))
    gate = threading.Lock()
    gate.acquire()
    small._run_lock = gate  # hold the model so the first request waits
    first = threading.Thread(target=lambda: small.run(params()))
    first.start()
    try:
        deadline = time.monotonic() + 30
        while small.queue_depth == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(QueueFullError):
            small.run(params())
    finally:
        gate.release()
        first.join(timeout=60)
    assert small.queue_depth == 0


def test_stop_interrupts_the_running_request_and_refuses_the_waiting(
    tiny_model: LoadedModel,
) -> None:
    class StepCounting(DiffusionRunner):
        steps = 0

        def _interrupt_when_stopping(self, pipe, step, timestep, tensors):  # type: ignore[no-untyped-def]
            self.steps += 1
            return super()._interrupt_when_stopping(pipe, step, timestep, tensors)

    stopping = StepCounting(tiny_model)  # its own runner: a stopped one stays stopped
    assert stopping.run(params(steps=3)).image is not None and stopping.steps == 3
    stopping.steps = 0
    # the signal comes once the model has started on a 20-step request
    with pytest.raises(ServiceStopping, match="submit the generation again"):
        stopping.run(params(steps=20), lambda waited: stopping.stop())
    assert stopping.steps == 1, "the denoising loop ends with the step under way"
    with pytest.raises(ServiceStopping):
        stopping.run(params())
    assert stopping.steps == 1 and stopping.queue_depth == 0


def test_counting_wrapper_counts_real_calls(runner: DiffusionRunner) -> None:
    counted = CountingGenerator(runner)
    assert isinstance(runner, ImageGenerator)
    assert isinstance(counted, ImageGenerator)
    assert counted.call_count == 0
    counted.run(params())
    asyncio.run(counted.run_async(params(seed=2)))
    assert counted.call_count == 2
    assert counted.info().is_default_tiny


def test_shared_runner_is_one_per_process(tiny_cache: Path) -> None:
    first = shared_runner(None, cache_dir=tiny_cache)
    assert shared_runner(None, cache_dir=tiny_cache) is first
    assert first.info().is_default_tiny
