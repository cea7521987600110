"""Artists: create, read, change default preferences. Scope: ``registry``."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, status

from service.api.deps import RegistryKey, RuntimeDep, scope_doc
from service.api.schemas import ArtistCreate, ArtistPublic, ArtistUpdate, ErrorBody
from service.auth.scopes import Scope

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
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Change an artist's default preferences (scope: registry)",
)
def update_artist(
    artist_id: UUID, body: ArtistUpdate, rt: RuntimeDep, key: RegistryKey
) -> ArtistPublic:
    with rt.pool.connection() as conn:
        artist = rt.registry.update_artist_defaults(
            conn,
            key.actor,
            artist_id,
            body.default_preferences.explicit(),
            clear=body.default_preferences.cleared(),
        )
    return ArtistPublic.of(artist)
