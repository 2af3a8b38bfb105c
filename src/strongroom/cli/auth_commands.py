"""`strongroom tenant|client|token|keys`: provisioning the authorization server.

These act on the database directly (like `db upgrade`), so they work whether or not
the platform runs; `token` is the exception: it asks the running platform's token
endpoint, through the edge, exactly as a client would.
"""

from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from strongroom.cli.settings_options import ConfigOption, DataDirOption, _settings, err_console
from strongroom.config import Settings

if TYPE_CHECKING:
    from strongroom.auth.ports import ClientRecord, ClientRepository

console = Console()

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
# The token command talks to a local platform; a hung edge must not hang the shell.
TOKEN_REQUEST_TIMEOUT_S = 15.0
# RFC 9449 §8: the first DPoP request may be answered use_dpop_nonce; one retry with the
# server's nonce must then succeed (a nonce lives at least auth.dpop_nonce_step_s).
TOKEN_DPOP_ATTEMPTS = 2


@dataclass
class _Stores:
    """Repositories over the configured database, built once per command."""

    settings: Settings

    def __post_init__(self) -> None:
        from strongroom.adapters.db.auth_repositories import (  # noqa: PLC0415 - SQLAlchemy import
            SqlClientRepository,
            SqlKeyRepository,
            SqlRevocationStore,
            SqlTenantRepository,
        )
        from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415
        from strongroom.auth.secrets import SecretHasher  # noqa: PLC0415

        auth = self.settings.auth
        self.engine = make_engine(self.settings)
        self.tenants = SqlTenantRepository(self.engine)
        deny_ttl_s = auth.access_token_lifetime_s + auth.leeway_s
        self.clients = SqlClientRepository(self.engine, client_deny_ttl_s=deny_ttl_s)
        self.revocations = SqlRevocationStore(self.engine, client_deny_ttl_s=deny_ttl_s)
        self.keys = SqlKeyRepository(
            self.engine, self.settings.secrets.key_encryption_key.get_secret_value()
        )
        self.hasher = SecretHasher(
            time_cost=auth.argon2_time_cost,
            memory_kib=auth.argon2_memory_kib,
            parallelism=auth.argon2_parallelism,
        )


class _KeyRegisteredClients:
    """The client repository, storing each new client with ``jwks`` and without a secret.

    ``provisioning.create_client`` owns the rules of registration (tenant active, scopes
    known, operator scopes only for operators) and makes a secret for every client; a
    client registered with keys authenticates with ``private_key_jwt`` (RFC 7523 §2.2)
    only, so its secret is dropped here, before anything stores or prints it.
    """

    def __init__(self, clients: ClientRepository, jwks: str) -> None:
        self._clients = clients
        self._jwks = jwks

    def create(self, record: ClientRecord) -> None:
        self._clients.create(replace(record, secret_hash=None, jwks=self._jwks))

    def get(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def list_for_tenant(self, tenant_id: str) -> list[ClientRecord]:
        return self._clients.list_for_tenant(tenant_id)

    def set_status(self, client_id: str, status: str) -> bool:
        return self._clients.set_status(client_id, status)


def _read_jwks(path: Path) -> str:
    """The JWK set in ``path``, validated and compacted; public keys only (RFC 7517 §5)."""
    from strongroom.auth.rfc7523_client_assertion import (  # noqa: PLC0415
        JWKS_BYTES_MAX,
        InvalidClientJwks,
        canonical_jwks,
    )

    try:
        with path.open("rb") as handle:
            raw = handle.read(JWKS_BYTES_MAX + 1)  # bounded: never read a huge file whole
        return canonical_jwks(raw.decode("utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise _fail(f"{path} is not UTF-8 JSON") from None
    except InvalidClientJwks as exc:
        raise _fail(f"{path}: {exc}") from None


def _stores(config: object, data_dir: object) -> _Stores:
    settings = _settings(config, data_dir=data_dir)  # type: ignore[arg-type]
    return _Stores(settings)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]{message}[/]")
    return typer.Exit(1)


tenant_app = typer.Typer(help="Tenants: the unit of isolation.", no_args_is_help=True)
client_app = typer.Typer(help="OAuth 2.0 clients of a tenant.", no_args_is_help=True)
keys_app = typer.Typer(help="Access-token signing keys.", no_args_is_help=True)


@tenant_app.command("create")
def tenant_create(
    name: Annotated[str, typer.Argument(help="Display name.")],
    tenant_id: Annotated[str | None, typer.Option("--id", help="Choose the id (UUID).")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Create a tenant and print its id."""
    from strongroom.auth.provisioning import ProvisioningError, create_tenant  # noqa: PLC0415

    stores = _stores(config, data_dir)
    try:
        new_id = create_tenant(stores.tenants, name, tenant_id)
    except ProvisioningError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"tenant_id": new_id, "name": name}))
    else:
        console.print(f"tenant [bold]{new_id}[/] ({name})")


@client_app.command("create")
def client_create(
    *,
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    scopes: Annotated[str, typer.Option("--scopes", help="Space- or comma-separated scopes.")],
    name: Annotated[str, typer.Option("--name", help="Display name.")] = "client",
    dpop: Annotated[bool, typer.Option("--dpop", help="Require DPoP-bound tokens.")] = False,
    operator: Annotated[
        bool, typer.Option("--operator", help="A platform operator client (may hold admin).")
    ] = False,
    jwks_file: Annotated[
        Path | None,
        typer.Option(
            "--jwks-file",
            help="A JWK set of the client's public keys (ES256 P-256 or Ed25519): the client "
            "authenticates with private_key_jwt and gets no secret.",
            dir_okay=False,
        ),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a confidential client; prints its id and, this once, its secret.

    With --jwks-file the client proves a private key instead (RFC 7523 §2.2): no secret
    is made or printed, and the client can never authenticate with one.
    """
    from strongroom.auth.provisioning import ProvisioningError, create_client  # noqa: PLC0415

    jwks = None if jwks_file is None else _read_jwks(jwks_file)
    stores = _stores(config, data_dir)
    clients = stores.clients if jwks is None else _KeyRegisteredClients(stores.clients, jwks)
    wanted = [s for s in scopes.replace(",", " ").split() if s]
    try:
        record, secret = create_client(
            stores.tenants,
            clients,
            stores.hasher,
            tenant_id=tenant,
            name=name,
            scopes=wanted,
            dpop_required=dpop,
            operator=operator,
        )
    except ProvisioningError as exc:
        raise _fail(str(exc)) from None
    method = "client_secret_basic" if jwks is None else "private_key_jwt"
    out = {
        "client_id": record.client_id,
        **({"client_secret": secret} if jwks is None else {}),
        "tenant_id": record.tenant_id,
        "scopes": sorted(record.scopes),
        "dpop_required": record.dpop_required,
        # RFC 7591 §2 name: how the client authenticates at the token endpoint.
        "token_endpoint_auth_method": method,
    }
    if as_json:
        typer.echo(json.dumps(out))
        return
    console.print(f"client_id      {record.client_id}")
    if jwks is None:
        console.print(f"client_secret  {secret}   [dim](shown once: store it now)[/]")
    else:
        console.print("auth method    private_key_jwt (registered public keys; no secret)")
    console.print(f"scopes         {' '.join(sorted(record.scopes))}")


@client_app.command("suspend")
def client_suspend(
    client_id: Annotated[str, typer.Argument(help="Client id.")],
    reason: Annotated[str, typer.Option(help="Recorded with the suspension.")] = "operator",
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Suspend a client: its tokens stop working on every pod within a second."""
    from strongroom.auth.provisioning import ProvisioningError, suspend_client  # noqa: PLC0415

    stores = _stores(config, data_dir)
    try:
        suspend_client(stores.clients, stores.revocations, client_id, reason)
    except ProvisioningError as exc:
        raise _fail(str(exc)) from None
    console.print(f"client {client_id} suspended")


@client_app.command("list")
def client_list(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant id.")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """The tenant's clients (never their secrets)."""
    stores = _stores(config, data_dir)
    records = stores.clients.list_for_tenant(tenant)
    rows = [
        {
            "client_id": r.client_id,
            "name": r.name,
            "status": r.status,
            "scopes": sorted(r.scopes),
            "dpop_required": r.dpop_required,
        }
        for r in records
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("client_id", "name", "status", "scopes", "dpop")
    for row in rows:
        table.add_row(
            str(row["client_id"]),
            str(row["name"]),
            str(row["status"]),
            " ".join(row["scopes"]),  # type: ignore[arg-type]
            "yes" if row["dpop_required"] else "no",
        )
    console.print(table)


@keys_app.command("rotate")
def keys_rotate(
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Promote the published next key to signing and publish a new next key.

    A key is used only after it has been published for `auth.key_publish_ahead_s`, so
    caches everywhere know it; the old key stays published until its tokens expire.
    """
    from strongroom.auth.provisioning import rotate_keys  # noqa: PLC0415

    stores = _stores(config, data_dir)
    auth = stores.settings.auth
    before, after = rotate_keys(
        stores.keys,
        alg=auth.signing_alg,
        publish_ahead_s=auth.key_publish_ahead_s,
        token_lifetime_s=auth.access_token_lifetime_s,
        active_for_s=None,
    )
    old_active = {k.kid for k in before if k.state == "active"}
    new_active = {k.kid for k in after if k.state == "active"}
    if old_active != new_active:
        console.print(f"signing key is now {', '.join(sorted(new_active))}")
    else:
        console.print(
            "the next key has not been published long enough yet "
            f"(auth.key_publish_ahead_s = {auth.key_publish_ahead_s} s); nothing promoted"
        )
    _print_keys(after)


@keys_app.command("list")
def keys_list(config: ConfigOption = None, data_dir: DataDirOption = None) -> None:
    """Signing keys and their states (never private material)."""
    _print_keys(_stores(config, data_dir).keys.load())


def _print_keys(keys: list) -> None:  # type: ignore[type-arg]
    table = Table("kid", "alg", "state", "created", "activated", "retired")
    for key in sorted(keys, key=lambda k: k.created_at):
        table.add_row(
            key.kid,
            key.alg,
            key.state,
            _ts(key.created_at),
            _ts(key.activated_at),
            _ts(key.retired_at),
        )
    console.print(table)


def _ts(value: float | None) -> str:
    if value is None:
        return "-"
    import datetime as dt  # noqa: PLC0415

    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def token(
    *,
    client_id: Annotated[str, typer.Option("--client-id", help="Client id.")],
    client_secret: Annotated[str, typer.Option("--client-secret", help="Client secret.")],
    scope: Annotated[str | None, typer.Option(help="Scopes to ask for (default: all).")] = None,
    url: Annotated[
        str | None, typer.Option(help="Token endpoint (default: this platform's, via the edge).")
    ] = None,
    dpop_key: Annotated[
        Path | None,
        typer.Option(
            "--dpop-key",
            help="Bind the token to this DPoP key (RFC 9449; from `dpop keygen`): needed for "
            "money-moving scopes such as transfers:write.",
            dir_okay=False,
        ),
    ] = None,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Get an access token with client_credentials and print it (for curl).

    With --dpop-key every request carries a fresh DPoP proof, and a ``use_dpop_nonce``
    answer (RFC 9449 §8) is retried once with the server's ``DPoP-Nonce``.
    """
    from strongroom.auth.dpop_client import make_proof  # noqa: PLC0415
    from strongroom.cli.dpop_commands import read_key_file  # noqa: PLC0415
    from strongroom.edge.tls import client_context  # noqa: PLC0415

    key = None if dpop_key is None else read_key_file(dpop_key)
    settings = _settings(config, data_dir=data_dir)
    endpoint = url or f"{settings.issuer}/oauth2/token"
    ca = settings.tls_dir / "ca.pem"
    context: ssl.SSLContext = client_context(
        ca if ca.exists() and not settings.tls.cert_file else None
    )
    form = {"grant_type": "client_credentials"}
    if scope:
        form["scope"] = scope
    # RFC 6749 §2.3.1: form-urlencode id and secret before base64.
    pair = f"{urllib.parse.quote(client_id, safe='')}:{urllib.parse.quote(client_secret, safe='')}"
    basic = base64.b64encode(pair.encode()).decode()
    nonce: str | None = None
    for attempt in range(TOKEN_DPOP_ATTEMPTS):
        headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if key is not None:
            try:
                headers["DPoP"] = make_proof(key, "POST", endpoint, nonce=nonce)
            except ValueError as exc:
                raise _fail(f"cannot make a DPoP proof for {endpoint}: {exc}") from None
        request = urllib.request.Request(  # noqa: S310 - https URL from settings or the operator
            endpoint,
            data=urllib.parse.urlencode(form).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=context, timeout=TOKEN_REQUEST_TIMEOUT_S
            ) as response:
                body = json.loads(response.read())
            break
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            challenge = exc.headers.get("DPoP-Nonce")
            if (
                key is not None
                and challenge
                and attempt + 1 < TOKEN_DPOP_ATTEMPTS
                and _oauth_error(detail) == "use_dpop_nonce"
            ):
                nonce = challenge
                continue
            hint = ""
            if key is None and _oauth_error(detail) == "invalid_dpop_proof":
                hint = " (make a key with `strongroom dpop keygen`, pass it as --dpop-key)"
            raise _fail(f"{exc.code}: {detail}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise _fail(f"cannot reach {endpoint}: {exc}") from None
    if key is not None and body.get("token_type") != "DPoP":
        # RFC 9449 §5: a server that ignored the proof issued a bearer token; say so rather
        # than hand out a token the caller believes is bound.
        raise _fail(f"the server did not bind the token (token_type {body.get('token_type')!r})")
    typer.echo(body["access_token"])


def _oauth_error(body: str) -> str | None:
    """The ``error`` code of an RFC 6749 §5.2 error body, or ``None``."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return error if isinstance(error, str) else None


def register_auth_commands(app: typer.Typer) -> None:
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(client_app, name="client")
    app.add_typer(keys_app, name="keys")
    app.command("token")(token)
