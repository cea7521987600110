"""gate -> diffuse -> screen -> stamp -> record, as plain code over small protocols.

A blocked request never reaches the model and is recorded like any other. The stamp step and the
record live in ``service/`` (Postgres, blob store, signing) behind :class:`Stamper` and
:class:`Recorder`; this module imports nothing of ``service``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from uuid import UUID

from PIL import Image

from generation.diffusion_protocol import Admit, ImageGenerator
from generation.gate import AdapterRequest, Gate, GateResult, InputImage
from generation.params import DiffusionResult, GenerationParams, Mode, ModelInfo
from generation.schedulers import SCHEDULERS
from generation.screen import Screen, ScreenResult
from provenance.manifest import AdapterFact, GenerationFacts, ParentImage
from similarity import ImageSignals, compute_signals

log = logging.getLogger(__name__)
# Fingerprinting and screening of outputs, beside their stamp step.
_SIDE_WORK = ThreadPoolExecutor(max_workers=4, thread_name_prefix="generation-screen")

Status = Literal["queued", "running", "completed", "blocked", "failed"]
Stage = Literal["gate", "diffuse", "screen", "stamp", "record"]
ScreenPolicy = Literal["flag", "block"]
SOFTWARE_VERSION = "0.1.0"


@dataclass
class GenerationRequest:
    """One request, inputs decoded, adapters named. ``id`` becomes the output's id too."""

    id: UUID
    actor: str
    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 20
    guidance: float = 7.0
    width: int = 512
    height: int = 512
    scheduler: str = "euler"
    strength: float = 0.75
    platform_user: str | None = None
    init: InputImage | None = None
    mask: InputImage | None = None
    controls: tuple[InputImage, ...] = ()  # ControlNet conditioning (the first one is used)
    control_scale: float = 1.0
    adapters: tuple[AdapterRequest, ...] = ()
    prompt_private: bool = False
    api_key_id: int | None = None
    on_step: Callable[[int, int], None] | None = None  # progress of the denoising

    @property
    def mode(self) -> Mode:
        if self.init is None:
            return "txt2img"
        return "inpaint" if self.mask is not None else "img2img"

    def inputs(self) -> list[InputImage]:
        found = [self.init, self.mask, *self.controls]
        return [i for i in found if i is not None]

    def params(self, gate: GateResult) -> GenerationParams:
        return GenerationParams(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            seed=self.seed,
            steps=self.steps,
            guidance=self.guidance,
            width=self.width,
            height=self.height,
            scheduler=self.scheduler,
            strength=self.strength,
            mode=self.mode,
            init_image=self.init.image if self.init is not None else None,
            mask_image=self.mask.image if self.mask is not None else None,
            adapters=gate.adapter_uses(self.adapters),
            control_image=self.controls[0].image if self.controls else None,
            control_scale=self.control_scale,
            on_step=self.on_step,
        )

    def summary(self) -> dict[str, Any]:
        """The request's parameters as recorded (prompts in the clear; see the recorder)."""
        return {
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest(),
            "prompt_private": self.prompt_private,
            "seed": self.seed,
            "steps": self.steps,
            "guidance": self.guidance,
            "width": self.width,
            "height": self.height,
            "scheduler": self.scheduler,
            "strength": self.strength if self.mode != "txt2img" else None,
            "mode": self.mode,
            "platform_user": self.platform_user,
            "adapters_requested": [dataclasses.asdict(a) for a in self.adapters],
            "control_scale": self.control_scale if self.controls else None,
        }


@dataclass(frozen=True)
class StampOutcome:
    """What the stamp step emitted: the signed file's facts (the bytes stay in the store)."""

    output_id: UUID
    manifest_id: str
    sha256: str
    media_type: str
    width: int
    height: int
    watermark_alg: str
    watermark_value: str
    watermark_verified: bool
    pdq: str | None = None
    parts: dict[str, float] = field(default_factory=dict, compare=False)  # seconds per part
    # Query-side fingerprints of the emitted image, when the stamper computed them.
    signals: ImageSignals | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["output_id"] = str(self.output_id)
        del data["parts"], data["signals"]
        return data


class Stamper(Protocol):
    """Watermark, label, sign and store one output (service: ``stamp_and_record``)."""

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
        """``fingerprints``, when given, waits for the query-side signals of ``image`` that the
        caller is computing already (the stamper then need not compute them).

        ``within``, when given, is called once the output is stored but before that is
        committed, with the store's open transaction (opaque here: what the recorder's
        ``record_within`` takes) and the outcome so far; whatever it writes commits with the
        output, and an exception from it undoes the output too. ``before_storing`` is waited
        for first, outside the transaction, so that ``within`` need not wait while holding it."""
        ...


@dataclass
class GenerationRecord:
    """Everything recorded about one generation, whatever its outcome."""

    request: GenerationRequest
    status: Status
    stage: Stage | None = None
    gate: GateResult | None = None
    model: ModelInfo | None = None
    adapters: list[dict[str, Any]] = field(default_factory=list)
    screen: ScreenResult | None = None
    stamp: StampOutcome | None = None
    controlnet: dict[str, Any] | None = None
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> UUID:
        return self.request.id

    @property
    def reasons(self) -> list[dict[str, str]]:
        out = self.gate.reasons() if self.gate is not None else []
        if self.status == "blocked" and self.stage == "screen" and self.screen is not None:
            out += [
                {"check": "screen", "subject": "output", "code": f.code, "message": f.message}
                for f in self.screen.flags
            ]
        return out

    @property
    def flags(self) -> list[dict[str, Any]]:
        return [f.to_dict() for f in self.screen.flags] if self.screen is not None else []

    def decisions(self) -> list[dict[str, Any]]:
        """Every gate check and the screen, each with its evidence."""
        out = [c.to_dict() for c in self.gate.checks] if self.gate is not None else []
        if self.screen is not None:
            out.append(
                {
                    "check": "screen",
                    "subject": "output",
                    "outcome": "flag" if self.screen.flagged else "pass",
                    "code": ",".join(f.code for f in self.screen.flags) or "no_source_match",
                    "message": "; ".join(f.message for f in self.screen.flags)
                    or "the output matches no training source",
                    "evidence": self.screen.to_dict(),
                }
            )
        return out

    def model_dict(self) -> dict[str, Any] | None:
        if self.model is None:
            return None
        data = dataclasses.asdict(self.model)
        if self.controlnet is not None:
            data["controlnet"] = self.controlnet
        return data


class Recorder(Protocol):
    """Writes a generation's record (an upsert by id) and its audit-log entry."""

    def record(self, record: GenerationRecord) -> None: ...

    def record_within(self, transaction: Any, record: GenerationRecord) -> None:
        """The same write inside a transaction the stamper holds open (see ``Stamper.stamp``):
        a completed generation and its output are stored together or not at all."""
        ...


@dataclass
class GenerationOutcome:
    record: GenerationRecord
    error: BaseException | None = None

    @property
    def status(self) -> Status:
        return self.record.status


def generation_facts(
    request: GenerationRequest, result: DiffusionResult, software_version: str = SOFTWARE_VERSION
) -> GenerationFacts:
    """The manifest's facts: model, adapters with their hashes, prompt, parameters, parent."""
    parent = None
    if request.init is not None:
        parent = ParentImage(request.init.data, request.init.media_type, title="init image")
    params = result.params
    return GenerationFacts(
        generation_id=str(request.id),
        kind=params.mode,
        model_name=result.model.name,
        model_sha256=result.model.sha256,
        software_agent="chopmark",
        software_version=software_version,
        adapters=tuple(AdapterFact(a.name, a.sha256, a.scale) for a in result.adapters),
        prompt=request.prompt,
        negative_prompt=request.negative_prompt or None,
        prompt_private=request.prompt_private,
        seed=params.seed,
        steps=params.steps,
        guidance=params.guidance,
        sampler=params.scheduler,
        sampler_label=spec.a1111_label if (spec := SCHEDULERS.get(params.scheduler)) else None,
        strength=params.strength if params.mode != "txt2img" else None,
        width=result.image.width,
        height=result.image.height,
        platform_user=request.platform_user,
        parent=parent,
        inputs=tuple(
            ParentImage(c.data, c.media_type, title=f"{c.role} image") for c in request.controls
        ),
        controlnet=(
            {**result.controlnet, "scale": params.control_scale} if result.controlnet else None
        ),
    )


class _Started:
    """The writes of a record's first states (``queued``, then ``running``), one after another
    on the side workers, and when the first began."""

    def __init__(self, at: float, first: Future[float]) -> None:
        self.at = at
        self._last = first

    def then(self, write: Callable[[GenerationRecord], float], record: GenerationRecord) -> None:
        previous = self._last

        def after() -> float:
            try:
                earlier = previous.result()
            except Exception:
                earlier = 0.0  # said when joined; the later state is written all the same
            return earlier + write(record)

        self._last = _SIDE_WORK.submit(after)

    def result(self) -> float:
        return self._last.result()


class GateClosed(Exception):
    """The gate, checked again once the model was free, now blocks the request."""

    def __init__(self, gate: GateResult) -> None:
        super().__init__("the gate closed while the request waited for the model")
        self.gate = gate


class GenerationPipeline:
    def __init__(
        self,
        generator: ImageGenerator,
        gate: Gate,
        screen: Screen,
        stamper: Stamper,
        recorder: Recorder,
        *,
        screen_policy: ScreenPolicy = "flag",
        software_version: str = SOFTWARE_VERSION,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if screen_policy not in ("flag", "block"):
            raise ValueError("screen_policy must be 'flag' or 'block'")
        self.generator = generator
        self.gate = gate
        self.screen = screen
        self.stamper = stamper
        self.recorder = recorder
        self.screen_policy = screen_policy
        self.software_version = software_version
        self._clock = clock

    # the gate ----------------------------------------------------------------------------------
    def check(self, request: GenerationRequest) -> GateResult:
        """Run the gate alone (never raises)."""
        return self.gate.check(request.inputs(), request.adapters, request.platform_user)

    def record_blocked(self, request: GenerationRequest, gate: GateResult) -> GenerationOutcome:
        # A blocked request loads no model: its record names the model only if it is loaded.
        record = GenerationRecord(
            request, "blocked", "gate", gate, model=self._model_info(load=False)
        )
        record.timings["gate"] = gate.elapsed_s
        self._timed(record, "record", self.recorder.record, record)
        return GenerationOutcome(record)

    # the whole flow ----------------------------------------------------------------------------
    def run(self, request: GenerationRequest) -> GenerationOutcome:
        """Blocking: gate, then (unless blocked) diffuse, screen, stamp, record."""
        gate = self.check(request)
        if gate.blocked:
            return self.record_blocked(request, gate)
        record, started = self._start(request, gate)
        try:
            result = self._timed(
                record,
                "diffuse",
                self.generator.run,
                request.params(gate),
                self._admit(record, started),
            )
        except GateClosed as closed:
            self._join_started(record, started)
            return self._closed(record, closed.gate)
        except Exception as exc:
            self._join_started(record, started)
            return self._fail(record, "diffuse", exc)
        self._join_started(record, started)
        return self._finish(record, result)

    async def run_async(
        self, request: GenerationRequest, gate: GateResult | None = None
    ) -> GenerationOutcome:
        """Like :meth:`run`; the model runs on the generator's worker, the rest in threads.

        Pass ``gate`` when it already ran (a caller that answers 403 before queueing).
        """
        if gate is None:
            gate = await asyncio.to_thread(self.check, request)
        if gate.blocked:
            return await asyncio.to_thread(self.record_blocked, request, gate)
        record, started = await asyncio.to_thread(self._start, request, gate)
        start = self._clock()
        try:
            result = await self.generator.run_async(
                request.params(gate), self._admit(record, started)
            )
        except GateClosed as closed:
            record.timings["diffuse"] = self._clock() - start
            await asyncio.to_thread(self._join_started, record, started)
            return await asyncio.to_thread(self._closed, record, closed.gate)
        except Exception as exc:
            record.timings["diffuse"] = self._clock() - start
            await asyncio.to_thread(self._join_started, record, started)
            return await asyncio.to_thread(self._fail, record, "diffuse", exc)
        record.timings["diffuse"] = self._clock() - start
        await asyncio.to_thread(self._join_started, record, started)
        return await asyncio.to_thread(self._finish, record, result)

    # admission ---------------------------------------------------------------------------------
    def _admit(self, record: GenerationRecord, started: _Started) -> Admit:
        """The gate again, for a request that waited for the model: while it waited an adapter
        may have been blocked, an artist may have come to deny reuse, a licence may have run out
        or a work been registered. A request that did not wait was gated a moment ago. One that
        was recorded ``queued`` becomes ``running`` now (written beside the model, after the
        ``queued`` write), with the time it waited."""

        def admit(waited: bool) -> None:
            if record.status == "queued":
                record.timings["queue"] = self._clock() - started.at
            if waited:
                again = self.check(record.request)
                record.timings["gate_again"] = again.elapsed_s
                if again.blocked:
                    raise GateClosed(again)
            if record.status == "queued":
                record.status = "running"
                started.then(
                    self._write_timed, dataclasses.replace(record, timings=dict(record.timings))
                )

        return admit

    def _closed(self, record: GenerationRecord, gate: GateResult) -> GenerationOutcome:
        """A request whose gate closed while it waited: blocked, with the checks that closed it."""
        record.status, record.stage, record.gate = "blocked", "gate", gate
        self._timed(record, "record", self.recorder.record, record)
        return GenerationOutcome(record)

    # steps -------------------------------------------------------------------------------------
    def _fingerprint_and_screen(
        self, image: Image.Image, fingerprints: Future[ImageSignals]
    ) -> ScreenResult:
        """Fingerprints of the generated pixels, handed to the stamp as soon as they exist (it
        stores them), then the screen on them. One task, so that it never waits on another."""
        try:
            signals = compute_signals(image)
            signals.pack()  # the stored parts too, here rather than on the stamp's path
        except Exception as exc:
            fingerprints.set_exception(exc)
            return self.screen.screen(image)  # reports the failure as a flag
        fingerprints.set_result(signals)
        return self.screen.screen(image, signals)

    def _timed(self, record: GenerationRecord, stage: str, fn: Callable[..., Any], *args: Any):
        start = self._clock()
        try:
            return fn(*args)
        finally:
            record.timings[stage] = record.timings.get(stage, 0.0) + self._clock() - start

    def _model_info(self, *, load: bool = True) -> ModelInfo | None:
        try:
            if not load:
                peek = getattr(self.generator, "loaded_info", None)
                if callable(peek):
                    return peek()
            return self.generator.info()
        except Exception:
            log.exception("the model's description is unavailable")
            return None

    def _start(
        self, request: GenerationRequest, gate: GateResult
    ) -> tuple[GenerationRecord, _Started]:
        """The record, and the write of its first state, which goes on beside the model (it
        holds the lease that marks the generation as this process's): ``queued`` when other
        requests hold the model, else ``running``. The write takes a copy, so the generation may
        change the record meanwhile; it is waited for before any later write of the same record
        (``_join_started``)."""
        busy = getattr(self.generator, "queue_depth", 0) > 0
        record = GenerationRecord(
            request, "queued" if busy else "running", None, gate, model=self._model_info()
        )
        record.timings["gate"] = gate.elapsed_s
        copy = dataclasses.replace(record, timings=dict(record.timings))
        return record, _Started(self._clock(), _SIDE_WORK.submit(self._write_timed, copy))

    def _write_timed(self, record: GenerationRecord) -> float:
        start = self._clock()
        self.recorder.record(record)
        return self._clock() - start

    def _join_started(self, record: GenerationRecord, started: _Started) -> None:
        """Wait for the writes of its first states. Should one have failed, the generation goes
        on: its final write (an upsert) records it whole, or fails it if the database is gone."""
        try:
            record.timings["record_started"] = started.result()
        except Exception:
            log.exception("recording the start of generation %s failed", record.id)

    def _fail(self, record: GenerationRecord, stage: Stage, exc: BaseException):
        record.status, record.stage = "failed", stage
        # The first line says what failed; what follows in some messages (a database's detail,
        # context and the statement it ran) is for the operator's log, not the record.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        record.error = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if str(exc).strip() != first:
            log.warning("generation %s failed at %s: %r", record.id, stage, exc)
        try:
            self._timed(record, "record", self.recorder.record, record)
        except Exception:
            log.exception("recording the failure of generation %s failed", record.id)
        return GenerationOutcome(record, exc)

    def _finish(self, record: GenerationRecord, result: DiffusionResult) -> GenerationOutcome:
        record.model = result.model
        # what was applied, by name and hash; where the server keeps the file is its own
        record.adapters = [
            {k: v for k, v in dataclasses.asdict(a).items() if k != "path"} for a in result.adapters
        ]
        if result.controlnet is not None:
            record.controlnet = {**result.controlnet, "scale": result.params.control_scale}
        for applied, registered in zip(result.adapters, record.gate.adapters, strict=False):
            if applied.sha256 != registered.sha256:
                return self._fail(
                    record,
                    "diffuse",
                    RuntimeError(
                        f"adapter {applied.name!r} on disk hashes to {applied.autov2}, "
                        f"not the registered {registered.autov2}"
                    ),
                )
        if self.screen_policy == "block":
            record.screen = self._timed(record, "screen", self.screen.screen, result.image)
            if record.screen.flagged:
                record.status, record.stage = "blocked", "screen"
                self._timed(record, "record", self.recorder.record, record)
                return GenerationOutcome(record)
        facts = generation_facts(record.request, result, self.software_version)
        extra = {"generation": {"gate": [c.code for c in record.gate.checks]}}
        fingerprints: Future[ImageSignals] = Future()
        screening = None
        if record.screen is None:  # flags only annotate: screen beside the stamp
            screening = _SIDE_WORK.submit(self._fingerprint_and_screen, result.image, fingerprints)
        stamp_start = self._clock()
        waited = [0.0]  # time spent in `complete` while the stamp is on (not the stamp's own)

        def complete(transaction: Any, stamp: StampOutcome | None) -> None:
            """The completed record: written in the output's own transaction when the stamper
            offers one (``transaction`` None: on its own, after the stamp)."""
            begin = self._clock()
            if stamp is not None:
                record.stamp = stamp
                for part, seconds in stamp.parts.items():
                    record.timings[f"stamp.{part}"] = seconds
                record.timings["stamp"] = begin - stamp_start
            if screening is not None:  # "screen" is what it adds after the stamp
                record.screen = self._timed(record, "screen", screening.result)
            record.status, record.stage = "completed", None
            if transaction is None:
                self._timed(record, "record", self.recorder.record, record)
            else:
                self._timed(record, "record", self.recorder.record_within, transaction, record)
            waited[0] += self._clock() - begin

        try:
            stamp = self.stamper.stamp(
                result.image,
                facts,
                generation_id=record.id,
                actor=record.request.actor,
                audit_extra=extra,
                fingerprints=fingerprints.result if screening is not None else None,
                within=complete,
                before_storing=screening.result if screening is not None else None,
            )
        except Exception as exc:
            record.timings["stamp"] = self._clock() - stamp_start
            record.stamp, record.status, record.stage = None, "running", "stamp"  # undone
            if screening is not None and record.screen is None:
                record.screen = self._timed(record, "screen", screening.result)
            return self._fail(record, "stamp", exc)
        # The record as returned: the stamp with what it did after the record was written
        # (committing, indexing), its time without the screen's wait and the record's write.
        stamp_s = self._clock() - stamp_start - waited[0]
        record.stamp = stamp
        for part, seconds in stamp.parts.items():
            record.timings[f"stamp.{part}"] = seconds
        if record.status != "completed":  # a stamper that offered no transaction
            complete(None, None)
        record.timings["stamp"] = stamp_s
        return GenerationOutcome(record)
