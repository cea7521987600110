"""gate -> diffuse -> screen -> stamp -> record on the tiny model, without the service: the
registry, adapter list, training sources and record are in memory (real FAISS matching through
``similarity``), the stamp is ``provenance.stamp_image`` with development credentials."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from generation.diffusion import DiffusionRunner
from generation.diffusion_protocol import CountingGenerator
from generation.gate import (
    AdapterRequest,
    ArtworkHit,
    Gate,
    ImageConsent,
    InputImage,
    MetadataConsentReader,
    RegisteredAdapter,
    RegistryAnswer,
    consent_refusals,
)
from generation.pipeline import (
    GenerationPipeline,
    GenerationRecord,
    GenerationRequest,
    StampOutcome,
)
from generation.screen import Screen, SourceAnswer, SourceHit
from provenance.c2pa_io import read_manifest
from provenance.credentials import Credentials, ensure_dev_credentials
from provenance.labels import (
    DMI_PROHIBITED,
    DMI_PROHIBITED_GENAIML,
    LabelSet,
    encode_with_labels,
    read_labels,
)
from provenance.manifest import GenerationFacts
from provenance.signer import FileSigner
from provenance.stamp import LabelOptions, stamp_image
from provenance.watermark import default_watermarker
from similarity import ImageSignals, MatchIndex, compute_signals, match
from tests.support import encode, photo_like

SIDE = 256  # the watermark's minimum


# ---- in-memory stores behind the pipeline's protocols ----------------------------------------
class MemoryBank:
    """Registered images in a real ``MatchIndex``, matched with geometric verification."""

    def __init__(self) -> None:
        self.index = MatchIndex()
        self.local: dict[int, bytes] = {}

    def add(self, ident: int, image: Image.Image) -> None:
        signals = compute_signals(image)
        self.index.add([ident], [signals])
        self.local[ident] = signals.local

    def match(self, signals: ImageSignals):
        return match(signals, self.index, lambda ids: {i: self.local[i] for i in ids})


@dataclass
class MemoryRegistry:
    bank: MemoryBank = field(default_factory=MemoryBank)
    works: dict[int, dict[str, Any]] = field(default_factory=dict)
    fail: bool = False

    def register(self, image: Image.Image, img2img: str, licensed: set[str] = frozenset()):
        ident = len(self.works) + 1
        self.bank.add(ident, image)
        self.works[ident] = {"id": str(uuid4()), "img2img": img2img, "licensed": set(licensed)}
        return self.works[ident]["id"]

    def match(self, signals: ImageSignals, platform_user: str | None) -> RegistryAnswer:
        if self.fail:
            raise ConnectionError("registry database unreachable")
        hits = []
        for m in self.bank.match(signals):
            work = self.works[m.id]
            hits.append(
                ArtworkHit(
                    artwork_id=work["id"],
                    artist_id=str(UUID(int=m.id)),
                    title=None,
                    decision=m.decision,
                    score=m.score,
                    img2img=work["img2img"],
                    license_id="lic-1" if platform_user in work["licensed"] else None,
                )
            )
        return RegistryAnswer(hits, {"size": len(self.works)})


@dataclass
class MemoryAdapters:
    known: dict[str, RegisteredAdapter] = field(default_factory=dict)

    def lookup(self, name: str) -> RegisteredAdapter | None:
        return self.known.get(name)


@dataclass
class MemorySources:
    bank: MemoryBank = field(default_factory=MemoryBank)
    size: int = 0

    def add(self, image: Image.Image) -> None:
        self.size += 1
        self.bank.add(self.size, image)

    def match(self, signals: ImageSignals) -> SourceAnswer:
        hits = [
            SourceHit(f"src-{m.id}", "web-scrape", None, m.decision, m.score)
            for m in self.bank.match(signals)
        ]
        return SourceAnswer(hits, {"size": self.size})


class ProvenanceStamper:
    """``provenance.stamp_image``: watermark, labels, signed C2PA manifest; keeps the bytes."""

    def __init__(self, credentials: Credentials) -> None:
        self.signer = FileSigner.from_credentials(credentials)
        self.watermarker = default_watermarker()
        self.files: dict[UUID, bytes] = {}
        self.fingerprinted: list[ImageSignals | None] = []

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
        self.fingerprinted.append(fingerprints() if fingerprints is not None else None)
        payload = secrets.randbits(self.watermarker.payload_bits) or 1
        s = stamp_image(
            image,
            facts,
            self.watermarker,
            self.signer,
            payload,
            label_options=LabelOptions(a1111_parameters=True),
        )
        outcome = StampOutcome(
            generation_id,
            s.manifest_id,
            s.sha256,
            s.mime,
            image.width,
            image.height,
            s.watermark_alg,
            s.watermark_value,
            True,
        )
        if before_storing is not None:
            before_storing()
        if within is not None and self.offers_transaction:
            # a "transaction" in memory: the file is kept only when `within` succeeds
            within(MEMORY_TRANSACTION, outcome)
        self.files[generation_id] = s.data
        return outcome

    offers_transaction = True


MEMORY_TRANSACTION = object()


@dataclass
class ListRecorder:
    records: list[tuple[str, str | None]] = field(default_factory=list)
    last: GenerationRecord | None = None

    within: list[bool] = field(default_factory=list)  # per record: in the stamp's transaction
    fail_within: bool = False

    def record(self, record: GenerationRecord) -> None:
        json.dumps(record.decisions(), default=str)  # what a store writes must serialise
        self.records.append((record.status, record.stage))
        self.within.append(False)
        self.last = record

    def record_within(self, transaction: object, record: GenerationRecord) -> None:
        assert transaction is MEMORY_TRANSACTION
        if self.fail_within:
            raise ConnectionError("the database went away")
        self.record(record)
        self.within[-1] = True


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return ensure_dev_credentials(tmp_path_factory.mktemp("pipeline-keys"))


@dataclass
class Rig:
    pipeline: GenerationPipeline
    model: CountingGenerator
    registry: MemoryRegistry
    adapters: MemoryAdapters
    sources: MemorySources
    stamper: ProvenanceStamper
    recorder: ListRecorder


@pytest.fixture
def rig(runner: DiffusionRunner, credentials: Credentials) -> Rig:
    model = CountingGenerator(runner)
    registry, adapters, sources = MemoryRegistry(), MemoryAdapters(), MemorySources()
    stamper, recorder = ProvenanceStamper(credentials), ListRecorder()
    gate = Gate(registry, adapters, MetadataConsentReader(credentials.trust_anchors_pem))
    pipeline = GenerationPipeline(model, gate, Screen(sources), stamper, recorder)
    return Rig(pipeline, model, registry, adapters, sources, stamper, recorder)


def ask(**overrides: Any) -> GenerationRequest:
    base: dict[str, Any] = {
        "id": uuid4(),
        "actor": "test",
        "prompt": "a harbour at dawn",
        "negative_prompt": "blurry",
        "seed": 11,
        "steps": 2,
        "guidance": 5.0,
        "width": SIDE,
        "height": SIDE,
    }
    base.update(overrides)
    return GenerationRequest(**base)


def init_image(data: bytes, mime: str = "image/jpeg", role: str = "init") -> InputImage:
    return InputImage(role, data, Image.open(io.BytesIO(data)).convert("RGB"), mime)


def edited(image: Image.Image) -> bytes:
    w, h = image.size
    crop = image.crop((w // 10, h // 10, w - w // 12, h - h // 10)).resize((400, 300))
    return encode(ImageEnhance.Color(crop).enhance(1.3), "JPEG", quality=82)


# ---- tests ------------------------------------------------------------------------------------
def test_txt2img_runs_every_stage_and_the_output_is_signed(rig: Rig, credentials: Credentials):
    outcome = rig.pipeline.run(ask(platform_user="u1"))
    record = outcome.record
    assert outcome.status == "completed" and rig.model.call_count == 1
    assert rig.recorder.records == [("running", None), ("completed", None)]
    assert set(record.timings) == {"gate", "diffuse", "screen", "stamp", "record", "record_started"}
    assert record.model is not None and record.model.is_default_tiny
    data = rig.stamper.files[record.id]
    report = read_manifest(data, "image/png", credentials.trust_anchors_pem)
    assert report.state == "Trusted" and report.manifest_id == record.stamp.manifest_id
    assert report.generation["prompt"] == "a harbour at dawn"
    assert report.generation["model"]["sha256"] == record.model.sha256
    reading = rig.stamper.watermarker.detect(Image.open(io.BytesIO(data)).convert("RGB"))
    assert reading.present and f"{reading.payload:012x}" == record.stamp.watermark_value
    screen = record.decisions()[-1]
    assert screen["check"] == "screen" and screen["code"] == "no_source_match"
    assert screen["evidence"]["clip"]["available"] is False


def test_the_running_record_is_written_while_the_model_works(rig: Rig):
    """The start of a generation is recorded beside the model, off the generation's path:
    a running-record write that waits for the model to start does not hold it up."""
    model_started = threading.Event()
    seen: list[bool] = []
    real_run, real_record = rig.model.run, rig.recorder.record

    def run(params, admit=None):
        model_started.set()
        return real_run(params, admit)

    def record(rec: GenerationRecord) -> None:
        if rec.status == "running":
            seen.append(model_started.wait(timeout=20))
        real_record(rec)

    rig.model.run, rig.recorder.record = run, record  # type: ignore[method-assign]
    outcome = rig.pipeline.run(ask(seed=34))
    assert outcome.status == "completed" and seen == [True]
    assert rig.recorder.records == [("running", None), ("completed", None)]
    assert outcome.record.timings["record_started"] > 0


def test_a_failed_running_write_does_not_stop_the_generation(rig: Rig):
    real_record = rig.recorder.record

    def record(rec: GenerationRecord) -> None:
        if rec.status == "running":
            raise ConnectionError("the database blinked")
        real_record(rec)

    rig.recorder.record = record  # type: ignore[method-assign]
    outcome = rig.pipeline.run(ask(seed=35))
    assert outcome.status == "completed"
    assert rig.recorder.records == [("completed", None)]  # the final upsert records it whole
    assert "record_started" not in outcome.record.timings


def test_the_completed_record_is_written_in_the_stamps_transaction(rig: Rig):
    outcome = rig.pipeline.run(ask(seed=31))
    assert outcome.status == "completed"
    assert rig.recorder.records == [("running", None), ("completed", None)]
    assert rig.recorder.within == [False, True]
    assert rig.recorder.last.screen is not None and rig.recorder.last.stamp is not None


def test_a_record_that_cannot_be_written_undoes_the_output(rig: Rig):
    rig.recorder.fail_within = True
    outcome = rig.pipeline.run(ask(seed=32))
    assert outcome.status == "failed" and outcome.record.stage == "stamp"
    assert isinstance(outcome.error, ConnectionError)
    assert outcome.record.stamp is None and outcome.record.id not in rig.stamper.files
    assert rig.recorder.records[-1] == ("failed", "stamp")


def test_a_stamper_without_a_transaction_still_gets_the_record_written(rig: Rig):
    rig.stamper.offers_transaction = False
    outcome = rig.pipeline.run(ask(seed=33))
    assert outcome.status == "completed" and outcome.record.id in rig.stamper.files
    assert rig.recorder.records == [("running", None), ("completed", None)]
    assert rig.recorder.within == [False, False]
    assert outcome.record.screen is not None and outcome.record.stamp is not None


def test_denied_artwork_blocks_before_the_model_and_a_licence_lifts_it(rig: Rig):
    art = photo_like(5, (640, 480))
    artwork_id = rig.registry.register(art, "deny", licensed={"licensee"})
    init = init_image(edited(art))
    blocked = rig.pipeline.run(ask(init=init, strength=0.5, platform_user="someone"))
    assert blocked.status == "blocked" and rig.model.call_count == 0
    assert rig.recorder.records == [("blocked", "gate")]
    reasons = blocked.record.reasons
    assert [r["code"] for r in reasons] == ["registered_artwork_denied"]
    assert artwork_id in reasons[0]["message"] and "someone" in reasons[0]["message"]
    assert blocked.record.gate.blocking_matches()[0]["artwork_id"] == artwork_id
    assert blocked.record.gate.inputs[0].sha256 == hashlib.sha256(init.data).hexdigest()

    allowed = rig.pipeline.run(ask(init=init, strength=0.5, platform_user="licensee"))
    assert allowed.status == "completed" and rig.model.call_count == 1
    assert rig.model.calls[0].mode == "img2img"
    codes = [c.code for c in allowed.record.gate.checks]
    assert codes == ["registered_artwork_permitted", "no_consent_statement"]


def test_an_artist_who_allows_img2img_is_not_blocked(rig: Rig):
    art = photo_like(6, (640, 480))
    rig.registry.register(art, "allow")
    gate = rig.pipeline.check(ask(init=init_image(edited(art)), strength=0.5))
    assert not gate.blocked


def test_every_input_is_checked_the_mask_too(rig: Rig):
    art = photo_like(7, (512, 512))
    rig.registry.register(art, "deny")
    mask = init_image(encode(art, "PNG"), "image/png", role="mask")
    outcome = rig.pipeline.run(
        ask(init=init_image(encode(photo_like(8), "JPEG")), mask=mask, strength=0.5)
    )
    assert outcome.status == "blocked" and rig.model.call_count == 0
    assert {r["subject"] for r in outcome.record.reasons} == {"mask"}


def test_the_gate_fails_closed(rig: Rig):
    rig.registry.fail = True
    outcome = rig.pipeline.run(ask(init=init_image(encode(photo_like(9))), strength=0.5))
    assert outcome.status == "blocked" and rig.model.call_count == 0
    (reason,) = outcome.record.reasons
    assert reason["code"] == "check_failed" and "unreachable" in reason["message"]


def test_a_consent_reader_that_fails_blocks(rig: Rig):
    class Broken:
        def read(self, data: bytes, media_type: str) -> ImageConsent:
            raise OSError("metadata parser crashed")

    rig.pipeline.gate.consent = Broken()
    outcome = rig.pipeline.run(ask(init=init_image(encode(photo_like(10))), strength=0.5))
    assert [r["code"] for r in outcome.record.reasons] == ["check_failed"]
    assert rig.model.call_count == 0


@pytest.mark.parametrize(
    ("labels", "blocks"),
    [
        (LabelSet(training_mining={"cawg.ai_inference": "notAllowed"}), True),
        (LabelSet(training_mining={"cawg.ai_inference": "constrained"}), True),
        (LabelSet(data_mining=DMI_PROHIBITED), True),
        (LabelSet(data_mining=DMI_PROHIBITED_GENAIML), True),
        (
            LabelSet(data_mining=DMI_PROHIBITED, training_mining={"cawg.ai_inference": "allowed"}),
            False,
        ),
        (LabelSet(training_mining={"cawg.ai_training": "notAllowed"}), False),
    ],
    ids=["notAllowed", "constrained", "dmi", "dmi-genai", "dmi-but-inference-allowed", "train"],
)
def test_consent_in_the_input_metadata(rig: Rig, labels: LabelSet, blocks: bool):
    data = encode_with_labels(photo_like(12, (300, 300)), "image/png", labels)
    gate = rig.pipeline.check(ask(init=init_image(data, "image/png"), strength=0.5))
    assert gate.blocked is blocks
    consent = next(c for c in gate.checks if c.check == "consent")
    assert consent.code == ("input_consent_refused" if blocks else "consent_allows")


def test_consent_refusals_reads_manifest_entries_old_and_new():
    old = ImageConsent("Valid", {"c2pa.ai_inference": "notAllowed"}, None, None)
    assert consent_refusals(old) == ["C2PA manifest: cawg.ai_inference is notAllowed"]
    assert consent_refusals(ImageConsent("Absent", None, None, None)) == []


def test_the_registry_outranks_what_the_image_says(rig: Rig):
    art = photo_like(13, (512, 384))
    rig.registry.register(art, "allow")
    labelled = encode_with_labels(
        art, "image/png", LabelSet(training_mining={"cawg.ai_inference": "notAllowed"})
    )
    gate = rig.pipeline.check(ask(init=init_image(labelled, "image/png"), strength=0.5))
    assert not gate.blocked
    assert [c.code for c in gate.checks] == [
        "registered_artwork_permitted",
        "consent_overridden_by_registry",
    ]


def _register(rig: Rig, runner: DiffusionRunner, tmp_path: Path, name: str, **kw: Any):
    from generation.adapters import make_test_lora

    path = make_test_lora(runner.model.txt2img, tmp_path / f"{name}.safetensors", seed=3)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    rig.adapters.known[name] = RegisteredAdapter(
        f"id-{name}", name, kw.pop("sha256", sha), sha[:10], path, kw.pop("status", "allowed"), **kw
    )
    return sha


def test_adapters_must_be_registered_and_allowed(rig: Rig, runner, tmp_path: Path):
    sha = _register(rig, runner, tmp_path, "ink")
    _register(rig, runner, tmp_path, "banned", status="blocked", status_reason="claim upheld")
    refused = rig.pipeline.run(
        ask(adapters=(AdapterRequest("ghost"), AdapterRequest("banned", 0.5)))
    )
    assert [r["code"] for r in refused.record.reasons] == [
        "adapter_not_registered",
        "adapter_blocked",
    ]
    assert rig.model.call_count == 0
    done = rig.pipeline.run(ask(adapters=(AdapterRequest("ink", 0.7),)))
    assert done.status == "completed"
    assert [(a["name"], a["sha256"], a["scale"]) for a in done.record.adapters] == [
        ("ink", sha, 0.7)
    ]
    report = read_manifest(rig.stamper.files[done.record.id], "image/png")
    assert report.generation["adapters"][0]["sha256"] == sha


def _while_the_model_is_busy(rig: Rig, runner: DiffusionRunner, request, change):
    """Run ``request`` while the model is held busy; ``change`` is made once the request has
    passed the gate and waits for the model, then the model is let go. Its outcome."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        with runner._run_lock:  # another request's turn on the model
            waiting = pool.submit(rig.pipeline.run, request)
            deadline = time.monotonic() + 30
            while runner.queue_depth == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert runner.queue_depth == 1, "the request never reached the model's queue"
            change()
        return waiting.result(timeout=120)


def test_an_adapter_blocked_while_a_request_waits_for_the_model_stops_it(
    rig: Rig, runner, tmp_path: Path
):
    _register(rig, runner, tmp_path, "ink")

    def block() -> None:
        ink = rig.adapters.known["ink"]
        rig.adapters.known["ink"] = dataclasses.replace(
            ink, status="blocked", status_reason="claim upheld"
        )

    request = ask(adapters=(AdapterRequest("ink", 0.7),))
    outcome = _while_the_model_is_busy(rig, runner, request, block)
    assert outcome.status == "blocked" and outcome.record.stage == "gate"
    assert rig.model.call_count == 0 and rig.stamper.files == {}
    assert [r["code"] for r in outcome.record.reasons] == ["adapter_blocked"]
    assert rig.recorder.records == [("running", None), ("blocked", "gate")]
    assert "gate_again" in outcome.record.timings


def test_an_async_request_queued_behind_another_is_gated_again(rig: Rig, runner, tmp_path: Path):
    """As the API runs them: every request goes through the runner's one worker, so a request
    waits in its queue, not on the model's lock. One queued behind another is gated again."""
    import asyncio
    import threading

    _register(rig, runner, tmp_path, "ink")
    outcomes = {}

    async def both() -> None:
        first = asyncio.ensure_future(rig.pipeline.run_async(ask()))
        while runner.queue_depth < 1:
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(
            rig.pipeline.run_async(ask(adapters=(AdapterRequest("ink", 0.7),)))
        )
        while runner.queue_depth < 2:
            await asyncio.sleep(0.01)
        ink = rig.adapters.known["ink"]
        rig.adapters.known["ink"] = dataclasses.replace(
            ink, status="blocked", status_reason="claim upheld"
        )
        held.release()  # the model is let go: the first runs, then the second's turn comes
        outcomes["first"], outcomes["second"] = await first, await second

    held = threading.Lock()
    held.acquire()
    with runner._run_lock:  # the model busy while both queue
        loop = threading.Thread(target=lambda: asyncio.run(both()))
        loop.start()
        acquired = held.acquire(timeout=60)
        assert acquired, "the requests never queued"
    loop.join(120)
    assert outcomes["first"].status == "completed"
    second = outcomes["second"]
    assert second.status == "blocked" and second.record.stage == "gate"
    assert [r["code"] for r in second.record.reasons] == ["adapter_blocked"]


def test_a_request_behind_another_is_recorded_queued_then_running(rig: Rig, runner):
    """A platform polling the record sees `queued` while the request waits for the model, then
    `running`; the wait is timed on its own."""
    import asyncio
    import threading

    outcomes = {}

    async def both() -> None:
        first = asyncio.ensure_future(rig.pipeline.run_async(ask()))
        while runner.queue_depth < 1:
            await asyncio.sleep(0.01)
        second = asyncio.ensure_future(rig.pipeline.run_async(ask(seed=9)))
        while runner.queue_depth < 2:
            await asyncio.sleep(0.01)
        held.release()
        outcomes["first"], outcomes["second"] = await first, await second

    held = threading.Lock()
    held.acquire()
    with runner._run_lock:
        loop = threading.Thread(target=lambda: asyncio.run(both()))
        loop.start()
        assert held.acquire(timeout=60), "the requests never queued"
        time.sleep(0.3)  # both first writes done
        assert sorted(s for s, _ in rig.recorder.records) == ["queued", "running"]
    loop.join(120)
    second = outcomes["second"]
    assert second.status == "completed" and second.record.timings["queue"] > 0
    states = [s for s, _ in rig.recorder.records]
    assert states.count("queued") == 1 and states.count("running") == 2
    assert states.index("queued") < len(states) - 1 - states[::-1].index("running")


def test_an_artwork_registered_while_a_request_waits_for_the_model_stops_its_img2img(
    rig: Rig, runner
):
    art = photo_like(6, (640, 480))
    request = ask(init=init_image(edited(art)), strength=0.5, platform_user="someone")
    outcome = _while_the_model_is_busy(
        rig, runner, request, lambda: rig.registry.register(art, "deny")
    )
    assert outcome.status == "blocked" and rig.model.call_count == 0
    assert [r["code"] for r in outcome.record.reasons] == ["registered_artwork_denied"]
    # a request that finds the model free is not gated twice
    free = rig.pipeline.run(ask(seed=12))
    assert free.status == "completed" and "gate_again" not in free.record.timings


def test_an_adapter_file_that_changed_fails_the_generation(rig: Rig, runner, tmp_path: Path):
    _register(rig, runner, tmp_path, "swapped", sha256="0" * 64)
    outcome = rig.pipeline.run(ask(adapters=(AdapterRequest("swapped"),)))
    assert outcome.status == "failed" and outcome.record.stage == "diffuse"
    assert "registered" in outcome.record.error and rig.stamper.files == {}


def test_a_memorised_training_source_is_flagged_or_blocked(rig: Rig):
    first = rig.pipeline.run(ask(seed=21))
    stamped = Image.open(io.BytesIO(rig.stamper.files[first.record.id])).convert("RGB")
    rig.sources.add(stamped)
    flagged = rig.pipeline.run(ask(seed=21))
    assert flagged.status == "completed"
    assert [f["code"] for f in flagged.record.flags] == ["likely_memorized_copy"]
    rig.pipeline.screen_policy = "block"
    blocked = rig.pipeline.run(ask(seed=21))
    assert blocked.status == "blocked" and blocked.record.stage == "screen"
    assert blocked.record.stamp is None and blocked.record.id not in rig.stamper.files
    assert rig.recorder.records[-1] == ("blocked", "screen")


def test_the_stamp_stores_the_fingerprints_the_screen_used(rig: Rig):
    """Under the flag policy the screen runs beside the stamp, on fingerprints computed once."""
    outcome = rig.pipeline.run(ask(seed=5))
    handed = rig.stamper.fingerprinted[-1]
    screen = outcome.record.screen
    assert outcome.status == "completed" and screen is not None and handed is not None
    assert handed is screen.signals
    image = rig.model.inner.run(rig.model.calls[-1]).image  # the same seeded generation
    fresh = compute_signals(image)
    assert handed.pdq == fresh.pdq and handed.local == fresh.local


def test_a_failing_screen_is_reported_and_blocks_under_the_block_policy(rig: Rig):
    class Down:
        def match(self, signals: ImageSignals) -> SourceAnswer:
            raise TimeoutError("source index timed out")

    rig.pipeline.screen = Screen(Down())
    flagged = rig.pipeline.run(ask())
    assert [f["code"] for f in flagged.record.flags] == ["screen_failed"]
    assert flagged.status == "completed"
    rig.pipeline.screen_policy = "block"
    assert rig.pipeline.run(ask()).status == "blocked"


def test_model_errors_are_recorded_as_failures(rig: Rig):
    outcome = rig.pipeline.run(ask(width=250))  # not a multiple of 8: the runner refuses
    assert outcome.status == "failed" and isinstance(outcome.error, ValueError)
    assert rig.recorder.records[-1] == ("failed", "diffuse")


def test_run_async_matches_run(rig: Rig):
    outcome = asyncio.run(rig.pipeline.run_async(ask(seed=4)))
    assert outcome.status == "completed" and rig.model.call_count == 1
    assert outcome.record.timings["diffuse"] > 0


def test_clip_screen_flags_semantic_near_duplicates(tmp_path: Path):
    """A tiny random open_clip model: plumbing only, never accuracy."""
    import open_clip
    import torch

    from similarity import load_embedder

    config = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 32,
            "patch_size": 16,
            "head_width": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "chopmark-pipeline-clip.json").write_text(json.dumps(config))
    open_clip.add_model_config(tmp_path / "chopmark-pipeline-clip.json")
    torch.manual_seed(0)
    torch.save(
        open_clip.create_model("chopmark-pipeline-clip", pretrained=None).state_dict(),
        tmp_path / "clip.pt",
    )
    embedder = load_embedder(tmp_path / "clip.pt", "chopmark-pipeline-clip")
    assert embedder.available
    source = photo_like(40, (320, 320))
    stored = embedder.embed([source])[0]

    class Embeddings:
        def nearest(self, vector: np.ndarray, model: str, k: int) -> SourceAnswer:
            score = float(np.dot(vector, stored))
            return SourceAnswer([SourceHit("src-1", "art-set", None, "clip", score)], {"size": 1})

    screen = Screen(
        MemorySources(), embedder=embedder, embeddings=Embeddings(), clip_threshold=0.99
    )
    result = screen.screen(source)
    assert result.clip["available"] is True and result.clip["model"] == embedder.name
    assert [f.code for f in result.flags] == ["semantic_near_duplicate"]
    unavailable = Screen(MemorySources(), embedder=load_embedder(None, "ViT-B-32"))
    clip = unavailable.screen(source).clip
    assert clip == {"available": False, "reason": "no CLIP checkpoint configured"}


def test_the_output_cites_sampler_and_strength_as_a1111_and_the_manifest_do(rig: Rig):
    """The A1111 ``parameters`` label names the sampler as A1111 does and gives the denoising
    strength of an image-to-image run; the manifest's generation assertion has the strength."""
    init = init_image(encode(photo_like(15, (320, 320)), "JPEG"))
    outcome = rig.pipeline.run(ask(init=init, strength=0.5, scheduler="dpmpp_2m_karras", steps=4))
    assert outcome.status == "completed", outcome.error
    data = rig.stamper.files[outcome.record.id]
    parameters = read_labels(data).generation_parameters
    assert parameters is not None
    assert parameters.settings["Sampler"] == "DPM++ 2M Karras"
    assert parameters.settings["Denoising strength"] == "0.5"
    generation = read_manifest(data, "image/png").generation
    assert generation["sampler"] == "dpmpp_2m_karras" and generation["strength"] == 0.5

    plain = rig.pipeline.run(ask(scheduler="euler_a"))
    data = rig.stamper.files[plain.record.id]
    parameters = read_labels(data).generation_parameters
    assert parameters is not None and parameters.settings["Sampler"] == "Euler a"
    assert "Denoising strength" not in parameters.settings
    assert "strength" not in read_manifest(data, "image/png").generation


def test_inpainting_runs_with_its_init_image_as_parent(rig: Rig, credentials: Credentials):
    init = init_image(encode(photo_like(14, (320, 320)), "JPEG"))
    mask_picture = Image.new("L", (320, 320), 0)
    mask_picture.paste(255, (80, 80, 240, 240))
    mask = init_image(encode(mask_picture.convert("RGB"), "PNG"), "image/png", role="mask")
    outcome = rig.pipeline.run(ask(init=init, mask=mask, strength=0.75))
    assert outcome.status == "completed" and rig.model.calls[0].mode == "inpaint"
    assert [i.role for i in outcome.record.gate.inputs] == ["init", "mask"]
    report = read_manifest(rig.stamper.files[outcome.record.id], "image/png")
    assert report.digital_source_type.endswith("/compositeWithTrainedAlgorithmicMedia")
    assert [i.relationship for i in report.ingredients] == ["parentOf"]
