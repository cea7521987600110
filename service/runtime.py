"""Wiring: the database pool, stores and indexes one process shares (API or CLI)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cv2
import psycopg
from psycopg_pool import ConnectionPool

from provenance.watermark import Watermarker, default_watermarker
from service.audit.log import AuditLog
from service.audit.signing import audit_key_for_log
from service.blobs import FileBlobStore, ThumbnailStore
from service.db.embedded import stop_embedded
from service.db.migrate import upgrade
from service.db.pool import database_url, open_pool
from service.indexing.bank import BankIndex
from service.indexing.refresher import IndexRefresher
from service.registry.store import RegistryStore
from service.settings import Settings
from service.stamping.credentials import SigningSetup, load_signing
from service.stamping.store import OutputStore
from similarity import DecodeLimits
from similarity.jit import warm_up as warm_up_kernels
from similarity.threads import set_helper_threads

log = logging.getLogger(__name__)

BANKS = ("artwork", "output", "source")


@dataclass
class Runtime:
    settings: Settings
    pool: ConnectionPool
    audit: AuditLog
    registry: RegistryStore
    blobs: FileBlobStore
    thumbnails: ThumbnailStore
    signing: SigningSetup
    watermarker: Watermarker
    outputs: OutputStore
    banks: dict[str, BankIndex] = field(default_factory=dict)
    refresher: IndexRefresher | None = None

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        url = database_url(settings)
        if migrate:
            applied = upgrade(url)
            for mig in applied:
                log.info("applied migration %04d %s", mig.version, mig.name)
        if settings.query_helper_threads is not None:
            set_helper_threads(settings.query_helper_threads)
        cv2.setNumThreads(settings.opencv_threads)
        pool = open_pool(settings)
        try:
            with pool.connection() as conn:
                key = audit_key_for_log(conn, settings.keys_dir / "audit-log.pem")
        except BaseException:
            pool.close()
            raise
        audit = AuditLog(key)
        blobs = FileBlobStore(settings.blob_dir)
        rt = cls(
            settings=settings,
            pool=pool,
            audit=audit,
            registry=RegistryStore(audit),
            blobs=blobs,
            thumbnails=ThumbnailStore(blobs),
            signing=load_signing(settings),
            watermarker=default_watermarker(),
            outputs=OutputStore(audit),
        )
        rt.banks = {
            b: BankIndex(b, pool, settings.index_dir, settings.index_nprobe) for b in BANKS
        }
        return rt

    @property
    def decode_limits(self) -> DecodeLimits:
        s = self.settings
        return DecodeLimits(
            max_bytes=s.max_upload_bytes, max_pixels=s.max_image_pixels, max_side=s.max_image_side
        )

    def load_indexes(self) -> None:
        # The compiled loops of the searches for pictures within a picture, ready before the
        # first query (`similarity.jit`).
        warm_up_kernels()
        for bank in self.banks.values():
            bank.load()

    def start_refresher(self) -> None:
        conninfo = self.pool.conninfo
        self.refresher = IndexRefresher(
            list(self.banks.values()),
            self.settings.index_refresh_seconds,
            self.settings.index_snapshot_every,
            listen=lambda: psycopg.connect(conninfo, autocommit=True, connect_timeout=10),
        )
        self.refresher.start()

    def close(self) -> None:
        if self.refresher is not None:
            self.refresher.stop()
            for bank in self.banks.values():
                try:
                    if bank.changes_since_snapshot:
                        bank.snapshot()
                except Exception:
                    log.exception("final snapshot of %s failed", bank.bank)
        self.pool.close()
        if not self.settings.database_url:
            # Release the embedded server here, not only at exit: uvicorn ends a process with the
            # signal it caught, which skips atexit handlers.
            stop_embedded(self.settings.embedded_pg_dir)
