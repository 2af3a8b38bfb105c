"""C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, a blank line, then signature lines
``— <key name> <base64(key ID || signature)>``. Key strings use the formats of Go's
``golang.org/x/mod/sumdb/note``, which every C2SP tool reads:

- verifier key: ``<name>+<hex key ID>+<base64(type || 32-byte public key)>``
- signer key: ``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || 32-byte seed)>``

Parsing follows Go's ``note.Open``: the text ends at the *last* blank line, signatures from
unknown keys are ignored (they may be witness cosignatures), a known key's bad signature
rejects the whole note, and a note no known key signed is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple, Protocol, Self

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# signed-note "Signature types": 0x01 is Ed25519 over the note text.
SIGNATURE_TYPE_ED25519 = 0x01
KEY_ID_BYTES = 4
ED25519_KEY_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
SIGNATURE_LINE_PREFIX = "\u2014 "  # em dash, space
# Go's note.Open cap; the spec requires accepting at least 16.
NOTE_SIGNATURES_MAX = 100
# Bounds parsing work; 16 post-quantum signatures (≈ 5 kB each) still fit many times over.
NOTE_BYTES_MAX = 1024 * 1024

NOTE_ERRORS: frozenset[str] = frozenset(
    {"malformed-note", "unverified-note", "invalid-signature", "ambiguous-key", "malformed-key"}
)

# signed-note "Format": no ASCII control characters other than newline.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")


class NoteError(ValueError):
    """A note or key string that fails to parse or verify; ``code`` is in :data:`NOTE_ERRORS`.

    ``malformed-note``: not a signed note. ``unverified-note``: no known key signed it.
    ``invalid-signature``: a known key's signature does not verify. ``ambiguous-key``: two
    verifiers share a name and key ID. ``malformed-key``: a key string is not valid.
    """

    def __init__(self, code: str, message: str) -> None:
        assert code in NOTE_ERRORS, code
        super().__init__(message)
        self.code = code
        self.message = message


class NoteVerifier(Protocol):
    """A key that checks signatures on note text (Go's ``note.Verifier``)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, text: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key ID) is valid for ``text``."""
        ...


class NoteSigner(Protocol):
    """A key that signs note text (Go's ``note.Signer``)."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, text: bytes) -> bytes:
        """The signature of ``text``, without the key ID."""
        ...


def valid_key_name(name: str) -> bool:
    """signed-note "Format": non-empty, no Unicode spaces, no ``+``."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _CONTROL.search(name) is None
        and _encodable(name)
    )


def key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """``SHA-256(name || 0x0A || type || public key)[:4]`` (signed-note "Signatures")."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([signature_type]) + public_key)
    return digest.digest()[:KEY_ID_BYTES]


def format_verifier_key(name: str, signature_type: int, public_key: bytes) -> str:
    """``<name>+<hex key ID>+<base64(type || public key)>``."""
    material = base64.b64encode(bytes([signature_type]) + public_key).decode()
    return f"{name}+{key_id(name, signature_type, public_key).hex()}+{material}"


def format_signer_key(name: str, signature_type: int, seed: bytes) -> str:
    """``PRIVATE+KEY+<name>+<hex key ID>+<base64(type || seed)>`` for an Ed25519 seed."""
    public_key = ed25519_public_key(Ed25519PrivateKey.from_private_bytes(seed))
    material = base64.b64encode(bytes([signature_type]) + seed).decode()
    return f"PRIVATE+KEY+{name}+{key_id(name, signature_type, public_key).hex()}+{material}"


def parse_verifier_key(vkey: str, signature_type: int) -> tuple[str, bytes]:
    """``(name, public key)`` of an Ed25519 verifier key of ``signature_type``, or an error."""
    name, _, rest = vkey.partition("+")
    hash_hex, _, material = rest.partition("+")
    key_type, key = _key_material(name, hash_hex, material, signature_type)
    if key_id(name, key_type, key) != bytes.fromhex(hash_hex):
        raise NoteError("malformed-key", "verifier key ID does not match its name and key")
    return name, key


def parse_signer_key(skey: str, signature_type: int) -> tuple[str, bytes]:
    """``(name, seed)`` of an Ed25519 signer key of ``signature_type``, or an error."""
    private, _, rest = skey.partition("+")
    marker, _, rest = rest.partition("+")
    name, _, rest = rest.partition("+")
    hash_hex, _, material = rest.partition("+")
    if (private, marker) != ("PRIVATE", "KEY"):
        raise NoteError("malformed-key", "signer key does not start with PRIVATE+KEY+")
    key_type, seed = _key_material(name, hash_hex, material, signature_type)
    public_key = ed25519_public_key(Ed25519PrivateKey.from_private_bytes(seed))
    if key_id(name, key_type, public_key) != bytes.fromhex(hash_hex):
        raise NoteError("malformed-key", "signer key ID does not match its name and key")
    return name, seed


def _key_material(
    name: str, hash_hex: str, material: str, signature_type: int
) -> tuple[int, bytes]:
    if not valid_key_name(name) or _KEY_ID_HEX.fullmatch(hash_hex) is None:
        raise NoteError("malformed-key", "key string is not name+keyid+key")
    raw = _b64decode(material)
    if raw is None or len(raw) != 1 + ED25519_KEY_BYTES:
        raise NoteError("malformed-key", "key material is not a type byte and a 32-byte key")
    if raw[0] != signature_type:
        raise NoteError("malformed-key", f"key type is {raw[0]:#04x}; want {signature_type:#04x}")
    return raw[0], raw[1:]


@dataclass(frozen=True, slots=True)
class Verifier:
    """An Ed25519 note verifier (signature type 0x01)."""

    name: str
    public_key: bytes
    key_id: bytes = field(init=False)

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise NoteError("malformed-key", f"invalid key name {self.name!r}")
        if len(self.public_key) != ED25519_KEY_BYTES:
            raise NoteError("malformed-key", "an Ed25519 public key is 32 bytes")
        object.__setattr__(
            self, "key_id", key_id(self.name, SIGNATURE_TYPE_ED25519, self.public_key)
        )

    @classmethod
    def from_key(cls, vkey: str) -> Verifier:
        """Parse a verifier key string (``name+keyid+base64``)."""
        return cls(*parse_verifier_key(vkey, SIGNATURE_TYPE_ED25519))

    def key_string(self) -> str:
        return format_verifier_key(self.name, SIGNATURE_TYPE_ED25519, self.public_key)

    def verify(self, text: bytes, signature: bytes) -> bool:
        return verify_ed25519(self.public_key, text, signature)


class Ed25519Key:
    """A named Ed25519 private key of one signature type, with its key strings."""

    __slots__ = ("_key", "_name", "_public_key", "key_id")
    signature_type: ClassVar[int] = SIGNATURE_TYPE_ED25519

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not valid_key_name(name):
            raise NoteError("malformed-key", f"invalid key name {name!r}")
        self._name = name
        self._key = private_key
        self._public_key = ed25519_public_key(private_key)
        self.key_id = key_id(name, self.signature_type, self._public_key)

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Self:
        if len(seed) != ED25519_KEY_BYTES:
            raise NoteError("malformed-key", "an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls, name: str) -> Self:
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_key(cls, skey: str) -> Self:
        """Parse a signer key string (``PRIVATE+KEY+name+keyid+base64(type || seed)``)."""
        return cls.from_seed(*parse_signer_key(skey, cls.signature_type))

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def private_key_string(self) -> str:
        """The signer key string: a secret, to store as one."""
        seed = self._key.private_bytes_raw()
        return format_signer_key(self._name, self.signature_type, seed)

    def verifier_key(self) -> str:
        """The verifier key string to publish: ``name+keyid+base64(type || public key)``."""
        return format_verifier_key(self._name, self.signature_type, self._public_key)

    def __repr__(self) -> str:  # never the seed
        return f"{type(self).__name__}(name={self._name!r}, key_id={self.key_id.hex()})"


class Signer(Ed25519Key):
    """An Ed25519 note signer (signature type 0x01): a log's checkpoint key."""

    __slots__ = ()

    def verifier(self) -> Verifier:
        return Verifier(self._name, self._public_key)

    def sign(self, text: bytes) -> bytes:
        return self._key.sign(text)


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note: the key's name and ID and the signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        """The signature line, newline included."""
        encoded = base64.b64encode(self.key_id + self.signature).decode()
        return f"{SIGNATURE_LINE_PREFIX}{self.name} {encoded}\n"


class OpenedNote(NamedTuple):
    """A verified note: its text and the names of the known keys that signed it."""

    text: str
    verified_names: tuple[str, ...]


def check_text(text: str) -> None:
    """Refuse text that cannot be a note's text (signed-note "Format")."""
    if not text.endswith("\n"):
        raise NoteError("malformed-note", "note text must end with a newline")
    if _CONTROL.search(text) is not None:
        raise NoteError("malformed-note", "note text has a control character other than newline")
    if not _encodable(text):
        raise NoteError("malformed-note", "note text is not valid Unicode")


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """``text``, a blank line and one signature line per signer."""
    check_text(text)
    if not 1 <= len(signers) <= NOTE_SIGNATURES_MAX:
        raise NoteError("malformed-note", f"a note has 1..{NOTE_SIGNATURES_MAX} signatures")
    message = text.encode()
    lines = []
    for signer in signers:
        if not valid_key_name(signer.name):
            raise NoteError("malformed-key", f"invalid key name {signer.name!r}")
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)).line())
    note = text + "\n" + "".join(lines)
    if len(note.encode()) > NOTE_BYTES_MAX:
        raise NoteError("malformed-note", f"note is over {NOTE_BYTES_MAX} bytes")
    return note


def parse_note(note: str | bytes) -> tuple[str, list[NoteSignature]]:
    """The text and signature lines of a note, unverified: the structure only."""
    if isinstance(note, bytes):
        if len(note) > NOTE_BYTES_MAX:
            raise NoteError("malformed-note", f"note is over {NOTE_BYTES_MAX} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError("malformed-note", "note is not UTF-8") from None
    elif not _encodable(note) or len(note.encode()) > NOTE_BYTES_MAX:
        raise NoteError("malformed-note", f"note is not UTF-8 of at most {NOTE_BYTES_MAX} bytes")
    if _CONTROL.search(note) is not None:
        raise NoteError("malformed-note", "note has a control character other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed-note", "note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise NoteError("malformed-note", "note must end with a signature line and a newline")
    lines = block[:-1].split("\n")
    if len(lines) > NOTE_SIGNATURES_MAX:
        raise NoteError("malformed-note", f"note has over {NOTE_SIGNATURES_MAX} signatures")
    return text, [_signature(line) for line in lines]


def _signature(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_LINE_PREFIX):
        raise NoteError("malformed-note", "signature line does not start with an em dash")
    name, _, encoded = line[len(SIGNATURE_LINE_PREFIX) :].partition(" ")
    raw = _b64decode(encoded)
    if not valid_key_name(name) or raw is None or len(raw) <= KEY_ID_BYTES:
        raise NoteError("malformed-note", "signature line is not '— name base64'")
    return NoteSignature(name, raw[:KEY_ID_BYTES], raw[KEY_ID_BYTES:])


def open_note(note: str | bytes, verifiers: Iterable[NoteVerifier]) -> OpenedNote:
    """Parse ``note`` and check it against the known ``verifiers`` (signed-note "Signatures").

    Raises :class:`NoteError`: ``malformed-note``, ``invalid-signature`` (a known key's
    signature fails: the whole note is rejected), ``unverified-note`` (no known key signed),
    ``ambiguous-key`` (two verifiers with one name and key ID).
    """
    text, signatures = parse_note(note)
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        slot = (verifier.name, verifier.key_id)
        if slot in known and known[slot] != verifier:
            raise NoteError("ambiguous-key", f"two verifiers for {verifier.name} {slot[1].hex()}")
        known[slot] = verifier
    message = text.encode()
    verified: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for signature in signatures:
        slot = (signature.name, signature.key_id)
        found = known.get(slot)
        if found is None or slot in seen:
            continue  # an unknown key's signature (say, a cosignature), or a repeat
        seen.add(slot)
        if not found.verify(message, signature.signature):
            raise NoteError(
                "invalid-signature", f"bad signature by {signature.name} {slot[1].hex()}"
            )
        verified.append(signature.name)
    if not verified:
        raise NoteError("unverified-note", "no known key signed the note")
    return OpenedNote(text, tuple(verified))


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 verification that never raises."""
    if len(signature) != ED25519_SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def ed25519_public_key(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64decode(text: str) -> bytes | None:
    """Strict standard base64 (RFC 4648 §4, padded), or ``None``."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True) if text else None
    except (binascii.Error, UnicodeEncodeError):
        return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
