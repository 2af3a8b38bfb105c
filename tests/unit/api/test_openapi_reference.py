"""The committed OpenAPI reference is the one the code generates (docs stay true)."""

from __future__ import annotations

import json
from pathlib import Path

from strongroom.api.openapi import openapi_document

REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_committed_openapi_reference_matches_the_code() -> None:
    committed = json.loads(REFERENCE.read_text())
    assert committed == openapi_document(), "run `make openapi` and commit docs/openapi.json"


def test_every_v1_operation_documents_problem_responses() -> None:
    document = openapi_document()
    for path, operations in document["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, operation in operations.items():
            assert "application/problem+json" in json.dumps(operation["responses"]), (path, method)
