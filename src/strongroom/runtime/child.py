"""Entry point of every child process: ``python -m strongroom.runtime.child <role> ...``.

The child loads the settings the supervisor froze (``STRONGROOM_SETTINGS_FILE``)
and calls its role's run function. Role functions are looked up by dotted
name, so this module imports neither the edge nor the API (each child pays
only for its own role), and ``--entry module:function`` can replace a role's
function — the supervisor's integration tests run small fake roles that way.

Calling conventions (docs/architecture.md, "Runtime contracts"):
``edge``/``pod``: ``run(settings, index, zone)``; ``worker``: ``run(settings, index)``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from strongroom.config import Settings, load_settings
from strongroom.runtime.process import SUPERVISOR_PID_ENV_VAR

ROLE_ENTRYPOINTS: dict[str, str] = {
    "edge": "strongroom.edge.main:run",
    "pod": "strongroom.api.pod:run",
    "worker": "strongroom.runtime.worker:run",
}
_PR_SET_PDEATHSIG = 1


def resolve_entry(entry: str) -> Callable[..., None]:
    """Import ``module:function`` and return the function."""
    module_name, sep, attr = entry.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"entry must look like 'package.module:function', got {entry!r}")
    module = importlib.import_module(module_name)
    func = getattr(module, attr)
    if not callable(func):
        raise TypeError(f"{entry} is not callable")
    return cast(Callable[..., None], func)


def run_role(settings: Settings, role: str, index: int, zone: str, entry: str | None) -> None:
    func = resolve_entry(entry or ROLE_ENTRYPOINTS[role])
    if role == "worker":
        func(settings, index)
    else:
        func(settings, index, zone)


def _die_with_supervisor() -> None:
    """Get SIGTERM if the supervisor dies (Linux), so no orphan keeps the ports.

    Children run in their own session (so a terminal's Ctrl-C reaches only the
    supervisor), which also means nothing else would tell them it is gone.
    """
    expected = os.environ.get(SUPERVISOR_PID_ENV_VAR)
    if not sys.platform.startswith("linux") or not expected:
        return
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return
    libc: Any = ctypes.CDLL(libc_name, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    # The supervisor may have died before prctl took effect.
    if str(os.getppid()) != expected:
        sys.exit(0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="strongroom.runtime.child")
    parser.add_argument("role", choices=sorted(ROLE_ENTRYPOINTS))
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--zone", required=True)
    parser.add_argument(
        "--entry",
        default=None,
        help="module:function replacing the role's run function (tests, alternative roles)",
    )
    args = parser.parse_args(argv)
    _die_with_supervisor()
    run_role(load_settings(), args.role, args.index, args.zone, args.entry)


if __name__ == "__main__":
    main()
