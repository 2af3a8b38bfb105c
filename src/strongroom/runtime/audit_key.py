"""The audit log's checkpoint signing key: a C2SP signer key file, created on first start.

The file holds one line, ``PRIVATE+KEY+<origin>+<key id>+<base64>`` (Go's
``golang.org/x/mod/sumdb/note`` format), mode 0600. The key is named after the log's origin
(C2SP tlog-checkpoint: the key name SHOULD be the origin); a key made for another origin is
refused rather than silently signing checkpoints of a log it does not name.
"""

from __future__ import annotations

import os
from pathlib import Path

from strongroom.audit.signed_note import Signer

KEY_FILE_MODE = 0o600
KEY_DIR_MODE = 0o700


class AuditKeyError(RuntimeError):
    """The key file exists but is not this log's signer key."""


def load_or_create_signer(path: Path, origin: str) -> Signer:
    """The signer stored at ``path``; a new Ed25519 key named ``origin`` if there is none."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return _create(path, origin)
    try:
        signer = Signer.from_key(text)
    except ValueError as exc:
        raise AuditKeyError(f"{path} is not a C2SP Ed25519 signer key: {exc}") from None
    if signer.name != origin:
        raise AuditKeyError(
            f"{path} signs for origin {signer.name!r}, but audit.origin is {origin!r}"
        )
    return signer


def _create(path: Path, origin: str) -> Signer:
    signer = Signer.generate(origin)
    path.parent.mkdir(parents=True, exist_ok=True, mode=KEY_DIR_MODE)
    # Written to a private temporary file then linked into place: a concurrent first start
    # cannot leave a half-written key, and the loser of the race reads the winner's key.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, KEY_FILE_MODE)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(signer.private_key_string() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_signer(path, origin)
    finally:
        tmp.unlink(missing_ok=True)
    return signer
