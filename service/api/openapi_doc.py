"""The OpenAPI document, made to say what the routes answer: every error has the one body
``ErrorBody`` (a 422 too: its ``detail`` is a sentence or a list of field problems), a route
that reads a body may answer 400 for one that does not parse, and a route that needs a key
may answer 401 and 403."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from service.api.schemas import ErrorBody

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_ADDED: dict[str, str] = {
    "400": "The body does not parse: malformed JSON or multipart, or an empty upload",
    "401": "No key, an unknown one, or a revoked one",
    "403": "The key lacks the route's scope",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR_REF}}}


def complete(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (an OpenAPI document FastAPI made) with its error answers stated as sent."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorBody" not in components:
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components["ErrorBody"] = body
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = _error("The request's fields or content are not acceptable")
            if "requestBody" in operation and "400" not in responses:
                responses["400"] = _error(_ADDED["400"])
            if "x-required-scope" in operation:
                for code in ("401", "403"):
                    responses.setdefault(code, _error(_ADDED[code]))
    text = json.dumps(schema)
    for unused in ("HTTPValidationError", "ValidationError"):
        if f'"#/components/schemas/{unused}"' not in text:
            components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve the completed document at ``/openapi.json`` (made once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    setattr(app, "openapi", openapi)  # noqa: B010 (FastAPI's documented way to replace it)

