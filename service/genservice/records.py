"""SQL for the generation record: one row per request (blocked ones too), the registered artworks
its inputs matched, and an audit-log entry when it ends (completed, blocked or failed)."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
from typing import Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from generation.pipeline import GenerationRecord
from service.audit.log import AuditLog
from service.db.transactions import atomic

TERMINAL = ("completed", "blocked", "failed")
DEFAULT_LEASE_SECONDS = 60.0
INTERRUPTED = (
    "interrupted: the process running this generation stopped before it finished "
    "(its lease ran out); submit it again"
)
log = logging.getLogger(__name__)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _match_outcome(check_blocks: bool, permitted: bool, licensed: bool, decision: str) -> str:
    if decision != "copy":
        return "noted"
    if licensed:
        return "licensed"
    if permitted:
        return "allowed"
    return "blocked" if check_blocks else "noted"


def _columns(rec: GenerationRecord) -> dict[str, Any]:
    req = rec.request
    model = rec.model
    stamp = rec.stamp
    gate = rec.gate
    return {
        "id": rec.id,
        "status": rec.status,
        "stage": rec.stage,
        "mode": req.mode,
        "api_key_id": req.api_key_id,
        "actor": req.actor,
        "platform_user": req.platform_user,
        "prompt": None if req.prompt_private else req.prompt,
        "negative_prompt": None if req.prompt_private else req.negative_prompt,
        "prompt_sha256": _sha256(req.prompt),
        "negative_prompt_sha256": _sha256(req.negative_prompt),
        "prompt_private": req.prompt_private,
        "seed": req.seed,
        "steps": req.steps,
        "guidance": req.guidance,
        "width": req.width,
        "height": req.height,
        "strength": req.strength if req.mode != "txt2img" else None,
        "scheduler": req.scheduler,
        "model_name": model.name if model else None,
        "model_sha256": model.sha256 if model else None,
        "model_autov2": model.autov2 if model else None,
        "model_default_tiny": model.is_default_tiny if model else None,
        "model": Jsonb(rec.model_dict()) if model else None,
        "adapters": Jsonb(
            rec.adapters
            or [{"name": a.name, "scale": a.scale, "applied": False} for a in req.adapters]
        ),
        "inputs": Jsonb([i.to_dict() for i in gate.inputs] if gate else []),
        "decisions": Jsonb(rec.decisions()),
        "reasons": Jsonb(rec.reasons),
        "flags": Jsonb(rec.flags),
        "screen": Jsonb(rec.screen.to_dict()) if rec.screen is not None else None,
        "output_id": stamp.output_id if stamp else None,
        "output_sha256": stamp.sha256 if stamp else None,
        "output_pdq": stamp.pdq if stamp else None,
        "watermark_alg": stamp.watermark_alg if stamp else None,
        "watermark_value": stamp.watermark_value if stamp else None,
        "manifest_id": stamp.manifest_id if stamp else None,
        "timings": Jsonb({k: round(v * 1e3, 2) for k, v in rec.timings.items()}),
        "error": rec.error,
    }


def _audit_entry(rec: GenerationRecord, cols: dict[str, Any]) -> dict[str, Any]:
    req = rec.request
    params = req.summary()
    params["negative_prompt_sha256"] = _sha256(req.negative_prompt)
    if req.prompt_private:
        params.pop("prompt")
        params.pop("negative_prompt")
    return {
        "status": rec.status,
        "stage": rec.stage,
        "api_key_id": req.api_key_id,
        "parameters": params,
        "model": rec.model_dict(),
        "adapters": cols["adapters"].obj,
        "inputs": cols["inputs"].obj,
        "decisions": cols["decisions"].obj,
        "reasons": cols["reasons"].obj,
        "flags": cols["flags"].obj,
        "output": rec.stamp.to_dict() if rec.stamp is not None else None,
        "error": rec.error,
    }


class GenerationStore:
    """``generation.pipeline.Recorder`` over Postgres; also reads records back.

    A queued or running generation holds a lease in the name of this process (``worker``),
    renewed every third of ``lease_seconds`` while it is in flight here. A generation whose lease
    ran out was abandoned by a process that died: :meth:`expire_abandoned` marks it failed.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        audit: AuditLog,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        worker: str | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.pool = pool
        self.audit = audit
        self.lease_seconds = float(lease_seconds)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"
        self._in_flight: set[UUID] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._heartbeat_enabled = heartbeat

    def record(self, record: GenerationRecord) -> None:
        with self.pool.connection() as conn:
            self._write(conn, record)

    def record_within(self, transaction: psycopg.Connection, record: GenerationRecord) -> None:
        """``record``, inside a transaction the caller holds open (the stamp's: a completed
        generation commits with its output, or neither does)."""
        self._write(transaction, record)

    def _write(self, conn: psycopg.Connection, record: GenerationRecord) -> None:
        """The upsert, its matches and audit entry: a transaction of its own on an idle
        connection, part of the caller's inside one (see ``atomic``)."""
        cols = _columns(record)
        names = list(cols)
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names if n not in ("id", "created_at"))
        terminal = record.status in TERMINAL
        lease = "NULL" if terminal else "now() + make_interval(secs => %s)"
        values = [*cols.values(), None if terminal else self.worker]
        if not terminal:
            values.append(self.lease_seconds)
        with atomic(conn):
            cur = conn.execute(
                f"INSERT INTO generations ({', '.join(names)}, worker, lease_expires_at,"
                f" finished_at) VALUES ({', '.join(['%s'] * len(names))}, %s, {lease},"
                f" {'now()' if terminal else 'NULL'})"
                f" ON CONFLICT (id) DO UPDATE SET {updates}, worker = EXCLUDED.worker,"
                " lease_expires_at = EXCLUDED.lease_expires_at,"
                " finished_at = EXCLUDED.finished_at"
                " WHERE generations.status NOT IN ('completed', 'blocked', 'failed')",
                values,
            )
            if cur.rowcount:
                self._track(record.id, in_flight=not terminal)
            if not terminal or cur.rowcount == 0:
                return
            self._insert_matches(conn, record)
            self.audit.append(
                conn,
                f"generation.{record.status}",
                record.request.actor,
                f"generation:{record.id}",
                _audit_entry(record, cols),
            )

    def _insert_matches(self, conn: psycopg.Connection, record: GenerationRecord) -> None:
        gate = record.gate
        if gate is None or not gate.matches:
            return
        blocking = {c.subject for c in gate.checks if c.check == "registry" and c.blocks}
        rows = [
            (
                record.id,
                role,
                UUID(hit.artwork_id),
                UUID(hit.artist_id),
                hit.decision,
                hit.score,
                _match_outcome(
                    role in blocking, hit.permitted, hit.license_id is not None, hit.decision
                ),
                UUID(hit.license_id) if hit.license_id else None,
            )
            for role, hit in gate.matches
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO generation_matches (generation_id, input_role, artwork_id, artist_id,"
                " decision, score, outcome, license_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                rows,
            )

    # leases ------------------------------------------------------------------------------------
    def _track(self, generation_id: UUID, *, in_flight: bool) -> None:
        with self._lock:
            if in_flight:
                self._in_flight.add(generation_id)
                if self._heartbeat_enabled and self._heartbeat is None:
                    self._heartbeat = threading.Thread(
                        target=self._beat, name="generation-leases", daemon=True
                    )
                    self._heartbeat.start()
            else:
                self._in_flight.discard(generation_id)

    def renew(self) -> int:
        """Extend the leases of this process's generations in flight; how many were renewed."""
        with self._lock:
            ids = list(self._in_flight)
        if not ids:
            return 0
        with self.pool.connection() as conn:
            cur = conn.execute(
                "UPDATE generations SET lease_expires_at = now() + make_interval(secs => %s)"
                " WHERE id = ANY(%s) AND worker = %s AND status IN ('queued', 'running')",
                (self.lease_seconds, ids, self.worker),
            )
            return cur.rowcount

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.renew()
            except Exception:
                log.exception("renewing generation leases failed")

    def expire_abandoned(self, conn: psycopg.Connection) -> list[UUID]:
        """Mark failed every queued or running generation whose lease ran out, with an audit
        entry each; the ids marked."""
        with conn.transaction():
            rows = conn.execute(
                "UPDATE generations SET status = 'failed', stage = COALESCE(stage, 'diffuse'),"
                " error = %s, finished_at = now(), lease_expires_at = NULL"
                " WHERE status IN ('queued', 'running') AND lease_expires_at < now()"
                " RETURNING id, actor, api_key_id, worker",
                (INTERRUPTED,),
            ).fetchall()
            for row in rows:
                self.audit.append(
                    conn,
                    "generation.failed",
                    row["actor"],
                    f"generation:{row['id']}",
                    {
                        "status": "failed",
                        "api_key_id": row["api_key_id"],
                        "error": INTERRUPTED,
                        "worker": row["worker"],
                    },
                )
        return [row["id"] for row in rows]

    def close(self) -> None:
        self._stop.set()
        thread, self._heartbeat = self._heartbeat, None
        if thread is not None:
            thread.join(timeout=5)

    # reading ------------------------------------------------------------------------------------
    def get(self, conn: psycopg.Connection, generation_id: UUID) -> dict[str, Any] | None:
        row = conn.execute(
            "SELECT g.*, o.media_type AS output_media_type, o.width AS output_width,"
            " o.height AS output_height, o.watermark_verified, o.facts AS output_facts"
            " FROM generations g LEFT JOIN outputs o ON o.id = g.output_id WHERE g.id = %s",
            (generation_id,),
        ).fetchone()
        return dict(row) if row else None
