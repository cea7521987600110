"""Training sources: images a model learned from, fingerprinted into bank 'source' so outputs can
be screened for memorised copies; with a CLIP embedder, their embeddings too.

Only a thumbnail of each source is kept (the evidence picture), not the original bytes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import faiss
import numpy as np
import psycopg
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from generation.screen import SourceAnswer, SourceHit
from service.api.text import has_control_characters
from service.audit.log import AuditLog, next_change_seq
from service.indexing.bank import BankIndex
from service.indexing.refingerprint import StaleRow, store_refreshed
from service.registry.ingest import PreparedImage
from similarity import SIGNALS_VERSION, ImageSignals
from similarity.threads import one_openmp_thread

# What a dataset's name and its licence notes may hold, in characters (API and CLI alike).
DATASET_MAX_CHARS = 200


def check_dataset(name: str) -> str:
    """A dataset's name as given, if it names one: ValueError for blank, control characters or
    too long."""
    if not name.strip():
        raise ValueError("dataset must name the training set (more than white space)")
    if has_control_characters(name):
        raise ValueError("dataset must not hold control characters")
    if len(name) > DATASET_MAX_CHARS:
        raise ValueError(f"dataset may be at most {DATASET_MAX_CHARS} characters")
    return name
LICENCE_MAX_CHARS = 5000


@dataclass(frozen=True)
class SourceRecord:
    id: UUID
    dataset: str
    licence: str | None
    sha256: str
    media_type: str
    width: int
    height: int
    byte_size: int
    original_filename: str | None
    fingerprint_id: int
    clip_model: str | None
    created_by: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: dict) -> SourceRecord:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


_COLUMNS = ", ".join(SourceRecord.__dataclass_fields__)


class SourceStore:
    def __init__(self, audit: AuditLog) -> None:
        self.audit = audit

    def add(
        self,
        conn: psycopg.Connection,
        actor: str,
        *,
        dataset: str,
        licence: str | None,
        item: PreparedImage,
        embedding: np.ndarray | None = None,
        clip_model: str | None = None,
    ) -> tuple[SourceRecord, bool]:
        """Insert one source with its fingerprints; the same bytes in the same dataset again
        return the existing row and False."""
        with conn.transaction():
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM training_sources WHERE dataset = %s AND sha256 = %s",
                (dataset, item.sha256),
            ).fetchone()
            if row is not None:
                record = SourceRecord.from_row(row)
                self._refresh_if_stale(conn, actor, record, item)
                return record, False
            source_id = uuid4()
            columns = item.signal_columns()
            seq = next_change_seq(conn)
            fp = conn.execute(
                "INSERT INTO fingerprints (bank, subject_id, signals_version, pdq, pdq_quality,"
                " dense, local_features, change_seq) VALUES ('source', %s, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (
                    source_id,
                    columns["signals_version"],
                    columns["pdq"],
                    columns["pdq_quality"],
                    columns["dense"],
                    columns["local"],
                    seq,
                ),
            ).fetchone()
            vector = (
                np.ascontiguousarray(embedding, "<f4").tobytes() if embedding is not None else None
            )
            row = conn.execute(
                "INSERT INTO training_sources (id, dataset, licence, sha256, media_type, width,"
                " height, byte_size, original_filename, fingerprint_id, clip_model,"
                " clip_embedding, created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                f" %s, %s, %s) RETURNING {_COLUMNS}",
                (
                    source_id,
                    dataset,
                    licence,
                    item.sha256,
                    item.media_type,
                    item.width,
                    item.height,
                    len(item.data),
                    item.filename,
                    fp["id"],  # type: ignore[index]
                    clip_model if vector is not None else None,
                    vector,
                    actor,
                ),
            ).fetchone()
            record = SourceRecord.from_row(row)  # type: ignore[arg-type]
            self.audit.append(
                conn,
                "source.added",
                actor,
                f"source:{source_id}",
                {
                    "dataset": dataset,
                    "licence": licence,
                    "sha256": item.sha256,
                    "pdq": bytes(columns["pdq"]).hex(),
                    "clip_model": record.clip_model,
                },
            )
            return record, True

    def _refresh_if_stale(
        self, conn: psycopg.Connection, actor: str, record: SourceRecord, item: PreparedImage
    ) -> None:
        """Sources keep no original bytes: adding one again is how its fingerprints made by an
        older signals version are recomputed (see `service.indexing.refingerprint`)."""
        row = conn.execute(
            "SELECT signals_version FROM fingerprints WHERE id = %s AND active",
            (record.fingerprint_id,),
        ).fetchone()
        if row is None or row["signals_version"] == SIGNALS_VERSION:
            return
        stale = StaleRow(record.fingerprint_id, "source", record.id, record.sha256,
                         str(row["signals_version"]))
        store_refreshed(conn, self.audit, actor, stale, item.signal_columns())

    def datasets(self, conn: psycopg.Connection) -> list[dict[str, Any]]:
        rows = conn.execute(
            "SELECT dataset, count(*) AS sources, max(created_at) AS last_added"
            " FROM training_sources GROUP BY dataset ORDER BY dataset"
        ).fetchall()
        return [dict(r) for r in rows]

    def by_fingerprints(self, conn: psycopg.Connection, ids: list[int]) -> dict[int, SourceRecord]:
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM training_sources WHERE fingerprint_id = ANY(%s)", (ids,)
        ).fetchall()
        return {r["fingerprint_id"]: SourceRecord.from_row(r) for r in rows}


class BankSourceIndex:
    """``generation.screen.SourceIndex`` over the runtime's 'source' bank."""

    def __init__(self, pool: ConnectionPool, bank: BankIndex, store: SourceStore) -> None:
        self.pool = pool
        self.bank = bank
        self.store = store

    def match(self, signals: ImageSignals) -> SourceAnswer:
        matches = self.bank.match(signals, limit=10)
        status = self.bank.status()
        index = {"bank": "source", "size": status.size, "built_to": status.change_seq}
        if not matches:
            return SourceAnswer([], index)
        with self.pool.connection() as conn:
            by_fp = self.store.by_fingerprints(conn, [m.id for m in matches])
        hits = [
            SourceHit(
                source_id=str(by_fp[m.id].id),
                dataset=by_fp[m.id].dataset,
                licence=by_fp[m.id].licence,
                decision=m.decision,
                score=round(float(m.score), 4),
                evidence=m.evidence,
            )
            for m in matches
            if m.id in by_fp
        ]
        return SourceAnswer(hits, index)


class SourceEmbeddingIndex:
    """``generation.screen.SourceEmbeddings``: exact inner-product search in FAISS over the
    stored CLIP embeddings of one model, caught up from Postgres (by ``seq``) before each query."""

    def __init__(self, pool: ConnectionPool) -> None:
        self.pool = pool
        self._lock = threading.Lock()
        self._indexes: dict[str, tuple[faiss.IndexFlatIP, list[tuple[str, str, str | None]]]] = {}
        self._seq: dict[str, int] = {}

    def _catch_up(self, model: str) -> tuple[faiss.IndexFlatIP | None, list]:
        with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT seq, id, dataset, licence, clip_embedding FROM training_sources"
                " WHERE clip_model = %s AND clip_embedding IS NOT NULL AND seq > %s ORDER BY seq",
                (model, self._seq.get(model, 0)),
            )
            rows = cur.fetchall()
        index, payload = self._indexes.get(model, (None, []))
        if rows:
            vectors = np.stack([np.frombuffer(bytes(r[4]), "<f4") for r in rows])
            if index is None:
                index = faiss.IndexFlatIP(vectors.shape[1])
                self._indexes[model] = (index, payload)
            index.add(np.ascontiguousarray(vectors, np.float32))
            payload.extend((str(r[1]), r[2], r[3]) for r in rows)
            self._seq[model] = int(rows[-1][0])
        return index, payload

    def nearest(self, vector: np.ndarray, model: str, k: int) -> SourceAnswer:
        one_openmp_thread()
        with self._lock:
            index, payload = self._catch_up(model)
            size = len(payload)
            if index is None or size == 0:
                return SourceAnswer([], {"model": model, "size": 0})
            query = np.ascontiguousarray(vector, np.float32).reshape(1, -1)
            scores, ids = index.search(query, min(k, size))
        hits = [
            SourceHit(
                source_id=payload[i][0],
                dataset=payload[i][1],
                licence=payload[i][2],
                decision="clip",
                score=round(float(s), 4),
            )
            for s, i in zip(scores[0], ids[0], strict=True)
            if i >= 0
        ]
        return SourceAnswer(hits, {"model": model, "size": size})
