"""`strongroom user create` and `strongroom client register-app`: resource owners and the
apps (authorization-code clients) that act for them.

Like the other provisioning commands these act on the database directly, so they work
whether or not the platform runs. Passwords never appear on the command line (where
`ps` and shell history would show them): they are prompted for, or read from stdin.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from strongroom.cli.settings_options import ConfigOption, DataDirOption, _settings, err_console

console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

user_app = typer.Typer(help="End users and operators (resource owners).", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]{message}[/]")
    return typer.Exit(1)


@user_app.command("create")
def user_create(
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    username: Annotated[str, typer.Option("--username", help="Login name (case-insensitive).")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin's first line.")
    ] = False,
    operator: Annotated[
        bool, typer.Option("--operator", help="A platform operator (may hold admin scopes).")
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a user of a tenant; the password is stored only as an argon2id hash."""
    from strongroom.adapters.db.auth_repositories import (  # noqa: PLC0415 - SQLAlchemy import
        SqlTenantRepository,
    )
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415
    from strongroom.adapters.db.user_repositories import (  # noqa: PLC0415
        Conflict,
        SqlUserRepository,
    )
    from strongroom.auth.secrets import SecretHasher  # noqa: PLC0415
    from strongroom.auth.users import UserError, create_user  # noqa: PLC0415

    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    settings = _settings(config, data_dir=data_dir)
    auth = settings.auth
    engine = make_engine(settings)
    try:
        record = create_user(
            SqlTenantRepository(engine),
            SqlUserRepository(engine),
            SecretHasher(
                time_cost=auth.argon2_time_cost,
                memory_kib=auth.argon2_memory_kib,
                parallelism=auth.argon2_parallelism,
            ),
            tenant_id=tenant,
            username=username,
            password=password,
            operator=operator,
        )
    except (UserError, Conflict) as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    out = {
        "user_id": record.user_id,
        "tenant_id": record.tenant_id,
        "username": record.username,
        "operator": record.is_operator,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    kind = "operator" if record.is_operator else "user"
    console.print(f"{kind} [bold]{record.username}[/] ({record.user_id}) in tenant {tenant}")


def client_register_app(
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    name: Annotated[str, typer.Option("--name", help="Display name, shown on the login page.")],
    redirect_uri: Annotated[
        list[str], typer.Option("--redirect-uri", help="Exact redirect URI (repeatable).")
    ],
    scopes: Annotated[str, typer.Option("--scopes", help="Space- or comma-separated scopes.")],
    public: Annotated[
        bool, typer.Option("--public", help="A public client (no secret; PKCE only).")
    ] = False,
    dpop: Annotated[bool, typer.Option("--dpop", help="Require DPoP-bound tokens.")] = False,
    operator: Annotated[
        bool, typer.Option("--operator", help="A platform operator client (may hold admin).")
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a client for the authorization-code flow (users log in through it)."""
    from strongroom.adapters.db.auth_repositories import (  # noqa: PLC0415 - SQLAlchemy import
        SqlTenantRepository,
    )
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415
    from strongroom.adapters.db.user_repositories import (  # noqa: PLC0415
        Conflict,
        SqlAppClientRepository,
    )
    from strongroom.auth.app_clients import AppClientError, create_app_client  # noqa: PLC0415
    from strongroom.auth.secrets import SecretHasher  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir)
    auth = settings.auth
    engine = make_engine(settings)
    try:
        app, secret = create_app_client(
            SqlTenantRepository(engine),
            SqlAppClientRepository(engine),
            SecretHasher(
                time_cost=auth.argon2_time_cost,
                memory_kib=auth.argon2_memory_kib,
                parallelism=auth.argon2_parallelism,
            ),
            tenant_id=tenant,
            name=name,
            scopes=[s for s in scopes.replace(",", " ").split() if s],
            redirect_uris=redirect_uri,
            public=public,
            dpop_required=dpop,
            operator=operator,
        )
    except (AppClientError, Conflict) as exc:
        raise _fail(str(exc)) from None
    finally:
        engine.dispose()
    record = app.record
    out = {
        "client_id": record.client_id,
        "client_secret": secret,
        "client_type": app.client_type,
        "tenant_id": record.tenant_id,
        "redirect_uris": list(app.redirect_uris),
        "scopes": sorted(record.scopes),
        "dpop_required": record.dpop_required,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    console.print(f"client_id      {record.client_id}  ({app.client_type})")
    if secret is not None:
        console.print(f"client_secret  {secret}   [dim](shown once: store it now)[/]")
    console.print(f"redirect_uris  {' '.join(app.redirect_uris)}")
    console.print(f"scopes         {' '.join(sorted(record.scopes))}")


def register_user_commands(app: typer.Typer) -> None:
    """Add `user …` and `client register-app` (to the `client` group of auth_commands)."""
    from strongroom.cli.auth_commands import client_app  # noqa: PLC0415 - avoid import cycle

    app.add_typer(user_app, name="user")
    client_app.command("register-app")(client_register_app)
