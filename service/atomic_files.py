"""Files replaced whole: written under a name no other writer uses, then renamed into place.

Readers never see half a file, and two writers of the same target (threads of one process as
well as processes) each rename a complete file; the last rename wins, which for
content-addressed files is the same content.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path


def unique_temp(target: Path) -> Path:
    """A path beside `target` (same file system, so the rename is atomic) that is this call's."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def write_atomically(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Put `data` at `target` whole; `durable` waits for the bytes to reach the disk first."""
    tmp = unique_temp(target)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def place_copy(source: Path, target: Path, *, link: bool = False) -> None:
    """Put a copy of `source` at `target` whole: a hard link where `link` allows and the file
    system can, else a copy of the bytes."""
    tmp = unique_temp(target)
    try:
        if link:
            try:
                os.link(source, tmp)
            except OSError:
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
