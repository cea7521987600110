"""What an artist allows: per artwork, falling back to the artist's default, then the system's."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

Choice = Literal["deny", "allow"]
USES = ("img2img", "style", "training")
SYSTEM_DEFAULT: dict[str, str] = {"img2img": "deny", "style": "deny", "training": "deny"}


class Preferences(BaseModel):
    """A partial set of choices; a missing use falls back to the next level."""

    model_config = ConfigDict(extra="forbid")

    img2img: Choice | None = None
    style: Choice | None = None
    training: Choice | None = None

    def explicit(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def cleared(self) -> list[str]:
        """Uses given as null: in a change, the choice is removed and falls back again."""
        return sorted(k for k in self.model_fields_set if getattr(self, k) is None)


class PreferencesError(ValueError):
    pass


def parse_preferences(raw: str | dict | None) -> dict[str, str]:
    """Validate preferences given as a JSON string or dict; return only the explicit choices."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise PreferencesError(f"preferences is not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise PreferencesError("preferences is nested too deeply") from None
    if not isinstance(raw, dict):
        raise PreferencesError('preferences must be a JSON object such as {"img2img": "deny"}')
    try:
        return Preferences.model_validate(raw).explicit()
    except ValidationError as exc:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "preferences"
            if err["type"] == "extra_forbidden":
                parts.append(f"unknown use '{where}' (known: {', '.join(USES)})")
            else:
                parts.append(f"{where}: must be 'deny' or 'allow'")
        raise PreferencesError("invalid preferences: " + "; ".join(parts)) from None


def effective(artwork: dict[str, str] | None, artist_default: dict[str, str] | None) -> dict:
    """Resolve each use: the artwork's own choice, else the artist's default, else deny."""
    out: dict[str, str] = {}
    for use in USES:
        out[use] = (
            (artwork or {}).get(use) or (artist_default or {}).get(use) or SYSTEM_DEFAULT[use]
        )
    return out
