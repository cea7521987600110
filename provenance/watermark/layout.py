"""The watermark tile: ``TILE x TILE`` chips on a periodic grid, rendered to pixels with a Keys
cubic kernel.

Every chip carries one coded bit, spread by a fixed pseudo-noise sign (each bit gets about four
chips). Superimposed on all chips is a known pilot: a few plane waves with a whole number of
cycles per tile, whose sharp peaks in the image's Fourier spectrum reveal scale and rotation,
plus a pseudo-noise component whose sharp autocorrelation pins the tile offset.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

TILE = 32
WAVES = 8  # plane waves in the pilot
WAVE_RADIUS = (7.0, 12.0)  # their frequencies, cycles per tile
WAVE_SHARE = 0.20  # share of the chip energy in the waves ...
NOISE_SHARE = 0.08  # ... in the pseudo-noise pilot; the rest carries the data
TILES_ACROSS = 5  # tile periods along the short side of the embedded image
MIN_PERIOD = 2 * TILE  # pixels: chips at least two pixels wide


def period_for(height: int, width: int) -> int:
    """Tile period in pixels for an image of this size."""
    return max(MIN_PERIOD, round(min(height, width) / TILES_ACROSS))


@dataclass(frozen=True)
class TileLayout:
    """Which chip does what. Arrays are ``(tile, tile)``; ``waves`` is ``(WAVES, 2)`` integer
    (x, y) frequencies in cycles per tile."""

    tile: int
    n_coded: int
    waves: np.ndarray
    pilot: np.ndarray  # unit-power pilot value of each chip (waves + pseudo-noise)
    data_signs: np.ndarray  # +-1 pseudo-noise spreading sign of each chip
    bit_index: np.ndarray  # coded-bit index of each chip

    @property
    def data_amplitude(self) -> float:
        return float(np.sqrt(1.0 - WAVE_SHARE - NOISE_SHARE))

    @property
    def pilot_amplitude(self) -> float:
        return float(np.sqrt(WAVE_SHARE + NOISE_SHARE))

    def data_chips(self, coded_bits: np.ndarray) -> np.ndarray:
        """Unit-amplitude data part: +-1 per chip."""
        symbols = 2.0 * np.asarray(coded_bits, dtype=np.float32) - 1.0
        return (self.data_signs * symbols[self.bit_index]).astype(np.float32)

    def chips(self, coded_bits: np.ndarray, bit_gain: np.ndarray | None = None) -> np.ndarray:
        """Chip values for the given 0/1 coded bits; ``bit_gain`` scales each coded bit's
        chips (informed embedding)."""
        data = self.data_chips(coded_bits)
        if bit_gain is not None:
            data = data * bit_gain[self.bit_index]
        return (self.data_amplitude * data + self.pilot_amplitude * self.pilot).astype(np.float32)

    def bit_sums(self, per_chip: np.ndarray) -> np.ndarray:
        """Sum a per-chip quantity over each coded bit's chips."""
        return np.bincount(self.bit_index.ravel(), weights=per_chip.ravel(), minlength=self.n_coded)

    def coded_soft(self, chip_soft: np.ndarray) -> np.ndarray:
        """One soft value per coded bit: the pilot's least-squares share removed from the chip
        evidence, then de-spread and summed."""
        p = self.pilot
        residual = chip_soft - p * (float(np.sum(chip_soft * p)) / float(np.sum(p * p)))
        return self.bit_sums(residual * self.data_signs)


def _waves(rng: np.random.Generator, count: int) -> np.ndarray:
    """Distinct frequencies in a half plane, inside the radius band, away from the axes (where
    straight edges in pictures put their energy) and with no two a quarter turn apart."""
    lo, hi = WAVE_RADIUS
    out: list[tuple[int, int]] = []
    while len(out) < count:
        kx, ky = (int(v) for v in rng.integers(-int(hi), int(hi) + 1, 2))
        if ky < 0 or (ky == 0 and kx < 0):
            kx, ky = -kx, -ky
        angle = np.degrees(np.arctan2(ky, kx)) % 90
        if not lo <= np.hypot(kx, ky) <= hi or min(angle, 90 - angle) < 8:
            continue
        if (kx, ky) in out or (-ky, kx) in out or (ky, -kx) in out:
            continue
        out.append((kx, ky))
    return np.array(out, dtype=np.int64)


def make_layout(key: str, n_coded: int, tile: int = TILE) -> TileLayout:
    """Deterministic layout from ``key``."""
    rng = np.random.default_rng(zlib.crc32(key.encode()))
    waves = _waves(rng, WAVES)
    phases = rng.uniform(0, 2 * np.pi, WAVES)
    cy, cx = np.mgrid[0:tile, 0:tile].astype(np.float64)
    wave = sum(
        np.cos(2 * np.pi * (kx * cx + ky * cy) / tile + ph)
        for (kx, ky), ph in zip(waves, phases, strict=True)
    )
    noise = rng.choice(np.array([-1.0, 1.0]), size=(tile, tile))
    wave = wave / np.sqrt(np.mean(wave**2))
    pilot = np.sqrt(WAVE_SHARE) * wave + np.sqrt(NOISE_SHARE) * noise
    pilot /= np.sqrt(np.mean(pilot**2))
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=(tile, tile))
    if tile * tile < 2 * n_coded:
        raise ValueError("tile too small for the code")
    bit_index = np.empty(tile * tile, dtype=np.int64)
    bit_index[rng.permutation(tile * tile)] = np.arange(tile * tile) % n_coded
    return TileLayout(
        tile=tile,
        n_coded=n_coded,
        waves=waves,
        pilot=pilot.astype(np.float32),
        data_signs=signs,
        bit_index=bit_index.reshape(tile, tile),
    )


def _keys(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def interpolation_matrix(positions: np.ndarray, tile: int) -> np.ndarray:
    """``(len(positions), tile)`` weights: cubic interpolation of a periodic chip row at
    ``positions`` (in chips; chip ``c`` is centred at ``c``)."""
    positions = np.asarray(positions, dtype=np.float64)
    base = np.floor(positions).astype(np.int64)
    frac = positions - base
    out = np.zeros((len(positions), tile), dtype=np.float32)
    rows = np.arange(len(positions))
    for k in (-1, 0, 1, 2):
        np.add.at(out, (rows, (base + k) % tile), _keys(frac - k).astype(np.float32))
    return out


def separable(rows: np.ndarray, grid: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``rows @ grid @ cols.T`` with numpy's own loops: these products are small, and a threaded
    BLAS on a busy machine costs more in hand-offs than it saves."""
    return np.einsum("il,jl->ij", np.einsum("ik,kl->il", rows, grid), cols)


def render_tile(chips: np.ndarray, period_px: int) -> np.ndarray:
    """One period of the chip pattern, ``period_px`` pixels square (chip ``c`` centred at pixel
    ``(c + 0.5) * period_px / tile - 0.5``)."""
    m = _tile_matrix(period_px, chips.shape[0])
    return separable(m, chips, m)


@lru_cache(maxsize=8)
def _tile_matrix(period_px: int, tile: int) -> np.ndarray:
    m = interpolation_matrix((np.arange(period_px) + 0.5) * tile / period_px - 0.5, tile)
    m.flags.writeable = False
    return m


def render(chips: np.ndarray, height: int, width: int, period_px: int) -> np.ndarray:
    """The periodic pattern over a ``height x width`` grid, tiles starting at pixel (0, 0)."""
    one = render_tile(chips, period_px)
    reps = (-(-height // period_px), -(-width // period_px))
    return np.tile(one, reps)[:height, :width]
