"""Reading uploaded files with a per-file size limit."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, HTTPException, Request, UploadFile

from service.api.text import without_control_characters

MAX_NAME = 255


def upload_name(upload: UploadFile) -> str | None:
    """The client's name for an uploaded file as it is kept: control characters (NUL among
    them, which the database cannot store) dropped, at most ``MAX_NAME`` characters; None when
    nothing is left."""
    if not upload.filename:
        return None
    return without_control_characters(upload.filename)[:MAX_NAME] or None


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(
            413, f"file {upload.filename!r} is larger than the limit of {max_bytes} bytes"
        )
    return data


def single_parts(*names: str) -> Any:
    """A route dependency: each named form part may come once. A form repeats a name without
    error, and only one of the values would be used; the client is told instead (422)."""

    async def check(request: Request) -> None:
        form = await request.form()  # parsed once: the route's own parameters read the same
        repeated = [n for n in names if len(form.getlist(n)) > 1]
        if repeated:
            raise HTTPException(
                422, "send each of these form parts once: " + ", ".join(f"`{n}`" for n in repeated)
            )

    return Depends(check)
