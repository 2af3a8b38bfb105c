"""C2SP tlog-checkpoint (https://c2sp.org/tlog-checkpoint): the text a log signs.

``<origin>\\n<decimal tree size>\\n<base64 root hash>\\n`` and optional non-empty extension
lines, carried as the text of a signed note. Parsing is strict — one checkpoint has exactly one
text — because witnesses and verifiers compare checkpoints and must never see two spellings
of the same tree head.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from strongroom.audit.rfc9162_merkle import HASH_BYTES, TREE_SIZE_MAX
from strongroom.audit.signed_note import NoteSigner, NoteVerifier, open_note, sign_note

# tlog-checkpoint "Note text" 2: ASCII decimal, no leading zeroes unless the tree is empty.
# Nineteen digits hold TREE_SIZE_MAX; the bound keeps int() away from huge inputs.
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x1f]")


class CheckpointError(ValueError):
    """Text that is not a checkpoint; ``code`` is always ``malformed-checkpoint``."""

    code = "malformed-checkpoint"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the log's ``origin``, its ``size`` and its RFC 9162 ``root_hash``."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # tlog-checkpoint "Note text": every line is non-empty and, being note text, has no
        # control characters (a newline inside a field would shift the lines).
        for line in (self.origin, *self.extensions):
            if not line or _CONTROL.search(line) is not None:
                raise CheckpointError("origin and extension lines are non-empty single lines")
        if type(self.size) is not int or not 0 <= self.size <= TREE_SIZE_MAX:
            raise CheckpointError(f"tree size must be an integer in 0..{TREE_SIZE_MAX}")
        if len(self.root_hash) != HASH_BYTES:
            raise CheckpointError(f"root hash must be {HASH_BYTES} bytes")

    def format(self) -> str:
        """The checkpoint text (the note text to sign)."""
        root = base64.b64encode(self.root_hash).decode()
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The checkpoint whose :meth:`format` is exactly ``text``, or :class:`CheckpointError`."""
        if not text.endswith("\n"):
            raise CheckpointError("checkpoint text must end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise CheckpointError("checkpoint has fewer than three lines")
        origin, size, root, *extensions = lines
        if _SIZE.fullmatch(size) is None or int(size) > TREE_SIZE_MAX:
            raise CheckpointError(f"tree size {size!r} is not a decimal in 0..{TREE_SIZE_MAX}")
        try:
            root_hash = base64.b64decode(root.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise CheckpointError("root hash is not base64") from None
        checkpoint = cls(origin, int(size), root_hash, tuple(extensions))
        if checkpoint.format() != text:  # e.g. base64 with non-zero padding bits
            raise CheckpointError("checkpoint is not in canonical form")
        return checkpoint


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """The checkpoint as a signed note (the log's key name SHOULD equal the origin)."""
    return sign_note(checkpoint.format(), signers)


def open_checkpoint(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """The checkpoint in a signed note, once a known key's signature verifies.

    Raises :class:`~strongroom.audit.signed_note.NoteError` for the note and
    :class:`CheckpointError` for its text.
    """
    return Checkpoint.parse(open_note(note, verifiers).text)
