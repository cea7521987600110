"""The tamper-evident audit log for legal review: its signed tree head, its entries (by subject,
kind and time), an entry's inclusion proof, and the consistency of two tree heads; each proof
checks without the database (``chopmark audit check-proof``). Scope: ``audit``."""

from __future__ import annotations

import io
import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from PIL import Image as PILImage
from psycopg import Connection
from pydantic import BaseModel, Field, StringConstraints

from service.api.deps import AuditKey, RuntimeDep, scope_doc
from service.api.lists import PageDep
from service.api.routes.generations import public_view
from service.api.schemas import ArtworkPublic, ErrorBody
from service.audit.entries import EntryFilter, list_entries
from service.audit.log import latest_head
from service.audit.proofs import (
    PROOF_FORMAT,
    ProofError,
    consistency,
    entry_proof,
)
from service.audit.report import REPORT_FORMAT, Evidence, build_report, check_report
from service.audit.report_pdf import render_pdf
from service.audit.signing import public_key_pem
from service.auth.scopes import Scope
from service.genservice.records import GenerationStore
from service.moderation.check import get_check
from service.registry.claims import get_claim
from service.registry.store import NotFound
from service.runtime import Runtime

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_ERRORS = {401: {"model": ErrorBody}, 403: {"model": ErrorBody}}
_SIGNED = (
    "Ed25519 over b'chopmark-audit-tree-head\\x00' || size (8 bytes, big-endian) || root; "
    "leaves SHA-256(0x00 || entry), nodes SHA-256(0x01 || left || right) (RFC 9162)"
)

EntryKind = Annotated[str, StringConstraints(pattern=r"^[a-z_]+\.[a-z_]+$", max_length=64)]


class TreeHeadPublic(BaseModel):
    size: int = Field(description="entries the tree covers")
    root: str = Field(description="the tree's root hash, hex")
    signature: str = Field(description="hex; " + _SIGNED)


class HeadPublic(TreeHeadPublic):
    public_key: str = Field(description="the log's Ed25519 public key, PEM")


class EntryPublic(BaseModel):
    seq: int = Field(description="the entry's place in the log: its leaf index")
    at: datetime
    kind: str
    actor: str
    subject: str | None
    data: dict[str, Any]
    leaf_hash: str
    proof_url: str


class EntryList(BaseModel):
    entries: list[EntryPublic] = Field(description="newest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null at the end")


class EntryProofPublic(BaseModel):
    format: str = Field(description=PROOF_FORMAT)
    leaf_index: int
    entry: str = Field(description="the entry's exact bytes, base64: the leaf is their hash")
    entry_json: dict[str, Any]
    leaf_hash: str
    inclusion_proof: list[str] = Field(description="the audit path, hex, leaf to root")
    tree_head: TreeHeadPublic
    public_key: str


class ConsistencyPublic(BaseModel):
    first: TreeHeadPublic
    second: TreeHeadPublic
    consistency_proof: list[str]
    public_key: str


def _public_key(rt: Runtime) -> str:
    return public_key_pem(rt.audit.key)


@router.get(
    "/head",
    response_model=HeadPublic,
    responses=_ERRORS,
    openapi_extra=scope_doc(Scope.audit),
    summary="The log's newest signed tree head, with its public key: keep it outside chopmark "
    "to prove later that nothing it covers changed (scope: audit)",
)
def read_head(rt: RuntimeDep, key: AuditKey) -> dict[str, Any]:
    with rt.pool.connection() as conn:
        head = latest_head(conn)
    return {**head.to_json(), "public_key": _public_key(rt)}


@router.get(
    "/entries",
    response_model=EntryList,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.audit),
    summary="Audit entries newest first, by cursor: of one subject (moderation:ID, artwork:ID, "
    "generation:ID, ...), of some kinds, within a time window (scope: audit)",
)
def read_entries(
    rt: RuntimeDep,
    key: AuditKey,
    page: PageDep,
    subject: Annotated[
        str | None,
        Query(max_length=200, description="moderation:ID, artwork:ID, generation:ID, ..."),
    ] = None,
    kind: Annotated[
        list[EntryKind] | None, Query(description="one or more (repeat the parameter)")
    ] = None,
) -> dict[str, Any]:
    where = EntryFilter(
        subject=subject, kinds=tuple(dict.fromkeys(kind or ())), since=page.since, until=page.until
    )
    with rt.pool.connection() as conn:
        found = list_entries(conn, where, page.limit, page.cursor)
    return {"entries": found.entries, "next_cursor": found.next_cursor}


@router.get(
    "/entries/{seq}/proof",
    response_model=EntryProofPublic,
    responses={**_ERRORS, 404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.audit),
    summary="An entry with its inclusion proof under a signed tree head: checks without "
    "chopmark's database (chopmark audit check-proof) (scope: audit)",
)
def read_entry_proof(
    seq: int,
    rt: RuntimeDep,
    key: AuditKey,
    tree_size: Annotated[
        int | None,
        Query(
            ge=1,
            description="the head to prove against (a size the log has had); "
            "default: the log as it stands",
        ),
    ] = None,
) -> dict[str, Any]:
    try:
        with rt.pool.connection() as conn:
            proof = entry_proof(conn, seq, tree_size)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ProofError as exc:
        raise HTTPException(422, str(exc)) from None
    return proof.to_json(_public_key(rt))


@router.get(
    "/consistency",
    response_model=ConsistencyPublic,
    responses={**_ERRORS, 422: {"model": ErrorBody}},
    openapi_extra=scope_doc(Scope.audit),
    summary="Proof that the log of `second` entries still holds the log of `first` entries "
    "unchanged (a tree head kept earlier) (scope: audit)",
)
def read_consistency(
    rt: RuntimeDep,
    key: AuditKey,
    first: Annotated[int, Query(ge=1, description="the size of the earlier tree head")],
    second: Annotated[
        int | None, Query(ge=1, description="the later size; default: the log as it stands")
    ] = None,
) -> dict[str, Any]:
    try:
        with rt.pool.connection() as conn:
            size = second if second is not None else latest_head(conn).size
            found = consistency(conn, first, size)
    except ProofError as exc:
        raise HTTPException(422, str(exc)) from None
    return found.to_json(_public_key(rt))


def _thumbnail_png(data: bytes) -> bytes | None:
    """A small PNG of stored image bytes, for the report's evidence; None if they do not read."""
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im.thumbnail((512, 512))
            out = io.BytesIO()
            im.convert("RGB").save(out, "PNG")
            return out.getvalue()
    except (OSError, ValueError, PILImage.DecompressionBombError):
        return None


def _artwork_evidence(
    rt: Runtime, conn: Connection, artwork_id: str, caption: str
) -> Evidence | None:
    try:
        art = rt.registry.get_artwork(conn, UUID(artwork_id))
        png = _thumbnail_png(rt.thumbnails.get(art.sha256))
    except (NotFound, OSError, ValueError):
        return None
    return Evidence(f"{caption}: {art.title or art.id}", png) if png else None


def _blob_evidence(rt: Runtime, sha256: str | None, caption: str) -> Evidence | None:
    """Stored bytes (a kept upload, an output of ours) as evidence, if they are kept."""
    if not sha256 or not rt.blobs.exists(sha256):
        return None
    png = _thumbnail_png(rt.blobs.get(sha256))
    return Evidence(caption, png) if png else None


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    """A record as JSON holds it: times in ISO 8601, ids as strings."""

    def plain(value: object) -> str:
        return value.isoformat() if isinstance(value, datetime) else str(value)

    return json.loads(json.dumps(record, default=plain))


def _record(
    rt: Runtime, conn: Connection, subject: str
) -> tuple[str | None, dict[str, Any] | None, list[Evidence]]:
    """The record a subject names, as the API shows it, and the pictures behind it."""
    kind, _, ident = subject.partition(":")
    try:
        uid = UUID(ident)
    except ValueError:
        return None, None, []
    if kind == "moderation":
        check = get_check(conn, uid, None)
        if check is None:
            return None, None, []
        evidence = [_blob_evidence(rt, check["sha256"], "the checked upload (kept)")]
        evidence += [
            _artwork_evidence(rt, conn, m["artwork_id"], f"registered work, {m['decision']}")
            for m in check["registry"]["matches"][:3]
        ]
        evidence += [
            _blob_evidence(rt, o.get("sha256"), f"our output {o['generation_id']}")
            for o in check["provenance"]["outputs"][:2]
        ]
        return "moderation_check", _jsonable(check), [e for e in evidence if e is not None]
    if kind == "artwork":
        try:
            art = rt.registry.get_artwork(conn, uid)
        except NotFound:
            return None, None, []
        record = {
            **ArtworkPublic.of(art).model_dump(mode="json"),
            "effective_preferences": art.effective_preferences,
        }
        found = _artwork_evidence(rt, conn, ident, "the registered work")
        return "artwork", record, [found] if found else []
    if kind == "claim":
        claim = get_claim(conn, uid)
        if claim is None:
            return None, None, []
        evidence = [_blob_evidence(rt, claim["output_sha256"], "the output claimed against")]
        evidence += [
            _artwork_evidence(rt, conn, m["artwork_id"], f"the artist's work, {m['decision']}")
            for m in claim["matches"][:2]
        ]
        return "claim", _jsonable(claim), [e for e in evidence if e is not None]
    if kind == "generation":
        row = GenerationStore(rt.pool, rt.audit, heartbeat=False).get(conn, uid)
        if row is None:
            return None, None, []
        found = _blob_evidence(rt, row["output_sha256"], "the stamped output")
        return "generation", _jsonable(public_view(row)), [found] if found else []
    return None, None, []


@router.get(
    "/report",
    responses={
        **_ERRORS,
        200: {
            "content": {"application/json": {}, "application/pdf": {}},
            "description": f"JSON: {REPORT_FORMAT} (checked with chopmark audit check-proof); "
            "PDF: the same for people, with the pictures behind the record",
        },
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
    openapi_extra=scope_doc(Scope.audit),
    summary="An audit report on a moderation check, an artwork, a generation or any subject: "
    "its record, every audit entry about it proved under one signed tree head (scope: audit)",
)
def read_report(
    rt: RuntimeDep,
    key: AuditKey,
    subject: Annotated[
        str,
        Query(
            min_length=3,
            max_length=200,
            description="moderation:ID, artwork:ID, generation:ID, claim:ID, or any subject of "
            "the log",
        ),
    ],
    format: Annotated[Literal["json", "pdf"], Query(description="json or pdf")] = "json",
) -> Response:
    data = make_report(rt, subject, format)
    if format == "pdf":
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", subject)  # a file name, a header value
        return Response(
            data,
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="chopmark-report-{name}.pdf"'},
        )
    return Response(data, media_type="application/json")


def make_report(rt: Runtime, subject: str, format: str) -> bytes:
    """The report on ``subject`` as JSON or PDF bytes, its proofs checked first; raises
    ``HTTPException`` (404 nothing recorded about it, 500 a damaged log)."""
    pem = _public_key(rt)
    try:
        with rt.pool.connection() as conn:
            kind, record, evidence = _record(rt, conn, subject)
            report = build_report(conn, subject, kind, record, evidence)
    except LookupError as exc:
        raise HTTPException(404, str(exc)) from None
    except ProofError as exc:  # the log is damaged: say so rather than hand out a bad proof
        raise HTTPException(500, str(exc)) from None
    body = report.to_json(pem)
    check_report(body, rt.audit.key.public_key())  # what the PDF says was checked, was
    if format == "pdf":
        return render_pdf(report, pem)
    return json.dumps(body, indent=2).encode()
