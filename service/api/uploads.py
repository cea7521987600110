"""Reading uploaded files with a per-file size limit."""

from __future__ import annotations

import re

from fastapi import HTTPException, UploadFile

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_NAME = 255


def upload_name(upload: UploadFile) -> str | None:
    """The client's name for an uploaded file as it is kept: control characters (NUL among
    them, which the database cannot store) dropped, at most ``MAX_NAME`` characters; None when
    nothing is left."""
    if not upload.filename:
        return None
    return _CONTROL.sub("", upload.filename)[:MAX_NAME] or None


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(
            413, f"file {upload.filename!r} is larger than the limit of {max_bytes} bytes"
        )
    return data
