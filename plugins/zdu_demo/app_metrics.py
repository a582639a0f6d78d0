"""GitLab-like request metrics for the demo app, at ``/-/metrics`` (prometheus-client).

GitLab's Rails and Workhorse export, per request, a counter and a duration histogram that its
Apdex and error-ratio indicators are computed from. The demo app exports the same shapes, so that
the ``prometheus`` and ``apdex`` probes, and a Prometheus scraping the fleet, see what they would see
of GitLab:

* ``http_requests_total{method,status,route,version}``: requests answered;
* ``http_request_duration_seconds{method,route,version}``: a histogram with GitLab's buckets
  (0.005 s to 60 s, with 1 s and 4 s: Apdex' T and 4T);
* ``gitlab_build_info{version}`` = 1.

``route`` is the route's pattern (``/assets/{name}``), never the raw path, so cardinality stays small.
Each instance keeps its own registry (not the process-wide default), so that tests can run several
in one process.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["DURATION_BUCKETS", "METRICS_PATH", "RequestMetrics"]

#: Where the metrics are served (GitLab serves its own at ``/-/metrics``).
METRICS_PATH = "/-/metrics"

#: GitLab's request duration buckets (Rails' ``http_request_duration_seconds``), 1 and 4 s included.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 4.0, 5.0, 10.0, 25.0, 60.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestMetrics:
    """Counts and times every request of one aiohttp application."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "Requests answered, by method, status and route.",
            ["method", "status", "route", "version"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time to answer a request, by method and route.",
            ["method", "route", "version"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        Gauge("gitlab_build_info", "The running version.", ["version"], registry=self.registry).labels(
            version
        ).set(1)

    def install(self, app: web.Application) -> None:
        """Add the middleware (outermost: it sees every answer) and the ``/-/metrics`` route to ``app``."""
        app.middlewares.insert(0, self.middleware)
        app.router.add_get(METRICS_PATH, self.handler)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Time the request and count its answer (an exception counts as a 500)."""
        began = time.perf_counter()
        route = _route(request)
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as answer:
            status = answer.status
            raise
        finally:
            if route != METRICS_PATH:
                self.requests.labels(request.method, str(status), route, self.version).inc()
                self.duration.labels(request.method, route, self.version).observe(time.perf_counter() - began)

    async def handler(self, _request: web.Request) -> web.Response:
        """The metrics in Prometheus' text format."""
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )


def _route(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    canonical = getattr(resource, "canonical", None)
    return str(canonical) if canonical else "unmatched"
