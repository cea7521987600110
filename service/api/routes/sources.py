"""Training sources: images a model was trained on, fingerprinted so generations that copy them
are flagged. Scope: ``admin``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel

from service.api.deps import AdminKey, ImageWorkDep, RuntimeDep, scope_doc
from service.api.errors import rejection_status
from service.api.schemas import ErrorBody, Rejected
from service.api.text import FreeText, StorableText
from service.api.uploads import single_parts, upload_name
from service.auth.scopes import Scope
from service.genservice.service import get_generation_service, source_store
from service.genservice.sources import (
    DATASET_MAX_CHARS,
    LICENCE_MAX_CHARS,
    SourceRecord,
    check_dataset,
)
from service.registry.ingest import PreparedImage, prepare
from service.runtime import Runtime
from similarity import Embedder, ImageRejected, decode_image

router = APIRouter(prefix="/v1/sources", tags=["generation"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


class SourcePublic(BaseModel):
    id: UUID
    dataset: str
    licence: str | None
    sha256: str
    media_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str | None
    clip_model: str | None
    created_at: datetime
    duplicate: bool

    @classmethod
    def of(cls, r: SourceRecord, duplicate: bool) -> SourcePublic:
        fields = {k: getattr(r, k) for k in cls.model_fields if k != "duplicate"}
        return cls(**fields, duplicate=duplicate)


class SourcesAdded(BaseModel):
    sources: list[SourcePublic]
    rejected: list[Rejected]
    index: dict[str, Any]


def embed_source(embedder: Embedder, data: bytes, rt: Runtime) -> tuple[Any, str | None]:
    """The CLIP embedding of a source when an embedder is available, else (None, None)."""
    if not embedder.available:
        return None, None
    image = decode_image(data, rt.decode_limits, target_side=256).image
    return embedder.embed([image])[0], embedder.name


@router.post(
    "",
    dependencies=[single_parts("dataset", "licence")],
    status_code=status.HTTP_201_CREATED,
    response_model=SourcesAdded,
    responses={
        **_ERRORS,
        413: {"model": ErrorBody},
        415: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.admin),
    summary="Add training-source images of a dataset (scope: admin)",
)
async def add_sources(
    request: Request,
    rt: RuntimeDep,
    image_work: ImageWorkDep,
    key: AdminKey,
    files: Annotated[list[UploadFile], File(description="one or more images")],
    dataset: Annotated[
        str, Form(min_length=1, max_length=DATASET_MAX_CHARS), AfterValidator(check_dataset)
    ],
    licence: Annotated[
        str | None,
        Form(max_length=LICENCE_MAX_CHARS, description="licence notes"),
        StorableText,
        FreeText,
    ] = None,
) -> SourcesAdded | JSONResponse:
    if len(files) > rt.settings.max_files_per_request:
        raise HTTPException(413, f"at most {rt.settings.max_files_per_request} files per request")
    embedder = get_generation_service(request.app.state, rt).embedder
    prepared: list[tuple[PreparedImage, Any, str | None]] = []
    rejected: list[Rejected] = []
    statuses: list[int] = []
    for upload in files:
        data = await upload.read(rt.settings.max_upload_bytes + 1)
        try:
            item = await image_work.run(prepare, data, upload_name(upload), rt.decode_limits)
            vector, model = await image_work.run(embed_source, embedder, data, rt)
        except ImageRejected as exc:
            rejected.append(Rejected(filename=upload_name(upload), reason=str(exc)))
            statuses.append(rejection_status(exc))
            continue
        prepared.append((item, vector, model))
    if not prepared:
        worst = max(set(statuses), key=statuses.count) if statuses else 400
        return JSONResponse(
            {
                "detail": "no file could be added: "
                + "; ".join(f"{r.filename}: {r.reason}" for r in rejected),
                "rejected": [r.model_dump() for r in rejected],
            },
            status_code=worst,
        )
    store = source_store(rt)

    def store_all() -> list[SourcePublic]:
        out = []
        with rt.pool.connection() as conn:
            for item, vector, model in prepared:
                rt.thumbnails.put(item.sha256, item.thumbnail)
                rec, created = store.add(
                    conn,
                    key.actor,
                    dataset=dataset,
                    licence=licence,
                    item=item,
                    embedding=vector,
                    clip_model=model,
                )
                out.append(SourcePublic.of(rec, duplicate=not created))
        return out

    added = await run_in_threadpool(store_all)
    bank = rt.banks["source"]
    await run_in_threadpool(bank.catch_up)
    state = bank.status()
    return SourcesAdded(
        sources=added,
        rejected=rejected,
        index={"size": state.size, "built_to": state.change_seq},
    )


@router.get(
    "",
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.admin),
    summary="Datasets of training sources with their counts (scope: admin)",
)
def list_datasets(rt: RuntimeDep, key: AdminKey) -> JSONResponse:
    with rt.pool.connection() as conn:
        rows = source_store(rt).datasets(conn)
    return JSONResponse(
        {
            "datasets": [
                {**r, "last_added": r["last_added"].isoformat() if r["last_added"] else None}
                for r in rows
            ]
        }
    )
