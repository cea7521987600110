"""Artists: create, list, read, change default preferences, list what touched their works.
Scope: ``registry``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field, StringConstraints

from service.api.deps import RegistryKey, RuntimeDep, scope_doc
from service.api.lists import MAX_PAGE, PageDep
from service.api.schemas import ArtistCreate, ArtistPublic, ArtistUpdate, ErrorBody
from service.auth.scopes import Scope
from service.registry.artists_list import list_artists
from service.registry.events import GENERATION_MATCHED, EventFilter, list_events

router = APIRouter(prefix="/v1/artists", tags=["registry"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ArtistPublic,
    responses={**_ERRORS, 409: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Register an artist (scope: registry)",
)
def create_artist(body: ArtistCreate, rt: RuntimeDep, key: RegistryKey) -> ArtistPublic:
    with rt.pool.connection() as conn:
        artist = rt.registry.create_artist(
            conn, key.actor, body.display_name, body.email, body.default_preferences.explicit()
        )
    return ArtistPublic.of(artist)


class ArtistListed(ArtistPublic):
    works: int = Field(description="their works not withdrawn")
    portal_login: bool = Field(description="they can log in to the artist portal")


class ArtistList(BaseModel):
    artists: list[ArtistListed] = Field(description="oldest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


@router.get(
    "",
    response_model=ArtistList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Artists a page at a time, or the one with an e-mail address (the one a 409 from "
    "POST /v1/artists said is registered), with their works and whether they have a portal "
    "login (scope: registry)",
)
def list_all_artists(
    rt: RuntimeDep,
    key: RegistryKey,
    email: Annotated[
        str | None, Query(max_length=320, description="exactly this address, any case")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ArtistList:
    with rt.pool.connection() as conn:
        found = list_artists(conn, email=email, limit=limit, cursor=cursor)
    return ArtistList(
        artists=[ArtistListed(**a) for a in found.artists], next_cursor=found.next_cursor
    )


@router.get(
    "/{artist_id}",
    response_model=ArtistPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Read an artist (scope: registry)",
)
def get_artist(artist_id: UUID, rt: RuntimeDep, key: RegistryKey) -> ArtistPublic:
    with rt.pool.connection() as conn:
        return ArtistPublic.of(rt.registry.get_artist(conn, artist_id))


@router.patch(
    "/{artist_id}",
    response_model=ArtistPublic,
    responses={**_ERRORS, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Change an artist's name, e-mail address or default preferences; a field left "
    "out stays as it is; all or nothing (scope: registry)",
)
def update_artist(
    artist_id: UUID, body: ArtistUpdate, rt: RuntimeDep, key: RegistryKey
) -> ArtistPublic:
    artist = None
    with rt.pool.connection() as conn, conn.transaction():  # a refused address changes nothing
        if body.display_name is not None or body.email is not None:
            artist = rt.registry.update_artist_profile(
                conn,
                key.actor,
                artist_id,
                display_name=body.display_name,
                email=str(body.email) if body.email is not None else None,
            )
        if body.default_preferences is not None:
            artist = rt.registry.update_artist_defaults(
                conn,
                key.actor,
                artist_id,
                body.default_preferences.explicit(),
                clear=body.default_preferences.cleared(),
            )
    assert artist is not None  # ArtistUpdate asks for one of them
    return ArtistPublic.of(artist)


EventKind = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+$", max_length=64)]


class ArtistEvent(BaseModel):
    at: datetime
    kind: str = Field(
        description="an audit entry's kind (artwork.registered, license.granted, "
        f"moderation.matched, stamp.refused, match.decided, ...) or {GENERATION_MATCHED}: a "
        "generation whose input (init, mask or control image) matched the work, with its "
        "outcome: blocked, licensed, allowed or noted"
    )
    artwork_id: UUID | None = Field(description="the work it touched; null for the artist")
    audit_seq: int | None = Field(description="its entry in the audit log (proof: audit verify)")
    actor: str | None
    data: dict[str, Any]


class ArtistEventPage(BaseModel):
    events: list[ArtistEvent] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


@router.get(
    "/{artist_id}/events",
    response_model=ArtistEventPage,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Everything that touched an artist's works, newest first: changes, licences, "
    "moderation matches, refused stamps, generations whose inputs matched (blocked img2img "
    "attempts among them) (scope: registry)",
)
def list_artist_events(
    artist_id: UUID,
    rt: RuntimeDep,
    key: RegistryKey,
    page: PageDep,
    kind: Annotated[
        list[EventKind] | None, Query(description="one or more kinds (repeat the parameter)")
    ] = None,
    artwork_id: Annotated[UUID | None, Query(description="one of the artist's works")] = None,
) -> ArtistEventPage:
    where = EventFilter(
        kinds=tuple(dict.fromkeys(kind or ())),
        artwork_id=artwork_id,
        since=page.since,
        until=page.until,
    )
    with rt.pool.connection() as conn:
        rt.registry.get_artist(conn, artist_id)  # 404 for no such artist
        found = list_events(conn, artist_id, where, page.limit, page.cursor)
    return ArtistEventPage(
        events=[ArtistEvent(**e) for e in found.events], next_cursor=found.next_cursor
    )
