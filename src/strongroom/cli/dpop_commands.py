"""`strongroom dpop keygen|proof`: a DPoP key (RFC 9449) and proofs for curl.

Money-moving scopes are granted only as DPoP-bound tokens (``auth.dpop_required_scopes``),
so a shell user needs a key pair and a fresh signed proof per request: ``keygen`` writes
the private key (PKCS#8 PEM, mode 0600), ``proof`` prints one proof for one request, and
``strongroom token --dpop-key`` gets a token bound to the key. Nothing here talks to the
platform; the proofs are made by ``strongroom.auth.dpop_client``.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from strongroom.cli.settings_options import err_console

if TYPE_CHECKING:
    from strongroom.auth.keys import PrivateKey

console = Console()

# A PEM private key is under 1 KiB; the cap keeps a wrong path (a log, a disk image)
# from being read whole.
KEY_FILE_BYTES_MAX = 16 * 1024
KEY_FILE_MODE = 0o600

dpop_app = typer.Typer(
    help="DPoP (RFC 9449): a key pair and per-request proofs for sender-constrained tokens.",
    no_args_is_help=True,
)

KeyOption = Annotated[
    Path, typer.Option("--key", help="The DPoP private key (from `dpop keygen`).", dir_okay=False)
]


class DpopAlg(StrEnum):
    ES256 = "ES256"
    Ed25519 = "Ed25519"


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]{message}[/]")
    return typer.Exit(1)


def read_key_file(path: Path) -> PrivateKey:
    """The DPoP key in ``path``, or exit 1 with the reason (used by ``token`` too)."""
    from strongroom.auth.dpop_client import load_key  # noqa: PLC0415 - keeps other commands fast

    try:
        with path.open("rb") as handle:
            pem = handle.read(KEY_FILE_BYTES_MAX + 1)
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(pem) > KEY_FILE_BYTES_MAX:
        raise _fail(f"{path} is not a key file (over {KEY_FILE_BYTES_MAX} bytes)")
    try:
        key = load_key(pem)
    except ValueError as exc:
        raise _fail(f"{path}: {exc}") from None
    if mode & 0o077:
        # Like ssh: whoever can read the key can use the tokens bound to it.
        err_console.print(f"[yellow]warning: {path} is open to group or others (chmod 600 it)[/]")
    return key


def _write_new_file(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``data`` to ``path`` with mode 0600 from its first byte; an existing file is
    kept unless ``force``, then replaced atomically (never truncated in place)."""
    target = path
    if force:
        target = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # exactly 0600, whatever the umask
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


@dpop_app.command("keygen")
def keygen(
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the private key (PEM).", dir_okay=False)
    ],
    alg: Annotated[DpopAlg, typer.Option("--alg", help="Key type.")] = DpopAlg.ES256,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Write a new DPoP private key (PKCS#8 PEM, mode 0600) and print its thumbprint."""
    from strongroom.auth.dpop_client import (  # noqa: PLC0415
        generate_key,
        key_pem,
        public_jwk,
        thumbprint,
    )

    key = generate_key(alg.value)
    try:
        _write_new_file(out, key_pem(key), force=force)
    except FileExistsError:
        raise _fail(f"{out} exists: pass --force to replace it") from None
    except OSError as exc:
        raise _fail(f"cannot write {out}: {exc.strerror or exc}") from None
    jkt = thumbprint(key)
    if as_json:
        out_json = {"key_file": str(out), "alg": alg.value, "jkt": jkt, "jwk": public_jwk(key)}
        typer.echo(json.dumps(out_json))
        return
    console.print(f"wrote {out} ({alg.value}, mode 0600)")
    console.print(f"jkt  {jkt}  [dim](cnf.jkt of bound tokens)[/]")


@dpop_app.command("proof")
def proof(
    *,
    key: KeyOption,
    method: Annotated[str, typer.Option("--method", help="HTTP method, e.g. POST.")],
    url: Annotated[
        str,
        typer.Option("--url", help="The request URL (query and fragment are left out of htu)."),
    ],
    token: Annotated[
        str | None,
        typer.Option("--token", help="The access token the request carries (adds ath)."),
    ] = None,
    nonce: Annotated[
        str | None,
        typer.Option("--nonce", help="The server's latest DPoP-Nonce; empty means none."),
    ] = None,
) -> None:
    """Print one fresh DPoP proof (new jti, iat now) for one request."""
    from strongroom.auth.dpop_client import make_proof  # noqa: PLC0415

    private = read_key_file(key)
    try:
        value = make_proof(
            private,
            method,
            url,
            access_token=token or None,
            nonce=nonce or None,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from None
    typer.echo(value)


def register_dpop_commands(app: typer.Typer) -> None:
    app.add_typer(dpop_app, name="dpop")
