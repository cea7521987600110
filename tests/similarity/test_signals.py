"""Signals: PDQ and its rotations/flips, the dense descriptor's symmetries, packing."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from similarity import ImageSignals, compute_signals
from similarity import dense as dense_mod
from similarity.local import LocalFeatures, verify
from similarity.pdq import DIHEDRAL_NAMES, hamming, pdq_dihedral, pdq_hash


def test_pdq_is_32_bytes_with_quality(artwork: Image.Image) -> None:
    h, q = pdq_hash(np.asarray(artwork))
    assert len(h) == 32 and 50 <= q <= 100


def test_pdq_dihedral_finds_rotations_and_flips(artwork: Image.Image) -> None:
    original, _ = pdq_hash(np.asarray(artwork))
    edits = {
        "rotate_90": artwork.transpose(Image.Transpose.ROTATE_90),
        "rotate_180": artwork.transpose(Image.Transpose.ROTATE_180),
        "flip_x": ImageOps.mirror(artwork),
    }
    for name, edited in edits.items():
        hashes, _ = pdq_dihedral(np.asarray(edited))
        plain = hamming(hashes[0], original)
        best = min(hamming(h, original) for h in hashes)
        assert plain > 64, name  # the edit defeats the plain hash...
        assert best <= 16, name  # ...but one of the eight variants undoes it
    assert len(DIHEDRAL_NAMES) == 8


def test_dense_variants_are_exact_permutations(artwork: Image.Image) -> None:
    grey = np.asarray(artwork.convert("L").resize((32, 32)), np.float32)
    base = dense_mod.describe(grey)
    variants = dense_mod.dihedral_variants(base)
    for op in range(8):
        direct = dense_mod.describe(dense_mod.transform_square(op, grey))
        assert np.allclose(direct, variants[op], atol=1e-5)
    assert abs(float(np.linalg.norm(base)) - 1) < 1e-4


def test_dense_ignores_brightness_and_sees_other_pictures(
    artwork: Image.Image, other_artwork: Image.Image
) -> None:
    a = compute_signals(artwork).dense
    darker = compute_signals(artwork.point(lambda v: int(v * 0.7))).dense
    b = compute_signals(other_artwork).dense
    assert float(a @ darker) > 0.97
    assert float(a @ b) < float(a @ darker) - 0.1


def test_pack_round_trip(artwork: Image.Image) -> None:
    s = compute_signals(artwork)
    packed = s.pack()
    assert set(packed) == {"pdq", "pdq_quality", "dense", "local"}
    assert all(isinstance(v, bytes | int) for v in packed.values())
    back = ImageSignals.from_packed(
        {k: memoryview(v) if isinstance(v, bytes) else v for k, v in packed.items()}
    )
    assert back.pdq == s.pdq and back.pdq_quality == s.pdq_quality and back.local == s.local
    assert np.allclose(back.dense_views, s.dense_views, atol=2e-3)
    assert back.dense.shape == (dense_mod.DIM,) and back.dense.dtype == np.float32
    feats = LocalFeatures.unpack(s.local)
    assert len(feats) >= 100 and feats.descriptors.shape[1] == 32


def test_signals_come_from_luma_alone(artwork: Image.Image) -> None:
    """A colour picture and its greyscale version have the same signals: what a grey decode
    gives matches what a colour registration stored."""
    colour = compute_signals(artwork, for_query=False)
    grey = compute_signals(artwork.convert("L"), for_query=False)
    assert hamming(colour.pdq, grey.pdq) <= 2
    assert float(colour.dense_views[0] @ grey.dense_views[0]) > 0.999
    a, b = LocalFeatures.unpack(colour.local), LocalFeatures.unpack(grey.local)
    assert len(a) == len(b) > 100
    # Luma rounding differs by a grey level here and there (PIL and OpenCV round differently),
    # which flips a few descriptor bits, not the geometry: the two verify as one picture.
    same = verify(a, b)
    assert same.inliers >= len(a) // 2
    assert abs(same.scale - 1) < 0.01 and abs(same.rotation_deg) < 0.5
