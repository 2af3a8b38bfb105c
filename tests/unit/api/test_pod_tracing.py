"""With a tracer, the pod records one SERVER span per request, continuing the caller's trace."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from strongroom.api.app import create_app
from strongroom.config import Settings

pytestmark = pytest.mark.anyio

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


async def test_request_produces_a_server_span_named_by_route(settings: Settings) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(settings, zone="a", pod_name="pod-0", tracer=provider.get_tracer("test"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://pod") as http:
        response = await http.get(
            "/echo", headers={"traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01"}
        )
    app.state.engine.dispose()
    (span,) = exporter.get_finished_spans()
    assert span.name == "GET /echo"
    assert span.kind == trace.SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/echo"
    assert span.attributes["http.response.status_code"] == 200
    assert span.attributes["strongroom.request_id"] == response.headers["x-request-id"]
    assert format(span.context.trace_id, "032x") == TRACE_ID
