"""Whether the manifest an image carries is one we signed, intact on the file we signed.

A Trusted manifest whose label is one of our outputs' is not enough: the label is public (it is
in every output), and any signer whose chain reaches one of the trust anchors (an operator may
name a commercial CA, or a partner's root) can put it on a manifest of their own. The output's
own stored manifest store is validated against the uploaded file instead: its signature is ours,
and its hash binding holds only for the bytes we signed (another store embedded, changed pixels
or added chunks all break it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from provenance.c2pa_io import read_manifest_store
from provenance.manifest_report import ManifestReport

if TYPE_CHECKING:
    from service.runtime import Runtime


def own_manifest_output(rt: Runtime, data: bytes, report: ManifestReport) -> str | None:
    """The id of the output whose manifest, as we signed it, ``data`` carries intact (``report``
    being what was read from ``data``); None when the manifest is not ours or not intact."""
    if report.manifest_id is None or report.state != "Trusted":
        return None
    with rt.pool.connection() as conn:
        row = conn.execute(
            "SELECT id, manifest_bytes FROM outputs WHERE manifest_id = %s", (report.manifest_id,)
        ).fetchone()
    if row is None:
        return None
    signed = read_manifest_store(
        bytes(row["manifest_bytes"]), rt.signing.trust_anchors_pem, asset_bytes=data
    )
    if signed.state != "Trusted" or signed.manifest_id != report.manifest_id:
        return None
    return str(row["id"])
