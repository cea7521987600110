"""Decide whether a query image is a registered work: candidates, verification, scored verdicts.

Candidates come from the PDQ and dense indexes. Those worth it are checked with local features:
descriptor matches must agree on one similarity transform (RANSAC), which survives crops,
overlays, borders and rotations. A PDQ hit close enough to be a copy by itself needs no check;
a dense hit is checked when it is the nearest work or stands out from the crowd of nearest works
(see `Thresholds`). The query's ORB features (and those of its mirror image) are computed only
when a check needs them.
The verdict per work is `copy` (strong evidence) or `similar` (weaker evidence); works with
neither are not returned.

A query with pictures within it (`ImageSignals.parts`: a screenshot's picture, the cells of a
grid of pictures, a picture pasted into another) is matched as a whole and part by part; a work
found in a part carries the part's box in its evidence (`region`) and how the part was found
(`region_kind`: `embedded`, `grid_cell` or `pasted`), and a work found both ways keeps the
stronger match.

A query that looks like a line drawing (`ImageSignals.strokes`: an edge map, a tracing) is also
matched against works' edge maps: the nearest by their descriptor are confirmed when strokes and
edges lie on each other (`similarity.lines.overlap`); the evidence says `lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from itertools import pairwise
from typing import Generic, Literal, Protocol, TypeVar

import numpy as np

from similarity import dense as dense_mod
from similarity.index import Candidate, MatchIndex, exact_dense
from similarity.lines import Fit, LineMap, fitted_overlaps, padding_trimmed
from similarity.local import NO_MATCH, LocalFeatures, Verification, extra_of, verify
from similarity.signals import SIGNALS_VERSION, ImageSignals
from similarity.threads import Deferred

T = TypeVar("T")
MIRROR = dense_mod.OP_NAMES.index("mirror")


class LocalFeatureLookup(Protocol):
    """Fetches the packed `local` column of registered works; unknown ids are left out."""

    def __call__(self, ids: Sequence[int]) -> Mapping[int, bytes]: ...


class DenseLookup(Protocol):
    """Fetches the stored dense views of registered works, (views, DIM) each; unknown or
    withdrawn ids are left out."""

    def __call__(self, ids: Sequence[int]) -> Mapping[int, np.ndarray]: ...


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (Hamming bits for PDQ, RANSAC inliers, 1 - cosine for dense)."""

    pdq_copy_alone: int = 24  # PDQ this close is a copy without further evidence
    pdq_copy: int = 31  # PDQ this close is a copy when local features agree a little
    pdq_similar: int = 44
    inliers_copy: int = 18
    inliers_with_pdq: int = 8
    inliers_similar: int = 10
    # Dense evidence alone makes a `similar` match only when the work stands apart from the
    # crowd: its distance at most `dense_similar_ratio` times that of the crowd (see below), or
    # at most `dense_similar_alone`; never beyond `dense_similar`. Nearest works that are no
    # nearer than the crowd are what any picture has (bench/results/match_quality.md).
    dense_similar: float = 0.06
    dense_similar_alone: float = 0.025
    dense_similar_ratio: float = 0.5
    min_scale: float = 0.2  # plausible query -> reference scale of the fitted transform
    max_scale: float = 5.0
    min_coverage: float = 0.08  # share of the reference the query must overlap
    min_inliers_to_try_other_way: int = 5  # see `_verify_both`
    dense_candidates: int = 6  # nearest works asked from the dense index
    max_verify: int = 10  # most candidates given to geometric verification (PDQ hits first)
    # A dense hit is verified when it is among the `dense_verify_top` nearest works, when its
    # distance is at most `dense_verify_max`, or at most `dense_verify_ratio` times the distance
    # of the `dense_reference_rank`-th nearest work (the crowd); with fewer works than that,
    # every dense hit is verified.
    dense_verify_top: int = 2
    dense_verify_max: float = 0.03
    dense_verify_ratio: float = 0.8
    dense_reference_rank: int = 12
    # In an approximate index (at scale), this many nearest works by the quantised vectors are
    # ranked again by their stored ones before the above apply: quantisation reorders near
    # works, and a crowd of a million pushes the right one out of the first few
    # (bench/results/match_recall_at_scale.md).
    dense_rerank: int = 48
    # A line drawing is a copy of a work when its strokes and the work's edges lie on each other
    # this far beyond chance (`similarity.lines.overlap`) and the descriptors of the two are
    # at most `lines_descriptor_max` apart; the `lines_candidates` works with the nearest
    # descriptors are checked. Lines make no `similar` matches: straight lines and grids lie
    # on each other in unrelated pictures often enough (bench/results/match_quality.md).
    lines_copy: float = 0.40
    lines_copy_fitted: float = 0.45  # the same for strokes fitted as a padded or cropped
    # control image (`similarity.lines.fitted_overlaps`): more ways to fit, a higher bar
    lines_descriptor_max: float = 0.08
    lines_candidates: int = 10


Decision = Literal["copy", "similar"]


@dataclass(frozen=True)
class Match:
    """A registered work the query matches, with the evidence behind the decision."""

    id: int
    score: float
    decision: Decision
    evidence: dict[str, object]


def match(
    query: ImageSignals,
    index: MatchIndex,
    lookup: LocalFeatureLookup,
    *,
    thresholds: Thresholds = Thresholds(),
    limit: int = 10,
    parts: bool = True,
    dense_lookup: DenseLookup | None = None,
) -> list[Match]:
    """Registered works that `query` (or, with `parts`, a picture embedded in it) copies or
    resembles, best first, at most `limit`. With `dense_lookup`, an approximate index's dense
    candidates are ranked again by their stored vectors (`Thresholds.dense_rerank`)."""
    results = {m.id: m for m in _match_whole(query, index, lookup, thresholds, dense_lookup)}
    if query.strokes is not None:
        _keep_stronger(results, _match_lines(query.strokes, index, lookup, thresholds))
    for part in query.parts if parts else ():
        _keep_stronger(results, (
            Match(m.id, m.score, m.decision,
                  {**m.evidence, "region": list(part.box), "region_kind": part.kind})
            for m in _match_whole(part.signals, index, lookup, thresholds, dense_lookup)
        ))
    ordered = sorted(results.values(), key=lambda m: (m.decision != "copy", -m.score, m.id))
    return ordered[:limit]


def verify_against(
    query: ImageSignals,
    work_id: int,
    lookup: LocalFeatureLookup,
    *,
    thresholds: Thresholds = Thresholds(),
) -> Match | None:
    """Whether `query` copies or resembles one given work, by local features alone (as is or
    mirrored), however the indexes rank it: for a work named by other evidence (a watermark),
    where a crop or a frame may keep it out of the candidates. None: no agreement."""
    ref = _unpack_or_none(lookup([work_id]).get(work_id))
    if ref is None:
        return None
    feats = LocalFeatures.unpack(query.local)
    mirror = _Lazy(lambda: _unpack_or_none(query.local_mirror or None))
    ver = _verify_both(feats, mirror, ref, thresholds, None)
    return _decide(work_id, [], ver, True, None, thresholds)


def stronger(a: Match, b: Match) -> bool:
    """Whether `a` is the stronger match: a copy over a similarity, then the higher score."""
    return (a.decision == "copy", a.score) > (b.decision == "copy", b.score)


def _keep_stronger(results: dict[int, Match], found: Iterable[Match]) -> None:
    """Add `found` to `results`, keeping each work's stronger match."""
    for m in found:
        if m.id not in results or stronger(m, results[m.id]):
            results[m.id] = m


def _match_whole(
    query: ImageSignals,
    index: MatchIndex,
    lookup: LocalFeatureLookup,
    t: Thresholds,
    dense_lookup: DenseLookup | None = None,
) -> list[Match]:
    """Every registered work that the picture of `query` as a whole copies or resembles."""
    k = max(t.dense_candidates, t.dense_reference_rank)
    if dense_lookup is not None and index.approximate and t.dense_rerank > k:
        wide = index.candidates(query, k=t.dense_rerank)
        near = [c for c in wide if c.signal == "dense"]
        vectors = dense_lookup([c.id for c in near]) if near else {}
        found = [c for c in wide if c.signal != "dense"] + exact_dense(query, near, vectors, k)
    else:
        found = index.candidates(query, k=k)
    dense = [c for c in found if c.signal == "dense"]
    reference = (
        dense[t.dense_reference_rank - 1].distance
        if t.dense_reference_rank > 0 and len(dense) >= t.dense_reference_rank else None
    )
    kept = dense[: t.dense_candidates]
    by_id: dict[int, list[Candidate]] = {}
    for c in [c for c in found if c.signal == "pdq"] + kept:
        by_id.setdefault(c.id, []).append(c)
    top = {c.id for c in kept[: t.dense_verify_top]}
    worth = [wid for wid in by_id if _worth_verifying(by_id[wid], wid in top, reference, t)]
    order = _verification_order({wid: by_id[wid] for wid in worth})[: t.max_verify]
    stored = lookup(order) if order else {}
    verified: dict[int, tuple[Verification, bool]] = {}
    if order:
        q_feats = LocalFeatures.unpack(query.local)  # waits for the helper that computes them
        mirror = _Lazy(lambda: _unpack_or_none(query.local_mirror or None))
        negatives = _Lazy(lambda: _negative_features(query))

        def check(wid: int) -> tuple[Verification, bool]:
            ref = _unpack_or_none(stored.get(wid))
            if ref is None:
                return NO_MATCH, False
            feats, its_mirror = q_feats, mirror
            if _negative_hint(by_id[wid]) and (negative := negatives.get()) is not None:
                feats, its_mirror = negative  # a negative: its own features agree, not the query's
            return _verify_both(feats, its_mirror, ref, t, _flip_hint(by_id[wid])), True

        # Candidates are verified independently: a helper takes all but the first meanwhile.
        others = [(wid, Deferred(partial(check, wid))) for wid in order[1:]]
        verified[order[0]] = check(order[0])
        for wid, job in others:
            verified[wid] = job.result()
    results = []
    for wid, cands in by_id.items():
        ver, have_local = verified.get(wid, (NO_MATCH, False))
        m = _decide(wid, cands, ver, have_local, reference, t)
        if m is not None:
            results.append(m)
    return results


def _match_lines(
    strokes: LineMap, index: MatchIndex, lookup: LocalFeatureLookup, t: Thresholds
) -> list[Match]:
    """Works whose edge maps the strokes of a line drawing trace.

    The index may hold approximate descriptors (at scale): the distance that decides is worked
    out again from each candidate's stored edge map."""
    # The strokes as they are (stretched onto a work, or a centred crop of it), and without
    # the bars of a padded control image when it has them: each view brings its candidates
    # and is fitted only to those it brought and is described like.
    views: list[tuple[LineMap, frozenset[Fit]]] = [(strokes, AS_DRAWN)]
    trimmed = padding_trimmed(strokes)
    if trimmed is not None:
        views.append((trimmed, PADDED))
    mirror = dense_mod.dihedral_permutations()[MIRROR]
    described = [(d, d[mirror]) for d in (v.describe() for v, _ in views)]
    brought_by: dict[int, list[int]] = {}  # candidate -> the views that brought it
    for v, (plain, _) in enumerate(described):  # the index tries each mirrored too
        for c in index.line_candidates(plain, k=t.lines_candidates):
            brought_by.setdefault(c.id, []).append(v)
    stored = lookup(list(brought_by)) if brought_by else {}
    found = []
    for cid, by in brought_by.items():
        edges = _lines_or_none(stored.get(cid))
        if edges is None:
            continue
        work = edges.describe()
        apart = {v: round(1.0 - max(float(described[v][0] @ work),
                                    float(described[v][1] @ work)), 6) for v in by}
        fits = frozenset(f for v, d in apart.items() if d <= t.lines_descriptor_max
                         for f in views[v][1])
        if not fits:
            continue
        distance = min(apart.values())
        passing = [f for f in fitted_overlaps(strokes, edges, fits)
                   if f.score >= (t.lines_copy if f.fit == "stretched" else t.lines_copy_fitted)]
        if not passing:
            continue
        fitted = max(passing, key=lambda f: f.score)
        score, mirrored = fitted.score, fitted.mirrored
        evidence: dict[str, object] = {
            "signals_version": SIGNALS_VERSION,
            "fired": ["lines"],
            "pdq": None,
            "dense": None,
            "local_features": None,
            "lines": {"overlap": round(score, 4), "mirrored": mirrored, "fit": fitted.fit,
                      "descriptor_distance": distance},
            "thresholds": asdict(t),
        }
        found.append(Match(cid, round(max(score, 0.8), 4), "copy", evidence))
    return found


AS_DRAWN: frozenset[Fit] = frozenset({"stretched", "cropped"})
PADDED: frozenset[Fit] = frozenset({"padded"})


def _lines_or_none(raw: bytes | None) -> LineMap | None:
    """The edge map stored after a work's local features; None when its row has none (stored
    by the version before edge maps) or the bytes are damaged."""
    if not raw:
        return None
    try:
        extra = extra_of(raw)
        return LineMap.unpack(extra) if extra else None
    except ValueError:
        return None


def _worth_verifying(
    cands: list[Candidate], top: bool, reference: float | None, t: Thresholds
) -> bool:
    """Whether local features could change the verdict on this work, and the hit is strong
    enough to pay for them."""
    pdq = min((c.distance for c in cands if c.signal == "pdq"), default=None)
    if pdq is not None:
        return pdq > t.pdq_copy_alone  # closer: a copy already
    dense = min(c.distance for c in cands if c.signal == "dense")
    return (
        top
        or reference is None
        or dense <= t.dense_verify_max
        or dense <= t.dense_verify_ratio * reference
    )


class _Lazy(Generic[T]):
    """A value worked out when first asked for (the query's mirror-image features, or its
    negative's)."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._done = False

    def get(self) -> T | None:
        if not self._done:
            self._value = self._make()
            self._done = True
        return self._value


def _negative_features(
    query: ImageSignals,
) -> tuple[LocalFeatures, _Lazy[LocalFeatures]] | None:
    """The features of the query's negative, and those of its mirror image (lazily)."""
    pair = query.local_negative
    if pair is None:
        return None
    plain = _unpack_or_none(pair[0])
    return None if plain is None else (plain, _Lazy(lambda: _unpack_or_none(pair[1] or None)))


def _negative_hint(cands: list[Candidate]) -> bool:
    """Whether the closest PDQ hash that found the work was a complement (a negative)."""
    pdq = min((c for c in cands if c.signal == "pdq"), key=lambda c: c.distance, default=None)
    return pdq is not None and pdq.variant.endswith("negative")


def _unpack_or_none(raw: bytes | None) -> LocalFeatures | None:
    """Stored features, or None when absent or unreadable (the decision then rests on the
    other signals, and the evidence says local features were unavailable)."""
    if raw is None:
        return None
    try:
        return LocalFeatures.unpack(bytes(raw))
    except ValueError:
        return None


def _verification_order(by_id: dict[int, list[Candidate]]) -> list[int]:
    """PDQ hits by distance first, then dense hits by distance."""

    def key(wid: int) -> tuple[int, float]:
        pdq = [c.distance for c in by_id[wid] if c.signal == "pdq"]
        dense = [c.distance for c in by_id[wid] if c.signal == "dense"]
        return (0, min(pdq)) if pdq else (1, min(dense))

    return sorted(by_id, key=key)


def _plausible(v: Verification, t: Thresholds) -> bool:
    return t.min_scale <= v.scale <= t.max_scale and v.coverage >= t.min_coverage


def _flip_hint(cands: list[Candidate]) -> bool | None:
    """True/False when the signal that found the work says the query is/is not mirrored;
    None when its signals disagree."""
    flips = {c.variant.startswith(("flip", "mirror")) for c in cands}
    return flips.pop() if len(flips) == 1 else None


def _verify_both(
    query: LocalFeatures,
    mirror: _Lazy[LocalFeatures],
    ref: LocalFeatures,
    t: Thresholds,
    flipped: bool | None,
) -> Verification:
    """Verify the query the way the candidate signal suggests (as is, or mirrored); try the
    other way only when the signals disagree or a first attempt found partial agreement."""
    attempts = [False, True]
    if flipped:
        attempts.reverse()
    best = NO_MATCH
    for mirrored in attempts:
        feats = mirror.get() if mirrored else query
        if feats is None:
            continue
        v = verify(feats, ref, mirrored=mirrored)
        if not _plausible(v, t):
            v = Verification(0, v.matches, mirrored, None, 0.0, 0.0, 0.0)
        if v.inliers > best.inliers or best is NO_MATCH:
            best = v
        if best.inliers >= t.inliers_copy:
            break
        if flipped is not None and v.inliers < t.min_inliers_to_try_other_way:
            break  # the hinted way found no geometry at all: do not pay for the other
    return best


def _ramp(x: float, points: Sequence[tuple[float, float]]) -> float:
    """Piecewise-linear map through (x, y) points with increasing x; flat outside."""
    if x <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in pairwise(points):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def _dense_stands_out(distance: float, crowd: float | None, t: Thresholds) -> bool:
    """Whether a dense distance alone is evidence: close in absolute terms, or well apart from
    the crowd of nearest works (``crowd``: the distance of the `dense_reference_rank`-th)."""
    if distance > t.dense_similar:
        return False
    return distance <= t.dense_similar_alone or (
        crowd is not None and distance <= t.dense_similar_ratio * crowd
    )


def _decide(
    wid: int,
    cands: list[Candidate],
    ver: Verification,
    have_local: bool,
    crowd: float | None,
    t: Thresholds,
) -> Match | None:
    pdq = min((c for c in cands if c.signal == "pdq"), key=lambda c: c.distance, default=None)
    dense = min((c for c in cands if c.signal == "dense"), key=lambda c: c.distance, default=None)
    pdq_d = pdq.distance if pdq is not None else None
    inl = ver.inliers

    pdq_score = (
        _ramp(-pdq_d, [(-t.pdq_similar - 1, 0.0), (-t.pdq_similar, 0.5), (-t.pdq_copy, 0.8),
                       (0, 1.0)]) if pdq_d is not None else 0.0
    )
    inlier_score = _ramp(
        inl, [(0, 0.0), (t.inliers_similar, 0.5), (t.inliers_copy, 0.8), (4 * t.inliers_copy, 1.0)]
    )
    dense_score = (
        _ramp(-dense.distance, [(-t.dense_similar, 0.5), (0, 0.6)])
        if dense is not None and _dense_stands_out(dense.distance, crowd, t) else 0.0
    )

    fired: list[str] = []
    decision: Decision | None = None
    if inl >= t.inliers_copy:
        fired.append("local_features")
        decision = "copy"
    if pdq_d is not None and pdq_d <= t.pdq_copy_alone:
        fired.append("pdq")
        decision = "copy"
    elif pdq_d is not None and pdq_d <= t.pdq_copy and inl >= t.inliers_with_pdq:
        fired.append("pdq+local_features")
        decision = "copy"
    if decision is None:
        if inl >= t.inliers_similar:
            fired.append("local_features")
        if pdq_d is not None and pdq_d <= t.pdq_similar:
            fired.append("pdq")
        if dense_score > 0:
            fired.append("dense")
        if fired:
            decision = "similar"
    if decision is None:
        return None

    score = max(pdq_score, inlier_score, dense_score)
    score = max(score, 0.8) if decision == "copy" else min(score, 0.79)
    evidence: dict[str, object] = {
        "signals_version": SIGNALS_VERSION,
        "fired": fired,
        "pdq": None if pdq is None else {"distance": int(pdq.distance),
                                          "query_variant": pdq.variant},
        "dense": None if dense is None else {"distance": dense.distance,
                                              "query_variant": dense.variant,
                                              "crowd_distance": crowd},
        "local_features": ver.as_evidence() if have_local else None,
        "thresholds": asdict(t),
    }
    return Match(id=wid, score=round(float(score), 4), decision=decision, evidence=evidence)
