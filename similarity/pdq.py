"""PDQ perceptual hashes (256 bits) as 32-byte strings, with the eight rotations and flips."""

from __future__ import annotations

import numpy as np
import pdqhash

PDQ_BYTES = 32
# Order returned by `pdqhash.compute_dihedral`.
DIHEDRAL_NAMES: tuple[str, ...] = (
    "original",
    "rotate_90",
    "rotate_180",
    "rotate_270",
    "flip_x",
    "flip_y",
    "flip_plus_1",
    "flip_minus_1",
)


def _rgb_array(rgb: np.ndarray) -> np.ndarray:
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("PDQ needs an (H, W, 3) uint8 RGB array")
    return np.ascontiguousarray(rgb)


def pdq_hash(rgb: np.ndarray) -> tuple[bytes, int]:
    """The PDQ hash of an RGB array as 32 bytes (canonical hex order) and its quality 0..100."""
    bits, quality = pdqhash.compute(_rgb_array(rgb))
    return np.packbits(bits.astype(np.uint8)).tobytes(), int(quality)


def pdq_dihedral(rgb: np.ndarray) -> tuple[list[bytes], int]:
    """The PDQ hashes of the eight rotations/flips (order of `DIHEDRAL_NAMES`) and the quality."""
    hashes, quality = pdqhash.compute_dihedral(_rgb_array(rgb))
    return [np.packbits(h.astype(np.uint8)).tobytes() for h in hashes], int(quality)


def hamming(a: bytes, b: bytes) -> int:
    """Number of differing bits between two hashes of equal length."""
    if len(a) != len(b):
        raise ValueError("hashes differ in length")
    return int.from_bytes(bytes(x ^ y for x, y in zip(a, b, strict=True)), "big").bit_count()


def to_hex(h: bytes) -> str:
    """Hex form, as PDQ tools write it."""
    return h.hex()
