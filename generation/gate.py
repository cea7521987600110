"""The gate in front of the model: input images against the artwork registry and their own consent
metadata, adapters against the adapter registry. It fails closed: a check that cannot run blocks.

Storage stays outside: the registry and the adapter list are reached through small protocols
that ``service/`` implements with SQL. Consent metadata is read here, with ``provenance``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from PIL import Image

from generation.params import AdapterUse
from provenance.c2pa_io import read_manifest
from provenance.labels import read_labels
from similarity import DecodedImage, ImageSignals, compute_signals

# Input metadata (C2PA, XMP) is read here while the input is fingerprinted.
_READERS = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gate-metadata")

Outcome = Literal["pass", "block", "error"]
INFERENCE_KEY = "ai_inference"
REFUSED_USES = ("notAllowed", "constrained")


@dataclass(frozen=True)
class InputImage:
    """An image the request feeds the model: ``role`` is init, mask or control:N."""

    role: str
    data: bytes
    image: Image.Image
    media_type: str
    sha256: str = ""
    # The picture fingerprinted for the registry (``similarity.decode_for_matching``, so the
    # gate answers as moderation and /v1/matches do for the same bytes); None: ``image``.
    for_matching: DecodedImage | None = None

    def __post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())


@dataclass(frozen=True)
class AdapterRequest:
    """An adapter a request names, by its registered name."""

    name: str
    scale: float = 1.0


@dataclass(frozen=True)
class ArtworkHit:
    """A registered artwork an input matched, with what its artist allows for this user."""

    artwork_id: str
    artist_id: str
    title: str | None
    decision: str
    score: float
    img2img: str
    license_id: str | None
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def permitted(self) -> bool:
        return self.license_id is not None or self.img2img == "allow"

    def to_dict(self) -> dict[str, Any]:
        # Shallow: the evidence is plain JSON data, shared rather than deep-copied (asdict's
        # recursion through it cost about 0.5 ms a hit).
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class RegistryAnswer:
    hits: list[ArtworkHit]
    index: dict[str, Any]


class ArtworkRegistry(Protocol):
    """Matches an image's signals against registered artworks (service: FAISS + Postgres)."""

    def match(self, signals: ImageSignals, platform_user: str | None) -> RegistryAnswer: ...


@dataclass(frozen=True)
class RegisteredAdapter:
    id: str
    name: str
    sha256: str
    autov2: str
    path: Path
    status: str
    status_reason: str | None = None


class AdapterRegistry(Protocol):
    """Looks up a registered adapter by name, its file ready on disk; None when unknown."""

    def lookup(self, name: str) -> RegisteredAdapter | None: ...


@dataclass(frozen=True)
class ImageConsent:
    """What an image's own metadata says about using it."""

    manifest_state: str
    manifest_uses: dict[str, str] | None
    label_uses: dict[str, str] | None
    data_mining: str | None
    label_errors: tuple[str, ...] = ()


class ConsentReader(Protocol):
    def read(self, data: bytes, media_type: str) -> ImageConsent: ...


class MetadataConsentReader:
    """Reads the C2PA manifest (``cawg.training-mining`` / ``c2pa.training-mining``) and the XMP
    labels (CAWG entries, IPTC ``plus:DataMining``) of an image."""

    def __init__(self, trust_anchors_pem: str | None = None) -> None:
        self.trust_anchors_pem = trust_anchors_pem

    def read(self, data: bytes, media_type: str) -> ImageConsent:
        report = read_manifest(data, media_type, self.trust_anchors_pem)
        labels = read_labels(data)
        return ImageConsent(
            manifest_state=report.state,
            manifest_uses=report.training_mining,
            label_uses=labels.training_mining,
            data_mining=labels.data_mining,
            label_errors=labels.errors,
        )


@dataclass(frozen=True)
class Check:
    """One decision of the gate with its evidence. ``error`` means the check could not run."""

    check: str
    subject: str
    outcome: Outcome
    code: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def blocks(self) -> bool:
        return self.outcome != "pass"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reason(self) -> dict[str, str]:
        return {
            "check": self.check,
            "subject": self.subject,
            "code": self.code,
            "message": self.message,
        }


@dataclass(frozen=True)
class InputFingerprint:
    role: str
    sha256: str
    media_type: str
    width: int
    height: int
    pdq: str | None
    pdq_quality: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GateResult:
    checks: list[Check]
    inputs: list[InputFingerprint]
    adapters: list[RegisteredAdapter]
    matches: list[tuple[str, ArtworkHit]]
    elapsed_s: float = 0.0

    @property
    def blocked(self) -> bool:
        return any(c.blocks for c in self.checks)

    def reasons(self) -> list[dict[str, str]]:
        return [c.reason() for c in self.checks if c.blocks]

    def blocking_matches(self) -> list[dict[str, Any]]:
        """Registered artworks behind a block, for the 403 answer."""
        blocked_roles = {c.subject for c in self.checks if c.check == "registry" and c.blocks}
        return [
            {"input": role, **hit.to_dict()}
            for role, hit in self.matches
            if role in blocked_roles and hit.decision == "copy" and not hit.permitted
        ]

    def adapter_uses(self, requests: Sequence[AdapterRequest]) -> list[AdapterUse]:
        by_name = {a.name: a for a in self.adapters}
        return [AdapterUse(r.name, by_name[r.name].path, r.scale) for r in requests]


def _normalised_uses(uses: dict[str, str] | None) -> dict[str, str]:
    """``cawg.ai_inference`` and ``c2pa.ai_inference`` alike become ``ai_inference``."""
    return {k.rsplit(".", 1)[-1]: v for k, v in (uses or {}).items()}


def _prohibits_mining(value: str | None) -> bool:
    return bool(value) and value.rsplit("/", 1)[-1].strip().upper().startswith("DMI-PROHIBITED")


def consent_refusals(consent: ImageConsent) -> list[str]:
    """Statements in an image that refuse its use as a generation input.

    ``cawg.ai_inference`` notAllowed or constrained (manifest or XMP) refuses. An IPTC
    ``plus:DataMining`` prohibition refuses too, unless the image also states
    ``cawg.ai_inference: allowed``, the more specific statement (chopmark's own outputs say so).
    """
    refusals = []
    sources = (("C2PA manifest", consent.manifest_uses), ("XMP CAWG entries", consent.label_uses))
    inference_allowed = False
    for where, uses in sources:
        use = _normalised_uses(uses).get(INFERENCE_KEY)
        if use in REFUSED_USES:
            refusals.append(f"{where}: cawg.ai_inference is {use}")
        elif use == "allowed":
            inference_allowed = True
    if _prohibits_mining(consent.data_mining) and not inference_allowed:
        refusals.append(f"IPTC plus:DataMining is {consent.data_mining}")
    return refusals


def _failed(check: str, subject: str, exc: BaseException) -> Check:
    return Check(
        check,
        subject,
        "error",
        "check_failed",
        f"the {check} check of {subject} could not run, so the request is blocked: "
        f"{type(exc).__name__}: {exc}",
        {"error": f"{type(exc).__name__}: {exc}"},
    )


class Gate:
    """Runs every check on every input and adapter; never raises, never lets an error pass."""

    def __init__(
        self,
        registry: ArtworkRegistry,
        adapters: AdapterRegistry,
        consent: ConsentReader,
        *,
        signals: Callable[[DecodedImage | Image.Image], ImageSignals] = compute_signals,
    ) -> None:
        self.registry = registry
        self.adapter_registry = adapters
        self.consent = consent
        self._signals = signals

    def check(
        self,
        inputs: Sequence[InputImage],
        adapters: Sequence[AdapterRequest],
        platform_user: str | None,
    ) -> GateResult:
        start = time.perf_counter()
        result = GateResult([], [], [], [])
        for item in inputs:
            self._check_input(item, platform_user, result)
        for request in adapters:
            result.checks.append(self._check_adapter(request, result))
        result.elapsed_s = time.perf_counter() - start
        return result

    # inputs ------------------------------------------------------------------------------------
    def _check_input(self, item: InputImage, user: str | None, result: GateResult) -> None:
        # The metadata is read beside the fingerprints and the registry search.
        consent_job = _READERS.submit(self.consent.read, item.data, item.media_type)
        signals: ImageSignals | None = None
        try:
            signals = self._signals(item.for_matching or item.image)
        except Exception as exc:
            result.checks.append(_failed("registry", item.role, exc))
        result.inputs.append(
            InputFingerprint(
                role=item.role,
                sha256=item.sha256,
                media_type=item.media_type,
                width=item.image.width,
                height=item.image.height,
                pdq=signals.pdq.hex() if signals is not None else None,
                pdq_quality=signals.pdq_quality if signals is not None else None,
            )
        )
        permitted_by_registry = False
        if signals is not None:
            try:
                check, permitted_by_registry = self._registry_check(item, signals, user, result)
            except Exception as exc:
                check = _failed("registry", item.role, exc)
            result.checks.append(check)
        try:
            consent = consent_job.result()
            result.checks.append(self._consent_check(item, consent, permitted_by_registry))
        except Exception as exc:
            result.checks.append(_failed("consent", item.role, exc))

    def _registry_check(
        self, item: InputImage, signals: ImageSignals, user: str | None, result: GateResult
    ) -> tuple[Check, bool]:
        answer = self.registry.match(signals, user)
        result.matches.extend((item.role, hit) for hit in answer.hits)
        copies = [h for h in answer.hits if h.decision == "copy"]
        denied = [h for h in copies if not h.permitted]
        evidence = {
            "platform_user": user,
            "index": answer.index,
            "matches": [h.to_dict() for h in answer.hits],
        }
        if denied:
            first = denied[0]
            who = f"platform user {user!r} holds no img2img licence" if user else "no platform user"
            return (
                Check(
                    "registry",
                    item.role,
                    "block",
                    "registered_artwork_denied",
                    f"the {item.role} image is a copy of registered artwork {first.artwork_id}"
                    f"{f' ({first.title!r})' if first.title else ''}, whose artist denies img2img"
                    f" and image-conditioned use; {who}",
                    evidence,
                ),
                False,
            )
        if copies:
            how = ", ".join(
                f"{h.artwork_id} ({'licence ' + h.license_id if h.license_id else 'artist allows'})"
                for h in copies
            )
            return (
                Check(
                    "registry",
                    item.role,
                    "pass",
                    "registered_artwork_permitted",
                    f"the {item.role} image copies registered artwork(s) {how}",
                    evidence,
                ),
                True,
            )
        return (
            Check(
                "registry",
                item.role,
                "pass",
                "no_registered_copy",
                f"the {item.role} image copies no registered artwork",
                evidence,
            ),
            False,
        )

    def _consent_check(
        self, item: InputImage, consent: ImageConsent, permitted_by_registry: bool
    ) -> Check:
        evidence = {
            "manifest_state": consent.manifest_state,
            "manifest_training_mining": consent.manifest_uses,
            "xmp_training_mining": consent.label_uses,
            "iptc_data_mining": consent.data_mining,
        }
        if consent.manifest_state == "Error":
            raise ValueError("the image's C2PA data cannot be read")
        if consent.label_errors:
            raise ValueError(f"the image's metadata is damaged: {'; '.join(consent.label_errors)}")
        refusals = consent_refusals(consent)
        evidence["refusals"] = refusals
        if refusals and permitted_by_registry:
            return Check(
                "consent",
                item.role,
                "pass",
                "consent_overridden_by_registry",
                f"the {item.role} image's metadata refuses use ({'; '.join(refusals)}), but the "
                "artwork registry, which outranks it, permits this use",
                evidence,
            )
        if refusals:
            return Check(
                "consent",
                item.role,
                "block",
                "input_consent_refused",
                f"the {item.role} image's own metadata refuses its use as a generation input: "
                + "; ".join(refusals),
                evidence,
            )
        stated = any((consent.manifest_uses, consent.label_uses, consent.data_mining))
        return Check(
            "consent",
            item.role,
            "pass",
            "consent_allows" if stated else "no_consent_statement",
            f"the {item.role} image's metadata "
            + ("does not refuse this use" if stated else "states nothing about this use"),
            evidence,
        )

    # adapters ----------------------------------------------------------------------------------
    def _check_adapter(self, request: AdapterRequest, result: GateResult) -> Check:
        try:
            found = self.adapter_registry.lookup(request.name)
        except Exception as exc:
            return _failed("adapter", request.name, exc)
        if found is None:
            return Check(
                "adapter",
                request.name,
                "block",
                "adapter_not_registered",
                f"adapter {request.name!r} is not registered; an administrator must "
                "register it before it can be used",
                {"scale": request.scale},
            )
        evidence = {
            "adapter_id": found.id,
            "sha256": found.sha256,
            "autov2": found.autov2,
            "scale": request.scale,
            "status": found.status,
        }
        if found.status != "allowed":
            why = f": {found.status_reason}" if found.status_reason else ""
            return Check(
                "adapter",
                request.name,
                "block",
                "adapter_blocked",
                f"adapter {request.name!r} is blocked{why}",
                evidence,
            )
        if not found.path.is_file():
            return Check(
                "adapter",
                request.name,
                "error",
                "check_failed",
                f"the file of adapter {request.name!r} is missing",
                evidence,
            )
        result.adapters.append(found)
        return Check(
            "adapter",
            request.name,
            "pass",
            "adapter_allowed",
            f"adapter {request.name!r} ({found.autov2}) is registered and allowed",
            evidence,
        )
