"""The ``strongroom`` command: ``up``, ``status``, ``openapi``, ``db``, ``config``, ``version``.

Commands resolve settings the same way (defaults < TOML < env < flags) and
report configuration problems as one readable message with a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import platform
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console

from strongroom import __version__
from strongroom.cli.config_view import masked_settings, to_toml
from strongroom.cli.settings_flags import (
    build_overrides,
    describe_validation_error,
    resolve_settings,
)
from strongroom.cli.status_view import load_status, status_table
from strongroom.config import Settings
from strongroom.runtime.lock import SupervisorAlreadyRunningError

# Exit status for configuration errors (click uses 2 for usage errors too).
EXIT_CONFIG_ERROR = 2

app = typer.Typer(
    name="strongroom",
    help="Strongroom: secure wallet, payments and settlement API platform.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
config_app = typer.Typer(help="Effective configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

console = Console()
err_console = Console(stderr=True)


class Profile(StrEnum):
    embedded = "embedded"
    production = "production"


class ConfigFormat(StrEnum):
    toml = "toml"
    json = "json"


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


@app.command()
def up(
    *,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    port: Annotated[
        int | None, typer.Option(help="Public TLS port of the edge.", show_default="8443")
    ] = None,
    pods: Annotated[int | None, typer.Option(help="API pods.", show_default="2")] = None,
    edge_workers: Annotated[
        int | None, typer.Option("--edge-workers", help="Edge worker processes.", show_default="1")
    ] = None,
    zones: Annotated[
        str | None, typer.Option(help="Pod zones, comma-separated, e.g. a,b.", show_default="a")
    ] = None,
    profile: Annotated[
        Profile | None, typer.Option(help="Settings profile.", show_default="embedded")
    ] = None,
) -> None:
    """Start the supervisor, edge, pods and workers; run in the foreground."""
    from strongroom.cli.up import run_up  # noqa: PLC0415 - keeps other commands fast
    from strongroom.observe.logging import configure_logging  # noqa: PLC0415

    settings = _settings(
        config,
        data_dir=data_dir,
        port=port,
        pods=pods,
        edge_workers=edge_workers,
        zones=zones,
        profile=profile.value if profile else None,
    )
    configure_logging(settings, role="supervisor")
    try:
        code = asyncio.run(run_up(settings, console))
    except SupervisorAlreadyRunningError as exc:
        err_console.print(f"[bold red]{exc}[/]")
        raise typer.Exit(1) from None
    except Exception as exc:
        err_console.print(f"[bold red]start-up failed:[/] {exc!r}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command()
def status(
    data_dir: DataDirOption = None,
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show the supervised processes; exit 1 if no supervisor runs on the data dir."""
    directory = (data_dir or _settings(config).data_dir).resolve()
    report = load_status(directory)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    elif report.state is None:
        console.print(f"No supervisor has run on {directory}.")
    else:
        console.print(status_table(report))
        running = "[green]running[/]" if report.supervisor_running else "[red]not running[/]"
        console.print(
            f"supervisor pid {report.state.supervisor_pid}: {running} · {report.state.edge_url}"
        )
    if not report.supervisor_running:
        raise typer.Exit(1)


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Print or write the API's OpenAPI document (JSON)."""
    from strongroom.api.openapi import openapi_document  # noqa: PLC0415 - imports FastAPI

    text = json.dumps(openapi_document(), indent=2, sort_keys=False) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err_console.print(f"wrote {output}")


@db_app.command("upgrade")
def db_upgrade(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Migrate the database to the latest schema (safe to repeat)."""
    from strongroom.adapters.db.migrate import upgrade  # noqa: PLC0415 - imports Alembic

    settings = _settings(config, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    upgrade(settings)
    console.print(f"database at head: {_safe_url(settings.database_url)}")


@config_app.command("show")
def config_show(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
    output_format: Annotated[
        ConfigFormat, typer.Option("--format", help="toml (pasteable) or json.")
    ] = ConfigFormat.toml,
) -> None:
    """Print the effective settings with secrets masked."""
    data = masked_settings(_settings(config, data_dir=data_dir))
    if output_format is ConfigFormat.json:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        typer.echo(to_toml(data), nl=False)


@app.command()
def version() -> None:
    """Print the Strongroom version."""
    typer.echo(f"strongroom {__version__} (Python {platform.python_version()})")


def _safe_url(url: str) -> str:
    """A database URL without its password, for printing."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":
    app()
