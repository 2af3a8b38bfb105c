"""Options every command shares, and settings resolution that fails readably."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from strongroom.cli.settings_flags import (
    build_overrides,
    describe_validation_error,
    resolve_settings,
)
from strongroom.config import Settings

# Exit status for configuration errors (click uses 2 for usage errors too).
EXIT_CONFIG_ERROR = 2

err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="TOML settings file (below env vars and flags)."),
]
DataDirOption = Annotated[
    Path | None, typer.Option("--data-dir", help="Data directory.", show_default=".strongroom")
]


def _settings(config: Path | None, **flags: Any) -> Settings:
    """Resolve settings or exit with the configuration problem spelled out."""
    try:
        return resolve_settings(config, build_overrides(**flags))
    except ValidationError as exc:
        err_console.print("[bold red]configuration error:[/]")
        err_console.print(describe_validation_error(exc), markup=False, highlight=False)
        raise typer.Exit(EXIT_CONFIG_ERROR) from None
