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
from collections.abc import Iterator
from pathlib import Path


def unique_temp(target: Path) -> Path:
    """A path beside `target` (same file system, so the rename is atomic) that is this call's."""
    return target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path to fill; renamed onto `target` when the block succeeds, removed when
    it fails."""
    tmp = unique_temp(target)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomically(target: Path, data: bytes, *, durable: bool = False) -> None:
    """Put `data` at `target` whole; `durable` waits for the bytes to reach the disk first."""
    with _replacing(target) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())


def place_copy(source: Path, target: Path, *, link: bool = False) -> None:
    """Put a copy of `source` at `target` whole: a hard link where `link` allows and the file
    system can, else a copy of the bytes."""
    with _replacing(target) as tmp:
        if link:
            try:
                os.link(source, tmp)
                return
            except OSError:
                pass
        shutil.copyfile(source, tmp)
