"""The FastAPI application: lifespan wiring, middleware, routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from service.api import openapi_doc
from service.api.cut_off import AnswerCutOffRequests
from service.api.errors import install_error_handlers
from service.api.image_work import ImageWork, default_workers
from service.api.limits import BodySizeLimit
from service.api.metrics import Metrics, MetricsMiddleware
from service.api.routes import (
    adapters,
    artists,
    artworks,
    audit,
    claims,
    disputes,
    generations,
    health,
    keys,
    licenses,
    matches,
    moderation,
    moderation_records,
    sbr,
    sources,
    stamps,
)
from service.api.shutdown import chain_stop_signals
from service.api.worker_lifetime import end_with_parent
from service.genservice import GenerationService
from service.moderation.jobs import start_worker
from service.portal.mount import install_portal
from service.runtime import Runtime
from service.settings import Settings, get_settings

log = logging.getLogger(__name__)

DESCRIPTION = """
chopmark keeps AI image generation honest: an artwork registry with consent and licences,
matching that sees through edits, and an append-only audit log.

Authenticate with `Authorization: Bearer <API key>`. Each route names the scope it needs.
"""


def create_app(settings: Settings | None = None, runtime: Runtime | None = None) -> FastAPI:
    settings = settings or get_settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        end_with_parent()  # a worker of `serve --workers N` does not outlive its supervisor
        rt = runtime or await run_in_threadpool(Runtime.open, settings)
        if rt.refresher is None:
            await run_in_threadpool(rt.load_indexes)
            rt.start_refresher()
        app.state.runtime = rt
        app.state.image_work = ImageWork(settings.image_workers or default_workers())
        metrics.watch(rt, app.state.image_work)
        app.state.generation = GenerationService.open(rt)  # the model loads on first use
        app.state.moderation_worker = start_worker(rt)
        # On SIGTERM, generations waiting for the model end at once and the running one at its
        # next step (recorded as interrupted), so the server need not wait minutes to drain.
        undo_signals = chain_stop_signals(app.state.generation.stop)
        try:
            yield
        finally:
            undo_signals()
            metrics.unwatch()
            # Image work cut off at the stop grace is seen through, with the database still open.
            await run_in_threadpool(app.state.image_work.close)
            if app.state.moderation_worker is not None:
                await run_in_threadpool(app.state.moderation_worker.stop)
            await run_in_threadpool(app.state.generation.close)
            if runtime is None:
                await run_in_threadpool(rt.close)

    app = FastAPI(
        title="chopmark",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    install_error_handlers(app)
    openapi_doc.install(app)
    for module in (
        health,
        keys,
        artists,
        artworks,
        licenses,
        matches,
        stamps,
        sbr,
        adapters,
        sources,
        generations,
        moderation,
        moderation_records,
        audit,
        claims,
        disputes,
    ):
        app.include_router(module.router)
    install_portal(app)
    app.add_middleware(AnswerCutOffRequests)  # innermost: the others see its 503
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
