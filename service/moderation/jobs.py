"""Batch moderation: jobs in Postgres, uploaded bytes in the blob store, worked by background
threads in any API process.

A worker claims one queued item with ``FOR UPDATE SKIP LOCKED`` and keeps that row locked while
it checks the image; the check's record, the item's outcome and the job's progress commit
together. A process that dies mid-item releases its lock, and the item is taken up again by
another worker. When the last item is done the job's webhook (if any) becomes due; deliveries
are claimed the same way, retried with exponential backoff, and given up after a bounded number
of attempts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import psycopg

from service.api.errors import rejection_status
from service.auth.keys import ApiKey
from service.moderation import webhooks
from service.moderation.check import run_check
from service.moderation.policy import POLICIES, PolicyError
from service.moderation.reviews import reviews_of
from similarity import ImageRejected

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger(__name__)

MAX_FILES = 100
# A webhook attempt is held this long (the call's timeout and some); a worker that died during
# it leaves the job to be tried again after.
WEBHOOK_LEASE_SECONDS = webhooks.TIMEOUT_SECONDS + 20
MAX_ITEM_ATTEMPTS = 3
# An item whose check failed waits ITEM_RETRY_SECONDS * 4**(attempts - 1) before the next try;
# while the policy file cannot be used, items wait POLICY_RETRY_SECONDS and keep their attempts
# (as a single check answers 503 then: the fault is the service's, and passes once mended).
ITEM_RETRY_SECONDS = 1.0
POLICY_RETRY_SECONDS = 5.0
WEBHOOK_EVENT = "moderation.job.finished"
_live_workers: weakref.WeakSet[ModerationWorker] = weakref.WeakSet()


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""


@dataclass(frozen=True)
class BatchFile:
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class CreatedJob:
    job: dict[str, Any]
    created: bool
    webhook_secret: str | None


def allow_private_webhooks(settings: object) -> bool:
    configured = getattr(settings, "moderation_webhook_allow_private", None)
    if configured is not None:
        return bool(configured)
    return getattr(settings, "environment", "production") == "development"


def request_digest(
    user: str | None, context: str | None, webhook_url: str | None, files: list[list[str]]
) -> str:
    body = {"user": user, "context": context, "webhook_url": webhook_url, "files": files}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


# ---- creating and reading jobs ------------------------------------------------------------


def create_job(
    rt: Runtime,
    key: ApiKey,
    files: list[BatchFile],
    *,
    user: str | None,
    context: str | None,
    webhook_url: str | None,
    idempotency_key: str | None,
) -> CreatedJob:
    """Store the files and queue a job; a repeated ``idempotency_key`` returns the first job
    and stores nothing.

    Raises ``IdempotencyConflict`` when the key was used for a different request.
    """
    if not 1 <= len(files) <= MAX_FILES:
        raise ValueError(f"a batch holds 1 to {MAX_FILES} files")
    stored = [(f.filename or "", hashlib.sha256(f.data).hexdigest(), len(f.data)) for f in files]
    digest = request_digest(user, context, webhook_url, [[n, s] for n, s, _ in stored])
    secret = webhooks.new_secret() if webhook_url else None
    job_id = uuid4()
    with rt.pool.connection() as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO moderation_jobs (id, api_key_id, actor, total, platform_user, context,"
            " idempotency_key, request_sha256, webhook_url, webhook_secret, webhook_state)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (api_key_id, idempotency_key) DO NOTHING RETURNING id",
            (
                job_id,
                key.id,
                key.actor,
                len(stored),
                user,
                context,
                idempotency_key,
                digest,
                webhook_url,
                secret,
                "pending" if webhook_url else None,
            ),
        ).fetchone()
        if row is None:  # the key was used before, by this API key
            first = conn.execute(
                "SELECT id, request_sha256, webhook_secret FROM moderation_jobs"
                " WHERE api_key_id = %s AND idempotency_key = %s",
                (key.id, idempotency_key),
            ).fetchone()
            assert first is not None
            if first["request_sha256"] != digest:
                raise IdempotencyConflict(
                    "this Idempotency-Key was already used with a different request"
                )
            job = get_job(conn, first["id"], key.id)
            assert job is not None
            return CreatedJob(job, False, first["webhook_secret"])
        # Stored only once the request is known to be new (a replay or a conflicting reuse of
        # the key writes nothing), and before the records that name them commit.
        for f, (_, sha, _) in zip(files, stored, strict=True):
            rt.blobs.put(f.data, sha)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO moderation_job_items (job_id, position, filename, sha256, byte_size)"
                " VALUES (%s, %s, %s, %s, %s)",
                [(job_id, i, n or None, s, size) for i, (n, s, size) in enumerate(stored)],
            )
        rt.audit.append(
            conn,
            "moderation.batch_queued",
            key.actor,
            f"moderation-job:{job_id}",
            {
                "files": [{"filename": n or None, "sha256": s} for n, s, _ in stored],
                "user": user,
                "context": context,
                "webhook": bool(webhook_url),
            },
        )
        job = get_job(conn, job_id, key.id)
    assert job is not None
    notify_workers()
    return CreatedJob(job, True, secret)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def get_job(
    conn: psycopg.Connection, job_id: UUID, api_key_id: int | None, *, full: bool = False
) -> dict[str, Any] | None:
    """The job, its progress and each item's outcome; with ``api_key_id``, only that key's."""
    job = conn.execute("SELECT * FROM moderation_jobs WHERE id = %s", (job_id,)).fetchone()
    if job is None or (api_key_id is not None and job["api_key_id"] != api_key_id):
        return None
    rows = conn.execute(
        "SELECT i.position, i.filename, i.sha256, i.status, i.check_id, i.error,"
        " i.error_status, i.retry_at, c.verdict, c.reasons"
        + (", c.result" if full else "")
        + " FROM moderation_job_items i LEFT JOIN moderation_checks c ON c.id = i.check_id"
        " WHERE i.job_id = %s ORDER BY i.position",
        (job_id,),
    ).fetchall()
    counts = {s: 0 for s in ("queued", "checked", "rejected", "failed")}
    reviews = reviews_of(conn, [r["check_id"] for r in rows if r["check_id"]]) if full else {}
    items = []
    for r in rows:
        counts[r["status"]] += 1
        item: dict[str, Any] = {
            "position": r["position"],
            "filename": r["filename"],
            "sha256": r["sha256"],
            "status": r["status"],
            "check_id": str(r["check_id"]) if r["check_id"] else None,
            "verdict": r["verdict"],
            "reasons": r["reasons"],
            "error": r["error"],
            "error_status": r["error_status"],
            "retry_at": _iso(r["retry_at"]) if r["status"] == "queued" else None,
        }
        if full:  # as GET /checks/{id} answers it, with the decisions people made since
            result = r["result"]
            item["result"] = result and {**result, "reviews": reviews.get(r["check_id"], [])}
        items.append(item)
    webhook = None
    if job["webhook_url"]:
        webhook = {
            "url": job["webhook_url"],
            "state": job["webhook_state"],
            "attempts": job["webhook_attempts"],
            "last_error": job["webhook_last_error"],
            "delivered_at": _iso(job["webhook_delivered_at"]),
        }
    return {
        "id": str(job["id"]),
        "status": job["status"],
        "total": job["total"],
        "done": job["done"],
        "counts": counts,
        "user": job["platform_user"],
        "context": job["context"],
        "created_at": _iso(job["created_at"]),
        "started_at": _iso(job["started_at"]),
        "finished_at": _iso(job["finished_at"]),
        "webhook": webhook,
        "items": items,
    }


def requeue_webhook(rt: Runtime, conn: psycopg.Connection, job_id: UUID, actor: str) -> None:
    """Send a finished job's webhook again, from a fresh count of attempts (audited); in the
    caller's transaction."""
    conn.execute(
        "UPDATE moderation_jobs SET webhook_state = 'pending', webhook_attempts = 0,"
        " webhook_next_at = clock_timestamp(), webhook_last_error = NULL WHERE id = %s",
        (job_id,),
    )
    rt.audit.append(conn, "moderation.webhook_requeued", actor, f"moderation-job:{job_id}", {})


# ---- working jobs -------------------------------------------------------------------------

# Jobs take turns, item by item (every job's first item, then every job's second, ...): a
# batch of 100 queued before another platform's single image no longer keeps it waiting.
_CLAIM_ITEM = """
SELECT i.job_id, i.position, i.sha256, i.attempts, j.platform_user, j.context, j.actor,
       j.api_key_id, k.prefix AS key_prefix, k.name AS key_name
FROM moderation_job_items i
JOIN moderation_jobs j ON j.id = i.job_id
JOIN api_keys k ON k.id = j.api_key_id
WHERE i.status = 'queued' AND (i.retry_at IS NULL OR i.retry_at <= clock_timestamp())
ORDER BY i.position, j.created_at, i.job_id
LIMIT 1
FOR UPDATE OF i SKIP LOCKED
"""

_ADVANCE_JOB = """
UPDATE moderation_jobs SET
    done = done + 1,
    status = CASE
        WHEN done + 1 < total THEN 'running'
        WHEN EXISTS (SELECT 1 FROM moderation_job_items
                     WHERE job_id = %(id)s AND status = 'failed') THEN 'failed'
        ELSE 'completed' END,
    finished_at = CASE WHEN done + 1 >= total THEN clock_timestamp() END,
    webhook_next_at = CASE WHEN done + 1 >= total AND webhook_state = 'pending'
                           THEN clock_timestamp() ELSE webhook_next_at END
WHERE id = %(id)s
RETURNING status
"""

WEBHOOK_THREADS = 4  # per process: a slow or stalled receiver holds one of them at most 10 s
# A process sends one webhook at a time to any one receiver (host and port): however many jobs
# wait on a receiver that does not answer, it holds one sending thread, not all of them.
_CLAIM_WEBHOOK = """
SELECT id, webhook_url, webhook_secret, webhook_attempts
FROM moderation_jobs
WHERE webhook_state = 'pending' AND status IN ('completed', 'failed')
  AND webhook_next_at <= now()
ORDER BY webhook_next_at
LIMIT 32
FOR UPDATE SKIP LOCKED
"""


def _receiver(url: str) -> str:
    """The host and port a webhook goes to (the unit that sends are spread over)."""
    try:
        parts = urlsplit(url)
        return f"{(parts.hostname or '').lower()}:{parts.port or parts.scheme}"
    except ValueError:
        return url


class ModerationWorker:
    """Background threads that work queued items and deliver due webhooks."""

    def __init__(
        self,
        rt: Runtime,
        *,
        threads: int = 1,
        poll_seconds: float = 0.5,
        webhook_backoff_seconds: float = 2.0,
        item_retry_seconds: float = ITEM_RETRY_SECONDS,
        policy_retry_seconds: float = POLICY_RETRY_SECONDS,
    ) -> None:
        self.rt = rt
        self.item_retry_seconds = item_retry_seconds
        self.policy_retry_seconds = policy_retry_seconds
        self.threads = threads
        self.poll_seconds = poll_seconds
        self.webhook_backoff_seconds = webhook_backoff_seconds
        self.name = f"pid{os.getpid()}-{uuid4().hex[:6]}"
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sending_to: set[str] = set()  # receivers a webhook is on its way to now
        self._sending_lock = threading.Lock()

    # lifecycle
    def start(self) -> None:
        """``threads`` threads check items; ``WEBHOOK_THREADS`` more deliver webhooks, so a slow
        receiver delays no one's checks, and one customer's slow receiver not everyone's
        webhooks."""
        self._stop.clear()
        loops = [(f"moderation-worker-{i}", self.process_item) for i in range(self.threads)]
        loops += [(f"moderation-webhooks-{i}", self.deliver_webhook)
                  for i in range(WEBHOOK_THREADS)]
        for name, step in loops:
            t = threading.Thread(target=self._loop, args=(step,), name=name, daemon=True)
            t.start()
            self._threads.append(t)
        _live_workers.add(self)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        _live_workers.discard(self)

    def wake(self) -> None:
        self._wake.set()

    def _loop(self, step: Callable[[], bool]) -> None:
        while not self._stop.is_set():
            try:
                busy = step()
            except psycopg.OperationalError as exc:  # the database away: a line, not a traceback
                if self._stop.is_set():
                    return
                log.warning("moderation worker: the database is unavailable: %s", exc)
                busy = False
                self._stop.wait(self.poll_seconds * 4)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("moderation worker step failed")
                busy = False
                self._stop.wait(self.poll_seconds * 4)
            if not busy:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        """One unit of work: an item, else a due webhook. False when there was nothing to do."""
        return self.process_item() or self.deliver_webhook()

    # items
    def _mark_running(self, job_id: UUID) -> None:
        with self.rt.pool.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE moderation_jobs SET status = 'running', started_at = clock_timestamp()"
                " WHERE id = %s AND status = 'queued'",
                (job_id,),
            )

    def process_item(self) -> bool:
        rt = self.rt
        with rt.pool.connection() as conn, conn.transaction():
            item = conn.execute(_CLAIM_ITEM).fetchone()
            if item is None:
                return False
            job_id, position = item["job_id"], item["position"]
            self._mark_running(job_id)
            where = (job_id, position)
            try:
                policy = POLICIES.for_key(rt.settings, item["key_prefix"], item["key_name"])
            except PolicyError as exc:
                log.error("moderation policy unusable, job %s item %s waits: %s", *where, exc)
                conn.execute(
                    "UPDATE moderation_job_items SET error = %s,"
                    " retry_at = clock_timestamp() + make_interval(secs => %s)"
                    " WHERE job_id = %s AND position = %s",
                    (
                        "moderation is unavailable, retried: "
                        + POLICIES.public_reason(rt.settings, exc),
                        self.policy_retry_seconds,
                        *where,
                    ),
                )
                return True
            try:
                with conn.transaction():  # a savepoint: a failed check leaves nothing behind
                    outcome = run_check(
                        rt,
                        rt.blobs.get(item["sha256"]),
                        policy,
                        actor=item["actor"],
                        api_key_id=item["api_key_id"],
                        user=item["platform_user"],
                        context=item["context"],
                        job_id=job_id,
                        conn=conn,
                    )
                    conn.execute(
                        "UPDATE moderation_job_items SET status = 'checked', check_id = %s,"
                        " attempts = attempts + 1, error = NULL, finished_at = clock_timestamp()"
                        " WHERE job_id = %s AND position = %s",
                        (outcome.report["id"], *where),
                    )
            except ImageRejected as exc:
                conn.execute(
                    "UPDATE moderation_job_items SET status = 'rejected', error = %s,"
                    " error_status = %s, attempts = attempts + 1, finished_at = clock_timestamp()"
                    " WHERE job_id = %s AND position = %s",
                    (str(exc), rejection_status(exc), *where),
                )
            except Exception as exc:
                log.exception("moderation of job %s item %s failed", job_id, position)
                if item["attempts"] + 1 < MAX_ITEM_ATTEMPTS:
                    conn.execute(
                        "UPDATE moderation_job_items SET attempts = attempts + 1, error = %s,"
                        " retry_at = clock_timestamp() + make_interval(secs => %s)"
                        " WHERE job_id = %s AND position = %s",
                        (
                            _internal(exc),
                            self.item_retry_seconds * 4 ** item["attempts"],
                            *where,
                        ),
                    )
                    return True
                conn.execute(
                    "UPDATE moderation_job_items SET status = 'failed', error = %s,"
                    " error_status = 500, attempts = attempts + 1, finished_at = clock_timestamp()"
                    " WHERE job_id = %s AND position = %s",
                    (_internal(exc), *where),
                )
            conn.execute(_ADVANCE_JOB, {"id": job_id})
        return True

    # webhooks
    def deliver_webhook(self) -> bool:
        """One due webhook: claimed for a while in one short transaction, posted outside any
        (a slow receiver holds no lock and no connection, so a redelivery request or another
        worker never waits on it), its outcome recorded in another. False when none was due,
        or each due one goes to a receiver this process is sending to already."""
        with self.rt.pool.connection() as conn, conn.transaction():
            job = self._claim_for_a_free_receiver(conn.execute(_CLAIM_WEBHOOK).fetchall())
            if job is None:
                return False
            try:
                lease = self._lease(conn, job)
            except BaseException:
                self._release(job)
                raise
        try:
            if lease is not None:
                self._post_and_record(job, *lease)
        finally:
            self._release(job)
        return True

    def _claim_for_a_free_receiver(self, due: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The first due job whose receiver this process is not sending to already."""
        with self._sending_lock:
            for job in due:
                receiver = _receiver(job["webhook_url"])
                if receiver not in self._sending_to:
                    self._sending_to.add(receiver)
                    return job
        return None

    def _release(self, job: dict[str, Any]) -> None:
        with self._sending_lock:
            self._sending_to.discard(_receiver(job["webhook_url"]))

    def _lease(
        self, conn: psycopg.Connection, job: dict[str, Any]
    ) -> tuple[bytes, int, datetime] | None:
        """In the claiming transaction: the body, the attempt's number and its time, with the
        job held for the attempt; None when its attempts are used up (it is failed here)."""
        if job["webhook_attempts"] >= webhooks.MAX_ATTEMPTS:
            # The last attempt's process died during it: no more attempts.
            conn.execute(
                "UPDATE moderation_jobs SET webhook_state = 'failed', webhook_next_at = NULL,"
                " webhook_last_error = %s WHERE id = %s",
                (f"gave up after {job['webhook_attempts']} attempts", job["id"]),
            )
            return None
        view = get_job(conn, job["id"], None)
        assert view is not None
        view.pop("webhook", None)
        sent_at = datetime.now(UTC)
        body = json.dumps(
            {"event": WEBHOOK_EVENT, "sent_at": sent_at.isoformat(), "job": view},
            separators=(",", ":"),
        ).encode()
        attempts = job["webhook_attempts"] + 1
        # Held for this attempt: if this process dies mid-call, another tries after this.
        conn.execute(
            "UPDATE moderation_jobs SET webhook_attempts = %s, webhook_next_at = %s"
            " WHERE id = %s",
            (attempts, sent_at + timedelta(seconds=WEBHOOK_LEASE_SECONDS), job["id"]),
        )
        return body, attempts, sent_at

    def _post_and_record(
        self, job: dict[str, Any], body: bytes, attempts: int, sent_at: datetime
    ) -> None:
        rt = self.rt
        allow_private = allow_private_webhooks(rt.settings)
        try:
            url = webhooks.check_url(job["webhook_url"], allow_private=allow_private)
            result = webhooks.post_once(
                url,
                body,
                job["webhook_secret"],
                event=WEBHOOK_EVENT,
                delivery=f"{job['id']}:{attempts}:{sent_at.strftime('%Y%m%dT%H%M%S%fZ')}",
                allow_private=allow_private,
            )
        except webhooks.WebhookUrlError as exc:
            result = webhooks.Attempt(False, None, str(exc), False)
        except Exception as exc:  # whatever it was, it is this attempt's failure, not a loop
            log.warning("webhook of moderation job %s failed: %r", job["id"], exc)
            result = webhooks.Attempt(False, None, f"{type(exc).__name__}: {exc}", False)
        if result.delivered:
            state, next_at = "delivered", None
        elif result.retry and attempts < webhooks.MAX_ATTEMPTS:
            delay = webhooks.backoff_seconds(attempts, self.webhook_backoff_seconds)
            state, next_at = "pending", sent_at + timedelta(seconds=delay)
        else:
            state, next_at = "failed", None
        with rt.pool.connection() as conn, conn.transaction():
            # Unless the webhook was asked for again meanwhile (its attempts start over).
            conn.execute(
                "UPDATE moderation_jobs SET webhook_state = %s, webhook_next_at = %s,"
                " webhook_last_error = %s,"
                " webhook_delivered_at = CASE WHEN %s THEN now() END"
                " WHERE id = %s AND webhook_attempts = %s AND webhook_state = 'pending'",
                (state, next_at, result.error, result.delivered, job["id"], attempts),
            )


def _internal(exc: Exception) -> str:
    """An item's error as its platform sees it: the kind of failure, not the server's paths or
    internals (the log has the whole exception)."""
    return f"internal error ({type(exc).__name__}); the service log has the details"


def notify_workers() -> None:
    """Wake this process's workers (others find new work by polling)."""
    for worker in list(_live_workers):
        worker.wake()


def start_worker(rt: Runtime) -> ModerationWorker | None:
    """Start the batch worker this process runs (``moderation_workers`` threads, default 1;
    0 runs none)."""
    threads = int(getattr(rt.settings, "moderation_workers", 1))
    if threads <= 0:
        return None
    worker = ModerationWorker(rt, threads=threads)
    worker.start()
    return worker
