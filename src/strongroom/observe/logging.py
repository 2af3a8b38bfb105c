"""Structured logs: one JSON object per line on stdout, for every logger in the process.

structlog renders our own events; the standard library's loggers (uvicorn, alembic,
SQLAlchemy) are routed through the same processors so an operator greps one format.
Static fields (pod name, zone, role) ride on every line so logs from many processes
can be merged; request-scoped fields (request id) come from structlog contextvars.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from strongroom.config import Settings

# Marks the handler we install so a second configure call replaces it instead of
# duplicating every line.
_HANDLER_MARK = "_strongroom_handler"


def _static_fields_adder(fields: dict[str, Any]) -> Processor:
    def add_static_fields(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        for key, value in fields.items():
            event_dict.setdefault(key, value)
        return event_dict

    return add_static_fields


def _drop_color_message(
    _logger: WrappedLogger, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """uvicorn attaches an ANSI-coloured duplicate of each message; JSON needs neither."""
    event_dict.pop("color_message", None)
    return event_dict


def configure_logging(settings: Settings, **static_fields: Any) -> None:
    """Configure structlog and the standard library's root logger for this process.

    ``static_fields`` (e.g. ``pod="pod-0", zone="a"``) are added to every line.
    Safe to call again: the previous configuration is replaced.
    """
    level = logging.getLevelNamesMapping()[settings.observe.log_level.upper()]
    fields = {
        "service": settings.observe.service_name,
        "version": settings.version,
        **static_fields,
    }
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _static_fields_adder(fields),
        _drop_color_message,
    ]
    renderer: Processor
    if settings.observe.log_json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        # Filtering in the bound logger's class makes a disabled debug call a no-op.
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn configures its own handlers only with a log_config; make sure its
    # loggers propagate to ours whatever ran before.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
