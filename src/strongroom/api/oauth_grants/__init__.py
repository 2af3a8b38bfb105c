"""Grant types of the token endpoint, one module each (RFC 6749 §4 and extensions).

A module here defines `GRANT_TYPE: str` and `async def handle(request, form, runtime)
-> Response`; the token endpoint and the RFC 8414 metadata pick them up by discovery,
so adding a grant never edits the endpoint.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.responses import Response

from strongroom.api.auth_runtime import AuthRuntime

GrantHandler = Callable[[Request, dict[str, str], AuthRuntime], Awaitable[Response]]


def _discover() -> dict[str, GrantHandler]:
    found: dict[str, GrantHandler] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        grant_type = getattr(module, "GRANT_TYPE", None)
        handler = getattr(module, "handle", None)
        if isinstance(grant_type, str) and callable(handler):
            found[grant_type] = handler
    return found


GRANTS: dict[str, GrantHandler] = _discover()
