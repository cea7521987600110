"""Request and response models at the HTTP edge."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    field_validator,
    model_validator,
)

from service.api.text import TITLE_MAX_CHARS, FreeText, Name, OneLine, RequestModel, Title
from service.registry.preferences import Preferences
from service.registry.records import Artist, Artwork, License


class FieldProblem(BaseModel):
    """One thing wrong with a request's fields (the value itself is not echoed)."""

    type: str
    loc: list[str | int]
    msg: str


class ErrorBody(BaseModel):
    """An error: ``detail`` says what was wrong, as a sentence, or for a request whose fields
    did not validate (422) as a list naming each field. Some answers add fields of their own
    (``code`` for a refused image, ``rejected`` for a registration whose every file was)."""

    model_config = ConfigDict(extra="allow")

    detail: str | list[FieldProblem]


class ArtistCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[str, Name] = Field(min_length=1, max_length=200)
    email: EmailStr
    default_preferences: Preferences = Field(default_factory=Preferences)


class ArtistUpdate(RequestModel):
    """What to change; a field left out stays as it is (at least one is needed)."""

    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[str, Name] | None = Field(default=None, min_length=1, max_length=200)
    email: EmailStr | None = None
    default_preferences: Preferences | None = None

    @model_validator(mode="after")
    def _something(self) -> ArtistUpdate:
        if self.display_name is None and self.email is None and self.default_preferences is None:
            raise ValueError("say what to change: display_name, email or default_preferences")
        return self


class ArtistPublic(BaseModel):
    id: UUID
    display_name: str
    email: str
    default_preferences: dict[str, str]
    created_at: datetime

    @classmethod
    def of(cls, a: Artist) -> ArtistPublic:
        return cls(
            id=a.id,
            display_name=a.display_name,
            email=a.email,
            default_preferences=a.default_preferences,
            created_at=a.created_at,
        )


class ArtworkPublic(BaseModel):
    id: UUID
    artist_id: UUID
    sha256: str
    title: str | None
    status: Literal["active", "withdrawn"]
    preferences: dict[str, str] = Field(description="choices set on this artwork")
    effective_preferences: dict[str, str] = Field(
        description="what applies: the artwork's choice, else the artist's default, else deny"
    )
    media_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str | None
    created_at: datetime
    updated_at: datetime
    withdrawn_at: datetime | None
    image_url: str
    thumbnail_url: str

    @classmethod
    def of(cls, w: Artwork) -> ArtworkPublic:
        return cls(
            id=w.id,
            artist_id=w.artist_id,
            sha256=w.sha256,
            title=w.title,
            status=w.status,  # type: ignore[arg-type]
            preferences=w.preferences,
            effective_preferences=w.effective_preferences,
            media_type=w.media_type,
            width=w.width,
            height=w.height,
            byte_size=w.byte_size,
            original_filename=w.original_filename,
            created_at=w.created_at,
            updated_at=w.updated_at,
            withdrawn_at=w.withdrawn_at,
            image_url=f"/v1/artworks/{w.id}/image",
            thumbnail_url=f"/v1/artworks/{w.id}/thumbnail",
        )


class RegisteredArtwork(ArtworkPublic):
    duplicate: bool = Field(description="these bytes were already registered for this artist")


class Rejected(BaseModel):
    filename: str | None
    reason: str


class DisputeSide(BaseModel):
    artwork_id: UUID
    artist_id: UUID
    title: str | None
    status: Literal["active", "withdrawn"]
    registered_at: datetime


class DisputeMatch(BaseModel):
    decision: Literal["copy", "similar"]
    score: float
    evidence: dict[str, Any]


class DisputePublic(BaseModel):
    id: UUID
    status: Literal["open", "upheld", "dismissed"]
    earlier: DisputeSide = Field(description="the work registered first")
    later: DisputeSide = Field(description="the work registered later, which copies it")
    match: DisputeMatch = Field(
        description="the matcher's view of the later work against the earlier one, when the "
        "dispute was opened"
    )
    withdrawn_artwork_id: UUID | None = Field(description="upheld: the work withdrawn")
    decision_note: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_by: str
    created_at: datetime
    url: str


class DisputeList(BaseModel):
    disputes: list[DisputePublic] = Field(description="newest first")
    next_cursor: str | None


class DisputeDecision(RequestModel):
    model_config = ConfigDict(extra="forbid")

    withdraw: UUID | None = Field(
        description="the work to withdraw (either side: upheld); null lets both stand "
        "(dismissed)"
    )
    note: Annotated[str | None, FreeText] = Field(default=None, max_length=5000)


class RegistrationResult(BaseModel):
    artworks: list[RegisteredArtwork]
    rejected: list[Rejected]
    disputes: list[DisputePublic] = Field(
        default_factory=list,
        description="ownership disputes these new works are in: each copies a work another "
        "artist registered (both stay registered until a person decides; see /v1/disputes)",
    )


class ArtworkPage(BaseModel):
    artworks: list[ArtworkPublic]
    next_cursor: str | None


class ArtworkUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    title: Annotated[str | None, Title] = Field(default=None, max_length=TITLE_MAX_CHARS)
    preferences: Preferences | None = None


class LicenseCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    grantee: Annotated[str, OneLine] = Field(
        min_length=1, max_length=200, description="the platform user id"
    )
    scopes: list[Literal["img2img", "style", "training"]] = Field(min_length=1)
    expires_at: datetime | None = None

    @field_validator("grantee")
    @classmethod
    def _exact(cls, v: str) -> str:
        # matched exactly against the platform user a request names: edge spaces are a mistake
        if v != v.strip():
            raise ValueError("grantee must not begin or end with white space")
        return v

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("expires_at needs a time zone, e.g. 2027-01-01T00:00:00Z")
        if v is None:
            return v
        if v <= datetime.now(UTC):
            raise ValueError("expires_at is not in the future: a licence must end after it starts")
        try:
            in_utc = v.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59-14:00 is in the year 10000 in UTC
            in_utc = None
        if in_utc is None or in_utc.year >= 9999:
            raise ValueError("expires_at must be before the year 9999 (or null: no end)")
        return in_utc


class LicensePublic(BaseModel):
    id: UUID
    artwork_id: UUID
    grantee: str
    scopes: list[str]
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None
    active: bool

    @classmethod
    def of(cls, lic: License, now: datetime) -> LicensePublic:
        return cls(
            id=lic.id,
            artwork_id=lic.artwork_id,
            grantee=lic.grantee,
            scopes=lic.scopes,
            expires_at=lic.expires_at,
            created_at=lic.created_at,
            revoked_at=lic.revoked_at,
            active=lic.active_at(now),
        )


class MatchPublic(BaseModel):
    artwork_id: UUID
    artist_id: UUID
    score: float
    decision: Literal["copy", "similar"]
    title: str | None
    preferences: dict[str, str]
    licensed: bool | None = Field(
        default=None, description="when a user was named: holds a live img2img licence"
    )
    dispute_id: UUID | None = Field(
        default=None,
        description="an open ownership dispute over this work (GET /v1/disputes/{id}): another "
        "artist registered a copy of it, or it copies another artist's work",
    )
    evidence: dict[str, Any]


class IndexInfo(BaseModel):
    size: int
    built_to: int


class MatchResponse(BaseModel):
    matches: list[MatchPublic]
    index: IndexInfo
    timings_ms: dict[str, float]


# ---- claims (against an adapter, or against an output of ours) -------------------------------

CLAIM_REASON_MAX_CHARS = 5000


def _said(v: str) -> str:
    v = v.strip()
    if not v:
        raise ValueError("reason must say why (more than white space)")
    return v


ClaimReason = Annotated[
    str, FreeText, Field(min_length=1, max_length=CLAIM_REASON_MAX_CHARS), AfterValidator(_said)
]


class ClaimDecision(RequestModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "yes" is not a decision

    uphold: bool
    note: Annotated[str | None, FreeText] = Field(default=None, max_length=5000)
