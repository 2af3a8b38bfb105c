"""Logs are one JSON object per line, with static fields and the bound request id."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from strongroom.config import Settings
from strongroom.observe.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(captured: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in captured.splitlines() if line]


def test_structlog_events_are_json_with_static_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(), pod="pod-3", zone="b")
    structlog.get_logger("t").info("hello", amount=5)
    (record,) = lines(capsys.readouterr().out)
    assert record["event"] == "hello"
    assert record["amount"] == 5
    assert (record["pod"], record["zone"], record["service"]) == ("pod-3", "b", "strongroom")
    assert record["level"] == "info"
    assert "timestamp" in record


def test_bound_request_id_appears_on_every_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings())
    structlog.contextvars.bind_contextvars(request_id="rid-1")
    structlog.get_logger().info("one")
    logging.getLogger("uvicorn.error").warning("two")
    records = lines(capsys.readouterr().out)
    assert [r["request_id"] for r in records] == ["rid-1", "rid-1"]


def test_standard_library_logs_are_rendered_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(), role="pod")
    logging.getLogger("alembic.runtime.migration").info("Running upgrade %s", "0001")
    (record,) = lines(capsys.readouterr().out)
    assert record["event"] == "Running upgrade 0001"
    assert record["logger"] == "alembic.runtime.migration"
    assert record["role"] == "pod"


def test_events_below_the_configured_level_are_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(observe={"log_level": "warning"}))
    structlog.get_logger().info("quiet")
    logging.getLogger("x").info("quiet too")
    structlog.get_logger().warning("loud")
    assert [r["event"] for r in lines(capsys.readouterr().out)] == ["loud"]


def test_configuring_twice_does_not_duplicate_lines(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings())
    configure_logging(Settings())
    logging.getLogger("x").warning("once")
    assert len(lines(capsys.readouterr().out)) == 1
