"""API-key scopes. ``admin`` implies every other scope."""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    registry = "registry"
    match = "match"
    generate = "generate"
    stamp = "stamp"
    moderate = "moderate"
    audit = "audit"
    admin = "admin"


ALL_SCOPES = frozenset(s.value for s in Scope)


def parse_scopes(values: list[str]) -> list[str]:
    unknown = sorted(set(values) - ALL_SCOPES)
    if unknown:
        raise ValueError(
            f"unknown scope(s) {', '.join(unknown)}; choose from {', '.join(sorted(ALL_SCOPES))}"
        )
    if not values:
        raise ValueError("a key needs at least one scope")
    return sorted(set(values))
