"""One moderation check: decode once, compute every signal once, look at provenance (C2PA,
watermark cross-checked with fingerprints, labels), the artwork registry and the training
sources, apply the policy, record the outcome. Blocking: call it from a worker thread."""

from __future__ import annotations

import hashlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
from psycopg.types.json import Jsonb

from provenance.c2pa_io import read_manifest
from provenance.labels import Labels, read_labels
from provenance.manifest_report import ManifestReport
from provenance.watermark import WatermarkReading
from service.genservice.service import source_store
from service.genservice.sources import SourceRecord
from service.moderation.policy import (
    Decision,
    Findings,
    Policy,
    RegistryHit,
    SourceHit,
    UpheldClaim,
    decide,
)
from service.moderation.reviews import reviews_of
from service.registry.claims import upheld_against
from service.registry.matching import RegistryMatches, match_registry
from service.stamping.own_manifest import own_manifest_output
from service.stamping.resolve import (
    Resolution,
    read_watermark,
    resolve_with_signals,
)
from similarity import ImageSignals, Match, compute_signals, decode_for_matching, later_frames
from similarity.matcher import stronger
from similarity.pdq import hamming
from similarity.threads import Deferred

if TYPE_CHECKING:
    from service.runtime import Runtime

AI_SOURCE_TYPES = ("trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia")
AIGC_GENERATED = "1"
MATCH_LIMIT = 10
# An animated or multi-page image is matched against the registry and the training sources on
# this many of its later frames too (evenly spaced), so a copy cannot hide behind a harmless
# first frame; frames whose PDQ is within SAME_FRAME_BITS of one already matched are skipped.
LATER_FRAMES = 7
SAME_FRAME_BITS = 16
# Watermark detection runs beside fingerprinting; bounded like the request thread pool.
_HELPERS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="moderation")
log = logging.getLogger(__name__)


@dataclass
class Inspection:
    """Everything seen in one image, before the policy is applied."""

    sha256: str
    media_type: str
    width: int
    height: int
    manifest: ManifestReport
    manifest_generation_id: str | None
    labels: Labels | None
    labels_error: str | None
    watermark_error: str | None
    resolution: Resolution
    registry: RegistryMatches
    sources: list[tuple[Match, SourceRecord | None]] | None
    source_index: dict[str, int] | None
    user: str | None
    timings: dict[str, float] = field(default_factory=dict)
    frames: int = 1
    frames_matched: tuple[int, ...] = (0,)
    upheld_claims: tuple[UpheldClaim, ...] = ()  # against the outputs the pixels resolve to


# ---- signals ------------------------------------------------------------------------------


def _is_ai_source_type(value: str | None) -> bool:
    return bool(value) and str(value).rstrip("/").rsplit("/", 1)[-1] in AI_SOURCE_TYPES


def _match_sources(
    rt: Runtime, signals: ImageSignals
) -> tuple[list[tuple[Match, SourceRecord | None]] | None, dict[str, int] | None]:
    """Matches in the training-source bank, each with its source's record (dataset, licence)."""
    bank = rt.banks.get("source")
    if bank is None:
        return None, None
    matches = bank.match(signals, limit=MATCH_LIMIT)
    status = bank.status()
    records: dict[int, SourceRecord] = {}
    if matches:
        with rt.pool.connection() as conn:
            records = source_store(rt).by_fingerprints(conn, [m.id for m in matches])
    found = [(m, records.get(m.id)) for m in matches]
    return found, {"size": status.size, "built_to": status.change_seq}


def inspect_image(rt: Runtime, data: bytes, *, user: str | None = None) -> Inspection:
    """Decode once (as every matching route does: ``similarity.decode_for_matching``), then every
    signal; raises ``ImageRejected`` for bad input."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    decoded = decode_for_matching(data, rt.decode_limits)
    t1 = time.perf_counter()
    timings["decode"] = t1 - t0

    def watermark() -> tuple[WatermarkReading, str | None, float]:
        s = time.perf_counter()
        reading, error = read_watermark(rt, decoded)
        return reading, error, time.perf_counter() - s

    pending = _HELPERS.submit(watermark)
    try:
        s = time.perf_counter()
        signals = compute_signals(decoded)
        timings["signals"] = time.perf_counter() - s
        s = time.perf_counter()
        manifest = read_manifest(data, trust_anchors_pem=rt.signing.trust_anchors_pem)
        manifest_generation = own_manifest_output(rt, data, manifest)
        timings["c2pa"] = time.perf_counter() - s
        s = time.perf_counter()
        labels: Labels | None = None
        labels_error = None
        try:
            labels = read_labels(data)
        except Exception as exc:  # unsupported container or damaged metadata: reported
            labels_error = f"{type(exc).__name__}: {exc}"
        timings["labels"] = time.perf_counter() - s
        # Our outputs are searched beside the registry, on a query helper when one is free (in
        # the caller otherwise, when their turn comes): ``outputs`` times the wait for them.
        outputs_bank = rt.banks["output"]
        outputs_job = Deferred(lambda: outputs_bank.match(signals, limit=MATCH_LIMIT))
        s = time.perf_counter()
        registry = match_registry(rt, signals, limit=MATCH_LIMIT, grantee=user)
        timings["registry"] = time.perf_counter() - s
        s = time.perf_counter()
        sources, source_index = _match_sources(rt, signals)
        timings["training_sources"] = time.perf_counter() - s
        s = time.perf_counter()
        output_matches = outputs_job.result()
        timings["outputs"] = time.perf_counter() - s
        frames_matched: tuple[int, ...] = (0,)
        if decoded.frames > 1:
            s = time.perf_counter()
            registry, sources, frames_matched = _match_later_frames(
                rt, data, decoded.frames, user, signals, registry, sources
            )
            timings["later_frames"] = time.perf_counter() - s
    finally:
        s = time.perf_counter()
        reading, wm_error, wm_time = pending.result()
        timings["watermark_wait"] = time.perf_counter() - s
    timings["watermark"] = wm_time
    s = time.perf_counter()
    resolution = resolve_with_signals(rt, reading, signals, fp_matches=output_matches)
    upheld = _upheld_claims(rt, resolution)
    timings["outputs"] += time.perf_counter() - s
    return Inspection(
        sha256=hashlib.sha256(data).hexdigest(),
        media_type=f"image/{decoded.format.lower()}",
        width=decoded.width,
        height=decoded.height,
        manifest=manifest,
        manifest_generation_id=manifest_generation,
        labels=labels,
        labels_error=labels_error,
        watermark_error=wm_error,
        resolution=resolution,
        registry=registry,
        sources=sources,
        source_index=source_index,
        user=user,
        timings=timings,
        frames=decoded.frames,
        frames_matched=frames_matched,
        upheld_claims=upheld,
    )


def _upheld_claims(rt: Runtime, res: Resolution) -> tuple[UpheldClaim, ...]:
    """Upheld claims against any output the pixels may resolve to (one query, and only when
    they resolve to one of ours)."""
    ids = {o.record.id for o in res.outputs}
    if res.watermark_record is not None and res.watermark_consistent:
        ids.add(res.watermark_record.id)
    if not ids:
        return ()
    with rt.pool.connection() as conn:
        rows = upheld_against(conn, sorted(ids))
    return tuple(
        UpheldClaim(
            str(r["id"]),
            str(r["output_id"]),
            str(r["artist_id"]),
            str(r["artwork_id"]) if r["artwork_id"] else None,
            r["decided_at"].isoformat(),
        )
        for r in rows
    )


SourceMatches = list[tuple[Match, SourceRecord | None]]


def _in_frame(m: Match, index: int) -> Match:
    return Match(m.id, m.score, m.decision, {**m.evidence, "frame": index})


def _match_later_frames(
    rt: Runtime,
    data: bytes,
    frames_in_file: int,
    user: str | None,
    first: ImageSignals,
    registry: RegistryMatches,
    sources: SourceMatches | None,
) -> tuple[RegistryMatches, SourceMatches | None, tuple[int, ...]]:
    """The registry and training-source matches of the first frame merged with those of up to
    ``LATER_FRAMES`` later ones (a work's best match kept, its frame in the evidence), and the
    frames matched."""
    _, frames = later_frames(
        data, rt.decode_limits, most=LATER_FRAMES, grey=True, total=frames_in_file
    )
    works = {m.artwork.id: m for m in registry.matches}
    found = {m.id: (m, rec) for m, rec in sources} if sources is not None else None
    seen, matched = [first.pdq], [0]
    for index, image in frames:
        signals = compute_signals(image)
        if any(hamming(signals.pdq, p) <= SAME_FRAME_BITS for p in seen):
            continue
        seen.append(signals.pdq)
        matched.append(index)
        for m in match_registry(rt, signals, limit=MATCH_LIMIT, grantee=user).matches:
            held = works.get(m.artwork.id)
            if held is None or stronger(m.match, held.match):
                works[m.artwork.id] = replace(m, match=_in_frame(m.match, index))
        if found is not None:
            for sm, rec in _match_sources(rt, signals)[0] or []:
                if sm.id not in found or stronger(sm, found[sm.id][0]):
                    found[sm.id] = (_in_frame(sm, index), rec)
    ranked = sorted(works.values(), key=lambda w: (w.match.decision != "copy", -w.match.score))
    merged = RegistryMatches(ranked[:MATCH_LIMIT], registry.index_size, registry.built_to)
    merged_sources = (
        sorted(found.values(), key=lambda f: (f[0].decision != "copy", -f[0].score))[:MATCH_LIMIT]
        if found is not None
        else None
    )
    return merged, merged_sources, tuple(matched)


# ---- findings and report ------------------------------------------------------------------


def _declared_by(ins: Inspection) -> list[str]:
    out = []
    m = ins.manifest
    if m.intact and _is_ai_source_type(m.digital_source_type):
        out.append(f"C2PA manifest ({m.state}): {m.digital_source_type}")
    lab = ins.labels
    if lab is not None:
        if _is_ai_source_type(lab.digital_source_type):
            out.append(f"IPTC DigitalSourceType label: {lab.digital_source_type}")
        if lab.aigc and lab.aigc.get("Label") == AIGC_GENERATED:
            out.append("AIGC label (GB 45438-2025): Label 1")
        settings = lab.generation_parameters.settings if lab.generation_parameters else {}
        if "Steps" in settings and ("Sampler" in settings or "Seed" in settings):
            out.append("AUTOMATIC1111 parameters label (Steps, Sampler, Seed)")
    return out


def findings_of(ins: Inspection, policy: Policy) -> Findings:
    res = ins.resolution
    floor = policy.thresholds["output_min_score"]
    wm_gid = None
    if res.watermark_record is not None and res.watermark_consistent:
        wm_gid = str(res.watermark_record.id)
    fp = res.best  # a fingerprint copy of one of our outputs (watermark-confirmed first)
    output_match = None
    ties: tuple[str, ...] = ()
    if fp is not None and fp.score >= floor:
        output_match = (str(fp.record.id), fp.score, fp.method)
        ties = tuple(str(o.record.id) for o in res.equally)
    declared = _declared_by(ins)
    return Findings(
        manifest_state=ins.manifest.state,
        manifest_error=ins.manifest.error
        or (", ".join(ins.manifest.failure_codes) if ins.manifest.failure_codes else None),
        manifest_declares_ai=any(d.startswith("C2PA") for d in declared),
        labels_declare_ai=any(not d.startswith("C2PA") for d in declared),
        declared_by=tuple(declared),
        watermark_generation_id=wm_gid,
        forged_watermark_names=str(res.watermark_record.id) if res.forged_watermark else None,
        output_match=output_match,
        output_ties=ties,
        registry=tuple(
            RegistryHit(
                artwork_id=str(m.artwork.id),
                artist_id=str(m.artwork.artist_id),
                title=m.artwork.title,
                decision=m.match.decision,
                score=m.match.score,
                licensed=m.license is not None,
                reuse=m.artwork.effective_preferences.get("img2img", "deny"),
                evidence=m.match.evidence,
            )
            for m in ins.registry.matches
        ),
        manifest_generation_id=ins.manifest_generation_id,
        sources=tuple(
            SourceHit(
                m.id,
                str(rec.id) if rec else None,
                m.decision,
                m.score,
                rec.dataset if rec else None,
                rec.licence if rec else None,
            )
            for m, rec in (ins.sources or [])
        ),
        user=ins.user,
        upheld_claims=ins.upheld_claims,
    )


def _agent_name(agent: Any) -> str | None:
    if isinstance(agent, dict):
        name, version = agent.get("name"), agent.get("version")
        return f"{name} {version}".strip() if name else None
    return str(agent) if agent else None


def _c2pa_section(ins: Inspection) -> dict[str, Any]:
    m = ins.manifest
    created = next((a for a in m.actions if a.get("action") == "c2pa.created"), None)
    generator = _agent_name(created.get("softwareAgent")) if created else None
    if generator is None and m.claim_generator:
        generator = _agent_name(m.claim_generator[0])
    return {
        "state": m.state,
        "manifest_id": m.manifest_id,
        "generation_id": ins.manifest_generation_id,
        "signer": None
        if m.signer is None
        else {
            "issuer": m.signer.issuer,
            "common_name": m.signer.common_name,
            "alg": m.signer.alg,
            "time": m.signer.time,
        },
        "generator": generator,
        "digital_source_type": m.digital_source_type,
        "actions": [
            {
                "action": a.get("action"),
                "digital_source_type": a.get("digitalSourceType"),
                "software_agent": _agent_name(a.get("softwareAgent")),
            }
            for a in m.actions
        ],
        "ingredients": [
            {"title": i.title, "format": i.format, "relationship": i.relationship}
            for i in m.ingredients
        ],
        "training_mining": m.training_mining,
        "failure_codes": list(m.failure_codes),
        "error": m.error,
    }


def _watermark_section(rt: Runtime, ins: Inspection) -> dict[str, Any]:
    res = ins.resolution
    r = res.watermark
    named = str(res.watermark_record.id) if res.watermark_record is not None else None
    return {
        "alg": rt.watermarker.alg,
        "checked": ins.watermark_error is None,
        "present": r.present,
        "value": f"{r.payload:012x}" if r.present and r.payload is not None else None,
        "confidence": round(float(r.confidence), 4),
        "generation_id": named if res.watermark_consistent else None,
        "claimed_generation_id": named,
        "consistent_with_pixels": res.watermark_consistent,
        "forged": res.forged_watermark,
        "note": ins.watermark_error,
    }


def _labels_section(ins: Inspection) -> dict[str, Any]:
    lab = ins.labels
    if lab is None:
        return {"readable": False, "error": ins.labels_error}
    params = lab.parameters
    return {
        "readable": True,
        "aigc": lab.aigc,
        "digital_source_type": lab.digital_source_type,
        "data_mining": lab.data_mining,
        "training_mining": lab.training_mining,
        "consent": lab.consent(),
        "parameters": params[:2000] if params else None,
        "c2pa_container": lab.c2pa_container,
        "errors": list(lab.errors),
    }


def _ai_section(f: Findings) -> dict[str, Any]:
    declared = bool(f.declared_by)
    watermarked = f.watermark_generation_id is not None
    matched = f.output_match is not None
    status = (
        "declared"
        if declared
        else "watermarked"
        if watermarked
        else "matched"
        if matched
        else "unknown"
    )
    return {
        "status": status,
        "declared": declared,
        "declared_by": list(f.declared_by),
        "watermarked": watermarked,
        "matched": matched,
        "generation_id": f.generation_id,
        "generation_ids": (
            list(f.matched_generation_ids)
            if f.generation_id is None
            else [f.generation_id]
        ),
    }


def build_report(
    rt: Runtime,
    ins: Inspection,
    findings: Findings,
    decision: Decision,
    policy: Policy,
    *,
    check_id: UUID,
    created_at: datetime,
    context: str | None,
    job_id: UUID | None = None,
) -> dict[str, Any]:
    """The check as JSON: the response body, stored as is."""
    from service.api.routes.matches import to_public

    res = ins.resolution
    registry = to_public(ins.registry, with_licence=ins.user is not None)
    sources: dict[str, Any]
    if ins.sources is None:
        sources = {"available": False}
    else:
        sources = {
            "available": True,
            "index": ins.source_index,
            "matches": [
                {
                    "fingerprint_id": m.id,
                    "source_id": str(rec.id) if rec else None,
                    "dataset": rec.dataset if rec else None,
                    "licence": rec.licence if rec else None,
                    "original_filename": rec.original_filename if rec else None,
                    "sha256": rec.sha256 if rec else None,
                    "decision": m.decision,
                    "score": round(m.score, 4),
                    "evidence": m.evidence,
                }
                for m, rec in ins.sources
            ],
        }
    return {
        "id": str(check_id),
        "created_at": created_at.isoformat(),
        "job_id": str(job_id) if job_id else None,
        "sha256": ins.sha256,
        "media_type": ins.media_type,
        "width": ins.width,
        "height": ins.height,
        "user": ins.user,
        "context": context,
        "verdict": decision.verdict,
        "reasons": [r.to_dict() for r in decision.reasons],
        "policy": {
            "name": policy.name,
            "version": policy.version,
            "key_override": policy.key_override,
        },
        "provenance": {
            "c2pa": _c2pa_section(ins),
            "watermark": _watermark_section(rt, ins),
            "outputs": [
                {
                    "generation_id": str(o.record.id),
                    "manifest_id": o.record.manifest_id,
                    "method": o.method,
                    "score": round(o.score, 4),
                    "kind": o.record.kind,
                    "origin": o.record.origin,
                    "created_at": o.record.created_at.isoformat(),
                    "sha256": o.record.sha256,
                    "decision": o.match.decision if o.match else None,
                    "evidence": o.match.evidence if o.match else None,
                }
                for o in res.outputs
            ],
            "ai_generated": _ai_section(findings),
        },
        "registry": {
            "matches": [m.model_dump(mode="json") for m in registry],
            "index": {"size": ins.registry.index_size, "built_to": ins.registry.built_to},
        },
        "training_sources": sources,
        "labels": _labels_section(ins),
        "frames": {"total": ins.frames, "matched": list(ins.frames_matched)},
        "timings": {k: round(v * 1e3, 2) for k, v in ins.timings.items()},
        "upload_kept": decision.verdict in rt.settings.moderation_keep_uploads,
    }


# ---- recording ----------------------------------------------------------------------------


def record_check(
    conn: psycopg.Connection,
    rt: Runtime,
    *,
    actor: str,
    api_key_id: int | None,
    report: dict[str, Any],
    started: float | None = None,
) -> None:
    """Append the check (and each registry copy it found) to the audit log and store it, inside
    the caller's transaction. With ``started`` (the check's ``perf_counter`` start), the report's
    timings gain ``record`` (the audit entries) and ``total`` before it is stored, so the stored
    report is the one answered."""
    s = time.perf_counter()
    check_id = report["id"]
    prov = report["provenance"]
    rt.audit.append(
        conn,
        "moderation.checked",
        actor,
        f"moderation:{check_id}",
        {
            "sha256": report["sha256"],
            "verdict": report["verdict"],
            "reasons": [
                {k: r[k] for k in ("signal", "rule", "action", "evidence")}
                for r in report["reasons"]
            ],
            "user": report["user"],
            "context": report["context"],
            "job_id": report["job_id"],
            "policy": report["policy"],
            "c2pa": {k: prov["c2pa"][k] for k in ("state", "manifest_id", "generation_id")},
            "watermark": {
                k: prov["watermark"][k]
                for k in ("present", "value", "generation_id", "claimed_generation_id", "forged")
            },
            "ai_generated": prov["ai_generated"]["status"],
            "upload_kept": report["upload_kept"],
            "indexes": {
                "artwork": report["registry"]["index"],
                "source": report["training_sources"].get("index"),
            },
        },
    )
    for m in report["registry"]["matches"]:
        if m["decision"] != "copy":
            continue
        rt.audit.append(
            conn,
            "moderation.matched",
            actor,
            f"artwork:{m['artwork_id']}",
            {
                "check_id": check_id,
                "score": m["score"],
                "licensed": m["licensed"],
                "verdict": report["verdict"],
                "user": report["user"],
            },
        )
    if started is not None:
        now = time.perf_counter()
        report["timings"]["record"] = round((now - s) * 1e3, 2)
        report["timings"]["total"] = round((now - started) * 1e3, 2)
    conn.execute(
        "INSERT INTO moderation_checks (id, api_key_id, actor, platform_user, context, sha256,"
        " verdict, reasons, result, policy_name, policy_version, job_id, created_at,"
        " upload_kept) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            check_id,
            api_key_id,
            actor,
            report["user"],
            report["context"],
            report["sha256"],
            report["verdict"],
            Jsonb(report["reasons"]),
            Jsonb(report),
            report["policy"]["name"],
            report["policy"]["version"],
            report["job_id"],
            report["created_at"],
            report["upload_kept"],
        ),
    )


@dataclass(frozen=True)
class CheckOutcome:
    report: dict[str, Any]
    decision: Decision
    inspection: Inspection


def run_check(
    rt: Runtime,
    data: bytes,
    policy: Policy,
    *,
    actor: str,
    api_key_id: int | None,
    user: str | None = None,
    context: str | None = None,
    job_id: UUID | None = None,
    conn: psycopg.Connection | None = None,
) -> CheckOutcome:
    """Inspect, decide, record. With ``conn``, the record joins the caller's transaction."""
    started = time.perf_counter()
    ins = inspect_image(rt, data, user=user)
    s = time.perf_counter()
    findings = findings_of(ins, policy)
    decision = decide(policy, findings)
    ins.timings["decide"] = time.perf_counter() - s
    report = build_report(
        rt,
        ins,
        findings,
        decision,
        policy,
        check_id=uuid4(),
        created_at=datetime.now(UTC),
        context=context,
        job_id=job_id,
    )
    if report["upload_kept"]:  # stored before the record that names it commits
        s = time.perf_counter()
        try:
            rt.blobs.put(data, ins.sha256)
        except OSError as exc:  # a full disk costs the picture, not the check
            log.warning("the upload of moderation check %s is not kept: %s", report["id"], exc)
            report["upload_kept"] = False
        report["timings"]["keep_upload"] = round((time.perf_counter() - s) * 1e3, 2)
    if conn is not None:
        record_check(conn, rt, actor=actor, api_key_id=api_key_id, report=report, started=started)
    else:
        with rt.pool.connection() as own, own.transaction():
            record_check(
                own, rt, actor=actor, api_key_id=api_key_id, report=report, started=started
            )
    return CheckOutcome(report, decision, ins)


def get_check(
    conn: psycopg.Connection, check_id: UUID, api_key_id: int | None
) -> dict[str, Any] | None:
    """A stored check with the decisions people made on it since; with ``api_key_id``, only one
    made with that key."""
    row = conn.execute(
        "SELECT result, api_key_id FROM moderation_checks WHERE id = %s", (check_id,)
    ).fetchone()
    if row is None or (api_key_id is not None and row["api_key_id"] != api_key_id):
        return None
    return {**row["result"], "reviews": reviews_of(conn, [check_id]).get(check_id, [])}
