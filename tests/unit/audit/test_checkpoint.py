"""`audit.checkpoint`: C2SP tlog-checkpoint text, one spelling per tree head."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    sign_checkpoint,
)
from strongroom.audit.rfc9162_merkle import EMPTY_ROOT, TREE_SIZE_MAX
from strongroom.audit.signed_note import NoteError, Signer, sign_note

# The example of c2sp.org/tlog-checkpoint.
SPEC_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")


def test_the_spec_example_parses_to_its_fields() -> None:
    assert Checkpoint.parse(SPEC_TEXT) == Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)


def test_format_writes_the_spec_example() -> None:
    assert Checkpoint("example.com/behind-the-sofa", 20852163, ROOT).format() == SPEC_TEXT


def test_extension_lines_follow_the_root() -> None:
    checkpoint = Checkpoint("o", 1, ROOT, ("ext one", "ext two"))
    assert checkpoint.format().endswith("\next one\next two\n")
    assert Checkpoint.parse(checkpoint.format()) == checkpoint


def test_the_empty_tree_has_size_zero() -> None:
    text = f"o\n0\n{base64.b64encode(EMPTY_ROOT).decode()}\n"
    assert Checkpoint.parse(text).size == 0


lines = st.text(st.characters(min_codepoint=0x20, exclude_categories=("Cs",)), min_size=1)
checkpoints = st.builds(
    Checkpoint,
    origin=lines,
    size=st.integers(min_value=0, max_value=TREE_SIZE_MAX),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(checkpoints)
def test_parse_inverts_format(checkpoint: Checkpoint) -> None:
    assert Checkpoint.parse(checkpoint.format()) == checkpoint


@pytest.mark.parametrize(
    "text",
    [
        SPEC_TEXT[:-1],  # no final newline
        "example.com/behind-the-sofa\n20852163\n",  # no root line
        SPEC_TEXT.replace("20852163", "020852163"),  # leading zero
        SPEC_TEXT.replace("20852163", "+20852163"),  # sign
        SPEC_TEXT.replace("20852163", "-1"),  # negative
        SPEC_TEXT.replace("20852163", " 20852163"),  # space
        SPEC_TEXT.replace("20852163", "2_0852163"),  # digit separator
        SPEC_TEXT.replace("20852163", "0x10"),  # not decimal
        SPEC_TEXT.replace("20852163", str(TREE_SIZE_MAX + 1)),  # too large
        SPEC_TEXT.replace("20852163", "1" * 40),  # far too large
        SPEC_TEXT.replace("20852163", "\u0663"),  # a non-ASCII digit
        SPEC_TEXT.replace("example.com/behind-the-sofa", ""),  # empty origin
        SPEC_TEXT.replace("2I=", "2J="),  # non-zero padding bits
        SPEC_TEXT.replace("2I=", "2I"),  # missing padding
        SPEC_TEXT.replace("/Xajj", "_Xajj"),  # base64url alphabet
        SPEC_TEXT.replace("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=", "AAAA"),  # 3 bytes
        SPEC_TEXT + "\n",  # empty extension line
        SPEC_TEXT.replace("\n", "\r\n"),  # CRLF
    ],
    ids=[
        "no-newline",
        "two-lines",
        "leading-zero",
        "plus",
        "negative",
        "space",
        "underscore",
        "hex",
        "over-max",
        "huge",
        "arabic-digit",
        "empty-origin",
        "padding-bits",
        "no-padding",
        "base64url",
        "short-root",
        "empty-extension",
        "crlf",
    ],
)
def test_anything_but_the_canonical_text_is_refused(text: str) -> None:
    with pytest.raises(CheckpointError) as raised:
        Checkpoint.parse(text)
    assert raised.value.code == "malformed-checkpoint"


@pytest.mark.parametrize(
    ("origin", "size", "root", "extensions"),
    [
        ("", 1, ROOT, ()),
        ("two\nlines", 1, ROOT, ()),
        ("o", -1, ROOT, ()),
        ("o", TREE_SIZE_MAX + 1, ROOT, ()),
        ("o", 1, ROOT[:31], ()),
        ("o", 1, ROOT, ("",)),
        ("o", 1, ROOT, ("a\nb",)),
    ],
    ids=["empty-origin", "newline", "negative", "too-large", "short-root", "empty-ext", "ext-nl"],
)
def test_a_checkpoint_that_cannot_be_written_is_refused(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin, size, root, extensions)


def test_a_signed_checkpoint_opens_with_the_log_key() -> None:
    log = Signer.generate("example.com/behind-the-sofa")
    checkpoint = Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    assert open_checkpoint(sign_checkpoint(checkpoint, [log]), [log.verifier()]) == checkpoint


def test_a_checkpoint_signed_by_another_key_does_not_open() -> None:
    checkpoint = Checkpoint("example.com/behind-the-sofa", 20852163, ROOT)
    note = sign_checkpoint(checkpoint, [Signer.generate("example.com/behind-the-sofa")])
    with pytest.raises(NoteError) as raised:
        open_checkpoint(note, [Signer.generate("example.com/behind-the-sofa").verifier()])
    assert raised.value.code == "unverified-note"


def test_a_signed_note_whose_text_is_not_a_checkpoint_is_refused() -> None:
    log = Signer.generate("example.com/log")
    with pytest.raises(CheckpointError):
        open_checkpoint(sign_note("hello\n", [log]), [log.verifier()])
