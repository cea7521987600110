"""Registering uploaded files as an artist's works: shared by the HTTP API and the portal."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from starlette.datastructures import UploadFile

from service.api.errors import rejection_status
from service.api.image_work import ImageWork
from service.api.see_through import run_to_completion
from service.api.uploads import upload_name
from service.indexing.bank import IndexNotReady
from service.registry.disputes import open_disputes
from service.registry.ingest import PreparedImage, insert, prepare, store_files
from service.registry.records import Artwork
from service.runtime import Runtime
from similarity import ImageRejected

log = logging.getLogger(__name__)


@dataclass
class Registered:
    stored: list[tuple[Artwork, bool]] = field(default_factory=list)  # (artwork, created)
    rejected: list[tuple[str | None, str]] = field(default_factory=list)  # (filename, reason)
    statuses: list[int] = field(default_factory=list)  # the 4xx of each rejection
    disputes: list[dict[str, Any]] = field(default_factory=list)  # open, over the stored works

    @property
    def worst_status(self) -> int:
        """The commonest rejection's status: the answer when no file could be registered."""
        if not self.statuses:
            return 400
        return max(set(self.statuses), key=self.statuses.count)


async def register_uploads(
    rt: Runtime,
    image_work: ImageWork,
    actor: str,
    artist_id: UUID,
    uploads: list[UploadFile],
    title: str | None,
    preferences: dict[str, str],
) -> Registered:
    """Decode and fingerprint each upload off the event loop; store the files of all those that
    pass, then record them. Files that fail are named with the reason and change nothing. A
    new work that copies another artist's registered work opens a dispute
    (`service.registry.disputes`): both stay registered."""
    out = Registered()
    prepared: list[PreparedImage] = []
    for upload in uploads:
        data = await upload.read(rt.settings.max_upload_bytes + 1)
        try:
            prepared.append(
                await image_work.run(prepare, data, upload_name(upload), rt.decode_limits)
            )
        except ImageRejected as exc:
            out.rejected.append((upload_name(upload), str(exc)))
            out.statuses.append(rejection_status(exc))
    if not prepared:
        return out

    def store_all() -> list[tuple[Artwork, bool]]:
        # Every file first: a full or read-only data folder refuses the request before any
        # artwork is recorded (not after some of them were).
        for item in prepared:
            store_files(rt.blobs, rt.thumbnails, item)
        with rt.pool.connection() as conn:
            return [
                insert(conn, rt.registry, actor, artist_id, item, title, preferences)
                for item in prepared
            ]

    # Storing is seen through if the stop grace runs out meanwhile: answered with what it stored.
    out.stored = await run_to_completion(store_all)
    await run_to_completion(rt.banks["artwork"].catch_up)
    new = [art.id for art, created in out.stored if created]
    try:
        out.disputes = await run_to_completion(open_disputes, rt, actor, new)
    except IndexNotReady as exc:  # the works stand; `chopmark disputes scan` finds them later
        log.warning("registered works were not checked against other artists' works: %s", exc)
    except Exception:  # registered all the same: the check must not undo a registration
        log.exception(
            "registered works %s were not checked against other artists' works; run"
            " `chopmark disputes scan --artist %s`",
            [str(i) for i in new],
            artist_id,
        )
    return out
