"""The adapter registry: register LoRA files, list, allow or block them (scope ``admin``); artists'
claims that an adapter imitates their style (file: scope ``registry``; decide: ``admin``)."""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import AdminKey, RegistryKey, RuntimeDep, scope_doc
from service.api.schemas import ClaimDecision, ClaimReason, ErrorBody
from service.api.text import FreeText, RequestModel
from service.api.uploads import single_parts, upload_name
from service.auth.scopes import Scope
from service.genservice.adapters import NAME_PATTERN, AdapterClaim, AdapterRecord
from service.genservice.service import adapter_store
from service.registry.store import Conflict

router = APIRouter(prefix="/v1/adapters", tags=["generation"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}
_CHUNK = 1 << 20
DEFAULT_MAX_ADAPTER_BYTES = 2 * 1024**3


class AdapterPublic(BaseModel):
    id: UUID
    name: str
    sha256: str
    autov2: str
    size_bytes: int
    original_filename: str | None
    status: Literal["allowed", "blocked"]
    status_reason: str | None
    training: dict[str, Any] = Field(description="kohya ss_* and modelspec.* header fields")
    metadata: dict[str, str] = Field(description="the safetensors __metadata__ as stored")
    details: dict[str, Any] = Field(description="layout: key format, rank, alpha, base family")
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: AdapterRecord) -> AdapterPublic:
        return cls(**{k: getattr(r, k) for k in cls.model_fields})


class AdapterUpdate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["allowed", "blocked"]
    reason: Annotated[str | None, FreeText] = Field(default=None, max_length=2000)


class ClaimCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    artist_id: UUID
    reason: ClaimReason


class ClaimPublic(BaseModel):
    id: UUID
    adapter_id: UUID
    artist_id: UUID
    reason: str
    status: Literal["open", "upheld", "rejected"]
    decision_note: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, c: AdapterClaim) -> ClaimPublic:
        return cls(**{k: getattr(c, k) for k in cls.model_fields})


class ClaimDecided(BaseModel):
    claim: ClaimPublic
    adapter: AdapterPublic


async def _spool(upload: UploadFile, folder: Path, max_bytes: int) -> Path:
    """Write the upload to ``folder`` in chunks, refusing it past ``max_bytes``."""
    target = folder / "upload.safetensors"
    seen = 0
    with open(target, "wb") as out:
        while chunk := await upload.read(_CHUNK):
            seen += len(chunk)
            if seen > max_bytes:
                raise HTTPException(
                    413, f"file {upload.filename!r} is larger than the limit of {max_bytes} bytes"
                )
            out.write(chunk)
    if seen == 0:
        raise HTTPException(400, "the adapter file is empty")
    return target


@router.post(
    "",
    dependencies=[single_parts("file", "name")],
    status_code=status.HTTP_201_CREATED,
    response_model=AdapterPublic,
    responses={
        **_ERRORS,
        409: {"model": ErrorBody},
        413: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.admin),
    summary="Register a LoRA adapter (.safetensors) under a name (scope: admin)",
)
async def create_adapter(
    rt: RuntimeDep,
    key: AdminKey,
    file: Annotated[UploadFile, File(description="a LoRA .safetensors file")],
    name: Annotated[str, Form(pattern=NAME_PATTERN, description="the name requests use")],
) -> AdapterPublic:
    store = adapter_store(rt)
    limit = int(getattr(rt.settings, "max_adapter_bytes", DEFAULT_MAX_ADAPTER_BYTES))
    with tempfile.TemporaryDirectory(dir=rt.settings.data_path, prefix=".adapter-") as tmp:
        path = await _spool(file, Path(tmp), limit)

        def register() -> AdapterRecord:
            with rt.pool.connection() as conn:
                return store.register(conn, key.actor, name, path, upload_name(file))

        try:
            record = await run_in_threadpool(register)
        except Conflict:
            raise
        except ValueError as exc:  # AdapterError: not a usable safetensors LoRA
            raise HTTPException(422, f"not a usable adapter file: {exc}") from None
    return AdapterPublic.of(record)


@router.get(
    "",
    response_model=list[AdapterPublic],
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.admin),
    summary="List registered adapters (scope: admin)",
)
def list_adapters(rt: RuntimeDep, key: AdminKey) -> list[AdapterPublic]:
    with rt.pool.connection() as conn:
        return [AdapterPublic.of(a) for a in adapter_store(rt).list(conn)]


@router.get(
    "/{name}",
    response_model=AdapterPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.admin),
    summary="Read an adapter (scope: admin)",
)
def get_adapter(name: str, rt: RuntimeDep, key: AdminKey) -> AdapterPublic:
    with rt.pool.connection() as conn:
        return AdapterPublic.of(adapter_store(rt).get(conn, name))


@router.patch(
    "/{name}",
    response_model=AdapterPublic,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.admin),
    summary="Allow or block an adapter (scope: admin)",
)
def update_adapter(name: str, body: AdapterUpdate, rt: RuntimeDep, key: AdminKey) -> AdapterPublic:
    with rt.pool.connection() as conn:
        rec = adapter_store(rt).set_status(conn, key.actor, name, body.status, body.reason)
    return AdapterPublic.of(rec)


@router.post(
    "/{name}/claims",
    status_code=status.HTTP_201_CREATED,
    response_model=ClaimPublic,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="An artist claims that an adapter imitates their style (scope: registry)",
)
def file_claim(name: str, body: ClaimCreate, rt: RuntimeDep, key: RegistryKey) -> ClaimPublic:
    with rt.pool.connection() as conn:
        claim = adapter_store(rt).file_claim(conn, key.actor, name, body.artist_id, body.reason)
    return ClaimPublic.of(claim)


@router.get(
    "/{name}/claims",
    response_model=list[ClaimPublic],
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Claims filed against an adapter (scope: registry)",
)
def list_claims(name: str, rt: RuntimeDep, key: RegistryKey) -> list[ClaimPublic]:
    with rt.pool.connection() as conn:
        return [ClaimPublic.of(c) for c in adapter_store(rt).claims(conn, name)]


@router.post(
    "/{name}/claims/{claim_id}/decision",
    response_model=ClaimDecided,
    responses={**_ERRORS, 409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.admin),
    summary="Decide a claim; upholding it blocks the adapter (scope: admin)",
)
def decide_claim(
    name: str, claim_id: UUID, body: ClaimDecision, rt: RuntimeDep, key: AdminKey
) -> ClaimDecided:
    with rt.pool.connection() as conn:
        claim, adapter = adapter_store(rt).decide_claim(
            conn, key.actor, name, claim_id, body.uphold, body.note
        )
    return ClaimDecided(claim=ClaimPublic.of(claim), adapter=AdapterPublic.of(adapter))
