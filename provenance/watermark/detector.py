"""Reading the watermark: lattice candidates from the pilot waves in the spectrum, re-ranked by a
cheap pilot correlation, the best refined per quadrant and decoded at the best tile offsets.

``present`` is decided by the CRC alone. ``confidence`` is the margin of the soft evidence:
0 where the decoder's codeword agrees with the evidence no better than it does on unmarked
pictures (their best decode agreed at most 0.871 on 67 real images), 1 where every coded bit
agrees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from . import convolutional as cc
from . import fold as fl
from .lattice import Lattice, find_lattices
from .layout import TileLayout
from .payload import FRAME_BITS, PAYLOAD_BITS, bits_to_int, unframe_bits
from .protocol import WatermarkReading
from .whitening import half, luma_u8, to_working, whiten

LATTICE_CANDIDATES = 6  # from the pilot-wave search, re-ranked by pilot correlation
DECODED_LATTICES = 2  # lattices refined and decoded
OFFSET_CANDIDATES = 2  # tile offsets decoded per lattice
MAX_HYPOTHESES = DECODED_LATTICES * OFFSET_CANDIDATES  # frames checked against the CRC
REFINE_STEPS = 2
NOISE_AGREEMENT = 0.88


@dataclass(frozen=True)
class Attempt:
    payload: int | None
    agreement: float  # share of soft evidence that agrees with the decoded codeword
    errors: int  # coded bits whose hard decision the decoder overruled
    best_effort: int  # the payload bits as decoded, valid or not
    pilot_z: float
    lattice: Lattice
    offset: tuple[float, float]

    def details(self) -> dict[str, Any]:
        return {
            "period_px": round(self.lattice.period, 3),
            "angle_deg": round(self.lattice.angle_deg, 3),
            "pilot_z": round(self.pilot_z, 2),
            "offset_bins": (round(self.offset[0], 2), round(self.offset[1], 2)),
            "agreement": round(self.agreement, 4),
            "coded_bit_errors": self.errors,
            "best_effort_payload": self.best_effort,
        }


def decode(layout: TileLayout, chip_soft: np.ndarray) -> tuple[int | None, float, int, int]:
    """(payload or None, agreement, overruled coded bits, best-effort payload)."""
    soft = layout.coded_soft(chip_soft)
    bits = cc.viterbi(soft, FRAME_BITS)
    code = 2.0 * cc.encode(bits) - 1.0
    agree = np.sign(soft) == code
    weight = np.abs(soft)
    agreement = float(np.sum(weight * agree) / (np.sum(weight) + 1e-12))
    return unframe_bits(bits), agreement, int(np.sum(~agree)), bits_to_int(bits[:PAYLOAD_BITS])


def _rank(
    e: np.ndarray, templates: fl.Templates, lattices: list[Lattice]
) -> list[tuple[float, Lattice]]:
    """Pilot correlation peak (z-score) of each lattice on a half-size image, best first."""
    small = half(e)
    ranked = []
    for lattice in lattices:
        fold = fl.fold_total(small, lattice, fl.RANK_SUB, px_scale=2.0)
        corr = fl.correlate(fold, templates.pilot(lattice, fl.RANK_SUB))
        ranked.append((float(fl.zscore(corr).max()), lattice))
    return sorted(ranked, key=lambda r: -r[0])


def _refine(
    e: np.ndarray, templates: fl.Templates, lattice: Lattice
) -> tuple[Lattice, fl.Folded, np.ndarray]:
    """The lattice corrected by the quadrant drift, its fold and its pilot correlation."""
    folded = fl.fold_regions(e, lattice)
    corr = fl.correlate_regions(folded, templates.pilot(lattice))
    for _ in range(REFINE_STEPS):
        near = fl.peaks(fl.zscore(corr.sum(0)), 1)[0][:2]
        better = fl.corrected(lattice, folded, corr, near)
        if better is None:
            break
        lattice = better
        folded = fl.fold_regions(e, lattice)
        corr = fl.correlate_regions(folded, templates.pilot(lattice))
    return lattice, folded, corr.sum(0)


def detect(layout: TileLayout, templates: fl.Templates, image: Image.Image) -> WatermarkReading:
    t0 = time.perf_counter()
    e = whiten(to_working(luma_u8(image)))
    candidates = find_lattices(e, layout.waves, LATTICE_CANDIDATES)
    best: Attempt | None = None
    tried = 0
    for _, lattice in _rank(e, templates, candidates)[:DECODED_LATTICES]:
        refined, folded, corr = _refine(e, templates, lattice)
        total = folded.total
        for dy, dx, z in fl.peaks(fl.zscore(corr), OFFSET_CANDIDATES):
            tried += 1
            chips = fl.read_chips(total, templates, refined, (dy, dx))
            payload, agreement, errors, guess = decode(layout, chips)
            attempt = Attempt(payload, agreement, errors, guess, z, refined, (dy, dx))
            if payload is not None:
                return _reading(attempt, tried, t0)
            if best is None or agreement > best.agreement:
                best = attempt
    return _reading(best, tried, t0)


def _reading(attempt: Attempt | None, tried: int, t0: float) -> WatermarkReading:
    details: dict[str, Any] = attempt.details() if attempt else {}
    details.update(hypotheses_tried=tried, seconds=round(time.perf_counter() - t0, 4))
    if attempt is None:
        return WatermarkReading(False, None, 0.0, None, details)
    margin = (attempt.agreement - NOISE_AGREEMENT) / (1 - NOISE_AGREEMENT)
    confidence = float(np.clip(margin, 0.0, 1.0))
    if attempt.payload is None:
        return WatermarkReading(False, None, confidence, None, details)
    return WatermarkReading(True, attempt.payload, confidence, attempt.errors, details)
