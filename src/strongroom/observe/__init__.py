"""Observability shared by every process: JSON logs, Prometheus metrics, optional tracing.

- :func:`strongroom.observe.logging.configure_logging` — structlog JSON to stdout.
- :mod:`strongroom.observe.metrics` — per-process registries and HTTP metrics.
- :func:`strongroom.observe.tracing.configure_tracing` — OpenTelemetry, off by default.
"""
