"""Prometheus metrics: one registry per process role, HTTP request metrics, text exposition.

Each app gets its own :class:`CollectorRegistry` (not the library's global one) so two
apps in one test process, or an edge and a pod in one interpreter, never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

# From 0.5 ms (a cached GET on a warm pod) to 10 s (past the edge's patience only on a
# pathological request); dense below 100 ms where the API's latency objectives live.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

# Label used when a request matched no route: raw paths would make cardinality unbounded.
UNMATCHED_ROUTE = "<unmatched>"

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Any other method is labelled OTHER: a client inventing methods must not mint series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# The ``*_created`` series double the exposition size and Prometheus ignores them in
# the text format; every Strongroom process shares this choice.
disable_created_metrics()  # type: ignore[no-untyped-call]


def new_registry(*, process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process/platform/GC collectors unless told otherwise."""
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """Prometheus text exposition format (serve with :data:`CONTENT_TYPE`)."""
    return generate_latest(registry)


@dataclass
class HttpMetrics:
    """Request count, latency and concurrency of an HTTP server, labelled by route template.

    Children are cached per label tuple: ``labels()`` costs a lock and a dict lookup
    inside prometheus_client, which adds up at tens of thousands of requests a second.
    """

    requests: Counter
    duration: Histogram
    in_flight: Gauge
    _children: dict[tuple[str, str, str], tuple[Counter, Histogram]] = field(default_factory=dict)

    @classmethod
    def create(cls, registry: CollectorRegistry, *, namespace: str = "strongroom") -> HttpMetrics:
        return cls(
            requests=Counter(
                "http_requests",
                "HTTP requests served, by route template, method and status.",
                ["route", "method", "status"],
                namespace=namespace,
                registry=registry,
            ),
            duration=Histogram(
                "http_request_duration_seconds",
                "Time from request start to the end of the response, by route template.",
                ["route", "method", "status"],
                namespace=namespace,
                buckets=LATENCY_BUCKETS_S,
                registry=registry,
            ),
            in_flight=Gauge(
                "http_requests_in_flight",
                "HTTP requests being served now.",
                namespace=namespace,
                registry=registry,
            ),
        )

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        if method not in KNOWN_METHODS:
            method = "OTHER"
        key = (route, method, str(status))
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(*key), self.duration.labels(*key))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
