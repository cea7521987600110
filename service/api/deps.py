"""Typed FastAPI dependencies: the runtime, the caller's API key and its scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from service.api.image_work import ImageWork
from service.auth.keys import ApiKey, authenticate
from service.auth.scopes import Scope
from service.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer chm_...`")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_image_work(request: Request) -> ImageWork:
    return request.app.state.image_work


ImageWorkDep = Annotated[ImageWork, Depends(get_image_work)]


def _authenticate(
    request: Request,
    rt: RuntimeDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send `Authorization: Bearer <key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    with rt.pool.connection() as conn:
        key = authenticate(conn, creds.credentials)
    if key is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.state.api_key = f"{key.prefix} ({key.name})"  # for the log of a refusal
    return key


def _check_scope(key: ApiKey, scope: Scope) -> ApiKey:
    if not key.allows(scope.value):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"this API key lacks the '{scope.value}' scope",
        )
    return key


def require(scope: Scope) -> Callable[..., ApiKey]:
    """A dependency that admits only keys holding ``scope`` (or ``admin``)."""

    def dependency(key: Annotated[ApiKey, Depends(_authenticate)]) -> ApiKey:
        return _check_scope(key, scope)

    dependency.__name__ = f"require_{scope.value}"
    return dependency


def require_unless_public(scope: Scope, public: Callable[[Runtime], bool]) -> Callable[..., None]:
    """Like ``require``, but open to everyone when ``public(runtime)`` says so."""

    def dependency(
        request: Request,
        rt: RuntimeDep,
        creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        if not public(rt):
            _check_scope(_authenticate(request, rt, creds), scope)

    dependency.__name__ = f"require_{scope.value}_unless_public"
    return dependency


RegistryKey = Annotated[ApiKey, Depends(require(Scope.registry))]
MatchKey = Annotated[ApiKey, Depends(require(Scope.match))]
StampKey = Annotated[ApiKey, Depends(require(Scope.stamp))]
ModerateKey = Annotated[ApiKey, Depends(require(Scope.moderate))]
AuditKey = Annotated[ApiKey, Depends(require(Scope.audit))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.admin))]


def scope_doc(scope: Scope) -> dict:
    """OpenAPI extras that state a route's scope."""
    return {"x-required-scope": scope.value}
