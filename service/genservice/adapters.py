"""The adapter registry: LoRA files an administrator allowed, their hashes and training metadata,
and the claims artists file against them. Every change appends to the audit log.

Files live in the blob store by SHA-256; a ``<sha256>.safetensors`` hard link (or copy) beside it
is what the model loads. The same bytes cannot be registered twice, so a blocked adapter cannot
come back under another name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from generation.gate import RegisteredAdapter
from service.atomic_files import place_copy
from service.audit.log import AuditLog, lock_for_change
from service.blobs import FileBlobStore, renew_if_present
from service.db.transactions import lock_name
from service.registry.store import Conflict, NotFound

if TYPE_CHECKING:
    from generation.adapters import AdapterInfo

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_NAME = re.compile(NAME_PATTERN)
STATUSES = ("allowed", "blocked")


@dataclass(frozen=True)
class AdapterRecord:
    id: UUID
    name: str
    sha256: str
    autov2: str
    size_bytes: int
    original_filename: str | None
    status: str
    status_reason: str | None
    metadata: dict[str, str]
    training: dict[str, Any]
    details: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> AdapterRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class AdapterClaim:
    id: UUID
    adapter_id: UUID
    artist_id: UUID
    reason: str
    status: str
    decision_note: str | None
    decided_by: str | None
    decided_at: datetime | None
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> AdapterClaim:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):  # match() would let a trailing newline through
        raise ValueError(
            f"adapter name {name!r} must be 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _details(info: AdapterInfo) -> dict[str, Any]:
    return {
        "key_format": info.key_format,
        "components": list(info.components),
        "tensor_count": info.tensor_count,
        "rank": info.rank,
        "alpha": info.alpha,
        "cross_attention_dim": info.cross_attention_dim,
        "base_family": info.base_family,
        "base_model_hint": info.base_model_hint,
    }


class AdapterStore:
    def __init__(self, audit: AuditLog, blobs: FileBlobStore, files_dir: Path) -> None:
        self.audit = audit
        self.blobs = blobs
        self.files_dir = files_dir

    # files -------------------------------------------------------------------------------------
    def file_path(self, sha256: str) -> Path:
        """The loadable ``.safetensors`` path of a stored adapter, linked from the blob store."""
        target = self.files_dir / f"{sha256}.safetensors"
        if target.is_file():
            return target
        blob = self.blobs.path(sha256)
        if not blob.is_file():
            raise FileNotFoundError(f"adapter blob {sha256} is missing from the blob store")
        self.files_dir.mkdir(parents=True, exist_ok=True)
        place_copy(blob, target, link=True)
        return target

    def _store_file(self, source: Path, sha256: str) -> None:
        blob = self.blobs.path(sha256)
        if renew_if_present(blob):
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        place_copy(source, blob)

    # adapters ----------------------------------------------------------------------------------
    def register(
        self,
        conn: psycopg.Connection,
        actor: str,
        name: str,
        path: Path,
        original_filename: str | None = None,
    ) -> AdapterRecord:
        """Inspect, store and record an adapter file. Raises ``ValueError`` (``AdapterError``) for
        a bad file or name,
        ``Conflict`` when the name or the bytes are already registered."""
        from generation.adapters import AdapterError, inspect_adapter  # diffusers loads here

        check_name(name)
        info = inspect_adapter(path)
        if info.key_format in ("unknown", "lycoris"):  # would only fail later, at use
            raise AdapterError(
                f"{original_filename or path.name}: "
                + (
                    "LyCORIS (LoHa/LoKr) files are not supported"
                    if info.key_format == "lycoris"
                    else "no LoRA weights in it (neither kohya, peft nor diffusers LoRA keys)"
                )
            )
        with conn.transaction():
            taken = conn.execute(
                "SELECT name, sha256 FROM adapters WHERE name = %s OR sha256 = %s",
                (name, info.sha256),
            ).fetchone()
            if taken is not None:
                if taken["name"] == name:
                    raise Conflict(f"an adapter named {name!r} is already registered")
                raise Conflict(
                    f"this file (SHA-256 {info.sha256}) is already registered as {taken['name']!r}"
                )
            self._store_file(path, info.sha256)
            row = conn.execute(
                "INSERT INTO adapters (id, name, sha256, autov2, size_bytes, original_filename,"
                " metadata, training, details, created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
                (
                    uuid4(),
                    name,
                    info.sha256,
                    info.autov2,
                    info.size_bytes,
                    original_filename,
                    Jsonb(info.metadata),
                    Jsonb(info.training),
                    Jsonb(_details(info)),
                    actor,
                ),
            ).fetchone()
            record = AdapterRecord.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "adapter.registered",
                actor,
                f"adapter:{record.id}",
                {
                    "name": name,
                    "sha256": info.sha256,
                    "autov2": info.autov2,
                    "size_bytes": info.size_bytes,
                    "training": info.training,
                    "details": record.details,
                },
            )
        self.file_path(record.sha256)
        return record

    def find(self, conn: psycopg.Connection, name: str) -> AdapterRecord | None:
        row = conn.execute("SELECT * FROM adapters WHERE name = %s", (name,)).fetchone()
        return AdapterRecord.from_row(row) if row else None

    def get(self, conn: psycopg.Connection, name: str) -> AdapterRecord:
        found = self.find(conn, name)
        if found is None:
            raise NotFound(f"no adapter named {name!r}")
        return found

    def list(self, conn: psycopg.Connection) -> list[AdapterRecord]:
        rows = conn.execute("SELECT * FROM adapters ORDER BY name").fetchall()
        return [AdapterRecord.from_row(r) for r in rows]

    def set_status(
        self,
        conn: psycopg.Connection,
        actor: str,
        name: str,
        status: str,
        reason: str | None = None,
    ) -> AdapterRecord:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        with conn.transaction():
            before = self.get(conn, name)
            if before.status == status and reason in (None, before.status_reason):
                return before  # as it is: a repeat without a new reason keeps the old one
            row = conn.execute(
                "UPDATE adapters SET status = %s, status_reason = %s, updated_at = now()"
                " WHERE id = %s RETURNING *",
                (status, reason, before.id),
            ).fetchone()
            self.audit.append(
                conn,
                "adapter.status_changed",
                actor,
                f"adapter:{before.id}",
                {
                    "name": name,
                    "sha256": before.sha256,
                    "from": before.status,
                    "to": status,
                    "reason": reason,
                },
            )
            return AdapterRecord.from_row(row)  # type: ignore[arg-type]

    # claims ------------------------------------------------------------------------------------
    def file_claim(
        self, conn: psycopg.Connection, actor: str, name: str, artist_id: UUID, reason: str
    ) -> AdapterClaim:
        """An artist says this adapter imitates their style."""
        with conn.transaction():
            adapter = self.get(conn, name)
            if not conn.execute("SELECT 1 FROM artists WHERE id = %s", (artist_id,)).fetchone():
                raise NotFound(f"no artist {artist_id}")
            # The same claim twice while it is open (a retried request, say) would only wait
            # for the same decision; another reason is another claim.
            lock_name(conn, f"adapter-claim:{adapter.id}:{artist_id}")
            open_claim = conn.execute(
                "SELECT id FROM adapter_claims WHERE adapter_id = %s AND artist_id = %s"
                " AND status = 'open' AND reason = %s",
                (adapter.id, artist_id, reason),
            ).fetchone()
            if open_claim is not None:
                raise Conflict(
                    f"artist {artist_id} already has this claim open ({open_claim['id']}) on"
                    f" adapter {name!r}; it awaits a decision"
                )
            row = conn.execute(
                "INSERT INTO adapter_claims (id, adapter_id, artist_id, reason, created_by)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING *",
                (uuid4(), adapter.id, artist_id, reason, actor),
            ).fetchone()
            claim = AdapterClaim.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "adapter.claim_filed",
                actor,
                f"adapter:{adapter.id}",
                {
                    "claim_id": str(claim.id),
                    "artist_id": str(artist_id),
                    "reason": reason,
                    "adapter": name,
                    "sha256": adapter.sha256,
                },
            )
            return claim

    def claims(self, conn: psycopg.Connection, name: str) -> list[AdapterClaim]:
        adapter = self.get(conn, name)
        rows = conn.execute(
            "SELECT * FROM adapter_claims WHERE adapter_id = %s ORDER BY created_at, id",
            (adapter.id,),
        ).fetchall()
        return [AdapterClaim.from_row(r) for r in rows]

    def decide_claim(
        self,
        conn: psycopg.Connection,
        actor: str,
        name: str,
        claim_id: UUID,
        uphold: bool,
        note: str | None = None,
    ) -> tuple[AdapterClaim, AdapterRecord]:
        """Uphold (the adapter is blocked) or reject an open claim."""
        with conn.transaction():
            lock_for_change(conn)  # the audit lock first, always (see lock_for_change)
            adapter = self.get(conn, name)
            row = conn.execute(
                "SELECT * FROM adapter_claims WHERE id = %s AND adapter_id = %s FOR NO KEY UPDATE",
                (claim_id, adapter.id),
            ).fetchone()
            if row is None:
                raise NotFound(f"no claim {claim_id} on adapter {name!r}")
            if row["status"] != "open":
                raise Conflict(f"claim {claim_id} was already decided ({row['status']})")
            status = "upheld" if uphold else "rejected"
            row = conn.execute(
                "UPDATE adapter_claims SET status = %s, decision_note = %s, decided_by = %s,"
                " decided_at = now() WHERE id = %s RETURNING *",
                (status, note, actor, claim_id),
            ).fetchone()
            claim = AdapterClaim.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "adapter.claim_decided",
                actor,
                f"adapter:{adapter.id}",
                {"claim_id": str(claim_id), "decision": status, "note": note, "adapter": name},
            )
            if uphold:
                adapter = self.set_status(
                    conn,
                    actor,
                    name,
                    "blocked",
                    f"claim {claim_id} upheld: imitates the style of artist {claim.artist_id}",
                )
            return claim, adapter


class StoreAdapterRegistry:
    """``generation.gate.AdapterRegistry`` over the adapters table."""

    def __init__(self, pool: Any, store: AdapterStore) -> None:
        self.pool = pool
        self.store = store

    def lookup(self, name: str) -> RegisteredAdapter | None:
        with self.pool.connection() as conn:
            rec = self.store.find(conn, name)
        if rec is None:
            return None
        return RegisteredAdapter(
            id=str(rec.id),
            name=rec.name,
            sha256=rec.sha256,
            autov2=rec.autov2,
            path=self.store.file_path(rec.sha256),
            status=rec.status,
            status_reason=rec.status_reason,
        )


__all__ = [
    "AdapterClaim",
    "AdapterRecord",
    "AdapterStore",
    "StoreAdapterRegistry",
    "check_name",
]
