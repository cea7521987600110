"""A picture is called recognisable exactly when its own bytes, as a query, are called `copy`:
registration refuses the others (`service.registry.ingest.prepare`)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from similarity import MatchIndex, compute_signals, decode_for_matching, decode_image, match
from similarity.recognisable import recognisable
from tests.support import photo_like


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


PICTURES = {
    "photo": lambda: photo_like(61, (640, 480)),
    "small photo": lambda: photo_like(62, (640, 480)).resize((24, 24)),
    "strip 20 px wide": lambda: photo_like(63, (640, 480)).resize((20, 400)),
    "line 1 px wide": lambda: photo_like(64, (640, 480)).resize((1, 600)),
    "line 3 px high": lambda: photo_like(65, (640, 480)).resize((3000, 3)),
    "8 px square": lambda: photo_like(66, (640, 480)).resize((8, 8)),
    "one colour": lambda: Image.new("RGB", (512, 512), (250, 250, 250)),
    "smooth gradient": lambda: Image.fromarray(
        np.tile(np.linspace(0, 255, 512).astype(np.uint8), (512, 1))
    ).convert("RGB"),
}
EXPECTED = {"photo": True, "small photo": True, "strip 20 px wide": True,
            "8 px square": True}  # contrasty enough to hash well: size alone does not decide


@pytest.mark.parametrize("name", list(PICTURES))
def test_recognisable_exactly_when_its_own_bytes_are_a_copy(name: str) -> None:
    data = _png(PICTURES[name]())
    work = compute_signals(decode_image(data), for_query=False)
    others = [compute_signals(decode_image(_png(photo_like(70 + i))), for_query=False)
              for i in range(3)]
    index = MatchIndex()
    index.add([1, 2, 3, 4], [work, *others])
    stored = {i: bytes(s.pack()["local"]) for i, s in zip([1, 2, 3, 4], [work, *others],
                                                             strict=True)}
    found = match(compute_signals(decode_for_matching(data)), index,
                  lambda ids: {i: stored[i] for i in ids})
    own_copy = any(m.id == 1 and m.decision == "copy" for m in found)
    assert recognisable(work) is EXPECTED.get(name, False)
    assert own_copy is recognisable(work)
