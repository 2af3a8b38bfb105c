"""The stateless API pod.

- :func:`strongroom.api.app.create_app` — the ASGI app: ``/v1``, health, metrics.
- :func:`strongroom.api.pod.run` — serve it under uvicorn with graceful draining on SIGTERM.
- :mod:`strongroom.api.problems` — RFC 9457 errors and the registry of stable problem types.
- :func:`strongroom.api.openapi.openapi_document` — the generated OpenAPI document.
"""
