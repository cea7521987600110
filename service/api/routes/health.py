"""Liveness, readiness and metrics. No key needed: these carry no registry data."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import RuntimeDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is alive (no key)")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="200 when the database answers and every index is loaded and fresh (no key)",
    responses={503: {"description": "not ready, with the reasons"}},
)
def readyz(rt: RuntimeDep, request: Request) -> JSONResponse:
    reasons: list[str] = []
    details: dict = {"database": "ok", "indexes": {}}
    tops: dict[str, int] = {}
    try:
        with rt.pool.connection(timeout=3) as conn:
            for row in conn.execute(
                "SELECT bank, max(change_seq) AS top FROM fingerprints GROUP BY bank"
            ).fetchall():
                tops[row["bank"]] = int(row["top"])
    except Exception as exc:
        details["database"] = f"unavailable: {type(exc).__name__}: {exc}"
        reasons.append("database unavailable")
    now = time.time()
    for name, bank in rt.banks.items():
        st = bank.status()
        age = None if st.refreshed_at is None else round(now - st.refreshed_at, 2)
        info = {
            "loaded": st.loaded,
            "size": st.size,
            "built_to": st.change_seq,
            "database_at": tops.get(name, 0),
            "lag": max(0, tops.get(name, 0) - st.change_seq),
            "refreshed_seconds_ago": age,
            "loaded_from": st.loaded_from,
            "signals_version": st.signals_version,
            "stale_signals": st.stale_signals,
            "last_error": st.last_error,
        }
        details["indexes"][name] = info
        if not st.loaded:
            reasons.append(f"{name} index not loaded")
        elif age is None or age > rt.settings.index_stale_seconds:
            reasons.append(f"{name} index stale: last refreshed {age}s ago")
        if st.stale_signals:
            reasons.append(
                f"{name} index: {st.stale_signals} rows need re-fingerprinting"
                " (chopmark fingerprints refresh)"
            )
    generation = getattr(request.app.state, "generation", None)
    describe = getattr(getattr(generation, "generator", None), "describe", None)
    if callable(describe):  # the model is not loaded for this: it loads on first use
        details["generation"] = {"model": describe()}
    embedder = getattr(rt, "embedder", None)
    if embedder is not None:
        details["clip"] = {"available": embedder.available, "reason": embedder.reason}
    details["moderation_policy"] = _policy_state(rt)
    body = {"status": "ready" if not reasons else "not ready", "reasons": reasons, **details}
    return JSONResponse(body, status_code=200 if not reasons else 503)


def _policy_state(rt: object) -> dict[str, str | None]:
    """The moderation policy file's state. An unusable file turns moderation away (503) but
    not the other routes, so it is reported here rather than making the process unready."""
    from service.moderation.policy import POLICIES, PolicyError

    settings = getattr(rt, "settings", None)
    try:
        loaded = POLICIES.load(settings)
    except PolicyError as exc:
        return {"state": "unusable", "reason": POLICIES.public_reason(settings, exc)}
    return {"state": "ok", "name": loaded.base.name, "source": loaded.base.to_dict()["source"]}


@router.get(
    "/metrics",
    summary="Prometheus metrics (no key)",
    response_class=PlainTextResponse,  # documented as text/plain, as served
)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
