"""Matching an image against the artwork registry. Scope: ``match``."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile

from service.api.deps import ImageWorkDep, MatchKey, RuntimeDep, scope_doc
from service.api.schemas import ErrorBody, IndexInfo, MatchPublic, MatchResponse
from service.api.text import OneLine, StorableText
from service.api.uploads import read_upload, single_parts
from service.auth.scopes import Scope
from service.registry.matching import RegistryMatches, match_registry, record_match_decision
from service.registry.picture import registry_match_picture
from similarity import DecodedImage, compute_signals, decode_for_matching

if TYPE_CHECKING:
    from service.runtime import Runtime

router = APIRouter(tags=["matching"])
_UPLOAD_ERRORS = {code: {"model": ErrorBody} for code in (401, 403, 413, 415, 422, 503)}


def to_public(result: RegistryMatches, with_licence: bool) -> list[MatchPublic]:
    return [
        MatchPublic(
            artwork_id=m.artwork.id,
            artist_id=m.artwork.artist_id,
            score=round(m.match.score, 4),
            decision=m.match.decision,
            title=m.artwork.title,
            preferences=m.artwork.effective_preferences,
            licensed=(m.license is not None) if with_licence else None,
            dispute_id=m.dispute_id,
            evidence=m.match.evidence,
        )
        for m in result.matches
    ]


def match_upload(
    rt: Runtime,
    data: bytes,
    actor: str,
    user: str | None,
    source: str,
    timings: dict[str, float] | None = None,
    *,
    colour: bool = False,
) -> tuple[DecodedImage, RegistryMatches]:
    """Blocking: decode, fingerprint, match against the registry and audit the decision;
    ``timings`` (ms per step) is filled in when given. The decoded picture is greyscale (all
    fingerprints need) unless `colour` asks for RGB, to draw the evidence picture."""
    t0 = time.perf_counter()
    decoded = decode_for_matching(data, rt.decode_limits, colour=colour)
    t1 = time.perf_counter()
    signals = compute_signals(decoded)
    t2 = time.perf_counter()
    result = match_registry(rt, signals, grantee=user)
    t3 = time.perf_counter()
    record_match_decision(rt, actor, data, result, source, user)
    t4 = time.perf_counter()
    if timings is not None:
        timings.update(
            decode=(t1 - t0) * 1e3,
            signals=(t2 - t1) * 1e3,
            match=(t3 - t2) * 1e3,
            record=(t4 - t3) * 1e3,
        )
    return decoded, result


@router.post(
    "/v1/matches",
    dependencies=[single_parts("file", "user")],
    response_model=MatchResponse,
    responses=_UPLOAD_ERRORS,
    openapi_extra=scope_doc(Scope.match),
    summary="Is this image a registered artwork, edited? (scope: match)",
)
async def match_image(
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: MatchKey,
    file: Annotated[UploadFile, File(description="the image to check")],
    user: Annotated[
        str | None, Form(description="platform user, to report licences"), StorableText, OneLine
    ] = None,
) -> MatchResponse:
    data = await read_upload(file, rt.settings.max_upload_bytes)
    timings: dict[str, float] = {}
    _, result = await image_work.run(
        match_upload, rt, data, key.actor, user, "api:/v1/matches", timings
    )
    return MatchResponse(
        matches=to_public(result, with_licence=user is not None),
        index=IndexInfo(size=result.index_size, built_to=result.built_to),
        timings_ms={k: round(v, 2) for k, v in timings.items()},
    )


@router.post(
    "/v1/matches/picture",
    dependencies=[single_parts("file", "user")],
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "the evidence picture"},
        **_UPLOAD_ERRORS,
    },
    openapi_extra=scope_doc(Scope.match),
    summary="The same match as a picture: the image beside each matched artwork (scope: match)",
)
async def match_picture(
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: MatchKey,
    file: Annotated[UploadFile, File(description="the image to check")],
    user: Annotated[
        str | None, Form(description="platform user, to report licences"), StorableText, OneLine
    ] = None,
) -> Response:
    data = await read_upload(file, rt.settings.max_upload_bytes)

    def work() -> bytes:
        decoded, result = match_upload(
            rt, data, key.actor, user, "api:/v1/matches/picture", colour=True
        )
        return registry_match_picture(rt, decoded, result)

    return Response(await image_work.run(work), media_type="image/png")
