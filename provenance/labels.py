"""Metadata labels written into the image file before signing, and read back from any upload.

* GB 45438-2025 implicit label: key ``AIGC`` holding ``{"Label", "ContentProducer", "ProduceID",
  "ReservedCode1", "ContentPropagator", "PropagateID", "ReservedCode2"}`` as JSON, in a PNG text
  chunk and as the XMP property ``TC260:AIGC``. ``Label`` is ``"1"``: the content is AI-generated
  (``"2"`` would be "possibly", ``"3"`` "suspected").
* IPTC ``Iptc4xmpExt:DigitalSourceType`` in XMP.
* PLUS ``plus:DataMining`` and the CAWG training-and-mining entries (``chopmark:TrainingMining``)
  in XMP, derived from the generation's policy.
* Opt-in, the AUTOMATIC1111 ``parameters`` text: a PNG text chunk, or EXIF UserComment in JPEG and
  WebP (as AUTOMATIC1111 writes it). Model and LoRA hashes are Civitai AutoV2 (first 10 hex digits
  of the file's SHA-256).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from provenance.containers import (
    PNG_XMP_KEYWORD,
    normalize_mime,
    read_container,
)
from provenance.png_encode import PngText, encode_png
from provenance.xmp import (
    NS_CHOPMARK,
    NS_IPTC_EXT,
    NS_PLUS,
    NS_TC260,
    XmpError,
    build_xmp,
    parse_xmp,
)

AIGC_KEY = "AIGC"
AIGC_FIELDS = (
    "Label",
    "ContentProducer",
    "ProduceID",
    "ReservedCode1",
    "ContentPropagator",
    "PropagateID",
    "ReservedCode2",
)
AIGC_LABEL_GENERATED = "1"
PARAMETERS_KEY = "parameters"

TRAINING_MINING_KEYS = (
    "cawg.ai_inference",
    "cawg.ai_generative_training",
    "cawg.ai_training",
    "cawg.data_mining",
)
USES = ("allowed", "notAllowed", "constrained")

PLUS_VOCAB = "http://ns.useplus.org/ldf/vocab/"
DMI_ALLOWED = PLUS_VOCAB + "DMI-ALLOWED"
DMI_UNSPECIFIED = PLUS_VOCAB + "DMI-UNSPECIFIED"
DMI_PROHIBITED = PLUS_VOCAB + "DMI-PROHIBITED"
DMI_PROHIBITED_AIML = PLUS_VOCAB + "DMI-PROHIBITED-AIMLTRAINING"
DMI_PROHIBITED_GENAIML = PLUS_VOCAB + "DMI-PROHIBITED-GENAIMLTRAINING"

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286
_MAX_JPEG_XMP = 65502


def autov2(sha256_hex: str) -> str:
    """Civitai's AutoV2 hash: the first 10 hex digits of the file's SHA-256."""
    digest = sha256_hex.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError("expected a SHA-256 as 64 hex digits")
    return digest[:10]


@dataclass(frozen=True)
class AigcLabel:
    """GB 45438-2025 implicit label fields."""

    content_producer: str
    produce_id: str
    label: str = AIGC_LABEL_GENERATED
    reserved_code1: str = ""
    content_propagator: str = ""
    propagate_id: str = ""
    reserved_code2: str = ""

    def fields(self) -> dict[str, str]:
        values = (
            self.label,
            self.content_producer,
            self.produce_id,
            self.reserved_code1,
            self.content_propagator,
            self.propagate_id,
            self.reserved_code2,
        )
        return dict(zip(AIGC_FIELDS, values, strict=True))

    def to_json(self) -> str:
        return json.dumps(self.fields(), ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True)
class LabelSet:
    """What to write into one image file."""

    aigc: AigcLabel | None = None
    digital_source_type: str | None = None
    parameters: str | None = None
    data_mining: str | None = None
    training_mining: Mapping[str, str] | None = None

    def xmp_properties(self) -> dict[tuple[str, str], str]:
        props: dict[tuple[str, str], str] = {}
        if self.digital_source_type:
            props[(NS_IPTC_EXT, "DigitalSourceType")] = self.digital_source_type
        if self.aigc is not None:
            props[(NS_TC260, AIGC_KEY)] = self.aigc.to_json()
        if self.data_mining:
            props[(NS_PLUS, "DataMining")] = self.data_mining
        if self.training_mining:
            entries = {k: {"use": v} for k, v in self.training_mining.items()}
            props[(NS_CHOPMARK, "TrainingMining")] = json.dumps(entries, separators=(",", ":"))
        return props


@dataclass(frozen=True)
class GenerationParameters:
    """An AUTOMATIC1111 ``parameters`` text, parsed."""

    prompt: str
    negative_prompt: str
    settings: dict[str, str]

    def lora_hashes(self) -> dict[str, str]:
        raw = self.settings.get("Lora hashes", "")
        pairs = (part.split(":", 1) for part in raw.split(",") if ":" in part)
        return {name.strip(): value.strip() for name, value in pairs}


@dataclass(frozen=True)
class Labels:
    """Labels found in an image. ``errors`` lists parts that could not be read."""

    mime: str
    aigc: dict[str, str] | None = None
    digital_source_type: str | None = None
    parameters: str | None = None
    generation_parameters: GenerationParameters | None = None
    data_mining: str | None = None
    training_mining: dict[str, str] | None = None
    xmp: str | None = None
    c2pa_container: bool = False
    errors: tuple[str, ...] = field(default_factory=tuple)

    def consent(self) -> dict[str, str]:
        """Training/mining uses the image's metadata states, most restrictive first.

        Combines ``plus:DataMining`` and CAWG entries; ``constrained`` counts as ``notAllowed``.
        Keys without a statement are left out.
        """
        merged: dict[str, str] = {}
        for source in (uses_from_data_mining(self.data_mining), self.training_mining or {}):
            for key, use in source.items():
                use = "notAllowed" if use == "constrained" else use
                if merged.get(key) != "notAllowed":
                    merged[key] = use
        return merged


# ---------------------------------------------------------------------------------------------
# AUTOMATIC1111 parameters

_PARAM_RE = re.compile(r'\s*([\w][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def a1111_parameters(
    *,
    prompt: str,
    negative_prompt: str | None = None,
    steps: int | None = None,
    sampler: str | None = None,
    cfg_scale: float | None = None,
    seed: int | None = None,
    width: int | None = None,
    height: int | None = None,
    model_name: str | None = None,
    model_sha256: str | None = None,
    loras: Sequence[tuple[str, str]] = (),
    denoising_strength: float | None = None,
) -> str:
    """The ``parameters`` text as AUTOMATIC1111 writes it; ``loras`` are (name, SHA-256)."""
    settings: list[tuple[str, Any]] = [
        ("Steps", steps),
        ("Sampler", sampler),
        ("CFG scale", _number(cfg_scale)),
        ("Seed", seed),
        ("Size", f"{width}x{height}" if width and height else None),
        ("Model hash", autov2(model_sha256) if model_sha256 else None),
        ("Model", model_name),
        ("Denoising strength", _number(denoising_strength)),
    ]
    if loras:
        settings.append(("Lora hashes", ", ".join(f"{n}: {autov2(h)}" for n, h in loras)))
    line = ", ".join(f"{key}: {_quote(str(value))}" for key, value in settings if value is not None)
    lines = [prompt]
    if negative_prompt:
        lines.append(f"Negative prompt: {negative_prompt}")
    lines.append(line)
    return "\n".join(lines)


def parse_a1111_parameters(text: str) -> GenerationParameters:
    lines = text.strip().split("\n")
    settings_line = lines[-1] if lines else ""
    pairs = _PARAM_RE.findall(settings_line)
    if len(pairs) < 3:
        pairs = []
    else:
        lines = lines[:-1]
    prompt: list[str] = []
    negative: list[str] = []
    in_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    settings = {key.strip(): _unquote(value.strip()) for key, value in pairs}
    return GenerationParameters("\n".join(prompt).strip(), "\n".join(negative).strip(), settings)


def _quote(text: str) -> str:
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        try:
            return str(json.loads(text))
        except json.JSONDecodeError:
            return text
    return text


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# ---------------------------------------------------------------------------------------------
# consent vocabularies


def data_mining_from_policy(policy: Mapping[str, str]) -> str:
    """PLUS ``DataMining`` value closest to a CAWG policy (``constrained`` read as not allowed)."""
    refused = {k for k, use in policy.items() if use in ("notAllowed", "constrained")}
    if not refused:
        return DMI_ALLOWED
    if "cawg.data_mining" in refused:
        return DMI_PROHIBITED
    if "cawg.ai_training" in refused:
        return DMI_PROHIBITED_AIML
    if "cawg.ai_generative_training" in refused:
        return DMI_PROHIBITED_GENAIML
    return DMI_UNSPECIFIED


def uses_from_data_mining(value: str | None) -> dict[str, str]:
    """CAWG uses implied by a PLUS ``DataMining`` value (full URI or bare ``DMI-…`` code)."""
    if not value:
        return {}
    code = value.rsplit("/", 1)[-1].strip().upper()
    if code == "DMI-ALLOWED":
        return dict.fromkeys(TRAINING_MINING_KEYS[1:], "allowed")
    if code == "DMI-PROHIBITED-AIMLTRAINING":
        return {"cawg.ai_training": "notAllowed", "cawg.ai_generative_training": "notAllowed"}
    if code == "DMI-PROHIBITED-GENAIMLTRAINING":
        return {"cawg.ai_generative_training": "notAllowed"}
    if code.startswith("DMI-PROHIBITED"):
        # Data mining covers training and mining; using the image as a model input does not.
        return dict.fromkeys(TRAINING_MINING_KEYS[1:], "notAllowed")
    return {}


def _entries_from_json(text: str) -> dict[str, str]:
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("entries"), dict):
        data = data["entries"]
    if not isinstance(data, dict):
        raise ValueError("training-mining entries are not an object")
    uses: dict[str, str] = {}
    for key, entry in data.items():
        use = entry.get("use") if isinstance(entry, dict) else entry
        if isinstance(use, str) and use in USES:
            uses[str(key)] = use
    return uses


# ---------------------------------------------------------------------------------------------
# writing


def encode_with_labels(
    image: Image.Image,
    mime: str,
    labels: LabelSet,
    quality: int = 95,
    webp_lossless: bool = False,
) -> bytes:
    """Encode ``image`` as PNG, JPEG or WebP with ``labels`` in its metadata."""
    mime = normalize_mime(mime)
    xmp_props = labels.xmp_properties()
    xmp = build_xmp(xmp_props) if xmp_props else None
    out = io.BytesIO()
    if mime == "image/png":
        texts = []
        if xmp is not None:
            texts.append(PngText(PNG_XMP_KEYWORD, xmp.decode("utf-8"), international=True))
        if labels.aigc is not None:
            texts.append(PngText(AIGC_KEY, labels.aigc.to_json()))
        if labels.parameters is not None:
            texts.append(PngText(PARAMETERS_KEY, labels.parameters))
        return encode_png(_png_pixels(image), texts)
    kwargs: dict[str, Any] = {"quality": quality}
    if xmp is not None:
        if mime == "image/jpeg" and len(xmp) > _MAX_JPEG_XMP:
            raise ValueError("XMP packet too large for one JPEG APP1 segment")
        kwargs["xmp"] = xmp
    if labels.parameters is not None:
        exif = Image.Exif()
        exif.get_ifd(_EXIF_IFD)[_USER_COMMENT] = b"UNICODE\x00" + labels.parameters.encode(
            "utf-16-be"
        )
        kwargs["exif"] = exif.tobytes()
    rgb = image if image.mode in ("RGB", "L") else image.convert("RGB")
    if mime == "image/jpeg":
        rgb.save(out, "JPEG", **kwargs)
    else:
        rgb.save(out, "WEBP", lossless=webp_lossless, **kwargs)
    return out.getvalue()


def _png_pixels(image: Image.Image) -> np.ndarray:
    if image.mode not in ("L", "RGB", "RGBA"):
        image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------
# reading


def read_labels(image_bytes: bytes) -> Labels:
    """Every label found in a PNG, JPEG or WebP; raises ``UnsupportedFormat`` for others."""
    meta = read_container(image_bytes)
    errors: list[str] = []
    props: dict[tuple[str, str], str] = {}
    xmp_text = None
    if meta.xmp is not None:
        xmp_text = meta.xmp.decode("utf-8", errors="replace")
        try:
            props = parse_xmp(meta.xmp)
        except XmpError as exc:
            errors.append(f"xmp: {exc}")

    aigc = None
    aigc_raw = meta.text.get(AIGC_KEY) or props.get((NS_TC260, AIGC_KEY))
    if aigc_raw:
        try:
            aigc = _parse_aigc(aigc_raw)
        except ValueError as exc:
            errors.append(f"AIGC label: {exc}")

    parameters = meta.text.get(PARAMETERS_KEY)
    if parameters is None and meta.exif:
        try:
            parameters = _user_comment(meta.exif)
        except Exception as exc:  # Pillow raises many kinds on malformed EXIF
            errors.append(f"exif: {exc}")
    parsed = parse_a1111_parameters(parameters) if parameters else None

    training = None
    for (_ns, name), value in props.items():
        if name in ("TrainingMining", "training-mining"):
            try:
                training = _entries_from_json(value)
            except ValueError as exc:
                errors.append(f"training-mining: {exc}")
            break

    return Labels(
        mime=meta.mime,
        aigc=aigc,
        digital_source_type=props.get((NS_IPTC_EXT, "DigitalSourceType")),
        parameters=parameters,
        generation_parameters=parsed,
        data_mining=props.get((NS_PLUS, "DataMining")),
        training_mining=training,
        xmp=xmp_text,
        c2pa_container=meta.c2pa_present,
        errors=tuple(errors),
    )


def _parse_aigc(raw: str) -> dict[str, str]:
    data = json.loads(raw)
    if isinstance(data, dict) and isinstance(data.get(AIGC_KEY), dict):
        data = data[AIGC_KEY]
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def _user_comment(exif_bytes: bytes) -> str | None:
    exif = Image.Exif()
    exif.load(exif_bytes)
    raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT)
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    header, body = bytes(raw[:8]), bytes(raw[8:])
    if header == b"UNICODE\x00":
        text = body.decode("utf-16-be", errors="replace")
        if "\x00" in text or "\ufffd" in text:
            text = body.decode("utf-16-le", errors="replace")
        return text
    return body.decode("utf-8" if header != b"ASCII\x00\x00\x00" else "ascii", errors="replace")
