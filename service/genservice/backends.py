"""The pipeline's registry and stamp protocols implemented over the runtime."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID

from PIL import Image

from generation.gate import ArtworkHit, RegistryAnswer
from generation.pipeline import StampOutcome
from provenance.manifest import GenerationFacts
from service.registry.matching import match_registry
from service.stamping.stamper import StampResult, stamp_and_record
from similarity import ImageSignals

if TYPE_CHECKING:
    from service.runtime import Runtime

LICENCE_SCOPE = "img2img"


class RuntimeArtworkRegistry:
    """``generation.gate.ArtworkRegistry``: the artwork bank, preferences and live licences."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def match(self, signals: ImageSignals, platform_user: str | None) -> RegistryAnswer:
        found = match_registry(self.rt, signals, grantee=platform_user, license_scope=LICENCE_SCOPE)
        hits = [
            ArtworkHit(
                artwork_id=str(m.artwork.id),
                artist_id=str(m.artwork.artist_id),
                title=m.artwork.title,
                decision=m.match.decision,
                score=round(float(m.match.score), 4),
                img2img=m.artwork.effective_preferences["img2img"],
                license_id=str(m.license.id) if m.license is not None else None,
                evidence=m.match.evidence,
            )
            for m in found.matches
        ]
        return RegistryAnswer(
            hits, {"bank": "artwork", "size": found.index_size, "built_to": found.built_to}
        )


class RuntimeStamper:
    """``generation.pipeline.Stamper``: the service's stamp step (watermark, labels, signed
    manifest, output record with fingerprints)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def stamp(
        self,
        image: Image.Image,
        facts: GenerationFacts,
        *,
        generation_id: UUID,
        actor: str,
        audit_extra: dict[str, Any],
        fingerprints: Callable[[], ImageSignals] | None = None,
        within: Callable[[Any, StampOutcome], None] | None = None,
        before_storing: Callable[[], object] | None = None,
    ) -> StampOutcome:
        result = stamp_and_record(
            self.rt,
            actor,
            image,
            facts,
            origin="generation",
            output_id=generation_id,
            audit_extra=audit_extra,
            fingerprints=fingerprints,
            within=None if within is None else lambda conn, res: within(conn, _outcome(res)),
            before_storing=before_storing,
        )
        return _outcome(result)


def _outcome(result: StampResult) -> StampOutcome:
    """What the pipeline keeps of a stored stamp."""
    rec = result.record
    return StampOutcome(
        output_id=rec.id,
        manifest_id=rec.manifest_id,
        sha256=rec.sha256,
        media_type=rec.media_type,
        width=rec.width,
        height=rec.height,
        watermark_alg=rec.watermark_alg,
        watermark_value=rec.watermark_value,
        watermark_verified=rec.watermark_verified,
        pdq=result.signals.pdq.hex(),
        parts=result.timings,
        signals=result.signals,
    )
