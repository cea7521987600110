"""A FAISS-backed index over one bank of fingerprints, derived from Postgres.

Built from the ``fingerprints`` table (or a snapshot plus the changes since it), then kept fresh
by polling ``change_seq``: numbers are handed out in commit order (see ``service.audit.log``), so
"every row above the last number seen" never skips a committed change.

An index is only good for the database history it was built from. A snapshot or a running
index whose database was restored to an earlier point (a point-in-time recovery, a failover
that lost the newest commits) would keep rows the database no longer has and skip new ones
numbered below its checkpoint. PostgreSQL starts a new timeline at every recovery that ends
before the end of its WAL and at every promotion; the index remembers its database's system
identifier and timeline (its *epoch*), and rebuilds when either changed or when the database's
highest change number fell below its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from psycopg.rows import tuple_row
from psycopg_pool import ConnectionPool

from service.indexing.snapshots import Checkpoint, load_snapshot, save_snapshot
from similarity import (
    COMPATIBLE_VERSIONS,
    SIGNALS_VERSION,
    ImageSignals,
    Match,
    MatchIndex,
    match,
)
from similarity.dense_store import DenseStoreConfig
from similarity.matcher import verify_against
from similarity.signals import LINES_VIEW, unpack_dense

log = logging.getLogger(__name__)

_BATCH = 20_000


@dataclass(frozen=True)
class BankStatus:
    bank: str
    loaded: bool
    size: int
    change_seq: int
    refreshed_at: float | None
    last_error: str | None
    stale_signals: int
    signals_version: str
    loaded_from: str


class BankIndex:
    def __init__(
        self,
        bank: str,
        pool: ConnectionPool,
        snapshot_root: Path,
        nprobe: int = DenseStoreConfig.nprobe,
    ) -> None:
        self.bank = bank
        self.pool = pool
        self.snapshot_root = snapshot_root
        self.nprobe = nprobe  # lists a dense search probes (CHOPMARK_INDEX_NPROBE)
        self._index: MatchIndex | None = None
        self._lock = threading.RLock()
        self._change_seq = 0
        self._refreshed_at: float | None = None
        self._last_error: str | None = None
        self._stale_ids: set[int] = set()  # active rows of another signals version
        self._changes_since_snapshot = 0
        self._loaded_from = "none"
        self._database_id = ""
        # (id, change number, PDQ) of the last row applied: checked against the database at
        # each refresh, so a history rewound under the index is noticed even when new rows
        # took the old numbers again
        self._last_applied: tuple[int, int, bytes] | None = None

    # loading ---------------------------------------------------------------------------------
    def load(self) -> None:
        """Load the latest usable snapshot, or build from scratch; then catch up."""
        with self.pool.connection() as conn:
            self._database_id = _epoch(conn)
            top = self._max_change_seq(conn)
        snap = load_snapshot(self.snapshot_root, self.bank)
        if snap is not None:
            index, cp = snap
            if (
                cp.signals_version == SIGNALS_VERSION
                # snapshots written before the timeline was recorded name the system alone
                and cp.database_id in (self._database_id, self._database_id.split(":")[0])
                and cp.change_seq <= top
            ):
                index.set_nprobe(self.nprobe)  # effort as configured, not as saved
                with self._lock:
                    self._index, self._change_seq = index, cp.change_seq
                    self._loaded_from = f"snapshot at change {cp.change_seq}"
                self.refresh()
                return
            log.info(
                "ignoring the %s snapshot: built for another database, history (a restore or "
                "failover since) or signals version",
                self.bank,
            )
        self._build()

    def _build(self) -> None:
        """Everything active, from the database alone; built aside and swapped in whole, so
        matches meanwhile use the index as it was rather than a half-built one."""
        fresh = BankIndex(self.bank, self.pool, self.snapshot_root, self.nprobe)
        fresh._database_id, fresh._index = self._database_id, MatchIndex()
        fresh._index.set_nprobe(self.nprobe)
        fresh.refresh(active_only=True, check_history=False)
        with self._lock:
            self._index, self._change_seq = fresh._index, fresh._change_seq
            self._stale_ids, self._last_applied = fresh._stale_ids, fresh._last_applied
            self._changes_since_snapshot = 0
            self._refreshed_at, self._last_error = fresh._refreshed_at, None
            self._loaded_from = "database"
        try:
            self.snapshot()
        except OSError as exc:  # a cache: serving from memory matters more than keeping it
            log.warning("cannot write the %s index snapshot: %s", self.bank, exc)

    def _history_rewound(self) -> tuple[str | None, str]:
        """Why this index no longer describes its database's history (or None), and the
        database's epoch now."""
        # Read before the database is asked: another thread may apply newer rows meanwhile,
        # and the database, asked after, holds at least what was applied before.
        mine, last = self._change_seq, self._last_applied
        with self.pool.connection() as conn:
            epoch = _epoch(conn)
            top = self._max_change_seq(conn) if mine else 0
            now = None
            if last is not None:
                now = conn.execute(
                    "SELECT change_seq, pdq FROM fingerprints WHERE id = %s", (last[0],)
                ).fetchone()
        if epoch != self._database_id:
            return f"the database's epoch changed from {self._database_id} to {epoch}", epoch
        if top < mine:
            return f"the database's last change is {top}, before this index's {mine}", epoch
        if last is not None:  # the last row applied must still be there, as applied or newer
            fid, seq, pdq = last
            if now is None or now["change_seq"] < seq:
                return f"fingerprint {fid}, the last change applied, is gone", epoch
            if now["change_seq"] == seq and bytes(now["pdq"]) != pdq:
                return f"fingerprint {fid} holds another image under its change number", epoch
        return None, epoch

    def _max_change_seq(self, conn: object) -> int:
        row = conn.execute(  # type: ignore[attr-defined]
            "SELECT coalesce(max(change_seq), 0) AS m FROM fingerprints WHERE bank = %s",
            (self.bank,),
        ).fetchone()
        return int(row["m"])

    def refresh(self, *, active_only: bool = False, check_history: bool = True) -> int:
        """Apply every change after the checkpoint; return how many rows were applied. When the
        database's history was rewound under this index (see the module's notes), rebuild it."""
        applied = 0
        try:
            rewound = None
            if check_history and self._index is not None:
                rewound, epoch = self._history_rewound()
            if rewound is not None:
                log.warning("rebuilding the %s index from the database: %s", self.bank, rewound)
                self._database_id = epoch
                self._build()
                return self.status().size
            while True:
                with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                    cur.execute(
                        "SELECT id, active, signals_version, pdq, pdq_quality, dense, change_seq"
                        " FROM fingerprints WHERE bank = %s AND change_seq > %s"
                        + (" AND active" if active_only else "")
                        + " ORDER BY change_seq LIMIT %s",
                        (self.bank, self._change_seq, _BATCH),
                    )
                    rows = cur.fetchall()
                if not rows:
                    break
                self._apply(rows)
                applied += len(rows)
                if len(rows) < _BATCH:
                    break
            self._refreshed_at = time.time()
            self._last_error = None
        except Exception as exc:  # the reason goes to /readyz; the caller says it and retries
            self._last_error = f"{type(exc).__name__}: {exc}"
            raise
        return applied

    def catch_up(self) -> None:
        """``refresh`` after a change this process committed, so its next match sees it. The
        change stands whatever happens here: a failure is logged, and the refresher applies the
        change at its next tick (the caller is not told the change failed)."""
        try:
            self.refresh(check_history=False)  # the refresher's next tick checks the history
        except Exception as exc:
            log.warning(
                "the %s index did not catch up with a committed change (%s); the next refresh will",
                self.bank,
                exc,
            )

    def _apply(self, rows: Sequence[tuple]) -> None:
        removes: list[int] = []
        add_ids: list[int] = []
        add_signals: list[ImageSignals] = []
        stale: set[int] = set()
        for fid, active, version, pdq, quality, dense, _seq in rows:
            removes.append(fid)
            if not active:
                continue
            if version not in COMPATIBLE_VERSIONS:  # an older row may still match
                stale.add(fid)
                continue
            add_ids.append(fid)
            add_signals.append(
                ImageSignals.from_packed(
                    {"pdq": bytes(pdq), "pdq_quality": quality, "dense": bytes(dense), "local": b""}
                )
            )
        with self._lock:
            assert self._index is not None
            self._index.remove(removes)
            if add_ids:
                self._index.add(add_ids, add_signals)
            self._change_seq = rows[-1][6]
            last = rows[-1]
            self._last_applied = (int(last[0]), int(last[6]), bytes(last[3] or b""))
            # A row's latest change decides: refreshed or withdrawn rows are no longer stale.
            self._stale_ids.difference_update(removes)
            self._stale_ids.update(stale)
            self._changes_since_snapshot += len(rows)

    def snapshot(self) -> None:
        with self._lock:
            if self._index is None:
                return
            cp = Checkpoint(
                self.bank,
                self._change_seq,
                len(self._index),
                SIGNALS_VERSION,
                self._database_id,
                time.time(),
            )
            save_snapshot(self.snapshot_root, self._index, cp)
            self._changes_since_snapshot = 0

    @property
    def changes_since_snapshot(self) -> int:
        return self._changes_since_snapshot

    # querying --------------------------------------------------------------------------------
    def _lookup_local(
        self, ids: Sequence[int], versions: dict[int, str] | None = None
    ) -> Mapping[int, bytes]:
        """The stored local features of ``ids`` (active rows only); ``versions``, when given,
        is filled in with the signals version each row was made with."""
        if not ids:
            return {}
        with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT id, local_features, signals_version FROM fingerprints"
                " WHERE id = ANY(%s) AND active",
                (list(ids),),
            )
            rows = cur.fetchall()
        if versions is not None:
            versions.update((int(i), str(v)) for i, _, v in rows)
        return {int(i): bytes(b) for i, b, _ in rows}

    def _lookup_dense(self, ids: Sequence[int]) -> Mapping[int, np.ndarray]:
        """The stored dense views of ``ids`` (active rows only), to rank an approximate
        index's candidates again."""
        if not ids:
            return {}
        with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT id, dense FROM fingerprints WHERE id = ANY(%s) AND active", (list(ids),)
            )
            rows = cur.fetchall()
        return {int(i): unpack_dense(d)[:LINES_VIEW] for i, d in rows}

    def match(self, query: ImageSignals, limit: int = 10) -> list[Match]:
        index = self._index
        if index is None:
            raise IndexNotReady(f"the {self.bank} index is not loaded yet")
        versions: dict[int, str] = {}
        found = match(
            query,
            index,
            lambda ids: self._lookup_local(ids, versions),
            limit=limit,
            dense_lookup=self._lookup_dense,
        )
        return self._with_stored_versions(found, versions)

    def verify(self, query: ImageSignals, fingerprint_id: int) -> Match | None:
        """``query`` against one entry by local features alone (see ``verify_against``)."""
        versions: dict[int, str] = {}
        found = verify_against(
            query, fingerprint_id, lambda ids: self._lookup_local(ids, versions)
        )
        return None if found is None else self._with_stored_versions([found], versions)[0]

    def _with_stored_versions(self, found: list[Match], versions: dict[int, str]) -> list[Match]:
        """``found`` with each match's evidence naming the signals version its entry's stored
        fingerprints were made with (``stored_signals_version``; ``signals_version`` names the
        query's, this code's): a reviewer can tell which extraction the decision compared. Rows
        verification did not read are looked up here."""
        missing = [m.id for m in found if m.id not in versions]
        if missing:
            with self.pool.connection() as conn, conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    "SELECT id, signals_version FROM fingerprints WHERE id = ANY(%s)", (missing,)
                )
                versions.update((int(i), str(v)) for i, v in cur.fetchall())
        return [
            Match(m.id, m.score, m.decision,
                  {**m.evidence, "stored_signals_version": versions.get(m.id)})
            for m in found
        ]

    def status(self) -> BankStatus:
        return BankStatus(
            bank=self.bank,
            loaded=self._index is not None,
            size=len(self._index) if self._index is not None else 0,
            change_seq=self._change_seq,
            refreshed_at=self._refreshed_at,
            last_error=self._last_error,
            stale_signals=len(self._stale_ids),
            signals_version=SIGNALS_VERSION,
            loaded_from=self._loaded_from,
        )


class IndexNotReady(RuntimeError):
    pass


def _epoch(conn: object) -> str:
    """The database's system identifier and timeline: ``"<system id>:<timeline>"``."""
    row = conn.execute(  # type: ignore[attr-defined]
        "SELECT s.system_identifier::text || ':' || c.timeline_id::text AS epoch"
        " FROM pg_control_system() s, pg_control_checkpoint() c"
    ).fetchone()
    return str(row["epoch"]) if row else ""
