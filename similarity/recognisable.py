"""Whether copies of a picture can be recognised at all, before it is registered as a work.

A copy of a picture is called `copy` by a PDQ hash close enough, which needs a hash of some
quality (a plain picture, or one a few pixels across, hashes to noise: `index.PDQ_QUALITY_MIN`),
or by enough local features agreeing, which needs the work to have at least that many
(``Thresholds.inliers_copy``); see `similarity.matcher`. (The strokes of its edge map catch
line drawings made from it, not copies of the picture.) A picture with neither could only ever
be called `similar` (its dense descriptor), never `copy`: not even its own bytes would be
blocked.
Registering it would promise the artist a protection it cannot give, so it is refused with a
reason instead.
"""

from __future__ import annotations

from similarity.index import PDQ_QUALITY_MIN
from similarity.local import LocalFeatures
from similarity.matcher import Thresholds
from similarity.signals import ImageSignals

UNRECOGNISABLE = (
    "the picture has too little detail for copies of it to be recognised (it is plain, nearly"
    " plain, or only a few pixels across): registering it would protect nothing"
)


def recognisable(signals: ImageSignals, thresholds: Thresholds = Thresholds()) -> bool:
    """Whether some copy of the picture with ``signals`` (stored ones will do) could be called
    `copy`: its PDQ hash is usable, or it has enough local features for a copy by them alone."""
    if signals.pdq_quality >= PDQ_QUALITY_MIN:
        return True
    return len(LocalFeatures.unpack(signals.local).xy) >= thresholds.inliers_copy
