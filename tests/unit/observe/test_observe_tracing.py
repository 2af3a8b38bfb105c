"""Tracing is off unless asked for; when on, spans go to an OTLP/HTTP exporter in batches."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from strongroom.config import Settings
from strongroom.observe.tracing import build_tracer_provider, configure_tracing


def test_tracing_is_off_by_default() -> None:
    assert configure_tracing(Settings()) is None


def test_tracing_without_an_endpoint_stays_off() -> None:
    assert build_tracer_provider(Settings(observe={"tracing": True})) is None


def test_tracing_with_an_endpoint_batches_to_otlp_http() -> None:
    settings = Settings(
        observe={"tracing": True, "otlp_endpoint": "http://127.0.0.1:4318/v1/traces"}
    )
    provider = build_tracer_provider(settings)
    assert provider is not None
    try:
        processors = provider._active_span_processor._span_processors
        (processor,) = processors
        assert isinstance(processor, BatchSpanProcessor)
        assert isinstance(processor._batch_processor._exporter, OTLPSpanExporter)
        assert provider.resource.attributes["service.name"] == "strongroom"
    finally:
        provider.shutdown()
