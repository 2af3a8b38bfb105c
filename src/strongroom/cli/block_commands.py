"""`strongroom block add|list|remove`: the edge's block and allow entries.

These act on the database directly (like ``strongroom client``), so they work whether or
not the platform runs; a running edge applies a change on its next poll, within
``edge.blocklist.poll_s`` (0.25 s by default). Every change is an audit entry naming the
operating-system user who made it.

Exit codes: 0 done; 1 refused (invalid entry, no such entry, store full, database not
ready); 2 a configuration error.
"""

from __future__ import annotations

import getpass
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from strongroom.cli.settings_options import ConfigOption, DataDirOption, _settings, err_console

if TYPE_CHECKING:
    from strongroom.adapters.db.blocklist_store import SqlBlocklistStore
    from strongroom.edge.blocklist_ports import BlockEntry
    from strongroom.ledger.ports import Actor

console = Console()

block_app = typer.Typer(
    help="Block or allow addresses, networks and OAuth clients at every edge worker.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> int:
    """Seconds in ``90``, ``90s``, ``15m``, ``1h30m``, ``7d``, ``2w``; raises ValueError."""
    spelled = text.strip().lower()
    if spelled.isdigit():
        return int(spelled)
    parts = _DURATION_PART.findall(spelled)
    if not parts or "".join(n + u for n, u in parts) != spelled:
        raise ValueError(f"{text!r} is not a duration like 90s, 15m, 1h30m, 7d")
    return sum(int(n) * _UNIT_S[u] for n, u in parts)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[bold red]{message}[/]", highlight=False)
    return typer.Exit(1)


def _operator() -> Actor:
    from strongroom.ledger.ports import Actor  # noqa: PLC0415

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        user = "unknown"
    return Actor("operator", f"{user}@cli")


def _store(config: Path | None, data_dir: Path | None) -> SqlBlocklistStore:
    from strongroom.adapters.db.blocklist_store import SqlBlocklistStore  # noqa: PLC0415
    from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir)
    return SqlBlocklistStore(make_engine(settings), entries_max=settings.edge.blocklist.entries_max)


def _database_failure(exc: Exception) -> typer.Exit:
    return _fail(
        f"the database refused the change ({type(exc).__name__}); is its schema current? "
        "Run `strongroom db upgrade`."
    )


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _remaining(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(int(seconds), 0)}s"


def _state(entry: BlockEntry, now: float) -> str:
    if entry.removed_at is not None:
        return "removed"
    if entry.expires_at is not None and entry.expires_at <= now:
        return "expired"
    return "in force"


def entry_json(entry: BlockEntry, now: float) -> dict[str, object]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "value": entry.value,
        "target": entry.target,
        "action": entry.action,
        "reason": entry.reason,
        "created_by": entry.created_by,
        "created_at": entry.created_at,
        "expires_at": entry.expires_at,
        "removed_at": entry.removed_at,
        "state": _state(entry, now),
        "version": entry.version,
    }


def _describe(entry: BlockEntry) -> str:
    lasting = "until removed" if entry.expires_at is None else f"until {_when(entry.expires_at)}"
    verb = "allowed" if entry.action == "allow" else "blocked"
    return f"#{entry.id} {entry.target} {verb} {lasting}"


@block_app.command("add")
def block_add(
    *,
    target: Annotated[
        str,
        typer.Argument(help="An address (203.0.113.7), a network (10.0.0.0/8) or client:<id>."),
    ],
    allow: Annotated[
        bool,
        typer.Option(
            "--allow",
            help="An allow entry: an address or network is exempt from every block, a client "
            "from client blocks.",
        ),
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept with the entry).")] = "",
    ttl: Annotated[
        str | None,
        typer.Option("--ttl", help="Expire after e.g. 30m, 1h, 7d (default: until removed)."),
    ] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Block (or allow) an address, a network or an OAuth client at every edge worker."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from strongroom.edge.blocklist_ports import (  # noqa: PLC0415
        BlocklistFull,
        InvalidBlockEntry,
        parse_target,
    )

    try:
        ttl_s = None if ttl is None else parse_duration(ttl)
        kind, value = parse_target(target)
    except (ValueError, InvalidBlockEntry) as exc:
        raise _fail(str(exc)) from None
    store = _store(config, data_dir)
    try:
        entry = store.add(
            kind,
            value,
            "allow" if allow else "block",
            reason=reason,
            ttl_s=ttl_s,
            actor=_operator(),
        )
    except (InvalidBlockEntry, BlocklistFull) as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _database_failure(exc) from None
    if as_json:
        typer.echo(json.dumps(entry_json(entry, time.time())))
    else:
        console.print(_describe(entry), highlight=False)


@block_app.command("list")
def block_list(
    show_all: Annotated[
        bool, typer.Option("--all", help="Expired and removed entries too.")
    ] = False,
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Entries in force (with --all: every entry ever added)."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    store = _store(config, data_dir)
    try:
        entries = store.list(include_expired=show_all)
    except SQLAlchemyError as exc:
        raise _database_failure(exc) from None
    now = time.time()
    if as_json:
        typer.echo(json.dumps([entry_json(e, now) for e in entries]))
        return
    if not entries:
        console.print("no entries" + ("" if show_all else " in force"))
        return
    table = Table()
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("action", no_wrap=True)
    table.add_column("target", no_wrap=True)
    table.add_column("expires", no_wrap=True)
    table.add_column("reason", overflow="fold")
    table.add_column("by", overflow="fold")
    table.add_column("added (UTC)", overflow="fold")
    if show_all:
        table.add_column("state", no_wrap=True)
    for entry in entries:
        if entry.expires_at is None:
            expires = "never"
        elif entry.expires_at > now:
            expires = f"in {_remaining(entry.expires_at - now)}"
        else:
            expires = _when(entry.expires_at)
        row = [
            str(entry.id),
            "[green]allow[/]" if entry.action == "allow" else "[red]block[/]",
            entry.target,
            expires,
            entry.reason,
            entry.created_by,
            _when(entry.created_at),
        ]
        if show_all:
            row.append(_state(entry, now))
        table.add_row(*row)
    console.print(table)


@block_app.command("remove")
def block_remove(
    entry_id: Annotated[int, typer.Argument(help="The entry's id (see `block list`).")],
    as_json: JsonOption = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove an entry; every edge worker stops enforcing it within a second."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from strongroom.edge.blocklist_ports import BlockNotFound  # noqa: PLC0415

    store = _store(config, data_dir)
    try:
        entry = store.remove(entry_id, _operator())
    except BlockNotFound as exc:
        raise _fail(str(exc)) from None
    except SQLAlchemyError as exc:
        raise _database_failure(exc) from None
    if as_json:
        typer.echo(json.dumps(entry_json(entry, time.time())))
    else:
        console.print(f"#{entry.id} {entry.target} removed", highlight=False)


def register_block_commands(app: typer.Typer) -> None:
    app.add_typer(block_app, name="block")
