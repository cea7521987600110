"""LoRA adapters: inspect a file without loading it, and apply a set of adapters to a pipeline.

A pipeline keeps every adapter it has loaded (under a name derived from the file's SHA-256, so two
files never collide), and :func:`apply_adapters` activates exactly the requested ones at their
scales and deactivates the rest, so one request's adapters never leak into the next. Callers must
serialise requests on a pipeline (the diffusion runner does).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffusers import DiffusionPipeline

from generation.demo_lora import make_test_lora
from generation.hashing import HashCache, autov2
from generation.params import AdapterUse, AppliedAdapter
from generation.quiet import quiet_progress
from generation.safetensors_header import SafetensorsHeader, read_safetensors_header

__all__ = [
    "AdapterError",
    "AdapterInfo",
    "AdapterUse",
    "adapter_key",
    "apply_adapters",
    "inspect_adapter",
    "loaded_adapter_keys",
    "make_test_lora",
]

MAX_ABS_SCALE = 5.0
DEFAULT_MAX_LOADED = 8
_PROCESS_HASHES = HashCache()
_DOWN_SUFFIXES = (".lora_down.weight", ".lora_A.weight", ".lora.down.weight", "_lora.down.weight")
_COMPONENT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("lora_unet_", "unet"),
    ("unet.", "unet"),
    ("lora_te2_", "text_encoder_2"),
    ("text_encoder_2.", "text_encoder_2"),
    ("lora_te1_", "text_encoder"),
    ("lora_te_", "text_encoder"),
    ("text_encoder.", "text_encoder"),
)
_FAMILY_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


class AdapterError(ValueError):
    """An adapter file that cannot be used with this model, or a bad adapter request."""


@dataclass(frozen=True)
class AdapterInfo:
    path: str
    size_bytes: int
    sha256: str
    autov2: str
    metadata: dict[str, str]
    training: dict[str, Any]
    key_format: str
    components: tuple[str, ...]
    tensor_count: int
    rank: int | None
    alpha: float | None
    cross_attention_dim: int | None
    base_family: str | None
    base_model_hint: str | None


def _decode(value: str) -> Any:
    stripped = value.strip()
    if stripped[:1] in ("{", "["):
        try:
            return json.loads(stripped)
        except ValueError:
            return value
    return value


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _key_format(names: Iterable[str]) -> str:
    names = list(names)
    if any(".hada_" in n or ".lokr_" in n for n in names):
        return "lycoris"
    if any(n.startswith(("lora_unet_", "lora_te")) for n in names):
        return "kohya"
    if any(".lora_A." in n for n in names):
        return "peft"
    if any(".lora.down." in n or "_lora.down." in n for n in names):
        return "diffusers"
    return "unknown"


def _rank_alpha_context(header: SafetensorsHeader) -> tuple[int | None, float | None, int | None]:
    ranks: list[int] = []
    contexts: list[int] = []
    for name, entry in header.tensors.items():
        if name.endswith(_DOWN_SUFFIXES) and len(entry.shape) >= 2:
            ranks.append(entry.shape[0])
            if "attn2" in name and "to_k" in name:
                contexts.append(entry.shape[1])
    meta = header.metadata
    rank_meta = _number(meta.get("ss_network_dim"))
    rank = int(rank_meta) if rank_meta else (max(ranks) if ranks else None)
    alpha = _number(meta.get("ss_network_alpha"))
    packed = meta.get("lora_adapter_metadata")
    if alpha is None and packed:
        try:
            alpha_value = json.loads(packed).get("unet.lora_alpha")
            alpha = float(alpha_value) if alpha_value is not None else None
        except (ValueError, AttributeError, TypeError):
            alpha = None
    context = max(contexts) if contexts else None
    return rank, alpha, context


def _base(
    header: SafetensorsHeader, components: Sequence[str], context: int | None
) -> tuple[str | None, str | None]:
    meta = header.metadata
    hint = next(
        (
            meta[k]
            for k in ("modelspec.architecture", "ss_base_model_version", "ss_sd_model_name")
            if meta.get(k)
        ),
        None,
    )
    family = None
    if "text_encoder_2" in components:
        family = "sdxl"
    elif context is not None:
        family = _FAMILY_BY_CONTEXT.get(context)
    elif hint:
        lowered = hint.lower()
        family = "sdxl" if "xl" in lowered else ("sd1" if "v1" in lowered else None)
    return family, hint


def inspect_adapter(
    path: str | os.PathLike[str], hash_cache: HashCache | None = None
) -> AdapterInfo:
    """Hashes, header metadata, layout and base-model hints of a LoRA ``.safetensors`` file.

    Only the header is parsed; no tensor is loaded.
    """
    file_path = Path(path)
    if file_path.suffix.lower() != ".safetensors":
        raise AdapterError(f"{file_path.name}: adapters must be .safetensors files")
    if not file_path.is_file():
        raise AdapterError(f"adapter file not found: {file_path}")
    try:
        header = read_safetensors_header(file_path)
    except ValueError as exc:
        raise AdapterError(str(exc)) from exc
    sha = (hash_cache or _PROCESS_HASHES).sha256(file_path)
    names = list(header.tensors)
    components = tuple(
        sorted(
            {comp for n in names for prefix, comp in _COMPONENT_PREFIXES if n.startswith(prefix)}
        )
    )
    rank, alpha, context = _rank_alpha_context(header)
    family, hint = _base(header, components, context)
    training = {
        k: _decode(v) for k, v in header.metadata.items() if k.startswith(("ss_", "modelspec."))
    }
    return AdapterInfo(
        path=str(file_path),
        size_bytes=file_path.stat().st_size,
        sha256=sha,
        autov2=autov2(sha),
        metadata=dict(header.metadata),
        training=training,
        key_format=_key_format(names),
        components=components,
        tensor_count=len(names),
        rank=rank,
        alpha=alpha,
        cross_attention_dim=context,
        base_family=family,
        base_model_hint=hint,
    )


def adapter_key(sha256: str) -> str:
    """The name an adapter file is loaded under inside a pipeline."""
    return f"lora_{sha256[:16]}"


def loaded_adapter_keys(pipe: DiffusionPipeline) -> list[str]:
    """Adapters loaded into the pipeline's models, oldest first."""
    seen: dict[str, None] = {}
    for names in pipe.get_list_adapters().values():
        for name in names:
            seen.setdefault(name, None)
    return list(seen)


def _as_use(item: AdapterUse | tuple[str, str | os.PathLike[str], float]) -> AdapterUse:
    if isinstance(item, AdapterUse):
        return item
    name, path, scale = item
    return AdapterUse(name=name, path=Path(path), scale=float(scale))


def _check_request(uses: Sequence[AdapterUse]) -> None:
    labels = [u.name for u in uses]
    if len(set(labels)) != len(labels):
        raise AdapterError("an adapter name appears twice in one request")
    for use in uses:
        if not math.isfinite(use.scale) or abs(use.scale) > MAX_ABS_SCALE:
            raise AdapterError(f"adapter {use.name!r}: scale {use.scale} outside ±{MAX_ABS_SCALE}")


def _check_compatible(pipe: DiffusionPipeline, info: AdapterInfo, label: str) -> None:
    expected = pipe.unet.config.cross_attention_dim
    if info.cross_attention_dim is not None and info.cross_attention_dim != expected:
        raise AdapterError(
            f"adapter {label!r} was made for a model with cross-attention width "
            f"{info.cross_attention_dim} ({info.base_family or 'unknown family'}); "
            f"this model's is {expected}"
        )
    if info.key_format == "lycoris":
        raise AdapterError(f"adapter {label!r}: LyCORIS (LoHa/LoKr) files are not supported")


def _load(pipe: DiffusionPipeline, path: Path, key: str, label: str) -> None:
    try:
        with warnings.catch_warnings(), quiet_progress():
            # peft warns whenever a second adapter joins a model; keeping several is the design.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            pipe.load_lora_weights(
                str(path.parent), weight_name=path.name, adapter_name=key, local_files_only=True
            )
    except (ValueError, RuntimeError, KeyError, OSError) as exc:
        if key in loaded_adapter_keys(pipe):
            pipe.delete_adapters(key)
        raise AdapterError(f"adapter {label!r} cannot be loaded into this model: {exc}") from exc
    if key not in loaded_adapter_keys(pipe):
        raise AdapterError(f"adapter {label!r}: none of its layers match this model")


def apply_adapters(
    pipe: DiffusionPipeline,
    uses: Sequence[AdapterUse | tuple[str, str | os.PathLike[str], float]],
    *,
    hash_cache: HashCache | None = None,
    max_loaded: int = DEFAULT_MAX_LOADED,
) -> list[AppliedAdapter]:
    """Activate exactly ``uses`` (name, path, scale) on ``pipe``; every other adapter goes inactive.

    Adapters are loaded on first use and kept for later requests; beyond ``max_loaded`` the
    oldest inactive ones are deleted. An empty list leaves the base model untouched.
    """
    requested = [_as_use(u) for u in uses]
    _check_request(requested)
    infos = [inspect_adapter(u.path, hash_cache) for u in requested]
    keys = [adapter_key(info.sha256) for info in infos]
    if len(set(keys)) != len(keys):
        raise AdapterError("the same adapter file appears twice in one request")

    for use, info, key in zip(requested, infos, keys, strict=True):
        if key not in loaded_adapter_keys(pipe):
            _check_compatible(pipe, info, use.name)
            _load(pipe, Path(info.path), key, use.name)

    loaded = loaded_adapter_keys(pipe)
    idle = [k for k in loaded if k not in keys]
    excess = len(loaded) - max(max_loaded, len(keys))
    if excess > 0:
        pipe.delete_adapters(idle[:excess])
        loaded = loaded_adapter_keys(pipe)

    if keys:
        pipe.enable_lora()
        pipe.set_adapters(keys, adapter_weights=[u.scale for u in requested])
    elif loaded:
        pipe.disable_lora()

    return [
        AppliedAdapter(
            name=use.name, path=info.path, scale=use.scale, sha256=info.sha256, autov2=info.autov2
        )
        for use, info in zip(requested, infos, strict=True)
    ]
