"""Mapping of domain errors to HTTP answers with a clear message."""

from __future__ import annotations

import errno
import logging

import psycopg
import psycopg.errors
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.api.cut_off import DETAIL as CUT_OFF_DETAIL
from service.api.cut_off import RETRY_AFTER_SECONDS as CUT_OFF_RETRY_AFTER_SECONDS
from service.api.image_work import ImageWorkStopped
from service.db.keyset import CursorError
from service.indexing.bank import IndexNotReady
from service.registry.preferences import PreferencesError
from service.registry.store import Conflict, NotFound
from similarity import ImageRejected

log = logging.getLogger(__name__)

REJECTION_STATUS = {
    "empty": 400,
    "too_large": 413,
    "too_many_pixels": 413,
    "not_an_image": 415,
    "unsupported": 415,
    "truncated": 422,
}


def rejection_status(exc: ImageRejected) -> int:
    return REJECTION_STATUS.get(getattr(exc, "code", ""), 422)


_STORAGE_FULL = {errno.ENOSPC, errno.EDQUOT}
_STORAGE_LOCKED = {errno.EROFS, errno.EACCES, errno.EPERM}


def storage_failure(exc: BaseException) -> tuple[int, str] | None:
    """(status, message) for a file-system failure an operator must mend (a full or read-only
    data folder), with no path in it; None for any other error."""
    if not isinstance(exc, OSError):
        return None
    if exc.errno in _STORAGE_FULL:
        return 507, "the service has no space left to store files; try again later"
    if exc.errno in _STORAGE_LOCKED:
        return 503, "the service cannot write its data folder at the moment; try again later"
    return None


def refused(request: Request, status: int, why: object) -> None:
    """One log line for a request answered 4xx: which route, which key, and why (the access log
    shows the status alone)."""
    key = getattr(request.state, "api_key", None)
    log.info(
        "refused %s %s with %d%s: %s",
        request.method,
        request.url.path,
        status,
        f" (key {key})" if key else "",
        why,
    )


# pydantic's message for a malformed UUID quotes the character it stopped at: said plainly.
_PLAIN_MESSAGES = {"uuid_parsing": "Input should be a valid UUID"}


def allowed_methods(request: Request) -> list[str]:
    """The methods some route of the app takes at this request's path."""
    methods: set[str] = set()
    for method in _METHODS:  # asked method by method: routers may nest routes of their own
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.add(method)
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if 400 <= exc.status_code < 500:
            refused(request, exc.status_code, exc.detail)
        if exc.status_code == 405:  # Allow: every method of the path, not the first route's
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(request))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # What was wrong and where, without echoing the value: a request may carry megabytes of
        # base64 or a prompt kept private, and a NaN cannot be written back as JSON at all.
        errors = [
            {
                "type": e.get("type"),
                "loc": list(e.get("loc", ())),
                "msg": _PLAIN_MESSAGES.get(str(e.get("type")), e.get("msg")),
            }
            for e in exc.errors()
        ]
        refused(
            request, 422, "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors)
        )
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        refused(request, 404, exc)
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        refused(request, 409, exc)
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(CursorError)
    async def _cursor(request: Request, exc: CursorError) -> JSONResponse:
        refused(request, 422, exc)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(PreferencesError)
    async def _prefs(request: Request, exc: PreferencesError) -> JSONResponse:
        refused(request, 422, exc)
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(ImageRejected)
    async def _image(request: Request, exc: ImageRejected) -> JSONResponse:
        status = rejection_status(exc)
        refused(request, status, f"{getattr(exc, 'code', 'invalid_image')}: {exc}")
        return JSONResponse(
            {"detail": str(exc), "code": getattr(exc, "code", "invalid_image")},
            status_code=status,
        )

    @app.exception_handler(ImageWorkStopped)
    async def _stopping(request: Request, exc: ImageWorkStopped) -> JSONResponse:
        log.warning("%s %s: the service is stopping; answered 503", request.method, request.url)
        return JSONResponse(
            {"detail": CUT_OFF_DETAIL},
            status_code=503,
            headers={"Retry-After": str(CUT_OFF_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(IndexNotReady)
    async def _not_ready(_: Request, exc: IndexNotReady) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    async def _collided(request: Request, exc: psycopg.Error) -> JSONResponse:
        # A change that met another made at the same moment: a unique key both took (the stores
        # serialise the ones they know of; this is the net under the rest), a deadlock or a
        # serialisation race lost. Rolled back whole, and safe to send again.
        log.warning(
            "%s %s: a concurrent change collided: %s",
            request.method,
            request.url.path,
            str(exc).splitlines()[0] if str(exc) else exc,
        )
        lost_race = not isinstance(exc, psycopg.IntegrityError)
        return JSONResponse(
            {"detail": "the request collided with a concurrent change; nothing was kept, retry it"},
            status_code=409,
            headers={"Retry-After": "1"} if lost_race else None,
        )

    for collision in (
        psycopg.IntegrityError,
        psycopg.errors.DeadlockDetected,
        psycopg.errors.SerializationFailure,
    ):
        app.add_exception_handler(collision, _collided)

    @app.exception_handler(psycopg.errors.DiskFull)
    async def _database_full(request: Request, exc: psycopg.errors.DiskFull) -> JSONResponse:
        # the database's own disk (the data folder, for the embedded one) is full: an operator
        # must make room, as for a full blob store
        log.error("%s %s: the database has no space left: %s", request.method, request.url, exc)
        return JSONResponse(
            {"detail": "the service has no space left to store its records; try again later"},
            status_code=507,
            headers={"Retry-After": "30"},
        )

    @app.exception_handler(psycopg.OperationalError)
    async def _database_down(request: Request, exc: psycopg.OperationalError) -> JSONResponse:
        # the pool's wait ran out (PoolTimeout) or the server went away
        log.error("%s %s: the database is unavailable: %s", request.method, request.url, exc)
        return JSONResponse(
            {"detail": "the database is unavailable at the moment; try again shortly"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(OSError)
    async def _storage(request: Request, exc: OSError) -> JSONResponse:
        failure = storage_failure(exc)
        if failure is None:
            log.error("%s %s failed: %r", request.method, request.url, exc, exc_info=exc)
            return JSONResponse({"detail": "internal error"}, status_code=500)
        log.error("%s %s: the data folder refused a write: %s", request.method, request.url, exc)
        status, message = failure
        return JSONResponse({"detail": message}, status_code=status, headers={"Retry-After": "30"})

    @app.exception_handler(psycopg.DataError)
    async def _data(request: Request, exc: psycopg.DataError) -> JSONResponse:
        # A value the database refuses (the edge already refuses NUL in text; this catches any
        # path it missed): the transaction was rolled back, so nothing of the request is kept.
        log.warning("%s %s: the database refused a value: %s", request.method, request.url, exc)
        if isinstance(exc, psycopg.errors.UntranslatableCharacter) or "0x00" in str(exc):
            detail = "the request holds the NUL character (%00, \\u0000), which no value may hold"
        else:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            detail = f"the request holds a value the database cannot take: {reason}"
        refused(request, 422, detail)
        return JSONResponse({"detail": detail}, status_code=422)
