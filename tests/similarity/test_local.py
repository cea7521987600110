"""ORB features: mirror images described at the mirrored keypoints; none on thin strips."""

import numpy as np
import pytest

from similarity import local as local_mod
from similarity.signals import _grey_array
from tests.support import photo_like


def _gray(seed: int) -> np.ndarray:
    return local_mod.work_gray(_grey_array(photo_like(seed)))


def test_mirror_features_agree_with_features_detected_on_the_mirror_image() -> None:
    gray = _gray(3)
    plain, mirror = local_mod.extract_with_mirror(gray)
    alone = local_mod.extract(gray)
    assert plain.pack() == alone.pack()
    detected = local_mod.extract(np.ascontiguousarray(gray[:, ::-1]))
    assert len(mirror) == len(plain) > 300
    np.testing.assert_allclose(mirror.xy[:, 0], gray.shape[1] - 1 - plain.xy[:, 0], atol=1e-3)
    gap = np.linalg.norm(mirror.xy[:, None] - detected.xy[None], axis=2)
    nearest = gap.argmin(1)
    same_place = gap.min(1) <= 1.0
    bits = np.unpackbits(mirror.descriptors ^ detected.descriptors[nearest], axis=1).sum(1)
    assert same_place.mean() > 0.75
    assert np.median(bits[same_place]) <= 4  # the same descriptors, not just the same places
    fit = local_mod.verify(mirror, detected)
    assert fit.inliers > 250 and abs(fit.scale - 1) < 0.01 and abs(fit.rotation_deg) < 0.5


def test_mirror_features_verify_a_flipped_copy_and_not_the_unflipped_picture() -> None:
    gray = _gray(11)
    _, mirror = local_mod.extract_with_mirror(gray)
    flipped_copy = local_mod.extract(np.ascontiguousarray(gray[:, ::-1]))
    other = local_mod.extract(_gray(12))
    assert local_mod.verify(mirror, flipped_copy).inliers > 100
    assert local_mod.verify(mirror, other).inliers < 18


@pytest.mark.parametrize("size", [(1, 300), (3, 3000), (20, 5000), (20000, 2), (3000, 3), (1, 1)])
def test_pictures_too_thin_for_orb_have_no_local_features_and_still_get_signals(size) -> None:
    """A strip a few pixels wide is a valid image: its signals are computed, without ORB."""
    import io

    from PIL import Image

    from similarity import compute_signals, decode_image
    from similarity.decode import DecodeLimits

    w, h = size
    pixels = np.random.default_rng(w * 7 + h).integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    for grey in (True, False):
        decoded = decode_image(buf.getvalue(), DecodeLimits(), target_side=None, grey=grey)
        signals = compute_signals(decoded)
        assert len(local_mod.LocalFeatures.unpack(signals.local)) == 0
        assert len(signals.pdq) == 32
