"""Reading uploaded files with a per-file size limit."""

from __future__ import annotations

from fastapi import HTTPException, UploadFile


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(
            413, f"file {upload.filename!r} is larger than the limit of {max_bytes} bytes"
        )
    return data
