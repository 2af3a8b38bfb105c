"""The API's OpenAPI document, generated from the code (never hand-edited)."""

from __future__ import annotations

from typing import Any

from strongroom.api.app import create_app
from strongroom.config import Settings


def openapi_document(settings: Settings | None = None) -> dict[str, Any]:
    """Build the app with default settings and return its schema; the DB is never touched."""
    app = create_app(settings or Settings(), zone="openapi", pod_name="openapi")
    try:
        return app.openapi()
    finally:
        app.state.engine.dispose()
