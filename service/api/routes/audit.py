"""The tamper-evident audit log for legal review: its signed tree head, its entries (by subject,
kind and time), an entry's inclusion proof, and the consistency of two tree heads; each proof
checks without the database (``chopmark audit check-proof``). Scope: ``audit``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field, StringConstraints

from service.api.deps import AuditKey, RuntimeDep, scope_doc
from service.api.schemas import ErrorBody
from service.audit.entries import EntryFilter, list_entries
from service.audit.log import latest_head
from service.audit.proofs import PROOF_FORMAT, ProofError, consistency, entry_proof
from service.audit.signing import public_key_pem
from service.auth.scopes import Scope
from service.db.keyset import CursorError, as_utc
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
    subject: Annotated[
        str | None,
        Query(max_length=200, description="moderation:ID, artwork:ID, generation:ID, ..."),
    ] = None,
    kind: Annotated[
        list[EntryKind] | None, Query(description="one or more (repeat the parameter)")
    ] = None,
    since: Annotated[
        datetime | None, Query(description="at or after (ISO 8601; UTC unless it names its zone)")
    ] = None,
    until: Annotated[
        datetime | None, Query(description="before (ISO 8601; UTC unless it names its zone)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    since, until = as_utc(since), as_utc(until)
    if since is not None and until is not None and since >= until:
        raise HTTPException(422, "since must be before until")
    where = EntryFilter(
        subject=subject, kinds=tuple(dict.fromkeys(kind or ())), since=since, until=until
    )
    try:
        with rt.pool.connection() as conn:
            page = list_entries(conn, where, limit, cursor)
    except CursorError as exc:
        raise HTTPException(422, str(exc)) from None
    return {"entries": page.entries, "next_cursor": page.next_cursor}


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
