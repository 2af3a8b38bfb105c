"""Turn command-line flags into settings overrides.

Flags are the top of the precedence order (defaults < TOML < environment <
flags); a flag left unset overrides nothing, so the lower layers show through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from strongroom.config import Settings, load_settings


def split_zones(zones: str) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [zone.strip() for zone in zones.split(",") if zone.strip()]


def build_overrides(
    *,
    data_dir: Path | None = None,
    port: int | None = None,
    pods: int | None = None,
    edge_workers: int | None = None,
    zones: str | None = None,
    profile: str | None = None,
) -> dict[str, Any]:
    """Nested overrides for ``load_settings``; pydantic-settings deep-merges them."""
    overrides: dict[str, Any] = {}
    if profile is not None:
        overrides["profile"] = profile
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    edge: dict[str, Any] = {}
    if port is not None:
        edge["port"] = port
    if edge_workers is not None:
        edge["workers"] = edge_workers
    if edge:
        overrides["edge"] = edge
    pod_overrides: dict[str, Any] = {}
    if pods is not None:
        pod_overrides["count"] = pods
    if zones is not None:
        pod_overrides["zones"] = split_zones(zones)
    if pod_overrides:
        overrides["pods"] = pod_overrides
    return overrides


def resolve_settings(config_file: Path | None, overrides: dict[str, Any]) -> Settings:
    """The effective settings, with a relative data dir made absolute.

    Children may run with another working directory, and the frozen settings
    file must name the same data dir for all of them.
    """
    settings = load_settings(config_file, **overrides)
    return settings.model_copy(update={"data_dir": settings.data_dir.resolve()})


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, without pydantic's URLs: what an operator needs to fix."""
    lines = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"{location}: {message}" if location else message)
    return "\n".join(lines)
