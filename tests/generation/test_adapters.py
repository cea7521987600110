import hashlib
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from generation.adapters import (
    AdapterError,
    AdapterUse,
    adapter_key,
    apply_adapters,
    inspect_adapter,
    loaded_adapter_keys,
    make_test_lora,
)
from generation.diffusion import DiffusionResult, DiffusionRunner
from generation.models import LoadedModel
from tests.generation.conftest import params


def pixels(result: DiffusionResult) -> np.ndarray:
    return np.asarray(result.image, dtype=np.int16)


def test_inspect_reads_hashes_and_training_metadata(demo_lora: Path) -> None:
    info = inspect_adapter(demo_lora)
    assert info.sha256 == hashlib.sha256(demo_lora.read_bytes()).hexdigest()
    assert info.autov2 == info.sha256[:10]
    assert info.size_bytes == demo_lora.stat().st_size
    assert info.metadata["ss_network_module"] == "networks.lora"
    assert info.training["ss_tag_frequency"] == {"demo": {"noise": 1}}  # JSON decoded
    assert info.rank == 4 and info.alpha == 4.0
    assert info.cross_attention_dim == 32
    assert info.components == ("unet",)
    assert info.key_format == "diffusers"
    assert info.base_model_hint is not None and "chopmark-tiny-sd" in info.base_model_hint
    assert info.tensor_count > 0


def test_inspect_kohya_file_without_metadata(tmp_path: Path) -> None:
    path = tmp_path / "kohya.safetensors"
    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file(
        {
            f"{key}.lora_down.weight": torch.zeros(8, 2048),
            f"{key}.lora_up.weight": torch.zeros(640, 8),
            "lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.zeros(
                8, 1280
            ),
        },
        str(path),
    )
    info = inspect_adapter(path)
    assert info.key_format == "kohya"
    assert info.rank == 8
    assert info.base_family == "sdxl"
    assert info.components == ("text_encoder_2", "unet")
    assert info.metadata == {}


def test_lora_changes_output_and_scale_zero_does_not(
    runner: DiffusionRunner, demo_lora: Path
) -> None:
    base = runner.run(params(seed=3))
    styled = runner.run(params(seed=3, adapters=[AdapterUse("demo-style", demo_lora, 1.0)]))
    off = runner.run(params(seed=3, adapters=[AdapterUse("demo-style", demo_lora, 0.0)]))
    after = runner.run(params(seed=3))
    assert np.abs(pixels(styled) - pixels(base)).mean() > 2.0
    assert np.abs(pixels(off) - pixels(base)).max() <= 1
    assert np.array_equal(pixels(after), pixels(base))  # nothing leaks into the next request
    assert styled.adapters[0].name == "demo-style"
    assert styled.adapters[0].autov2 == inspect_adapter(demo_lora).autov2


def test_two_adapters_and_switching_between_them(
    runner: DiffusionRunner, demo_lora: Path, tmp_path: Path, tiny_model: LoadedModel
) -> None:
    second = make_test_lora(tiny_model.txt2img, tmp_path / "second.safetensors", seed=99)
    only_first = runner.run(params(seed=4, adapters=[AdapterUse("a", demo_lora, 1.0)]))
    only_second = runner.run(params(seed=4, adapters=[AdapterUse("b", second, 1.0)]))
    both = runner.run(
        params(seed=4, adapters=[AdapterUse("a", demo_lora, 1.0), AdapterUse("b", second, 1.0)])
    )
    first_again = runner.run(params(seed=4, adapters=[AdapterUse("a", demo_lora, 1.0)]))
    assert np.array_equal(pixels(first_again), pixels(only_first))
    assert np.abs(pixels(only_first) - pixels(only_second)).mean() > 1.0
    assert np.abs(pixels(both) - pixels(only_first)).mean() > 1.0


def test_text_encoder_lora_mixes_with_unet_only_lora(
    runner: DiffusionRunner, demo_lora: Path, tmp_path: Path, tiny_model: LoadedModel
) -> None:
    with_text = make_test_lora(
        tiny_model.txt2img, tmp_path / "te.safetensors", seed=5, include_text_encoder=True
    )
    info = inspect_adapter(with_text)
    assert info.components == ("text_encoder", "unet")
    base = runner.run(params(seed=6))
    mixed = runner.run(
        params(seed=6, adapters=[AdapterUse("te", with_text, 1.0), AdapterUse("u", demo_lora, 0.5)])
    )
    assert np.abs(pixels(mixed) - pixels(base)).mean() > 2.0
    assert np.array_equal(pixels(runner.run(params(seed=6))), pixels(base))


def test_adapter_eviction_keeps_the_requested(tiny_model: LoadedModel, tmp_path: Path) -> None:
    pipe = tiny_model.txt2img
    files = [make_test_lora(pipe, tmp_path / f"l{i}.safetensors", seed=i) for i in range(3)]
    for index, path in enumerate(files):
        apply_adapters(pipe, [(f"l{index}", path, 1.0)], max_loaded=2)
        assert pipe.get_active_adapters() == [adapter_key(inspect_adapter(path).sha256)]
    assert len(loaded_adapter_keys(pipe)) == 2
    assert adapter_key(inspect_adapter(files[0]).sha256) not in loaded_adapter_keys(pipe)
    apply_adapters(pipe, [], max_loaded=2)


def test_incompatible_adapter_is_rejected(runner: DiffusionRunner, tmp_path: Path) -> None:
    path = tmp_path / "sd15-style.safetensors"
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file(
        {
            f"{key}.lora_down.weight": torch.zeros(4, 768),
            f"{key}.lora_up.weight": torch.zeros(320, 4),
        },
        str(path),
    )
    with pytest.raises(AdapterError, match="cross-attention width 768"):
        runner.run(params(adapters=[AdapterUse("sd15", path, 1.0)]))
    assert runner.queue_depth == 0


@pytest.mark.parametrize("scale", [float("inf"), 9.0])
def test_bad_scale_is_rejected(runner: DiffusionRunner, demo_lora: Path, scale: float) -> None:
    with pytest.raises(AdapterError, match="scale"):
        runner.run(params(adapters=[AdapterUse("demo", demo_lora, scale)]))


def test_bad_files_are_rejected(tmp_path: Path) -> None:
    pickle = tmp_path / "old.ckpt"
    pickle.write_bytes(b"not really")
    with pytest.raises(AdapterError, match=r"\.safetensors"):
        inspect_adapter(pickle)
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(struct.pack("<Q", 10_000) + b"{}")
    with pytest.raises(AdapterError, match="header length"):
        inspect_adapter(truncated)
    not_json = tmp_path / "garbage.safetensors"
    not_json.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{}")
    with pytest.raises(AdapterError, match="not JSON"):
        inspect_adapter(not_json)
    bad_offsets = tmp_path / "offsets.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 999]}}).encode()
    bad_offsets.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with pytest.raises(AdapterError, match="bad entry"):
        inspect_adapter(bad_offsets)
    with pytest.raises(AdapterError, match="not found"):
        inspect_adapter(tmp_path / "missing.safetensors")
