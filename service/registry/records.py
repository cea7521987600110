"""Plain records read from the registry tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from service.registry.preferences import effective


@dataclass(frozen=True)
class Artist:
    id: UUID
    display_name: str
    email: str
    default_preferences: dict[str, str]
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> Artist:
        return cls(
            row["id"],
            row["display_name"],
            row["email"],
            row["default_preferences"],
            row["created_at"],
        )


@dataclass(frozen=True)
class Artwork:
    id: UUID
    artist_id: UUID
    sha256: str
    title: str | None
    preferences: dict[str, str]
    artist_default_preferences: dict[str, str]
    status: str
    media_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str | None
    fingerprint_id: int | None
    created_at: datetime
    updated_at: datetime
    withdrawn_at: datetime | None

    @property
    def effective_preferences(self) -> dict[str, str]:
        return effective(self.preferences, self.artist_default_preferences)

    @classmethod
    def from_row(cls, row: dict) -> Artwork:
        return cls(
            id=row["id"],
            artist_id=row["artist_id"],
            sha256=row["sha256"],
            title=row["title"],
            preferences=row["preferences"],
            artist_default_preferences=row.get("default_preferences") or {},
            status=row["status"],
            media_type=row["media_type"],
            width=row["width"],
            height=row["height"],
            byte_size=row["byte_size"],
            original_filename=row["original_filename"],
            fingerprint_id=row["fingerprint_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            withdrawn_at=row["withdrawn_at"],
        )


@dataclass(frozen=True)
class License:
    id: UUID
    artwork_id: UUID
    grantee: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None

    def active_at(self, when: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > when)

    @classmethod
    def from_row(cls, row: dict) -> License:
        return cls(
            row["id"],
            row["artwork_id"],
            row["grantee"],
            list(row["scopes"]),
            row["expires_at"],
            row["created_at"],
            row["revoked_at"],
        )


@dataclass
class RegistrationOutcome:
    created: list[Artwork] = field(default_factory=list)
    duplicates: list[Artwork] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False  # stopped by Ctrl-C: the files not counted above were not stored
    disputes: list[dict[str, Any]] = field(default_factory=list)  # open, over the new works
    unchecked: bool = False  # the new works could not be checked against other artists' works
