"""The C2PA Soft Binding Resolution API over our own outputs, mounted under ``/sbr``.

Scope: ``moderate`` (or no key at all when ``CHOPMARK_SBR_PUBLIC`` is set, for public resolvers).
Values follow the API: a match is ``{"manifestId", "similarityScore"}`` with an integer score
0-100; binding values are base64 (the hex form our manifests carry is accepted too).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, Field, ValidationError

from service.api.deps import ImageWorkDep, RuntimeDep, require_unless_public, scope_doc
from service.api.schemas import ErrorBody
from service.api.text import RequestModel
from service.auth.scopes import Scope
from service.runtime import Runtime
from service.stamping.resolve import resolve_image
from similarity import SIGNALS_VERSION, decode_for_matching

FINGERPRINT_ALG = f"org.chopmark.fingerprint.{SIGNALS_VERSION}"
_HEX = re.compile(r"^[0-9a-fA-F]+$")


router = APIRouter(
    prefix="/sbr",
    tags=["soft binding resolution"],
    dependencies=[
        Depends(require_unless_public(Scope.moderate, lambda rt: rt.settings.sbr_public))
    ],
)
_ERRORS = {400: {"model": ErrorBody}, 401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


class BindingQuery(RequestModel):
    alg: str = Field(min_length=1, max_length=200)
    value: str = Field(min_length=1, max_length=4096)


class SbrMatch(BaseModel):
    manifestId: str
    similarityScore: int = Field(ge=0, le=100)


class SbrResult(BaseModel):
    matches: list[SbrMatch]


def _payload_from_value(value: str, bits: int) -> int:
    text = value.strip()
    if len(text) == (bits + 3) // 4 and _HEX.match(text):
        return int(text, 16)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "value is neither base64 nor the hex form of a payload") from None
    if len(raw) * 8 < bits or len(raw) > (bits + 7) // 8:
        raise HTTPException(400, f"value must encode {bits} bits ({(bits + 7) // 8} bytes)")
    return int.from_bytes(raw, "big")


def _by_binding(rt: Runtime, q: BindingQuery, max_results: int) -> SbrResult:
    wm = rt.watermarker
    if q.alg != wm.alg:
        raise HTTPException(
            400, f"unsupported alg {q.alg!r}; see /sbr/services/supportedAlgorithms"
        )
    payload = _payload_from_value(q.value, wm.payload_bits)
    with rt.pool.connection() as conn:
        rec = rt.outputs.by_payload(conn, wm.alg, payload)
    matches = [SbrMatch(manifestId=rec.manifest_id, similarityScore=100)] if rec else []
    return SbrResult(matches=matches[:max_results])


MaxResults = Annotated[int, Query(alias="maxResults", ge=1, le=100)]


@router.get(
    "/matches/byBinding",
    response_model=SbrResult,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.moderate),
    summary="Manifests for a watermark value (scope: moderate)",
)
def by_binding_get(rt: RuntimeDep, alg: str, value: str, max_results: MaxResults = 10) -> SbrResult:
    try:
        query = BindingQuery(alg=alg, value=value)
    except ValidationError as exc:  # the same checks as the POST body, answered the same way
        raise RequestValidationError(
            [{**e, "loc": ("query", *e["loc"])} for e in exc.errors(include_input=False)]
        ) from None
    return _by_binding(rt, query, max_results)


@router.post(
    "/matches/byBinding",
    response_model=SbrResult,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.moderate),
    summary="Manifests for a watermark value, in the body (scope: moderate)",
)
def by_binding_post(rt: RuntimeDep, body: BindingQuery, max_results: MaxResults = 10) -> SbrResult:
    return _by_binding(rt, body, max_results)


@router.post(
    "/matches/byContent",
    response_model=SbrResult,
    responses={**_ERRORS, 413: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    openapi_extra={
        **scope_doc(Scope.moderate),
        "requestBody": {
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
            "required": True,
        },
    },
    summary="Manifests for an image: our watermark, cross-checked by fingerprint (scope: moderate)",
)
async def by_content(
    request: Request,
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    max_results: MaxResults = 10,
    alg: str | None = None,
) -> SbrResult:
    supported = {rt.watermarker.alg, FINGERPRINT_ALG}
    if alg is not None and alg not in supported:
        raise HTTPException(400, f"unsupported alg {alg!r}; see /sbr/services/supportedAlgorithms")
    limit = rt.settings.max_upload_bytes
    received = bytearray()
    async for chunk in request.stream():  # stop reading at the limit, not at the body's end
        received += chunk
        if len(received) > limit:
            raise HTTPException(413, f"the image is over the limit of {limit} bytes")
    data = bytes(received)

    def work() -> SbrResult:
        decoded = decode_for_matching(data, rt.decode_limits)
        res = resolve_image(rt, decoded, limit=max_results)
        # Asked for one algorithm, answer by it: the watermark (cross-checked by fingerprint),
        # or the fingerprint alone (which the watermark's answers pass too).
        found = [
            o
            for o in res.outputs
            if alg != rt.watermarker.alg or o.method == "watermark+fingerprint"
        ]
        return SbrResult(
            matches=[
                SbrMatch(manifestId=o.record.manifest_id, similarityScore=round(100 * o.score))
                for o in found
            ]
        )

    return await image_work.run(work)


@router.get(
    "/manifests/{manifest_id}",
    responses={**_ERRORS, 404: {"model": ErrorBody}, 200: {"content": {"application/c2pa": {}}}},
    openapi_extra=scope_doc(Scope.moderate),
    summary="A manifest store (scope: moderate)",
)
def get_manifest(manifest_id: str, rt: RuntimeDep) -> Response:
    with rt.pool.connection() as conn:
        data = rt.outputs.manifest(conn, manifest_id)
    if data is None:
        raise HTTPException(404, f"no manifest {manifest_id}")
    return Response(data, media_type="application/c2pa")


@router.get(
    "/services/supportedAlgorithms",
    openapi_extra=scope_doc(Scope.moderate),
    summary="Soft-binding algorithms this service resolves (scope: moderate)",
)
def supported_algorithms(rt: RuntimeDep) -> dict[str, list[dict[str, str]]]:
    return {"watermarks": [{"alg": rt.watermarker.alg}], "fingerprints": [{"alg": FINGERPRINT_ALG}]}
