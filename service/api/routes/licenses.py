"""Licences that lift an artwork's ``deny`` for a named platform user. Scope: ``registry``."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID

from fastapi import APIRouter, status

from service.api.deps import RegistryKey, RuntimeDep, scope_doc
from service.api.schemas import ErrorBody, LicenseCreate, LicensePublic
from service.auth.scopes import Scope

router = APIRouter(prefix="/v1/artworks/{artwork_id}/licenses", tags=["registry"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 404: {"model": ErrorBody}}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=LicensePublic,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.registry),
    summary="Grant a licence (scope: registry)",
)
def create_license(
    artwork_id: UUID, body: LicenseCreate, rt: RuntimeDep, key: RegistryKey
) -> LicensePublic:
    with rt.pool.connection() as conn:
        lic = rt.registry.create_license(
            conn, key.actor, artwork_id, body.grantee, sorted(set(body.scopes)), body.expires_at
        )
    return LicensePublic.of(lic, datetime.now(UTC))


@router.get(
    "",
    response_model=list[LicensePublic],
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="List an artwork's licences (scope: registry)",
)
def list_licenses(artwork_id: UUID, rt: RuntimeDep, key: RegistryKey) -> list[LicensePublic]:
    now = datetime.now(UTC)
    with rt.pool.connection() as conn:
        return [LicensePublic.of(x, now) for x in rt.registry.list_licenses(conn, artwork_id)]


@router.get(
    "/{license_id}",
    response_model=LicensePublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Read a licence (scope: registry)",
)
def get_license(
    artwork_id: UUID, license_id: UUID, rt: RuntimeDep, key: RegistryKey
) -> LicensePublic:
    with rt.pool.connection() as conn:
        lic = rt.registry.get_license(conn, artwork_id, license_id)
    return LicensePublic.of(lic, datetime.now(UTC))


@router.delete(
    "/{license_id}",
    response_model=LicensePublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.registry),
    summary="Revoke a licence (scope: registry)",
)
def revoke_license(
    artwork_id: UUID, license_id: UUID, rt: RuntimeDep, key: RegistryKey
) -> LicensePublic:
    with rt.pool.connection() as conn:
        lic = rt.registry.revoke_license(conn, key.actor, artwork_id, license_id)
    return LicensePublic.of(lic, datetime.now(UTC))
