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
from typing import Annotated

import typer
from rich.console import Console

from strongroom import __version__
from strongroom.cli.audit_commands import register_audit_commands
from strongroom.cli.auth_commands import register_auth_commands
from strongroom.cli.block_commands import register_block_commands
from strongroom.cli.config_view import masked_settings, to_toml
from strongroom.cli.dpop_commands import register_dpop_commands
from strongroom.cli.settings_options import (
    ConfigOption,
    DataDirOption,
    _settings,
    err_console,
)
from strongroom.cli.status_view import load_status, status_table
from strongroom.cli.user_commands import register_user_commands
from strongroom.runtime.lock import SupervisorAlreadyRunningError

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


class Profile(StrEnum):
    embedded = "embedded"
    production = "production"


class ConfigFormat(StrEnum):
    toml = "toml"
    json = "json"


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


register_auth_commands(app)
register_user_commands(app)
register_dpop_commands(app)
register_audit_commands(app)
register_block_commands(app)

if __name__ == "__main__":
    app()
