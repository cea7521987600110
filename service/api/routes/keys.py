"""API keys over HTTP. Scope: ``admin``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import AdminKey, RuntimeDep, scope_doc
from service.api.schemas import ErrorBody
from service.api.text import Name, RequestModel
from service.auth.keys import (
    KEY_NAME_MAX_CHARS,
    ApiKey,
    create_key,
    list_keys,
    revoke_key_by_id,
)
from service.auth.scopes import Scope

router = APIRouter(prefix="/v1/keys", tags=["access"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}


class KeyCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Name] = Field(min_length=1, max_length=KEY_NAME_MAX_CHARS)
    scopes: list[Scope] = Field(min_length=1)


class KeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyPublic:
        return cls(
            id=k.id,
            name=k.name,
            prefix=k.prefix,
            scopes=list(k.scopes),
            created_at=k.created_at,
            revoked_at=k.revoked_at,
            last_used_at=k.last_used_at,
        )


class KeyCreated(KeyPublic):
    key: str = Field(description="the secret, shown this once")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=KeyCreated,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.admin),
    summary="Create an API key (scope: admin)",
)
def create(body: KeyCreate, rt: RuntimeDep, key: AdminKey) -> KeyCreated:
    with rt.pool.connection() as conn, conn.transaction():
        rec, secret = create_key(conn, body.name, [s.value for s in body.scopes])
        rt.audit.append(
            conn,
            "key.created",
            key.actor,
            f"key:{rec.prefix}",
            {"name": rec.name, "scopes": list(rec.scopes)},
        )
    return KeyCreated(**KeyPublic.of(rec).model_dump(), key=secret)


@router.get(
    "",
    response_model=list[KeyPublic],
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.admin),
    summary="List API keys (scope: admin)",
)
def list_all(rt: RuntimeDep, key: AdminKey) -> list[KeyPublic]:
    with rt.pool.connection() as conn:
        return [KeyPublic.of(k) for k in list_keys(conn)]


@router.delete(
    "/{key_id}",
    response_model=KeyPublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.admin),
    summary="Revoke an API key (scope: admin)",
)
def revoke(key_id: int, rt: RuntimeDep, key: AdminKey) -> KeyPublic:
    with rt.pool.connection() as conn, conn.transaction():
        done = revoke_key_by_id(conn, key_id)
        if done is None:
            raise HTTPException(404, f"no API key {key_id}")
        rec = done.key
        if done.newly:  # revoking a revoked key again changes nothing: no second entry
            rt.audit.append(conn, "key.revoked", key.actor, f"key:{rec.prefix}", {"name": rec.name})
    return KeyPublic.of(rec)
