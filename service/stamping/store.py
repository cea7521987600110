"""SQL for stamped outputs: the record, its manifest, watermark payload and fingerprints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from service.audit.log import AuditLog, next_change_seq
from service.db.transactions import atomic


@dataclass(frozen=True)
class OutputRecord:
    id: UUID
    origin: str
    kind: str
    platform_user: str | None
    facts: dict[str, Any]
    manifest_id: str
    watermark_alg: str
    watermark_payload: int
    watermark_value: str
    watermark_verified: bool
    sha256: str
    media_type: str
    width: int
    height: int
    fingerprint_id: int
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict) -> OutputRecord:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})


_COLUMNS = ", ".join(OutputRecord.__dataclass_fields__)


class OutputStore:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def insert(
        self,
        conn: psycopg.Connection,
        actor: str,
        *,
        output_id: UUID,
        origin: str,
        kind: str,
        platform_user: str | None,
        facts: dict[str, Any],
        manifest_id: str,
        manifest_bytes: bytes,
        watermark_alg: str,
        watermark_payload: int,
        watermark_value: str,
        watermark_verified: bool,
        sha256: str,
        media_type: str,
        width: int,
        height: int,
        signals: dict[str, Any],
        audit_extra: dict[str, Any] | None = None,
    ) -> OutputRecord:
        with atomic(conn):
            seq = next_change_seq(conn)
            fp = conn.execute(
                "INSERT INTO fingerprints (bank, subject_id, signals_version, pdq, pdq_quality,"
                " dense, local_features, change_seq) VALUES ('output', %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (
                    output_id,
                    signals["signals_version"],
                    signals["pdq"],
                    signals["pdq_quality"],
                    signals["dense"],
                    signals["local"],
                    seq,
                ),
            ).fetchone()
            row = conn.execute(
                "INSERT INTO outputs (id, origin, kind, platform_user, facts, manifest_id,"
                " manifest_bytes, watermark_alg, watermark_payload, watermark_value,"
                " watermark_verified, sha256, media_type, width, height, fingerprint_id,"
                " created_by)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                f" RETURNING {_COLUMNS}",
                (
                    output_id,
                    origin,
                    kind,
                    platform_user,
                    Jsonb(facts),
                    manifest_id,
                    manifest_bytes,
                    watermark_alg,
                    watermark_payload,
                    watermark_value,
                    watermark_verified,
                    sha256,
                    media_type,
                    width,
                    height,
                    fp["id"],
                    actor,
                ),  # type: ignore[index]
            ).fetchone()
            self.audit.append(
                conn,
                f"{origin}.stamped",
                actor,
                f"output:{output_id}",
                {
                    "manifest_id": manifest_id,
                    "sha256": sha256,
                    "watermark": {
                        "alg": watermark_alg,
                        "value": watermark_value,
                        "verified": watermark_verified,
                    },
                    "pdq": bytes(signals["pdq"]).hex(),
                    "facts": facts,
                    **(audit_extra or {}),
                },
            )
            return OutputRecord.from_row(row)  # type: ignore[arg-type]

    def get(self, conn: psycopg.Connection, output_id: UUID) -> OutputRecord | None:
        row = conn.execute(f"SELECT {_COLUMNS} FROM outputs WHERE id = %s", (output_id,)).fetchone()
        return OutputRecord.from_row(row) if row else None

    def by_payload(self, conn: psycopg.Connection, alg: str, payload: int) -> OutputRecord | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM outputs WHERE watermark_alg = %s AND watermark_payload = %s",
            (alg, payload),
        ).fetchone()
        return OutputRecord.from_row(row) if row else None

    def by_value(self, conn: psycopg.Connection, alg: str, value: str) -> OutputRecord | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM outputs WHERE watermark_alg = %s AND watermark_value = %s",
            (alg, value.strip().lower()),
        ).fetchone()
        return OutputRecord.from_row(row) if row else None

    def by_fingerprints(self, conn: psycopg.Connection, ids: list[int]) -> dict[int, OutputRecord]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM outputs WHERE fingerprint_id = ANY(%s)", (ids,)
        ).fetchall()
        return {r["fingerprint_id"]: OutputRecord.from_row(r) for r in rows}

    def manifest(self, conn: psycopg.Connection, manifest_id: str) -> bytes | None:
        row = conn.execute(
            "SELECT manifest_bytes FROM outputs WHERE manifest_id = %s", (manifest_id,)
        ).fetchone()
        return bytes(row["manifest_bytes"]) if row else None
