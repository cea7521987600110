"""Invisible, robust image watermark: a 48-bit payload (a generation record's id) in every image.

Design (``TiledWatermarker``, soft-binding alg ``org.chopmark.wm.v1``):

* Payload: 48 bits, then a CRC-32 of it (with a domain-separating initial value) -> 80 bits,
  convolutionally coded (rate 1/3, constraint length 7, zero tail) -> 258 coded bits.
* Tile: 32 x 32 chips. Every chip carries one coded bit (about four chips per bit) spread by a
  fixed pseudo-noise sign; superimposed is a known pilot: 8 plane waves (a whole number of cycles
  per tile; 20% of the energy) and a pseudo-noise pattern (8%).
* Embedding: the tile is rendered with a cubic kernel, ``min(h, w) / 5`` pixels per period,
  repeated over the image, scaled by a perceptual strength map (busy areas more, flat and
  near-black/white areas less) and added to R, G and B alike (a luma change). Informed
  embedding re-weights each coded bit against what the picture itself contributes to it. The
  gain is set for a PSNR of 40.5 dB (never below 40).
* Detection: luma at 320 px on the short side, high-passed and weighted for maximum-ratio
  combining. The lattice of an unedited image of the given size is tried first (re-encoded,
  brightened and resized images need no search). Then the pilot waves, sharp peaks in the power
  spectrum, give candidate tile periods and angles (so crops, resizing and rotation): their
  pattern is matched scaled and rotated, over all periods and angles and along the crop line
  (angle 0, the periods of an image that kept 60-95% of its sides), where the pilot still
  stands out in pictures whose own periodic texture outscores it elsewhere. A candidate goes on
  only when its pilot peak on a half-size fold stands out from noise (most candidates of
  unmarked pictures do not, so they cost the search alone). The image is folded
  onto one tile along each candidate lattice; circular correlation with the pilot gives the
  tile offset (so crops at any offset); where that peak stands out from noise (and always on
  the two lattices with the strongest pilot waves), per-quadrant offsets correct the lattice's
  scale and angle while that sharpens it; matched filtering at the chip centres gives soft
  values for Viterbi decoding; the CRC decides ``present``. When nothing decodes but the best
  attempt shows evidence of a mark (soft-bit agreement or pilot peak above what about 96% of
  unmarked pictures reach), small scale and angle changes of it are decoded too (a weak pilot
  leaves the lattice a few tenths of a percent off); unmarked pictures mostly stop before that.

False positives: an unmarked image yields, for each decoded hypothesis, a 48-bit payload and a
32-bit check word that match with probability 2**-32 (the check word of a given payload is one
of 2**32 values; the domain-separated CRC makes the all-zero frame that a blank image decodes
to invalid). The detector checks at most ``MAX_HYPOTHESES`` = 16 frames per image (one tile
offset on each of the unedited lattice, 5 searched lattices and 2 crop-line lattices, then 8
polished lattices), so by the union bound P(false positive) <= 16 * 2**-32 ~= 3.7e-9 per image,
over two orders of magnitude below the 1e-6 requirement. The pilot correlation and agreement
figures in ``details`` are reported but not needed for that bound.
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
