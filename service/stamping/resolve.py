"""Tracing an image back to our records after its metadata is gone: the watermark names a record,
the fingerprints must agree. A watermark whose record does not match the pixels (one copied onto
another image) is reported, never trusted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from provenance.watermark import WatermarkReading
from service.stamping.store import OutputRecord
from similarity import DecodedImage, ImageSignals, Match, compute_signals

if TYPE_CHECKING:
    from service.runtime import Runtime

Method = Literal["watermark+fingerprint", "fingerprint"]


@dataclass(frozen=True)
class ResolvedOutput:
    record: OutputRecord
    method: Method
    score: float
    match: Match | None


@dataclass(frozen=True)
class Resolution:
    watermark: WatermarkReading
    watermark_record: OutputRecord | None
    watermark_consistent: bool | None
    outputs: list[ResolvedOutput] = field(default_factory=list)

    @property
    def forged_watermark(self) -> bool:
        """Our watermark is present and names a record, but the pixels are not that output."""
        return self.watermark_record is not None and self.watermark_consistent is False

    @property
    def best(self) -> ResolvedOutput | None:
        return self.outputs[0] if self.outputs else None

    @property
    def equally(self) -> list[ResolvedOutput]:
        """Other outputs the pixels match as well as ``best`` by fingerprints alone (the same
        picture made more than once): then ``best`` is not told apart from them."""
        best = self.best
        if best is None or best.method != "fingerprint":
            return []
        return [o for o in self.outputs[1:] if o.method == "fingerprint" and o.score >= best.score]


def resolve_with_signals(
    rt: Runtime,
    reading: WatermarkReading,
    signals: ImageSignals,
    *,
    limit: int = 10,
    fp_matches: list[Match] | None = None,
) -> Resolution:
    """``resolve_image`` on a watermark reading and signals already computed (and, if given,
    the output bank's matches): the watermark names a record, the fingerprints must agree, or
    it is reported as not ours."""
    if fp_matches is None:
        fp_matches = rt.banks["output"].match(signals, limit=limit)
    with rt.pool.connection() as conn:
        by_fp = rt.outputs.by_fingerprints(conn, [m.id for m in fp_matches])
        wm_record = None
        if reading.present and reading.payload is not None:
            wm_record = rt.outputs.by_payload(conn, rt.watermarker.alg, reading.payload)
    copies = {m.id: m for m in fp_matches if m.decision == "copy" and m.id in by_fp}
    consistent = None
    outputs: list[ResolvedOutput] = []
    if wm_record is not None:
        m = copies.pop(wm_record.fingerprint_id, None)
        if m is None:
            # A crop or a frame can keep the output out of the bank's candidates: its pixels are
            # checked against the output the watermark names. There local features agreeing on
            # one geometry (a `similar` match by them, 10 inliers) suffice: the watermark's check
            # word already names the output; what is asked is only whether these pixels come
            # from it, and a watermark pasted onto other pixels gets a handful at most.
            m = rt.banks["output"].verify(signals, wm_record.fingerprint_id)
        consistent = m is not None
        if m is not None:
            score = max(m.score, reading.confidence)
            outputs.append(ResolvedOutput(wm_record, "watermark+fingerprint", score, m))
    for fid, m in sorted(copies.items(), key=lambda kv: -kv[1].score):
        outputs.append(ResolvedOutput(by_fp[fid], "fingerprint", m.score, m))
    return Resolution(reading, wm_record, consistent, outputs[:limit])


def read_watermark(rt: Runtime, decoded: DecodedImage) -> tuple[WatermarkReading, str | None]:
    """Blocking: the watermark reading, and why none was attempted (an image too small to carry
    our watermark reads as absent, with that reason in its details)."""
    try:
        return rt.watermarker.detect(decoded.image), None
    except ValueError as exc:
        return WatermarkReading(False, None, 0.0, None, {"not_read": str(exc)}), str(exc)


def resolve_image(rt: Runtime, decoded: DecodedImage, *, limit: int = 10) -> Resolution:
    """Blocking: watermark detection, fingerprint matching over our outputs, cross-check."""
    reading, _ = read_watermark(rt, decoded)
    return resolve_with_signals(rt, reading, compute_signals(decoded), limit=limit)


def output_of_image(rt: Runtime, data: bytes) -> OutputRecord | None:
    """Blocking: the output of ours an image is (its watermark cross-checked by fingerprint, or
    its fingerprints alone: a copy stripped of its metadata, re-encoded or edited), the closest
    first; None when it is none of ours. Raises ``ImageRejected`` for bytes that are no usable
    image."""
    from similarity import decode_for_matching

    best = resolve_image(rt, decode_for_matching(data, rt.decode_limits), limit=1).best
    return best.record if best is not None else None
