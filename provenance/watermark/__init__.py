"""Invisible, robust image watermark: a 48-bit payload (a generation record's id) in every image.

Design (``TiledWatermarker``, soft-binding alg ``org.chopmark.wm.v1``):

* Payload: 48 bits, then a CRC-32 of it (with a domain-separating initial value) -> 80 bits,
  convolutionally coded (rate 1/3, constraint length 7, zero tail) -> 258 coded bits.
* Tile: 32 x 32 chips. Every chip carries one coded bit (about four chips per bit) spread by a
  fixed pseudo-noise sign; superimposed is a known pilot: 8 plane waves (a whole number of cycles
  per tile; 25% of the energy) and a pseudo-noise pattern (8%).
* Embedding: the tile is rendered with a cubic kernel, ``min(h, w) / 5`` pixels per period,
  repeated over the image, scaled by a perceptual strength map (busy areas more, flat and
  near-black/white areas less) and added to R, G and B alike (a luma change). Informed
  embedding re-weights each coded bit against what the picture itself contributes to it. The
  gain is set for a PSNR of 40.5 dB (never below 40).
* Detection: luma at 320 px on the short side, high-passed and weighted for maximum-ratio
  combining. The pilot waves are sharp peaks in the power spectrum: their pattern, scaled and
  rotated, gives the tile period and angle (so resizing and rotation). The image is folded onto
  one tile along each candidate lattice; circular correlation with the pilot gives the tile
  offset (so crops at any offset); per-quadrant offsets correct the lattice (a full 2x2 map);
  matched filtering at the chip centres gives soft values for Viterbi decoding; the CRC decides
  ``present``.

False positives: an unmarked image yields, for each decoded hypothesis, a 48-bit payload and a
32-bit check word that match with probability 2**-32 (the check word of a given payload is one
of 2**32 values; the domain-separated CRC makes the all-zero frame that a blank image decodes
to invalid). The detector checks at most ``MAX_HYPOTHESES`` = 4 frames per image (2 lattices x
2 offsets), so by the union bound P(false positive) <= 4 * 2**-32 ~= 9.3e-10 per image, three
orders of magnitude below the 1e-6 requirement. The pilot correlation and agreement figures in
``details`` are reported but not needed for that bound.
"""

from .detector import MAX_HYPOTHESES
from .payload import PAYLOAD_BITS, hex_to_payload, payload_to_hex
from .protocol import Watermarker, WatermarkReading
from .tiled import ALG, MIN_DETECT_SIDE, MIN_EMBED_SIDE, TiledWatermarker, default_watermarker

__all__ = [
    "ALG",
    "MAX_HYPOTHESES",
    "MIN_DETECT_SIDE",
    "MIN_EMBED_SIDE",
    "PAYLOAD_BITS",
    "TiledWatermarker",
    "WatermarkReading",
    "Watermarker",
    "default_watermarker",
    "hex_to_payload",
    "payload_to_hex",
]
