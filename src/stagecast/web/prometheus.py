"""``GET /metrics`` in the Prometheus text format, from a registry owned by one app.

No global registry: each app builds an ``Exporter`` in its lifespan, with collectors that read
the counters the process keeps anyway (the database layer's ``DbStats``, the ingest windows'
totals, and the ``StatsSource`` each component offers: the studio's publisher and feeds, the
webhook dispatcher, chat, the VOD worker, the live archivers). HTTP requests are counted by
``HttpMetrics``, an ASGI middleware, by route template (``/hls/{slug}/master.m3u8``), never by
raw path, so label sets stay bounded.

With ``STAGECAST_METRICS_TOKEN`` set, scrapes need ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stagecast.core import Core
from stagecast.db.retry import Kind
from stagecast.db.stats import DbStats
from stagecast.errors import Unauthorized
from stagecast.stats import StatsSource
from stagecast.studio.telemetry import WORK_BUCKETS, IngestMetrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_DB_NAMES = {"slow": "slow_queries"}
_DB_HELP = {
    "attempts": "Database attempts (every try)",
    "retries": "Database attempts after the first of an operation",
    "timeouts": "Database attempts that hit their timeout",
    "deadline_stops": "Database operations stopped by their total deadline",
    "slow": "Database attempts slower than the slow-query threshold",
    "outcome_unknown": "Writes not retried because their outcome was lost",
    "failures": "Database operations that ended in an error",
}


class StatsCollector(Collector):
    """Collect the ``StatsSource`` of each domain that offered one."""

    def __init__(self) -> None:
        self.sources: list[StatsSource] = []

    def collect(self) -> Iterable[Metric]:
        for source in self.sources:
            for key, value in sorted(source.read().items()):
                name = f"stagecast_{source.name}_{key}"
                text = source.help.get(key, f"{source.name} {key.replace('_', ' ')}")
                if key in source.gauges:
                    yield GaugeMetricFamily(name, text, value=value)
                else:
                    yield CounterMetricFamily(name, text, value=value)


class DbCollector(Collector):
    """The database layer's counters, by operation kind."""

    def __init__(self, stats: DbStats) -> None:
        self.stats = stats

    def collect(self) -> Iterable[Metric]:
        for name, by_kind in self.stats.snapshot().items():
            exported = _DB_NAMES.get(name, name)
            family = CounterMetricFamily(
                f"stagecast_db_{exported}", _DB_HELP.get(name, name), labels=["kind"]
            )
            for kind in Kind:
                family.add_metric([kind.value], by_kind.get(kind, 0))
            yield family


class IngestCollector(Collector):
    """Ingest totals of this process and the segment work histogram."""

    def __init__(self, ingest: IngestMetrics) -> None:
        self.ingest = ingest

    def collect(self) -> Iterable[Metric]:
        ingest = self.ingest
        for name, value, text in (
            ("segments", ingest.segments_total, "Segments accepted"),
            ("segment_bytes", ingest.segment_bytes_total, "Bytes of segments accepted"),
            ("late_segments", ingest.late_total, "Segments that arrived late"),
            ("media_messages", ingest.media_messages_total, "RTMP audio/video messages"),
            ("media_bytes", ingest.media_bytes_total, "Bytes of RTMP audio/video messages"),
        ):
            yield CounterMetricFamily(f"stagecast_ingest_{name}", text, value=value)
        work = ingest.work
        yield HistogramMetricFamily(
            "stagecast_ingest_segment_work_seconds",
            "Server time per segment, from receipt to playlist updated",
            buckets=[
                *((str(b), c) for b, c in zip(WORK_BUCKETS, work.cumulative(), strict=True)),
                ("+Inf", work.count),
            ],
            sum_value=work.total,
        )


class Exporter:
    """The app's registry, its HTTP instruments and its optional scrape token."""

    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "stagecast_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "stagecast_http_response_seconds",
            "Seconds from request to response headers",
            ["method", "route"],
            buckets=_HTTP_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "stagecast_http_requests_in_flight",
            "HTTP requests being handled (open event streams included)",
            registry=self.registry,
        )
        self.stats = StatsCollector()
        self.registry.register(self.stats)
        # The labelled children, looked up once per label set rather than at every request.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its time to headers."""
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            if len(self._children) > 10_000:  # label sets are bounded by routes; be safe
                self._children.clear()
            children = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def add(self, collector: Collector) -> None:
        """Register a collector on this app's registry."""
        self.registry.register(collector)

    def offer(self, source: StatsSource) -> None:
        """Export a domain's counters (see ``StatsSource``)."""
        self.stats.sources.append(source)

    def check(self, authorization: str | None) -> None:
        """Raise Unauthorized unless scrapes are open or ``authorization`` has the token."""
        if self.token is None:
            return
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), self.token.encode()
        ):
            raise Unauthorized("metrics need 'Authorization: Bearer <STAGECAST_METRICS_TOKEN>'")

    def render(self) -> bytes:
        """Return every metric in the text exposition format."""
        return generate_latest(self.registry)


class HasExporter(Protocol):
    """The part of the process's runtime ``/metrics`` and ``HttpMetrics`` read."""

    exporter: Exporter


def _exporter(scope: Scope) -> Exporter | None:
    """Return the app's exporter, or None before its lifespan started (or after it ended)."""
    runtime: HasExporter | None = getattr(getattr(scope.get("app"), "state", None), "runtime", None)
    return runtime.exporter if runtime is not None else None


class HttpMetrics:
    """ASGI middleware: count requests and time them to their response headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        exporter = _exporter(scope) if scope["type"] == "http" else None
        if exporter is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        seen: dict[str, Any] = {"status": 500, "latency": None}

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["latency"] = time.perf_counter() - started
            await send(message)

        exporter.in_flight.inc()
        try:
            await self.app(scope, receive, watched)
        finally:
            exporter.in_flight.dec()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            latency = seen["latency"]
            exporter.observe(
                scope.get("method", "GET"),
                route,
                seen["status"],
                latency if latency is not None else time.perf_counter() - started,
            )


router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    """Serve every metric of this process in the Prometheus text format."""
    runtime: HasExporter = request.app.state.runtime
    runtime.exporter.check(request.headers.get("authorization"))
    return Response(runtime.exporter.render(), media_type=CONTENT_TYPE)


def build_exporter(
    core: Core, sources: Sequence[StatsSource], collectors: Sequence[Collector] = ()
) -> Exporter:
    """Return the exporter of ``core``'s database counters, ``collectors`` and ``sources``."""
    exporter = Exporter(core.settings.metrics_token)
    exporter.add(DbCollector(core.db.stats))
    for collector in collectors:
        exporter.add(collector)
    for source in sources:
        exporter.offer(source)
    return exporter
