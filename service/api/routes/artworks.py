"""Artworks: register (one or many files), read, list, change, withdraw. Scope: ``registry``."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from service.api.deps import ImageWorkDep, RegistryKey, RuntimeDep, scope_doc
from service.api.registration import register_uploads
from service.api.schemas import (
    ArtworkPage,
    ArtworkPublic,
    ArtworkUpdate,
    DisputePublic,
    ErrorBody,
    RegisteredArtwork,
    RegistrationResult,
    Rejected,
)
from service.api.text import TITLE_MAX_CHARS, StorableText, Title
from service.api.uploads import single_parts
from service.auth.scopes import Scope
from service.db.keyset import CursorError, decode_cursor, encode_cursor
from service.registry.preferences import parse_preferences

router = APIRouter(tags=["registry"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}


@router.post(
    "/v1/artists/{artist_id}/artworks",
    dependencies=[single_parts("title", "preferences")],
    status_code=status.HTTP_201_CREATED,
    response_model=RegistrationResult,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.registry),
    summary="Register one or more artworks (scope: registry)",
)
async def register_artworks(
    artist_id: UUID,
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: RegistryKey,
    files: Annotated[list[UploadFile], File(description="one or more image files")],
    title: Annotated[str | None, Form(max_length=TITLE_MAX_CHARS), Title] = None,
    preferences: Annotated[
        str | None, Form(description='JSON, e.g. {"img2img": "deny"}'), StorableText
    ] = None,
) -> RegistrationResult | JSONResponse:
    prefs = parse_preferences(preferences)
    if len(files) > rt.settings.max_files_per_request:
        raise HTTPException(413, f"at most {rt.settings.max_files_per_request} files per request")

    def artist_exists() -> None:
        with rt.pool.connection() as conn:
            rt.registry.get_artist(conn, artist_id)  # 404 before any work

    await run_in_threadpool(artist_exists)

    done = await register_uploads(rt, image_work, key.actor, artist_id, files, title, prefs)
    rejected = [Rejected(filename=name, reason=why) for name, why in done.rejected]
    if not done.stored:
        return JSONResponse(
            {
                "detail": "no file could be registered: "
                + "; ".join(f"{r.filename}: {r.reason}" for r in rejected),
                "rejected": [r.model_dump() for r in rejected],
            },
            status_code=done.worst_status,
        )
    stored = [
        RegisteredArtwork(**ArtworkPublic.of(art).model_dump(), duplicate=not created)
        for art, created in done.stored
    ]
    return RegistrationResult(
        artworks=stored,
        rejected=rejected,
        disputes=[DisputePublic.model_validate(d) for d in done.disputes],
    )


@router.get(
    "/v1/artists/{artist_id}/artworks",
    response_model=ArtworkPage,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="List an artist's artworks, oldest first, by cursor (scope: registry)",
)
def list_artworks(
    artist_id: UUID,
    rt: RuntimeDep,
    key: RegistryKey,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    include_withdrawn: bool = False,
) -> ArtworkPage:
    try:
        after = decode_cursor(cursor) if cursor else None
    except CursorError as exc:
        raise HTTPException(422, str(exc)) from None
    with rt.pool.connection() as conn:
        rows = rt.registry.list_artworks(conn, artist_id, limit + 1, after, include_withdrawn)
    page, more = rows[:limit], len(rows) > limit
    next_cursor = encode_cursor(page[-1].created_at, page[-1].id) if more else None
    return ArtworkPage(artworks=[ArtworkPublic.of(a) for a in page], next_cursor=next_cursor)


@router.get(
    "/v1/artworks/{artwork_id}",
    response_model=ArtworkPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Read an artwork (scope: registry)",
)
def get_artwork(artwork_id: UUID, rt: RuntimeDep, key: RegistryKey) -> ArtworkPublic:
    with rt.pool.connection() as conn:
        return ArtworkPublic.of(rt.registry.get_artwork(conn, artwork_id))


@router.get(
    "/v1/artworks/{artwork_id}/image",
    responses={**_ERRORS, 200: {"content": {"image/*": {}}}},
    openapi_extra=scope_doc(Scope.registry),
    summary="The original bytes as registered (scope: registry)",
)
def get_artwork_image(artwork_id: UUID, rt: RuntimeDep, key: RegistryKey) -> Response:
    with rt.pool.connection() as conn:
        art = rt.registry.get_artwork(conn, artwork_id)
    return Response(rt.blobs.get(art.sha256), media_type=art.media_type)


@router.get(
    "/v1/artworks/{artwork_id}/thumbnail",
    responses={**_ERRORS, 200: {"content": {"image/webp": {}}}},
    openapi_extra=scope_doc(Scope.registry),
    summary="A 256-px WebP thumbnail (scope: registry)",
)
def get_artwork_thumbnail(artwork_id: UUID, rt: RuntimeDep, key: RegistryKey) -> Response:
    with rt.pool.connection() as conn:
        art = rt.registry.get_artwork(conn, artwork_id)
    return Response(rt.thumbnails.get(art.sha256), media_type="image/webp")


@router.patch(
    "/v1/artworks/{artwork_id}",
    response_model=ArtworkPublic,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Change an artwork's title or preferences (scope: registry)",
)
def update_artwork(
    artwork_id: UUID, body: ArtworkUpdate, rt: RuntimeDep, key: RegistryKey
) -> ArtworkPublic:
    with rt.pool.connection() as conn:
        art = rt.registry.update_artwork(
            conn,
            key.actor,
            artwork_id,
            title=body.title,
            set_title="title" in body.model_fields_set,
            preferences=body.preferences.explicit() if body.preferences else None,
            clear=body.preferences.cleared() if body.preferences else (),
        )
    return ArtworkPublic.of(art)


@router.delete(
    "/v1/artworks/{artwork_id}",
    response_model=ArtworkPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Withdraw an artwork: it stops matching, its record stays (scope: registry)",
)
def withdraw_artwork(artwork_id: UUID, rt: RuntimeDep, key: RegistryKey) -> ArtworkPublic:
    with rt.pool.connection() as conn:
        art = rt.registry.withdraw_artwork(conn, key.actor, artwork_id)
    rt.banks["artwork"].catch_up()
    return ArtworkPublic.of(art)
