"""Matching an image against the artwork registry, joined with what each artist allows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from service.registry.disputes import open_dispute_over
from service.registry.records import Artwork, License
from service.runtime import Runtime
from similarity import ImageSignals, Match


@dataclass(frozen=True)
class ArtworkMatch:
    artwork: Artwork
    match: Match
    license: License | None = None
    dispute_id: UUID | None = None  # an open ownership dispute over the work


@dataclass(frozen=True)
class RegistryMatches:
    matches: list[ArtworkMatch]
    index_size: int
    built_to: int


def match_registry(
    rt: Runtime,
    signals: ImageSignals,
    *,
    limit: int = 10,
    grantee: str | None = None,
    license_scope: str = "img2img",
) -> RegistryMatches:
    bank = rt.banks["artwork"]
    raw = bank.match(signals, limit=limit)
    status = bank.status()
    if not raw:
        return RegistryMatches([], status.size, status.change_seq)
    with rt.pool.connection() as conn:
        by_fp = rt.registry.artworks_by_fingerprint(
            conn, [m.id for m in raw], grantee or None, license_scope
        )
        disputed = open_dispute_over(conn, [work.id for work, _ in by_fp.values()])
    out = [
        ArtworkMatch(by_fp[m.id][0], m, by_fp[m.id][1], disputed.get(by_fp[m.id][0].id))
        for m in raw
        if m.id in by_fp and by_fp[m.id][0].status == "active"
    ]
    return RegistryMatches(out, status.size, status.change_seq)


def record_match_decision(
    rt: Runtime,
    actor: str,
    data: bytes,
    result: RegistryMatches,
    context: str,
    user: str | None = None,
) -> None:
    """Append the decision to the audit log: what was asked, for which platform user, what
    matched on which index, and for each match what its artist allowed and whether the user
    held a licence (the licence's id), so a reviewer can tell from the log why a use was
    allowed. The subject is the first match's artwork, so the entry is found with its work."""
    query_sha256 = hashlib.sha256(data).hexdigest()
    entry: dict[str, Any] = {
        "query_sha256": query_sha256,
        "context": context,
        "user": user,
        "index": {"size": result.index_size, "built_to": result.built_to},
        "matches": [
            {
                "artwork_id": str(m.artwork.id),
                "artist_id": str(m.artwork.artist_id),
                "decision": m.match.decision,
                "score": round(m.match.score, 4),
                "img2img": m.artwork.effective_preferences.get("img2img", "deny"),
                "licence_id": str(m.license.id) if m.license is not None else None,
            }
            for m in result.matches
        ],
    }
    subject = f"artwork:{result.matches[0].artwork.id}" if result.matches else None
    with rt.pool.connection() as conn, conn.transaction():
        rt.audit.append(conn, "match.decided", actor, subject, entry)
