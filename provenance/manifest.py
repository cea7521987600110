"""The C2PA manifest definition for one generated image, built from plain generation facts.

Contents: ``c2pa.actions.v2`` (``c2pa.created`` with the IPTC digital source type and a
``softwareAgent``, then ``c2pa.watermarked``), ``c2pa.soft-binding`` naming the watermark,
``cawg.training-mining``, ``org.chopmark.generation`` with the generation's facts, and for
img2img and inpainting the input image as a ``parentOf`` ingredient.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from provenance.containers import normalize_mime
from provenance.labels import TRAINING_MINING_KEYS, USES, autov2

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA = (
    "http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"
)
GENERATION_ASSERTION = "org.chopmark.generation"
TRAINING_MINING_ASSERTION = "cawg.training-mining"
SOFT_BINDING_ASSERTION = "c2pa.soft-binding"
ACTIONS_ASSERTION = "c2pa.actions.v2"
PARENT_INGREDIENT_ID = "parent"

Kind = Literal["txt2img", "img2img", "inpaint", "external"]
KINDS: tuple[str, ...] = ("txt2img", "img2img", "inpaint", "external")

# Inference (e.g. as an img2img input) is allowed; training and mining are not, until the
# platform states otherwise.
DEFAULT_TRAINING_MINING: Mapping[str, str] = {
    "cawg.ai_inference": "allowed",
    "cawg.ai_generative_training": "notAllowed",
    "cawg.ai_training": "notAllowed",
    "cawg.data_mining": "notAllowed",
}


@dataclass(frozen=True)
class AdapterFact:
    """A LoRA or other adapter applied to the model."""

    name: str
    sha256: str
    scale: float


@dataclass(frozen=True)
class ParentImage:
    """An input image: the parent of img2img or inpainting, or a conditioning image."""

    data: bytes
    mime: str
    title: str = "input"


@dataclass
class GenerationFacts:
    """What is known about one generation; the manifest and the labels are built from it."""

    generation_id: str
    kind: Kind
    model_name: str
    model_sha256: str | None = None
    software_agent: str = "chopmark"
    software_version: str = "0.1.0"
    adapters: tuple[AdapterFact, ...] = ()
    prompt: str | None = None
    negative_prompt: str | None = None
    prompt_private: bool = False
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    # How AUTOMATIC1111 names the sampler ("DPM++ 2M Karras"), for the ``parameters`` label.
    sampler_label: str | None = None
    # Denoising strength of an image-to-image or inpainting generation.
    strength: float | None = None
    width: int | None = None
    height: int | None = None
    platform_user: str | None = None
    watermark_alg: str | None = None
    watermark_value: str | None = None
    training_mining: Mapping[str, str] = field(
        default_factory=lambda: dict(DEFAULT_TRAINING_MINING)
    )
    parent: ParentImage | None = None
    # Conditioning images (ControlNet): ingredients with relationship ``inputTo``.
    inputs: tuple[ParentImage, ...] = ()
    controlnet: Mapping[str, Any] | None = None  # name, sha256, scale
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, not {self.kind!r}")
        if self.kind in ("img2img", "inpaint") and self.parent is None:
            raise ValueError(f"{self.kind} needs its input image as the parent")
        for key, use in self.training_mining.items():
            if key not in TRAINING_MINING_KEYS or use not in USES:
                raise ValueError(f"bad training-mining entry {key!r}: {use!r}")

    @property
    def digital_source_type(self) -> str:
        if self.kind in ("img2img", "inpaint"):
            return COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA
        return TRAINED_ALGORITHMIC_MEDIA


@dataclass(frozen=True)
class IngredientSpec:
    definition: dict[str, Any]
    data: bytes
    mime: str


@dataclass(frozen=True)
class ManifestSpec:
    """A manifest definition for c2pa's Builder, its label, and the ingredients to add."""

    label: str
    definition: dict[str, Any]
    ingredients: tuple[IngredientSpec, ...] = ()


def new_manifest_label() -> str:
    return f"urn:c2pa:{uuid.uuid4()}"


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def encode_soft_binding_value(payload: int, payload_bits: int = 48) -> str:
    """Soft-binding ``value`` for a watermark payload: lowercase hex, ``payload_bits / 4`` digits
    (the form ``provenance.watermark.payload_to_hex`` gives for its 48-bit payloads)."""
    if not 0 <= payload < 1 << payload_bits:
        raise ValueError(f"watermark payload must be in [0, 2**{payload_bits})")
    return f"{payload:0{(payload_bits + 3) // 4}x}"


def decode_soft_binding_value(value: str) -> int:
    return int(value.strip(), 16)


def generation_assertion_data(facts: GenerationFacts) -> dict[str, Any]:
    """The ``org.chopmark.generation`` assertion; private prompts appear only as SHA-256."""
    data: dict[str, Any] = {
        "generation_id": facts.generation_id,
        "kind": facts.kind,
        "created": facts.created.isoformat(),
        "software": {"name": facts.software_agent, "version": facts.software_version},
        "model": _drop_none(
            {
                "name": facts.model_name,
                "sha256": facts.model_sha256,
                "autov2": autov2(facts.model_sha256) if facts.model_sha256 else None,
            }
        ),
        "adapters": [
            {"name": a.name, "sha256": a.sha256, "autov2": autov2(a.sha256), "scale": a.scale}
            for a in facts.adapters
        ],
        "prompt_private": facts.prompt_private,
    }
    for key, text in (("prompt", facts.prompt), ("negative_prompt", facts.negative_prompt)):
        if text is None:
            continue
        data[f"{key}_sha256"] = sha256_text(text)
        if not facts.prompt_private:
            data[key] = text
    data.update(
        _drop_none(
            {
                "seed": facts.seed,
                "steps": facts.steps,
                "guidance": facts.guidance,
                "sampler": facts.sampler,
                "strength": facts.strength,
                "width": facts.width,
                "height": facts.height,
                "platform_user": facts.platform_user,
            }
        )
    )
    if facts.controlnet:
        data["controlnet"] = dict(facts.controlnet)
    if facts.inputs:
        data["conditioning"] = [
            {"title": i.title, "sha256": hashlib.sha256(i.data).hexdigest()} for i in facts.inputs
        ]
    if facts.watermark_alg:
        data["watermark"] = {"alg": facts.watermark_alg, "value": facts.watermark_value}
    return data


def build_manifest(facts: GenerationFacts, label: str | None = None) -> ManifestSpec:
    label = label or new_manifest_label()
    agent = {"name": facts.software_agent, "version": facts.software_version}
    created: dict[str, Any] = {
        "action": "c2pa.created",
        "digitalSourceType": facts.digital_source_type,
        "softwareAgent": agent,
        "when": facts.created.isoformat(),
    }
    ingredients: list[IngredientSpec] = []
    if facts.parent is not None:
        ingredients.append(
            IngredientSpec(
                definition={
                    "title": facts.parent.title,
                    "relationship": "parentOf",
                    "label": PARENT_INGREDIENT_ID,
                },
                data=facts.parent.data,
                mime=normalize_mime(facts.parent.mime),
            )
        )
    for n, item in enumerate(facts.inputs, 1):
        ingredients.append(
            IngredientSpec(
                definition={"title": item.title, "relationship": "inputTo", "label": f"input-{n}"},
                data=item.data,
                mime=normalize_mime(item.mime),
            )
        )
    if ingredients:
        created["parameters"] = {"ingredientIds": [i.definition["label"] for i in ingredients]}
    actions: list[dict[str, Any]] = [created]
    assertions: list[dict[str, Any]] = []
    if facts.watermark_alg and facts.watermark_value:
        actions.append(
            {
                "action": "c2pa.watermarked",
                "softwareAgent": agent,
                "description": f"invisible watermark {facts.watermark_alg}",
            }
        )
        assertions.append(
            {
                "label": SOFT_BINDING_ASSERTION,
                "data": {
                    "alg": facts.watermark_alg,
                    "blocks": [{"scope": {}, "value": facts.watermark_value}],
                },
            }
        )
    assertions.insert(0, {"label": ACTIONS_ASSERTION, "data": {"actions": actions}})
    assertions.append(
        {
            "label": TRAINING_MINING_ASSERTION,
            "data": {"entries": {k: {"use": v} for k, v in facts.training_mining.items()}},
        }
    )
    assertions.append({"label": GENERATION_ASSERTION, "data": generation_assertion_data(facts)})
    definition = {
        "label": label,
        "title": f"generation-{facts.generation_id}",
        "claim_generator_info": [agent],
        "assertions": assertions,
    }
    return ManifestSpec(label=label, definition=definition, ingredients=tuple(ingredients))


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
