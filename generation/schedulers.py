"""Sampler names (ours and AUTOMATIC1111's) mapped to diffusers schedulers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # diffusers (and torch) load with the model, not with a name check
    from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass(frozen=True)
class SchedulerSpec:
    name: str
    a1111_label: str
    class_name: str
    overrides: dict[str, Any] = field(default_factory=dict)


SCHEDULERS: dict[str, SchedulerSpec] = {
    spec.name: spec
    for spec in (
        SchedulerSpec("euler", "Euler", "EulerDiscreteScheduler"),
        SchedulerSpec("euler_a", "Euler a", "EulerAncestralDiscreteScheduler"),
        SchedulerSpec("ddim", "DDIM", "DDIMScheduler"),
        SchedulerSpec("pndm", "PLMS", "PNDMScheduler", {"skip_prk_steps": True}),
        SchedulerSpec("heun", "Heun", "HeunDiscreteScheduler"),
        SchedulerSpec("dpmpp_2m", "DPM++ 2M", "DPMSolverMultistepScheduler"),
        SchedulerSpec(
            "dpmpp_2m_karras",
            "DPM++ 2M Karras",
            "DPMSolverMultistepScheduler",
            {"use_karras_sigmas": True},
        ),
        SchedulerSpec("unipc", "UniPC", "UniPCMultistepScheduler"),
    )
}
DEFAULT_SCHEDULER = "euler"

_ALIASES: dict[str, str] = {
    **{name: name for name in SCHEDULERS},
    **{spec.a1111_label.lower(): spec.name for spec in SCHEDULERS.values()},
}


def resolve_scheduler_name(name: str | None) -> str:
    """Canonical name for one of ours or an A1111 label (any case); ValueError if unknown."""
    if name is None or not name.strip():
        return DEFAULT_SCHEDULER
    key = name.strip().lower()
    if key not in _ALIASES:
        known = ", ".join(sorted(SCHEDULERS))
        raise ValueError(f"unknown scheduler {name!r}; known: {known}")
    return _ALIASES[key]


def make_scheduler(name: str | None, base_config: dict[str, Any]) -> SchedulerMixin:
    """A fresh scheduler of the named kind, built on the model's own scheduler config."""
    import diffusers

    spec = SCHEDULERS[resolve_scheduler_name(name)]
    scheduler_class = getattr(diffusers, spec.class_name)
    return scheduler_class.from_config(dict(base_config), **spec.overrides)
