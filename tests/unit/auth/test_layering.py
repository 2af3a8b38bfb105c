"""auth/ is pure domain: no api, edge or adapters, and no I/O libraries."""

from __future__ import annotations

import ast
from pathlib import Path

import strongroom.auth

FORBIDDEN = (
    "strongroom.api",
    "strongroom.edge",
    "strongroom.adapters",
    "strongroom.runtime",
    "strongroom.cli",
    "sqlalchemy",
    "redis",
    "httpx",
    "requests",
    "socket",
    "asyncio",
    "fastapi",
    "starlette",
    "subprocess",
    "urllib.request",
)


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_auth_imports_nothing_outside_the_domain() -> None:
    package = Path(strongroom.auth.__file__).parent
    files = sorted(package.glob("*.py"))
    assert files
    for path in files:
        for name in imported_modules(path):
            assert not any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN), (
                f"{path.name} imports {name}"
            )
