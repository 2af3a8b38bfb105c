"""HTTP metrics: bounded labels, sensible buckets, isolated registries."""

from __future__ import annotations

from strongroom.observe.metrics import LATENCY_BUCKETS_S, HttpMetrics, new_registry, render


def test_latency_buckets_ascend_from_sub_millisecond_to_seconds() -> None:
    assert list(LATENCY_BUCKETS_S) == sorted(LATENCY_BUCKETS_S)
    assert LATENCY_BUCKETS_S[0] <= 0.001
    assert LATENCY_BUCKETS_S[-1] >= 5.0


def test_observe_counts_and_times_a_request() -> None:
    registry = new_registry(process_metrics=False)
    metrics = HttpMetrics.create(registry)
    metrics.observe("/v1/", "GET", 200, 0.003)
    metrics.observe("/v1/", "GET", 200, 0.004)
    labels = {"route": "/v1/", "method": "GET", "status": "200"}
    assert registry.get_sample_value("strongroom_http_requests_total", labels) == 2
    le = {**labels, "le": "0.005"}
    assert registry.get_sample_value("strongroom_http_request_duration_seconds_bucket", le) == 2


def test_unknown_methods_share_one_label() -> None:
    registry = new_registry(process_metrics=False)
    metrics = HttpMetrics.create(registry)
    metrics.observe("/x", "XYZZY", 405, 0.001)
    labels = {"route": "/x", "method": "OTHER", "status": "405"}
    assert registry.get_sample_value("strongroom_http_requests_total", labels) == 1


def test_registries_are_independent() -> None:
    first, second = new_registry(process_metrics=False), new_registry(process_metrics=False)
    HttpMetrics.create(first).observe("/a", "GET", 200, 0.1)
    HttpMetrics.create(second)
    assert b'route="/a"' in render(first)
    assert b'route="/a"' not in render(second)


def test_exposition_omits_created_series() -> None:
    registry = new_registry(process_metrics=False)
    HttpMetrics.create(registry).observe("/a", "GET", 200, 0.1)
    assert b"_created" not in render(registry)
