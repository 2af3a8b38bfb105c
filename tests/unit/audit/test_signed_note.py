"""`audit.signed_note`: C2SP signed notes with Ed25519, in Go sumdb/note's key formats.

The known-answer vectors are those of golang.org/x/mod/sumdb/note (its package doc and
tests): Ed25519 is deterministic, so our signer must reproduce Go's note byte for byte.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.signed_note import (
    NOTE_SIGNATURES_MAX,
    NoteError,
    NoteSignature,
    Signer,
    Verifier,
    key_id,
    open_note,
    parse_note,
    sign_note,
)

GO_SIGNER_KEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER_KEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VERIFIER_KEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotp"
    "RZb6KE6RyyBwJnAM=\n"
)
ENOCH_LINE = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox3"
    "3WWd1RvMc+QQ=\n"
)
GO_NOTE = GO_TEXT + "\n" + PETER_LINE


def _code(note: str | bytes, verifiers: list[Verifier]) -> str | None:
    try:
        open_note(note, verifiers)
    except NoteError as exc:
        return exc.code
    return None


# -- Go sumdb/note vectors -------------------------------------------------------------------


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    assert sign_note(GO_TEXT, [Signer.from_key(GO_SIGNER_KEY)]) == GO_NOTE


def test_signer_key_yields_the_go_verifier_key() -> None:
    signer = Signer.from_key(GO_SIGNER_KEY)
    assert signer.verifier_key() == GO_VERIFIER_KEY
    assert signer.private_key_string() == GO_SIGNER_KEY


def test_the_go_note_opens_with_the_go_verifier_key() -> None:
    assert open_note(GO_NOTE, [Verifier.from_key(GO_VERIFIER_KEY)]) == (GO_TEXT, ("PeterNeumann",))


def test_a_doubly_signed_note_reports_every_known_signer_in_order() -> None:
    note = GO_TEXT + "\n" + PETER_LINE + ENOCH_LINE
    verifiers = [Verifier.from_key(ENOCH_VERIFIER_KEY), Verifier.from_key(GO_VERIFIER_KEY)]
    assert open_note(note, verifiers).verified_names == ("PeterNeumann", "EnochRoot")


def test_signatures_from_unknown_keys_are_ignored() -> None:
    note = GO_TEXT + "\n" + PETER_LINE + ENOCH_LINE
    assert open_note(note, [Verifier.from_key(ENOCH_VERIFIER_KEY)]).verified_names == ("EnochRoot",)


def test_key_id_is_the_truncated_hash_of_name_type_and_key() -> None:
    verifier = Verifier.from_key(GO_VERIFIER_KEY)
    assert verifier.key_id == bytes.fromhex("c74f20a3")
    assert key_id("PeterNeumann", 0x01, verifier.public_key) == bytes.fromhex("c74f20a3")


# -- round trips -----------------------------------------------------------------------------

texts = st.lists(
    st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",))), min_size=1
).map(lambda lines: "".join(f"{line}\n" for line in lines))


@settings(max_examples=100, deadline=None)
@given(texts)
def test_any_note_text_round_trips(text: str) -> None:
    signer = Signer.generate("example.com/log")
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


def test_text_may_contain_blank_lines() -> None:
    signer = Signer.generate("example.com/log")
    text = "first\n\nsecond\n\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


def test_notes_open_from_bytes_too() -> None:
    assert open_note(GO_NOTE.encode(), [Verifier.from_key(GO_VERIFIER_KEY)]).text == GO_TEXT


def test_key_strings_round_trip() -> None:
    signer = Signer.generate("example.com/log")
    again = Signer.from_key(signer.private_key_string())
    assert again.verifier_key() == signer.verifier_key()
    assert Verifier.from_key(signer.verifier_key()) == signer.verifier()
    assert Verifier.from_key(signer.verifier_key()).key_string() == signer.verifier_key()


def test_a_seed_gives_a_deterministic_signer() -> None:
    seed = bytes(range(32))
    assert Signer.from_seed("n", seed).verifier_key() == Signer.from_seed("n", seed).verifier_key()


def test_the_signer_repr_does_not_reveal_the_seed() -> None:
    signer = Signer.from_key(GO_SIGNER_KEY)
    assert "AYEKFALV" not in repr(signer) and "c74f20a3" in repr(signer)


# -- rejection ---------------------------------------------------------------------------------


def test_tampered_text_is_an_invalid_signature() -> None:
    note = GO_NOTE.replace("problem,", "problem;")
    assert _code(note, [Verifier.from_key(GO_VERIFIER_KEY)]) == "invalid-signature"


def test_tampered_signature_is_an_invalid_signature() -> None:
    raw = bytearray(base64.b64decode(PETER_LINE.split()[2]))
    raw[10] ^= 1
    note = GO_TEXT + "\n— PeterNeumann " + base64.b64encode(bytes(raw)).decode() + "\n"
    assert _code(note, [Verifier.from_key(GO_VERIFIER_KEY)]) == "invalid-signature"


def test_a_note_signed_by_another_key_is_unverified() -> None:
    impostor = Signer.generate("PeterNeumann")  # same name, other key: other key ID
    note = sign_note(GO_TEXT, [impostor])
    assert _code(note, [Verifier.from_key(GO_VERIFIER_KEY)]) == "unverified-note"


def test_a_bad_signature_by_a_known_key_rejects_the_note_even_beside_a_good_one() -> None:
    enoch = Verifier.from_key(ENOCH_VERIFIER_KEY)
    forged = NoteSignature(enoch.name, enoch.key_id, b"\x00" * 64).line()
    note = GO_TEXT + "\n" + PETER_LINE + forged
    assert _code(note, [Verifier.from_key(GO_VERIFIER_KEY), enoch]) == "invalid-signature"


def test_a_repeated_signature_by_one_key_counts_once() -> None:
    note = GO_TEXT + "\n" + PETER_LINE + PETER_LINE
    assert open_note(note, [Verifier.from_key(GO_VERIFIER_KEY)]).verified_names == ("PeterNeumann",)


def test_two_different_verifiers_for_one_name_and_key_id_are_ambiguous() -> None:
    real = Verifier.from_key(GO_VERIFIER_KEY)
    twin = Verifier("PeterNeumann", bytes(32))
    object.__setattr__(twin, "key_id", real.key_id)
    assert _code(GO_NOTE, [real, twin]) == "ambiguous-key"


@pytest.mark.parametrize(
    "note",
    [
        GO_TEXT + PETER_LINE,  # no blank line
        GO_NOTE[:-1],  # no final newline
        GO_TEXT + "\n",  # no signature
        GO_TEXT + "\n" + PETER_LINE.replace("—", "--"),  # not an em dash
        GO_TEXT + "\n" + PETER_LINE.replace("— ", "—"),  # no space after the dash
        GO_TEXT + "\n" + PETER_LINE.replace("=\n", "\n"),  # bad base64 padding
        GO_TEXT + "\n" + PETER_LINE.replace("x08go", "x08g!"),  # not base64
        GO_TEXT + "\n— PeterNeumann " + base64.b64encode(b"abcd").decode() + "\n",  # no sig
        GO_TEXT + "\n— Peter+Neumann " + PETER_LINE.split()[2] + "\n",  # '+' in name
        GO_TEXT + "\n— PeterNeumann\n",  # no signature field
        "tab\there\n" + "\n" + PETER_LINE,  # control character
        GO_TEXT + "\n" + PETER_LINE + "\n",  # blank line after the signatures
        GO_TEXT + "\n" + PETER_LINE * (NOTE_SIGNATURES_MAX + 1),  # too many signatures
    ],
    ids=[
        "no-blank-line",
        "no-final-newline",
        "no-signature",
        "dash",
        "space",
        "padding",
        "base64",
        "short",
        "name",
        "empty",
        "control",
        "trailing-blank",
        "too-many",
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    assert _code(note, [Verifier.from_key(GO_VERIFIER_KEY)]) == "malformed-note"


def test_a_note_that_is_not_utf8_is_malformed() -> None:
    assert _code(GO_NOTE.encode() + b"\xff", [Verifier.from_key(GO_VERIFIER_KEY)]) == (
        "malformed-note"
    )


@pytest.mark.parametrize("text", ["no newline", "bell\a\n", "cr\r\n", "surrogate \ud800\n"])
def test_sign_note_refuses_text_that_cannot_be_a_note(text: str) -> None:
    with pytest.raises(NoteError) as raised:
        sign_note(text, [Signer.generate("n")])
    assert raised.value.code == "malformed-note"


def test_parse_note_exposes_unverified_signatures() -> None:
    text, signatures = parse_note(GO_TEXT + "\n" + PETER_LINE + ENOCH_LINE)
    assert text == GO_TEXT
    assert [(s.name, s.key_id.hex()) for s in signatures] == [
        ("PeterNeumann", "c74f20a3"),
        ("EnochRoot", "af0cfe78"),
    ]
    assert "".join(s.line() for s in signatures) == PETER_LINE + ENOCH_LINE


@pytest.mark.parametrize("name", ["", "has space", "has+plus", "nbsp\u00a0", "tab\t"])
def test_invalid_key_names_are_refused(name: str) -> None:
    with pytest.raises(NoteError) as raised:
        Signer.generate(name)
    assert raised.value.code == "malformed-key"


def test_every_single_character_deletion_from_a_verifier_key_is_refused() -> None:
    for position in range(len(GO_VERIFIER_KEY)):
        mangled = GO_VERIFIER_KEY[:position] + GO_VERIFIER_KEY[position + 1 :]
        with pytest.raises(NoteError):
            Verifier.from_key(mangled)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+00000000+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+c74f20a3+BBpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong type
        "PeterNeumann+c74f20a3",  # no key
        "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # short key ID
    ],
)
def test_verifier_keys_with_wrong_parts_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError) as raised:
        Verifier.from_key(vkey)
    assert raised.value.code == "malformed-key"


@pytest.mark.parametrize(
    "skey",
    [
        GO_SIGNER_KEY.replace("PRIVATE+KEY", "PUBLIC+KEY"),
        GO_SIGNER_KEY.replace("c74f20a3", "c74f20a4"),
        GO_SIGNER_KEY.replace("PeterNeumann", "PaulNeumann"),
        GO_VERIFIER_KEY,
    ],
    ids=["marker", "key-id", "name", "public-key"],
)
def test_signer_keys_with_wrong_parts_are_refused(skey: str) -> None:
    with pytest.raises(NoteError) as raised:
        Signer.from_key(skey)
    assert raised.value.code == "malformed-key"
