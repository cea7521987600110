"""The stamp step shared by /v1/stamps and generation: watermark, labels, signed manifest, then
the record (manifest, watermark payload, fingerprints) in Postgres and the bytes in the blob store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from uuid import UUID, uuid4

import psycopg
from PIL import Image

from provenance.c2pa_io import SignOptions, check_signed
from provenance.containers import normalize_mime
from provenance.manifest import GenerationFacts, generation_assertion_data
from provenance.stamp import (
    LabelOptions,
    StampedImage,
    emitted_pixels,
    sign_encoded,
    watermark_and_encode,
)
from provenance.watermark import WatermarkReading
from service.cpus import usable_cpus
from service.stamping.store import OutputRecord
from similarity import SIGNALS_VERSION, ImageSignals, compute_signals

if TYPE_CHECKING:
    from service.runtime import Runtime

log = logging.getLogger(__name__)
_MAX_PAYLOAD_TRIES = 8
PAYLOAD_CONSTRAINT = "outputs_watermark_payload_key"  # UNIQUE in migration 0002
# Watermark read-back, fingerprints, blob write and manifest validation of each emitted image,
# beside its signing and insert: up to four jobs a stamp, so at least four threads, and one per
# usable CPU where there are more (stamps of several requests at once).
_CHECKS = ThreadPoolExecutor(max_workers=max(4, usable_cpus()), thread_name_prefix="stamp-check")
# The signed file is validated beside the insert (check_signed), not inside the signing.
_SIGN_OPTIONS = SignOptions(verify_after_sign=False)


@dataclass(frozen=True)
class StampResult:
    record: OutputRecord
    stamped: StampedImage
    watermark_verified: bool
    signals: ImageSignals
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part


class OutputTooLarge(ValueError):
    """The signed file would be larger than the service takes as an upload: nobody could send
    it back to be checked."""

    def __init__(self, size: int, limit: int, output_format: str) -> None:
        super().__init__(
            f"the stamped {output_format.upper()} would be {size} bytes, more than the"
            f" {limit} bytes an upload may be (CHOPMARK_MAX_UPLOAD_BYTES), so it could not be"
            " checked afterwards; send a smaller image or ask for format jpeg or webp"
        )
        self.size, self.limit = size, limit


def facts_json(facts: GenerationFacts) -> dict:
    """What the record keeps of the facts: the manifest's own assertion (private prompts hashed)."""
    data = generation_assertion_data(facts)
    data["training_mining"] = dict(facts.training_mining)  # what the manifest states, signed
    if facts.parent is not None:
        data["parent"] = {
            "sha256": hashlib.sha256(facts.parent.data).hexdigest(),
            "mime": facts.parent.mime,
        }
    return data


def stamp_and_record(
    rt: Runtime,
    actor: str,
    image: Image.Image,
    facts: GenerationFacts,
    *,
    origin: str,
    output_id: UUID | None = None,
    output_format: str | None = None,
    audit_extra: dict | None = None,
    fingerprints: Callable[[], ImageSignals] | None = None,
    within: Callable[[psycopg.Connection, StampResult], None] | None = None,
    before_storing: Callable[[], object] | None = None,
    max_bytes: int | None = None,
) -> StampResult:
    """Blocking: run it off the event loop. ``fingerprints``: waits for the query-side signals
    of ``image`` when the caller computes them already (generation does, for its screen).
    ``within``: called after the output's insert, in its transaction (the caller's own rows
    commit with the output or not at all); ``before_storing`` is waited for before that
    transaction begins (see ``generation.pipeline.Stamper``). ``max_bytes``: a signed file
    larger than this raises ``OutputTooLarge`` before anything is stored."""
    settings = rt.settings
    watermarker = rt.watermarker
    output_id = output_id or uuid4()
    private = facts.prompt_private or settings.prompt_privacy
    facts = dataclasses.replace(facts, generation_id=str(output_id), prompt_private=private)
    lap = _Laps()
    # Fingerprints of the picture, taken from the pixels handed in while the watermark, labels
    # and signature go on: the watermark (PSNR >= 40 dB) and a JPEG/WebP encode at quality 95
    # move them far less than any edit the matcher absorbs. Query-side, so the screen reuses them.
    if fingerprints is None:
        fingerprints = _CHECKS.submit(_fingerprints, image).result
    # A random 48-bit payload is free but for one chance in many millions; the table's unique
    # constraint catches the rest, and the stamp is then made again with another.
    for _ in range(_MAX_PAYLOAD_TRIES):
        payload = secrets.randbits(watermarker.payload_bits) or 1
        try:
            return _stamp_with(
                rt, actor, image, facts, payload, fingerprints, lap,
                origin=origin, output_id=output_id, output_format=output_format,
                audit_extra=audit_extra, within=within, before_storing=before_storing,
                max_bytes=max_bytes,
            )
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name != PAYLOAD_CONSTRAINT:
                raise
            log.warning("watermark payload %x already taken; stamping again", payload)
    raise RuntimeError("could not find a free watermark payload")


def _stamp_with(
    rt: Runtime,
    actor: str,
    image: Image.Image,
    facts: GenerationFacts,
    payload: int,
    fingerprints: Callable[[], ImageSignals],
    lap: _Laps,
    *,
    origin: str,
    output_id: UUID,
    output_format: str | None,
    audit_extra: dict | None,
    within: Callable[[psycopg.Connection, StampResult], None] | None = None,
    before_storing: Callable[[], object] | None = None,
    max_bytes: int | None = None,
) -> StampResult:
    settings = rt.settings
    watermarker = rt.watermarker
    output_format = output_format or settings.output_format
    # Whether the watermark reads back from what is emitted, as any recipient decodes it: a
    # PNG's pixels are the marked ones, read beside their encoding and signing; a lossy file's
    # are decoded from it once encoded.
    read_back = getattr(watermarker, "read_back", watermarker.detect)
    lossless = normalize_mime(output_format) == "image/png"
    early_reading: list[Future[WatermarkReading]] = []

    def read_marked(marked: Image.Image) -> None:
        early_reading.append(_CHECKS.submit(read_back, marked))

    stamp = watermark_and_encode(
        image,
        facts,
        watermarker,
        payload,
        output_format=output_format,
        label_options=LabelOptions(a1111_parameters=settings.write_parameters),
        on_marked=read_marked if lossless else None,
    )
    lap("watermark_encode")
    if lossless:
        (reading_job,) = early_reading
    else:  # the decode of a lossy file goes with its read-back, beside the signing
        reading_job = _CHECKS.submit(lambda: read_back(emitted_pixels(stamp)))
    width, height = stamp.marked.size  # encoding keeps the size
    stamped = sign_encoded(stamp, rt.signing.signer, _SIGN_OPTIONS)
    lap("sign")
    if max_bytes is not None and len(stamped.data) > max_bytes:
        raise OutputTooLarge(len(stamped.data), max_bytes, output_format)
    # The bytes are written, and the signed file read back and validated, beside the record's
    # insert; the insert commits only once both are done (an error in any leaves no record, and
    # bytes written for it are removed again).
    fresh_blob = not rt.blobs.exists(stamped.sha256)
    blob_job = _CHECKS.submit(rt.blobs.put, stamped.data)
    manifest_job = _CHECKS.submit(check_signed, stamped.data, stamped.mime, stamped.manifest_id)
    committed = False
    try:
        reading = reading_job.result()
        signals = fingerprints()
        packed = signals.pack()  # computed already: this only collects the columns
        lap("checks_wait")
        verified = bool(reading.present and reading.payload == payload)
        if before_storing is not None:
            before_storing()
            lap("caller_wait")
        with rt.pool.connection() as conn:
            with conn.transaction():
                record = rt.outputs.insert(
                    conn,
                    actor,
                    output_id=output_id,
                    origin=origin,
                    kind=facts.kind,
                    platform_user=facts.platform_user,
                    facts=facts_json(facts),
                    manifest_id=stamped.manifest_id,
                    manifest_bytes=stamped.manifest_bytes,
                    watermark_alg=stamped.watermark_alg,
                    watermark_payload=payload,
                    watermark_value=stamped.watermark_value,
                    watermark_verified=verified,
                    sha256=stamped.sha256,
                    media_type=stamped.mime,
                    width=width,
                    height=height,
                    signals={**packed, "signals_version": SIGNALS_VERSION},
                    audit_extra=audit_extra,
                )
                lap("insert")
                blob_job.result()
                manifest_job.result()
                lap("write_wait")
                if within is not None:
                    within(conn, StampResult(record, stamped, verified, signals, dict(lap.parts)))
                    lap("caller_write")
            committed = True
    except BaseException:
        if fresh_blob and not committed:
            _discard_after(rt, blob_job, stamped.sha256)
        raise
    lap("commit")
    rt.banks["output"].catch_up()
    lap("index")
    return StampResult(record, stamped, verified, signals, lap.parts)


def _discard_after(rt: Runtime, blob_job: Future[str], sha256: str) -> None:
    """Remove the bytes a failed stamp wrote, once their write is over."""
    with contextlib.suppress(Exception):  # nothing was placed, or the error is the stamp's own
        blob_job.result()
    try:
        rt.blobs.discard(sha256)
    except OSError:
        log.exception("could not remove the blob %s of a failed stamp", sha256)


def _fingerprints(image: Image.Image) -> ImageSignals:
    """Query-side signals with their stored parts computed here, off the caller's path (ORB
    and dense views are otherwise computed on first use)."""
    signals = compute_signals(image)
    signals.pack()
    return signals


class _Laps:
    """Seconds spent in each named part, one after another."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] = now - self._last
        self._last = now
