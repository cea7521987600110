"""An artist's own audit reports from the portal: a work's record (when it was registered, what
it allowed and when that changed, what matched it) and a claim's, each entry with its proof
under the log's signed tree head, as the PDF legal reviewers get. Portal login needed."""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter
from fastapi.responses import Response

from service.api.deps import ImageWorkDep, RuntimeDep
from service.api.routes.audit import make_report
from service.portal.sessions import LoggedIn
from service.portal.works_pages import PortalNotFound, own_artwork
from service.registry.claims import get_claim

router = APIRouter(prefix="/portal", include_in_schema=False)


def _pdf(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'attachment; filename="chopmark-{name}.pdf"',
            "Cache-Control": "private, no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.get("/works/{artwork_id}/report.pdf")
async def work_report(
    artwork_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, session: LoggedIn
) -> Response:
    def work() -> bytes:
        with rt.pool.connection() as conn:
            own_artwork(rt, conn, session, artwork_id)
        return make_report(rt, f"artwork:{artwork_id}", "pdf")

    return _pdf(await image_work.run(work), f"artwork-{artwork_id}")


@router.get("/claims/{claim_id}/report.pdf")
async def claim_report(
    claim_id: UUID, rt: RuntimeDep, image_work: ImageWorkDep, session: LoggedIn
) -> Response:
    def work() -> bytes:
        with rt.pool.connection() as conn:
            found = get_claim(conn, claim_id, session.artist_id)
        if found is None:
            raise PortalNotFound(f"you have no claim {claim_id}")
        return make_report(rt, f"claim:{claim_id}", "pdf")

    return _pdf(await image_work.run(work), f"claim-{claim_id}")
