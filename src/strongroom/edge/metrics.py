"""Prometheus metrics of one edge worker.

Each worker owns a registry served on its loopback admin port. The per-request
figures (responses by class, latency histogram, upstream outcomes) are plain integers
the event loop updates without locks — the loop is the only writer, and scrapes run on
the same loop — and a collector turns them into metric families at scrape time. Pod
health is read from the balancer at scrape time too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from strongroom.edge.balancer import Outcome

# Latency buckets around the edge's own budget (≤ 1 ms added at p50) up to timeouts.
LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class _StateCollector(Collector):
    def __init__(
        self,
        pods: Callable[[], Sequence[dict[str, object]]],
        connections: Callable[[], int],
        pool_idle: Callable[[], int],
    ) -> None:
        self._pods = pods
        self._connections = connections
        self._pool_idle = pool_idle

    def collect(self) -> Iterable[Metric]:
        healthy = GaugeMetricFamily(
            "strongroom_edge_upstream_healthy",
            "1 when the pod passes active health checks and is not ejected",
            labels=["pod", "zone"],
        )
        outstanding = GaugeMetricFamily(
            "strongroom_edge_upstream_outstanding_requests",
            "Requests in flight to the pod",
            labels=["pod", "zone"],
        )
        ejections = GaugeMetricFamily(
            "strongroom_edge_upstream_ejections",
            "Passive outlier ejections of the pod since it joined",
            labels=["pod", "zone"],
        )
        for pod in self._pods():
            labels = [str(pod.get("name")), str(pod.get("zone"))]
            healthy.add_metric(labels, 1.0 if pod.get("available") else 0.0)
            outstanding.add_metric(labels, float(str(pod.get("outstanding", 0))))
            ejections.add_metric(labels, float(str(pod.get("ejections", 0))))
        yield healthy
        yield outstanding
        yield ejections
        yield GaugeMetricFamily(
            "strongroom_edge_open_connections",
            "Client connections open on this edge worker",
            value=float(self._connections()),
        )
        yield GaugeMetricFamily(
            "strongroom_edge_upstream_idle_connections",
            "Idle keep-alive connections to pods in the pool",
            value=float(self._pool_idle()),
        )


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.responses_by_class = [0] * len(STATUS_CLASSES)
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.latency_sum_s = 0.0
        self.upstream_outcomes = dict.fromkeys(Outcome, 0)
        self.registry.register(_HotCollector(self))
        self.retries = Counter(
            "strongroom_edge_retries",
            "Requests retried on another pod, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.retry_budget_exhausted = Counter(
            "strongroom_edge_retry_budget_exhausted",
            "Retries refused because the retry budget was spent",
            registry=self.registry,
        )
        self.rejected = Counter(
            "strongroom_edge_rejected_requests",
            "Requests the edge refused itself, by problem type",
            ["type"],
            registry=self.registry,
        )
        self.cache = Counter(
            "strongroom_edge_cache_lookups",
            "Edge cache lookups, by result",
            ["result"],
            registry=self.registry,
        )
        self.cache_result = {r: self.cache.labels(r.lower()) for r in ("MISS", "FRESH", "STALE")}
        self.connections_accepted = Counter(
            "strongroom_edge_connections_accepted",
            "Client connections accepted",
            registry=self.registry,
        )

    def watch_state(
        self,
        pods: Callable[[], Sequence[dict[str, object]]],
        connections: Callable[[], int],
        pool_idle: Callable[[], int],
    ) -> None:
        self.registry.register(_StateCollector(pods, connections, pool_idle))

    def count_response(self, status: int, duration_s: float) -> None:
        index = status // 100 - 1
        if 0 <= index < 5:
            self.responses_by_class[index] += 1
        self.latency_buckets[bisect_left(LATENCY_BUCKETS_S, duration_s)] += 1
        self.latency_sum_s += duration_s

    def count_upstream(self, outcome: Outcome) -> None:
        self.upstream_outcomes[outcome] += 1


class _HotCollector(Collector):
    def __init__(self, metrics: EdgeMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[Metric]:
        m = self._m
        requests = CounterMetricFamily(
            "strongroom_edge_requests",
            "Requests answered by the edge, by status class",
            labels=["status_class"],
        )
        for name, count in zip(STATUS_CLASSES, m.responses_by_class, strict=True):
            requests.add_metric([name], float(count))
        yield requests
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*LATENCY_BUCKETS_S, float("inf")), m.latency_buckets, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), float(cumulative)))
        yield HistogramMetricFamily(
            "strongroom_edge_request_duration_seconds",
            "Time from request head parsed to response complete",
            buckets=buckets,
            sum_value=m.latency_sum_s,
        )
        upstream = CounterMetricFamily(
            "strongroom_edge_upstream_attempts",
            "Attempts sent to pods, by outcome",
            labels=["outcome"],
        )
        for outcome, count in m.upstream_outcomes.items():
            upstream.add_metric([outcome.name.lower()], float(count))
        yield upstream
