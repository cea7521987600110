"""Plain values passed into and out of the diffusion runner (no torch import here)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

Mode = Literal["txt2img", "img2img", "inpaint"]
MODES: tuple[Mode, ...] = ("txt2img", "img2img", "inpaint")

# The prompt and the negative prompt together, in characters.
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class AdapterUse:
    """A LoRA file to apply at a scale. ``name`` is the label the request used."""

    name: str
    path: Path
    scale: float = 1.0


@dataclass
class GenerationParams:
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance: float = 7.0
    width: int = 256
    height: int = 256
    scheduler: str = "euler"
    strength: float = 0.75
    mode: Mode = "txt2img"
    init_image: Image.Image | None = None
    mask_image: Image.Image | None = None
    adapters: list[AdapterUse] = field(default_factory=list)
    control_image: Image.Image | None = None  # ControlNet conditioning
    control_scale: float = 1.0
    # Told (steps done, steps in all) after each denoising step, e.g. for a progress bar.
    on_step: Callable[[int, int], None] | None = None


TINY_NOTICE = (
    "default tiny Stable Diffusion model with random weights: the pictures it makes are noise"
)


@dataclass(frozen=True)
class ModelInfo:
    """Which model made an image: enough to cite it in a record or an A1111 parameters chunk."""

    name: str
    family: str
    sha256: str
    autov2: str
    is_default_tiny: bool
    device: str
    dtype: str
    notice: str | None = None


@dataclass(frozen=True)
class AppliedAdapter:
    name: str
    path: str
    scale: float
    sha256: str
    autov2: str


@dataclass
class DiffusionResult:
    image: Image.Image
    params: GenerationParams
    elapsed_s: float
    model: ModelInfo
    adapters: list[AppliedAdapter]
    queued_behind: int = 0
    controlnet: dict[str, str] | None = None  # name and sha256 of the ControlNet applied
