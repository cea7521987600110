"""Prometheus metrics: request counts and latencies, index sizes and freshness.

One worker process: its own registry. Several (`chopmark serve --workers N`): see
`metrics_shared`, which makes any worker's scrape speak for all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api.image_work import ImageWork
from service.api.metrics_shared import (
    FIGURE_HELP,
    PER_BANK,
    REFRESH_AGE,
    REFRESHED,
    SharedView,
    WorkerFigures,
    own_figures,
    shared_dir,
)
from service.runtime import Runtime


class OwnFigures(Collector):
    """This process's index and image-lane figures (`metrics_shared.own_figures`), as a scrape
    shows them: how long ago each index refreshed rather than when."""

    def __init__(self, rt: Runtime, work: ImageWork | None) -> None:
        self.rt = rt
        self.work = work

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.time()
        for name, values in own_figures(self.rt, self.work).items():
            if name == REFRESHED:
                family = GaugeMetricFamily(*REFRESH_AGE, labels=["bank"])
                for bank, at in values.items():
                    family.add_metric([bank], now - at)
            elif name in PER_BANK:
                family = GaugeMetricFamily(name, FIGURE_HELP[name], labels=["bank"])
                for bank, value in values.items():
                    family.add_metric([bank], value)
            elif values:
                family = GaugeMetricFamily(name, FIGURE_HELP[name], value=values[""])
            else:
                continue
            yield family


class Metrics:
    def __init__(self) -> None:
        # Set by `chopmark serve` for several workers, before any of them imports prometheus_client.
        self.shared = shared_dir()
        self._figures: WorkerFigures | None = None
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "chopmark_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "chopmark_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def watch(self, rt: Runtime, work: ImageWork | None = None) -> None:
        if self.shared is not None:
            self._figures = WorkerFigures(rt, work)
            self._figures.start()
            return
        self.registry.register(OwnFigures(rt, work))

    def unwatch(self) -> None:
        """At the worker's end: its gauges leave the shared scrape at once."""
        if self._figures is not None:
            self._figures.stop()
            self._figures = None

    def exposition(self) -> bytes:
        if self.shared is None:
            return generate_latest(self.registry)
        view = CollectorRegistry()
        view.register(SharedView(self.shared))
        return generate_latest(view)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or _unmatched(scope)
            method = Request(scope).method
            self.metrics.requests.labels(method, path, str(status["code"])).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)


def _unmatched(scope: Scope) -> str:
    return "unmatched"
