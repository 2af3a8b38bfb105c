"""OpenTelemetry tracing: off unless ``observe.tracing`` and ``observe.otlp_endpoint`` are set.

When off nothing is imported beyond the API package and callers hold ``None`` instead of
a tracer, so the per-request cost is one ``is None`` test. When on, spans are batched
(:class:`BatchSpanProcessor`) and exported over OTLP/HTTP off the request path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from strongroom.config import Settings

INSTRUMENTATION_NAME = "strongroom"


def build_tracer_provider(settings: Settings) -> TracerProvider | None:
    """A provider exporting to ``observe.otlp_endpoint``, or ``None`` when tracing is off."""
    observe = settings.observe
    if not observe.tracing or not observe.otlp_endpoint:
        return None
    # Imported here so processes with tracing off never load the exporter and its protobufs.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415
        OTLPSpanExporter,
    )

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": observe.service_name, "service.version": settings.version}
        )
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=observe.otlp_endpoint))
    )
    return provider


def configure_tracing(settings: Settings) -> trace.Tracer | None:
    """Install the global tracer provider when tracing is on; return a tracer or ``None``."""
    provider = build_tracer_provider(settings)
    if provider is None:
        return None
    trace.set_tracer_provider(provider)
    return provider.get_tracer(INSTRUMENTATION_NAME, settings.version)


def shutdown_tracing() -> None:
    """Flush and stop the global SDK provider, if one was installed (no-op otherwise)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.shutdown()


@contextmanager
def server_span(
    tracer: trace.Tracer, method: str, target: str, headers: Mapping[str, str]
) -> Iterator[trace.Span]:
    """A SERVER span for one request, continuing the caller's W3C trace context if sent.

    The span starts named ``METHOD`` and the caller renames it to ``METHOD /route`` once
    routing is known, as OpenTelemetry's HTTP conventions ask (low-cardinality names).
    """
    context = propagate.extract(headers)
    with tracer.start_as_current_span(
        method,
        context=context,
        kind=trace.SpanKind.SERVER,
        attributes={"http.request.method": method, "url.path": target},
    ) as span:
        yield span
