"""`strongroom audit verify|witness|witness-keygen`: checking the audit log from outside.

``verify`` recomputes the whole Merkle tree from the leaves, from the database (default) or
over HTTPS from the API, and checks it against every signed checkpoint it is given — the
store's, the API's latest and, above all, copies kept outside the database (``--checkpoints``:
the sequencer's export file or a witness state). ``witness`` follows the log over HTTPS, only
accepting a new checkpoint with a consistency proof from the last one it holds, cosigns it
(C2SP tlog-cosignature) and alarms on a rollback or fork.

Exit codes: 0 the log verifies / the witness accepted; 1 verification failed (the first bad
index is printed) or the command could not run (unreachable source, bad key, bad file);
2 a witness alarm (the evidence is written next to the state file), or a configuration error.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from strongroom.cli.settings_options import ConfigOption, DataDirOption, _settings, err_console

if TYPE_CHECKING:
    from strongroom.adapters.audit_sources import HttpLogSource, LogSource
    from strongroom.audit.signed_note import Verifier
    from strongroom.audit.verify import VerifyReport
    from strongroom.config import Settings

console = Console()

EXIT_FAILED = 1
EXIT_ALARM = 2
# A key or token file is a line; the cap keeps a wrong path from being read whole.
SMALL_FILE_BYTES_MAX = 16 * 1024
STATE_FILE_BYTES_MAX = 1024 * 1024  # a note with 100 cosignatures is well below this
SECRET_FILE_MODE = 0o600
# The witness polls this often by default: C2SP witnesses see a checkpoint every few seconds.
WITNESS_INTERVAL_S_DEFAULT = 10.0

audit_app = typer.Typer(
    help="The tamper-evident audit log: verify it, witness it.", no_args_is_help=True
)

UrlOption = Annotated[
    str | None,
    typer.Option("--url", help="The platform's base URL, e.g. https://localhost:8443."),
]
TokenOption = Annotated[
    str | None, typer.Option("--token", help="Bearer token with scope audit:read.")
]
TokenFileOption = Annotated[
    Path | None,
    typer.Option("--token-file", help="Read the bearer token from this file.", dir_okay=False),
]
CaOption = Annotated[
    Path | None,
    typer.Option("--ca", help="CA certificate to trust (default: the platform's local CA)."),
]
LogKeyOption = Annotated[
    str | None,
    typer.Option(
        "--log-key",
        help="The log's verifier key (name+keyhash+base64), or a file holding it. Default: "
        "the key file of this platform, else the key the source publishes (trust on first use).",
    ),
]


def _fail(message: str, code: int = EXIT_FAILED) -> typer.Exit:
    err_console.print(f"[bold red]{message}[/]", highlight=False)
    return typer.Exit(code)


def _read_small(path: Path, what: str) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(SMALL_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise _fail(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > SMALL_FILE_BYTES_MAX:
        raise _fail(f"{path} is not a {what} (over {SMALL_FILE_BYTES_MAX} bytes)")
    return raw.decode("utf-8", errors="replace").strip()


def _token(token: str | None, token_file: Path | None) -> str:
    if token_file is not None:
        token = _read_small(token_file, "token file")
    if not token:
        raise _fail("the API needs a bearer token: pass --token or --token-file")
    return token


def _http_source(settings: Settings, url: str, token: str, ca: Path | None) -> HttpLogSource:
    from strongroom.adapters.audit_sources import HttpLogSource  # noqa: PLC0415
    from strongroom.edge.tls import client_context  # noqa: PLC0415

    local_ca = settings.tls_dir / "ca.pem"
    if ca is None and local_ca.exists() and not settings.tls.cert_file:
        ca = local_ca
    try:
        context: ssl.SSLContext = client_context(ca)
    except (OSError, ssl.SSLError) as exc:
        raise _fail(f"cannot load the CA certificate {ca}: {exc}") from None
    return HttpLogSource(url, token, context)


def _log_verifier(given: str | None, settings: Settings | None, source: LogSource) -> Verifier:
    """The log's key: --log-key, else this platform's key file, else the source's (warned)."""
    from strongroom.adapters.audit_sources import SourceError  # noqa: PLC0415
    from strongroom.audit.signed_note import NoteError, Signer, Verifier  # noqa: PLC0415

    text: str | None = given
    if given is not None and Path(given).is_file():
        text = _read_small(Path(given), "key file")
    if text is None and settings is not None and settings.audit_key_path.is_file():
        key_text = _read_small(settings.audit_key_path, "key file")
        try:
            return Signer.from_key(key_text).verifier()
        except NoteError as exc:
            raise _fail(f"{settings.audit_key_path}: {exc}") from None
    if text is None:
        try:
            text = source.verifier_key()
        except SourceError as exc:
            raise _fail(str(exc)) from None
        if not text:
            raise _fail("the source publishes no log key: pass --log-key")
        err_console.print(
            f"[yellow]trusting the log key the source publishes ({text}); pin it with "
            "--log-key: whoever controls the source controls that key[/]",
            highlight=False,
        )
    try:
        return Verifier.from_key(text)
    except NoteError as exc:
        raise _fail(f"the log key is not a verifier key: {exc}") from None


def _print_report(report: VerifyReport, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif report.ok:
        console.print(f"[green]{report.summary()}[/]", highlight=False)
    else:
        err_console.print(f"[bold red]{report.summary()}[/]", highlight=False)


@audit_app.command("verify")
def verify(
    *,
    url: UrlOption = None,
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    ca: CaOption = None,
    checkpoints: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoints",
            help="Trusted checkpoints kept outside the database: the sequencer's export file "
            "(audit.export_path, JSON lines) or one signed note (a witness state). Repeatable.",
            dir_okay=False,
        ),
    ] = None,
    log_key: LogKeyOption = None,
    leaf_check: Annotated[
        bool,
        typer.Option(
            "--leaf-check/--no-leaf-check",
            help="Check that every leaf is a canonical entry (slower than hashing alone).",
        ),
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Recompute the audit log's Merkle tree and check it against its signed checkpoints.

    Reads the database of this platform, or with --url the HTTP API. Exit 0 if every
    checkpoint matches; exit 1 naming the first bad index otherwise.
    """
    from strongroom.adapters.audit_sources import (  # noqa: PLC0415
        DatabaseLogSource,
        SourceError,
        read_checkpoint_file,
        verify_log,
    )
    from strongroom.audit.verify import LogVerifier  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir)
    source: LogSource
    if url is not None:
        source = _http_source(settings, url, _token(token, token_file), ca)
    else:
        from strongroom.adapters.db.engine import make_engine  # noqa: PLC0415

        source = DatabaseLogSource(make_engine(settings))
    verifier_key = _log_verifier(log_key, settings, source)
    verifier = LogVerifier([verifier_key], check_leaves=leaf_check)
    try:
        notes = [note for path in checkpoints or [] for note in read_checkpoint_file(path)]
        notes.extend(source.checkpoint_notes())
    except SourceError as exc:
        raise _fail(str(exc)) from None
    for label, note in notes:
        if not verifier.add_checkpoint(note, source=label):
            break
    try:
        with Progress(
            TextColumn("verifying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        ) as progress:
            task = progress.add_task("entries", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            report = (
                verifier.finish()
                if verifier.failed
                else verify_log(source, verifier, on_progress=advance)
            )
    except SourceError as exc:
        raise _fail(f"cannot read the log: {exc}") from None
    _print_report(report, as_json)
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


# -- the witness -------------------------------------------------------------------------------


def _write_atomically(path: Path, text: str, mode: int = 0o644) -> None:
    """Replace ``path`` with ``text`` so a crash leaves the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _witness_step(
    source: HttpLogSource,
    log_verifier: Verifier,
    state_path: Path,
    cosigner_key: str | None,
) -> None:
    """One round: fetch, check against the state, cosign and persist, or alarm (exit 2)."""
    from strongroom.adapters.audit_sources import SourceError  # noqa: PLC0415
    from strongroom.audit.checkpoint import CheckpointError, open_checkpoint  # noqa: PLC0415
    from strongroom.audit.signed_note import NoteError  # noqa: PLC0415
    from strongroom.audit.witness import Cosigner, WitnessState, check_advance  # noqa: PLC0415

    held_note: str | None = None
    if state_path.exists():
        held_note = _read_state(state_path)
    try:
        latest_note = source.latest_note()
    except SourceError as exc:
        raise _fail(str(exc)) from None
    try:
        checkpoint = open_checkpoint(latest_note, [log_verifier])
    except (NoteError, CheckpointError) as exc:
        raise _fail(f"the log's latest checkpoint does not verify: {exc}") from None
    if held_note is None:
        state = WitnessState.initial(checkpoint.origin)
        err_console.print(
            f"no state in {state_path}: starting from the empty tree of {checkpoint.origin}",
            highlight=False,
        )
    else:
        try:
            held = open_checkpoint(held_note, [log_verifier])
        except (NoteError, CheckpointError) as exc:
            raise _fail(f"{state_path} is not a checkpoint of this log's key: {exc}") from None
        state = WitnessState(held.origin, held.size, held.root_hash)
    proof: list[bytes] = []
    if 0 < state.size < checkpoint.size:
        try:
            proof = source.consistency_proof(state.size, checkpoint.size)
        except SourceError as exc:
            # A log that cannot prove it extends the held tree is not accepted; retry later.
            raise _fail(f"no consistency proof {state.size} → {checkpoint.size}: {exc}") from None
    verdict = check_advance(state, checkpoint, proof)
    if verdict.alarm:
        evidence = state_path.with_name(f"{state_path.name}.alarm-{int(time.time())}.json")
        _write_atomically(
            evidence,
            json.dumps(
                {
                    "verdict": verdict.code,
                    "reason": verdict.reason,
                    "held_note": held_note,
                    "received_note": latest_note,
                    "consistency_proof": [base64.b64encode(h).decode() for h in proof],
                    "detected_at": int(time.time()),
                },
                indent=2,
            )
            + "\n",
        )
        raise _fail(
            f"ALARM ({verdict.code}): {verdict.reason}. The log rewrote its history, or "
            f"someone serves a forged view of it. Evidence: {evidence} (the state is kept).",
            EXIT_ALARM,
        )
    if not verdict.accepted:
        raise _fail(f"checkpoint not accepted ({verdict.code}): {verdict.reason}")
    note = latest_note
    if cosigner_key is not None:
        cosigner = Cosigner.from_key(cosigner_key)
        note = latest_note + cosigner.cosign(checkpoint, int(time.time()))
    _write_atomically(state_path, note)
    console.print(f"{verdict.code}: {verdict.reason}", highlight=False)


def _read_state(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            raw = handle.read(STATE_FILE_BYTES_MAX + 1)
    except OSError as exc:
        raise _fail(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > STATE_FILE_BYTES_MAX:
        raise _fail(f"{path} is not a witness state (over {STATE_FILE_BYTES_MAX} bytes)")
    return raw.decode("utf-8", errors="replace")


@audit_app.command("witness")
def witness(
    *,
    url: Annotated[str, typer.Option("--url", help="The platform's base URL.")],
    state: Annotated[
        Path,
        typer.Option(
            "--state",
            help="The last accepted checkpoint (a signed note, with this witness's "
            "cosignature); created on the first run.",
            dir_okay=False,
        ),
    ],
    token: TokenOption = None,
    token_file: TokenFileOption = None,
    key: Annotated[
        Path | None,
        typer.Option(
            "--key",
            help="The witness's cosigning key (from `audit witness-keygen`); without it the "
            "witness checks and records but does not cosign.",
            dir_okay=False,
        ),
    ] = None,
    log_key: LogKeyOption = None,
    ca: CaOption = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between rounds.", min=0.1)
    ] = WITNESS_INTERVAL_S_DEFAULT,
    once: Annotated[bool, typer.Option("--once", help="One round, then exit.")] = False,
    config: ConfigOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Follow the log: accept only proven growth, cosign it, alarm on rollback or fork.

    Exit 2 on an alarm, with the evidence (both checkpoints and the proof) in
    STATE.alarm-<time>.json; the state file is left as it was.
    """
    from strongroom.audit.signed_note import NoteError  # noqa: PLC0415
    from strongroom.audit.witness import Cosigner  # noqa: PLC0415

    settings = _settings(config, data_dir=data_dir)
    source = _http_source(settings, url, _token(token, token_file), ca)
    log_verifier = _log_verifier(log_key, None, source)
    cosigner_key: str | None = None
    if key is not None:
        cosigner_key = _read_small(key, "key file")
        try:
            Cosigner.from_key(cosigner_key)
        except NoteError as exc:
            raise _fail(f"{key} is not a cosignature/v1 key: {exc}") from None
    while True:
        try:
            _witness_step(source, log_verifier, state, cosigner_key)
        except typer.Exit as stop:
            if once or stop.exit_code == EXIT_ALARM:
                raise
            # A transient failure (network, the log not yet able to prove): next round.
        if once:
            return
        time.sleep(interval)


@audit_app.command("witness-keygen")
def witness_keygen(
    *,
    name: Annotated[str, typer.Option("--name", help="The witness's name, e.g. example.com/w1.")],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the private key.", dir_okay=False)
    ],
) -> None:
    """Write a new cosignature/v1 key (mode 0600) and print its verifier key."""
    from strongroom.audit.signed_note import NoteError  # noqa: PLC0415
    from strongroom.audit.witness import Cosigner  # noqa: PLC0415

    try:
        cosigner = Cosigner.generate(name)
    except NoteError as exc:
        raise _fail(str(exc)) from None
    if out.exists():
        raise _fail(f"{out} exists: choose another path")
    _write_atomically(out, cosigner.private_key_string() + "\n", SECRET_FILE_MODE)
    console.print(f"wrote {out} (mode 0600)")
    typer.echo(cosigner.verifier_key())


def register_audit_commands(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
