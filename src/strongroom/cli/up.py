"""``strongroom up``: run the platform in the foreground until Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import signal

from rich.console import Console
from rich.table import Table

from strongroom.config import Settings
from strongroom.runtime.bootstrap import prepare
from strongroom.runtime.supervisor import Supervisor, ca_cert_path, edge_url

# How often the start-up spinner refreshes its "n/m healthy" line; display only.
_PROGRESS_REFRESH_S = 0.25
# Conventional exit status for "stopped by a signal before start-up finished".
_EXIT_INTERRUPTED = 130


def _progress(sup: Supervisor) -> str:
    processes = sup.processes.values()
    healthy = sum(1 for p in processes if p.health == "healthy")
    return f"Starting Strongroom: {healthy}/{len(processes)} processes healthy"


def _not_ready_table(sup: Supervisor) -> Table:
    table = Table(title="Not healthy in time")
    for column in ("name", "pid", "health", "restarts"):
        table.add_column(column)
    for info in sup.processes.values():
        if info.health != "healthy":
            table.add_row(info.name, str(info.pid or "-"), info.health, str(info.restarts))
    return table


def _print_banner(console: Console, settings: Settings) -> None:
    url = edge_url(settings)
    ca_cert = ca_cert_path(settings)
    curl = f"curl --cacert {ca_cert} {url}/healthz" if ca_cert else f"curl {url}/healthz"
    lines = [
        f"[bold green]Strongroom {settings.version} is up[/]",
        f"  URL      {url}",
        *([f"  CA cert  {ca_cert}"] if ca_cert else []),
        f"  try      {curl}",
        f"  status   strongroom status --data-dir {settings.data_dir}",
        "Press Ctrl-C to stop (edge first, then pods, then workers).",
    ]
    for line in lines:
        # soft_wrap: long paths must stay on one line so the command can be copied.
        console.print(line, soft_wrap=True)


async def run_up(settings: Settings, console: Console) -> int:
    """Start, report, serve until signalled, stop in order; the process exit status."""
    sup = Supervisor(settings, prepare=prepare)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, sup.request_stop)
    try:
        with console.status("Preparing the data dir (TLS, database)…") as spinner:
            await sup.start()
            ready = asyncio.create_task(sup.wait_ready())
            stopped = asyncio.create_task(sup.wait_stopped())
            while not ready.done() and not stopped.done():
                spinner.update(_progress(sup))
                await asyncio.wait({ready, stopped}, timeout=_PROGRESS_REFRESH_S)
            stopped.cancel()
        if not ready.done():
            ready.cancel()
            console.print("Interrupted during start-up; stopping.")
            return _EXIT_INTERRUPTED
        if ready.exception() is not None:
            console.print(
                f"[red]Not every process became healthy within "
                f"{settings.supervisor.startup_timeout_s:g} s.[/]"
            )
            console.print(_not_ready_table(sup))
            return 1
        _print_banner(console, settings)
        await sup.wait_stopped()
        console.print("Stopping…")
        return 0
    finally:
        await sup.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
