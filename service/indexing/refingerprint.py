"""Recomputing fingerprints made by an older `SIGNALS_VERSION`.

When signal extraction changes, rows of the old version no longer match new queries: the index
leaves them out and `/readyz` names how many there are. Registered artworks and generated outputs
keep their bytes in the blob store, so their fingerprints are computed again from those bytes
(`refresh_stale`), each row in its own transaction with a new change number (every index process
picks the new row up on its next refresh) and an audit entry. Training sources keep only a
thumbnail; adding the same image to its dataset again (`chopmark sources add`) recomputes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from uuid import UUID

import psycopg

from service.audit.log import AuditLog, next_change_seq
from service.blobs import BlobStore
from similarity import SIGNALS_VERSION, DecodeLimits, ImageRejected, compute_signals, decode_image

KEPT_BYTES = {"artwork": "artworks", "output": "outputs"}
"""Banks whose subjects keep their original bytes, and the table that names them."""


@dataclass(frozen=True)
class StaleRow:
    fingerprint_id: int
    bank: str
    subject_id: UUID
    sha256: str | None  # None where the bank keeps no bytes
    signals_version: str


def has_kept_bytes(row: StaleRow) -> bool:
    """Whether the row's subject keeps its original bytes, so it can be recomputed here."""
    return row.bank in KEPT_BYTES and bool(row.sha256)


@dataclass
class RefreshOutcome:
    refreshed: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[StaleRow, str]] = field(default_factory=list)
    needs_bytes: dict[str, int] = field(default_factory=dict)  # bank -> rows with no kept bytes
    # bank -> rows changed by someone else meanwhile (another refresh, a withdrawal): left alone
    changed_meanwhile: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C: the rows counted above are done, no others

    @property
    def total_refreshed(self) -> int:
        return sum(self.refreshed.values())


def stale_rows(conn: psycopg.Connection) -> list[StaleRow]:
    """Active fingerprints of another signals version, with the bytes that can remake them."""
    rows = conn.execute(
        "SELECT f.id, f.bank, f.subject_id, f.signals_version,"
        " coalesce(a.sha256, o.sha256) AS sha256"
        " FROM fingerprints f"
        " LEFT JOIN artworks a ON f.bank = 'artwork' AND a.id = f.subject_id"
        " LEFT JOIN outputs o ON f.bank = 'output' AND o.id = f.subject_id"
        " WHERE f.active AND f.signals_version <> %s ORDER BY f.id",
        (SIGNALS_VERSION,),
    ).fetchall()
    return [
        StaleRow(
            fingerprint_id=int(r["id"]),
            bank=str(r["bank"]),
            subject_id=r["subject_id"],
            signals_version=str(r["signals_version"]),
            sha256=r["sha256"],
        )
        for r in rows  # the pool's connections return dict rows
    ]


def signal_columns(data: bytes, limits: DecodeLimits) -> dict[str, object]:
    """The stored fingerprint columns of an image, as registration computes them."""
    signals = compute_signals(decode_image(data, limits, grey=True), for_query=False)
    return {**signals.pack(), "signals_version": SIGNALS_VERSION}


def store_refreshed(
    conn: psycopg.Connection, audit: AuditLog, actor: str, row: StaleRow,
    columns: dict[str, object],
) -> bool:
    """Replace one row's fingerprints; False when it changed meanwhile (left as it is)."""
    with conn.transaction():
        seq = next_change_seq(conn)
        updated = conn.execute(
            "UPDATE fingerprints SET signals_version = %s, pdq = %s, pdq_quality = %s,"
            " dense = %s, local_features = %s, change_seq = %s"
            " WHERE id = %s AND signals_version = %s AND active",
            (
                columns["signals_version"], columns["pdq"], columns["pdq_quality"],
                columns["dense"], columns["local"], seq, row.fingerprint_id,
                row.signals_version,
            ),
        ).rowcount
        if not updated:
            return False
        audit.append(
            conn,
            "fingerprint.refreshed",
            actor,
            f"{row.bank}:{row.subject_id}",
            {
                "fingerprint_id": row.fingerprint_id,
                "from_version": row.signals_version,
                "to_version": columns["signals_version"],
                "sha256": row.sha256,
                "pdq": bytes(columns["pdq"]).hex(),  # type: ignore[arg-type]
            },
        )
    return True


def refresh_stale(
    conn: psycopg.Connection,
    audit: AuditLog,
    blobs: BlobStore,
    actor: str,
    *,
    limits: DecodeLimits = DecodeLimits(),
    executor: Executor | None = None,
    on_row: Callable[[StaleRow], None] | None = None,
    rows: list[StaleRow] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RefreshOutcome:
    """Recompute every stale fingerprint whose bytes are kept; count the others by bank.

    Fingerprinting runs on `executor` (a thread pool of one by default); each result is stored
    as soon as it is ready. `on_row` is called once per row handled (for a progress bar).
    `rows`: the stale rows when the caller has listed them already (`stale_rows`).
    ``should_stop``, asked after each row, ends the run there: work not started is cancelled
    and the outcome so far comes back with ``interrupted`` set (each row is a transaction of its
    own, so a later run takes up the rest). A KeyboardInterrupt ends it the same way, but may
    land between a row's commit and its count.
    """
    outcome = RefreshOutcome()
    if rows is None:
        rows = stale_rows(conn)
    conn.commit()  # each row below is then a transaction of its own, holding locks briefly
    workable = [r for r in rows if has_kept_bytes(r)]
    for r in rows:
        if not has_kept_bytes(r):
            outcome.needs_bytes[r.bank] = outcome.needs_bytes.get(r.bank, 0) + 1
    own = executor is None
    pool = executor or ThreadPoolExecutor(1, thread_name_prefix="chopmark-refingerprint")
    results = _fingerprint_all(pool, blobs, limits, workable)
    try:
        for row, result in results:
            if isinstance(result, str):
                outcome.failed.append((row, result))
            else:
                counts = (
                    outcome.refreshed
                    if store_refreshed(conn, audit, actor, row, result)
                    else outcome.changed_meanwhile
                )
                counts[row.bank] = counts.get(row.bank, 0) + 1
            if on_row is not None:
                on_row(row)
            if should_stop is not None and should_stop():
                outcome.interrupted = True
                break
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        results.close()  # what no worker has started is cancelled
        if own:
            pool.shutdown()
    return outcome


def _fingerprint_one(
    blobs: BlobStore, limits: DecodeLimits, row: StaleRow
) -> dict[str, object] | str:
    assert row.sha256 is not None
    try:
        data = blobs.get(row.sha256)
    except OSError as exc:
        return f"kept bytes unreadable: {exc}"
    try:
        return signal_columns(data, limits)
    except ImageRejected as exc:
        return f"kept bytes no longer decode: {exc}"


def _fingerprint_all(
    pool: Executor, blobs: BlobStore, limits: DecodeLimits, rows: Iterable[StaleRow]
) -> Iterator[tuple[StaleRow, dict[str, object] | str]]:
    """Results in row order, with a bounded number in flight; closed early, it cancels those
    in flight that no worker has started."""
    pending: list[tuple[StaleRow, Future[dict[str, object] | str]]] = []
    window = 8
    try:
        for row in rows:
            pending.append((row, pool.submit(_fingerprint_one, blobs, limits, row)))
            if len(pending) >= window:
                done_row, fut = pending.pop(0)
                yield done_row, fut.result()
        while pending:
            done_row, fut = pending.pop(0)
            yield done_row, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
