"""Seeing that two images are the same work: decoding, fingerprints, indexes, verified matches.

Typical use (all calls are blocking; run them in a worker thread)::

    decoded = decode_image(upload_bytes)              # ImageRejected on bad input (.code)
    signals = compute_signals(decoded)                # once per image
    row = signals.pack()                              # pdq, pdq_quality, dense, local columns
    index.add([work_id], [signals])                   # or add_packed(...) for bulk loads
    matches = match(signals, index, lookup)           # lookup(ids) -> {id: local bytes}

Registration may call `compute_signals(decoded, for_query=False)` to skip the query-side
extras. Query-side signals hand their ORB features (the picture's and its mirror image's) to a
helper thread (`similarity.threads`) and compute the rest at once; reading `local` waits for the
helper, or computes them if no helper has started. `SIGNALS_VERSION` changes whenever stored
columns must be recomputed; `COMPATIBLE_VERSIONS` are the stored versions still matched.
"""

from similarity.clip import Embedder, OpenClipEmbedder, UnavailableEmbedder, load_embedder
from similarity.decode import (
    DecodedImage,
    DecodeLimits,
    ImageRejected,
    decode_for_matching,
    decode_image,
    later_frames,
)
from similarity.index import Candidate, IndexConfig, MatchIndex
from similarity.matcher import LocalFeatureLookup, Match, Thresholds, match
from similarity.signals import (
    COMPATIBLE_VERSIONS,
    PACKED_COLUMNS,
    SIGNALS_VERSION,
    ImageSignals,
    compute_signals,
)

__all__ = [
    "COMPATIBLE_VERSIONS",
    "PACKED_COLUMNS",
    "SIGNALS_VERSION",
    "Candidate",
    "DecodeLimits",
    "DecodedImage",
    "Embedder",
    "ImageRejected",
    "ImageSignals",
    "IndexConfig",
    "LocalFeatureLookup",
    "Match",
    "MatchIndex",
    "OpenClipEmbedder",
    "Thresholds",
    "UnavailableEmbedder",
    "compute_signals",
    "decode_for_matching",
    "decode_image",
    "later_frames",
    "load_embedder",
    "match",
]
