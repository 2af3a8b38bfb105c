"""Every decoded form of a value an attacker can hide a payload in.

A WAF that inspects only the bytes on the wire loses to the first ``%2527``: the
application decodes further than the WAF looked. :func:`variants` returns the value
itself plus each distinct form an application stack may turn it into — repeated URL
decoding (``%XX``, ``%uXXXX``, overlong UTF-8), HTML entities, JavaScript escapes,
Unicode NFKC (full-width and circled letters), shell/VBScript de-obfuscation, SQL
comment removal, path normalization and base64 (GoTestWAF sends about a third of its
attacks base64-encoded, as many APIs decode such fields) — so detectors see what the
application will see. The list is bounded in count and size: a hostile value cannot
make the WAF do unbounded work.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import html
import posixpath
import re
import unicodedata

# Distinct variants inspected per value: the raw value, its decodings and base64
# decodings fit easily; more only multiplies detector work on hostile input.
VARIANTS_MAX = 8
# URL/HTML/escape decoding rounds: triple encoding is the most seen in the wild, and every
# round must change the value or decoding stops early.
DECODE_ROUNDS_MAX = 4
# A base64 candidate must be at least this long (6 bytes): shorter decodings are too
# short to hold an attack ("\r\nQUIT\r\n" is 11 characters); random tokens that decode
# to binary are dropped by the printable-text test.
BASE64_CHARS_MIN = 8
# Share of printable characters a base64 decoding needs to be inspected as text: random
# bytes are ~37% printable, text is ~100%.
BASE64_PRINTABLE_RATIO_MIN = 0.9
# Base64 tokens looked at inside one longer value (``id=…&data=<base64>``).
BASE64_TOKENS_MAX = 4
# A base64-alphabet value is read as '+'-joined words when it has this many pieces, none
# longer than this (base64 has a '+' about every 64 characters).
PLUS_WORDS_MIN = 3
PLUS_WORD_CHARS_MAX = 24
# Runs of one repeated character longer than this are squeezed to this length: padding
# (``AAAA…``, 128 KiB before the payload) must cost nothing and change no verdict.
CHAR_RUN_MAX = 16
# Values shorter than this are never squeezed (the check itself would cost more).
SQUEEZE_CHARS_MIN = 256

_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_PERCENT_U = re.compile(r"%u([0-9A-Fa-f]{4})")
_JS_ESCAPE = re.compile(r"\\u\{([0-9A-Fa-f]{1,6})\}|\\u([0-9A-Fa-f]{4})|\\x([0-9A-Fa-f]{2})")
# Anything a decoding step could change; values without it skip straight to base64.
_DECODABLE = re.compile(r"[%&\\]|[^\x00-\x7f]")
_B64_WHOLE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
# Base64 tokens inside a longer value: longer than whole-value candidates, since words
# and identifiers inside text are not worth decoding.
_B64_TOKEN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_ONLY = re.compile(r"[0-9A-Fa-f]+")
# The first character of every 4-character base64 group encodes the top 6 bits of a byte;
# for text (tab, line breaks, printable ASCII) those are 2-3 or 8-31: C, D, I-Z, a-f. A
# token whose groups mostly fail this is no base64 of text, and is dropped without being
# decoded (most words and identifiers fail within two groups).
_NOT_TEXT_LEADS = str.maketrans(dict.fromkeys("CDIJKLMNOPQRSTUVWXYZabcdef"))
# Bytes of printable ASCII text (plus tab and line breaks).
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r\n"
_RUN = re.compile(rf"(.)\1{{{CHAR_RUN_MAX},}}", re.DOTALL)
# Shell and script obfuscation that changes no meaning: quotes and escapes inside words
# (``c'a't``, ``w\ho``), ``$@``, ``$IFS``/``${IFS}`` for spaces, VBScript/JS string
# concatenation (``"Ex"&"ecute"``, ``'ale'+'rt'``) and SQL inline comments.
_CONCAT = re.compile(r"""(["'])\s*[&+.]\s*\1""")
_IFS = re.compile(r"\$\{?IFS\}?(?:\$\d)?")
_QUOTES = re.compile(r"""(?<=\w)(?:''|""|['"\\^]|\$@)+(?=\w)""")
_SQL_COMMENT = re.compile(r"/\*!?\d*|\*/")
_OBFUSCATION = re.compile(r"""['"\\^]|\$@""")
_SLASHES = re.compile(r"/{2,}")
# Characters whose low byte is CR or LF (U+560D "嘍", U+010A "Ċ"…): stacks that write
# strings as Latin-1 (Node.js, some Java servers) truncate them to a line break.
_CRLF_LOOKALIKE = re.compile(
    "[" + "".join(f"\\u{high:02x}0a\\u{high:02x}0d" for high in range(1, 256)) + "]"
)
# Zero-width and format characters browsers and parsers skip (``java\u200bscript:``).
_INVISIBLE = re.compile(r"[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
# Control characters (but tab and line breaks), C1 controls and U+FFFD: what random bytes
# decode to and text does not contain.
# Slashes and backslashes NFKC leaves alone but Windows' best-fit mapping (IIS, Win32
# file APIs) turns into path separators: U+2215, U+2216, U+29F5, U+FE68.
_SLASH_LOOKALIKES = str.maketrans({"\u2215": "/", "\u2044": "/", "\u2216": "\\", "\u29f5": "\\",
                                   "\ufe68": "\\"})  # fmt: skip
_SLASH_LOOKALIKE = re.compile("[\u2215\u2044\u2216\u29f5\ufe68]")
# Words joined by '+' (a form-encoded space) around a letter.
_PLUS_JOINED = re.compile(r"[\w'\"]\+[A-Za-z('\"]")
_PLAIN_SEGMENT = re.compile(r"[\w.~@:,=-]*")
_SURROGATE = re.compile("[\ud800-\udfff]")
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd]")


def _overlong_handler(error: UnicodeError) -> tuple[str, int]:
    """Decode overlong UTF-8 (``C0 AE`` → ``.``) as lenient parsers did; other bytes as Latin-1."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    data = error.object
    at = error.start
    lead = data[at]
    if lead in (0xC0, 0xC1) and at + 1 < len(data) and 0x80 <= data[at + 1] <= 0xBF:
        return chr(((lead & 0x1F) << 6) | (data[at + 1] & 0x3F)), at + 2
    if (
        lead == 0xE0
        and at + 2 < len(data)
        and 0x80 <= data[at + 1] <= 0x9F
        and 0x80 <= data[at + 2] <= 0xBF
    ):
        return chr(((data[at + 1] & 0x3F) << 6) | (data[at + 2] & 0x3F)), at + 3
    return chr(lead), at + 1


codecs.register_error("strongroom-waf-overlong", _overlong_handler)


def decode_bytes(data: bytes) -> str:
    """Bytes as text: UTF-8, overlong forms decoded, anything invalid taken as Latin-1."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("utf-8", "strongroom-waf-overlong")


def _percent_run(match: re.Match[str]) -> str:
    return decode_bytes(bytes.fromhex(match.group().replace("%", "")))


def percent_decode(value: str, *, plus_is_space: bool = False) -> str:
    """One round of URL decoding, as a server decodes a query or form value."""
    if plus_is_space and "+" in value:
        value = value.replace("+", " ")
    if "%" not in value:
        return value
    if "%u" in value or "%U" in value:
        value = _paired(_PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), value))
    return _PERCENT_RUN.sub(_percent_run, value)


def _js_escape(match: re.Match[str]) -> str:
    code = int(match.group(1) or match.group(2) or match.group(3), 16)
    return chr(code) if code <= 0x10FFFF else match.group()


def _paired(value: str) -> str:
    """``value`` with UTF-16 surrogate pairs (``\\ud83d\\ude00``, ``%uD83D%uDE00``) joined
    into their characters and lone surrogates replaced: no text encoder accepts them."""
    if not _SURROGATE.search(value):
        return value
    return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _decode_once(value: str) -> str:
    if "%" in value:
        value = percent_decode(value)
    if "&" in value:
        value = html.unescape(value)
    if "\\" in value:
        value = _JS_ESCAPE.sub(_js_escape, value)
    return _paired(value)


def squeeze(value: str) -> str:
    """Shorten long runs of one character (padding) so they cost nothing to inspect."""
    if len(value) < SQUEEZE_CHARS_MIN:
        return value
    return _RUN.sub(lambda m: m.group(1) * CHAR_RUN_MAX, value)


def deobfuscate(value: str) -> str:
    """Remove meaning-preserving obfuscation: quotes inside words, concatenation, comments."""
    if "'" in value or '"' in value:
        value = _CONCAT.sub("", value)
    if "$" in value:
        value = _IFS.sub(" ", value)
    if _OBFUSCATION.search(value):
        value = _QUOTES.sub("", value)
    if "/*" in value:
        value = _SQL_COMMENT.sub("", value)
    return value


def normalize_path(value: str) -> str:
    """The path a file system would open: backslashes, ``//``, ``/./`` and ``..`` resolved."""
    value = value.replace("\\", "/")
    if "//" in value:
        value = _SLASHES.sub("/", value)
    if "/." not in value and not value.startswith("."):
        return value
    normalized = posixpath.normpath(value)
    return normalized + "/" if value.endswith("/") and normalized != "/" else normalized


def _printable_text(data: bytes) -> str | None:
    if not data:
        return None
    if data.isascii():
        unprintable = len(data.translate(None, _TEXT_BYTES))
        if unprintable > (1 - BASE64_PRINTABLE_RATIO_MIN) * len(data):
            return None
        return data.decode("ascii")
    text = decode_bytes(data)
    unprintable = len(_UNPRINTABLE.findall(text))
    return text if unprintable <= (1 - BASE64_PRINTABLE_RATIO_MIN) * len(text) else None


def base64_text(token: str) -> str | None:
    """The text a base64/base64url token (padded or not) decodes to, if it is text."""
    token = token.rstrip("=")
    if len(token) < BASE64_CHARS_MIN or len(token) % 4 == 1 or _HEX_ONLY.fullmatch(token):
        return None
    if "-" in token or "_" in token:
        if "+" in token or "/" in token:
            return None
        token = token.replace("-", "+").replace("_", "/")
    leads = token[:256:4]
    if len(leads.translate(_NOT_TEXT_LEADS)) > (1 - BASE64_PRINTABLE_RATIO_MIN) * len(leads):
        return None
    try:
        data = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return _printable_text(data)


def _base64_decodings(value: str, *, path: bool = False) -> list[str]:
    stripped = value.strip("\t\r\n")
    if path:
        stripped = stripped.lstrip("/")
    if " " in stripped and "  " not in stripped.strip(" "):
        # A form or query decoder turned the base64 '+' into spaces.
        stripped = stripped.replace(" ", "+")
    if len(stripped) >= BASE64_CHARS_MIN and _B64_WHOLE.fullmatch(stripped):
        text = base64_text(stripped)
        return [text] if text is not None else []
    found: list[str] = []
    for index, match in enumerate(_B64_TOKEN.finditer(value)):
        if index >= BASE64_TOKENS_MAX:
            break
        text = base64_text(match.group())
        if text is not None:
            found.append(text)
    return found


def fully_decoded(value: str) -> str:
    """``value`` with URL, HTML-entity and escape layers peeled until nothing changes."""
    current = value
    if _DECODABLE.search(current):
        for _ in range(DECODE_ROUNDS_MAX):
            decoded = _decode_once(current)
            if decoded == current:
                break
            current = decoded
    return current


def _plus_joined_words(value: str) -> bool:
    """`1+UNION+ALL+SELECT` rather than base64 (whose '+' fall every ~64 characters)."""
    pieces = value.split("+")
    return len(pieces) >= PLUS_WORDS_MIN and max(map(len, pieces)) <= PLUS_WORD_CHARS_MAX


def _decoded_forms(decoded: str, *, path: bool) -> list[str]:
    """``decoded`` and its NFKC, de-obfuscated and path-normalized forms."""
    forms = [decoded]
    folded = decoded
    if not decoded.isascii():
        folded = unicodedata.normalize("NFKC", decoded)
        if _INVISIBLE.search(folded):
            folded = _INVISIBLE.sub("", folded)
        if _SLASH_LOOKALIKE.search(folded):
            folded = folded.translate(_SLASH_LOOKALIKES)
        forms.append(folded)
        if _CRLF_LOOKALIKE.search(decoded):
            forms.append(_CRLF_LOOKALIKE.sub("\n", decoded))
    elif (
        not path
        and "+" in decoded
        and " " not in decoded
        and _PLUS_JOINED.search(decoded)
        and (not _B64_WHOLE.fullmatch(decoded) or _plus_joined_words(decoded))
    ):
        # `1+UNION+ALL+SELECT`: a form-encoded value an application decodes once more.
        forms.append(decoded.replace("+", " "))
    deobfuscated = deobfuscate(folded)
    forms.append(deobfuscated)
    if path or "\\" in deobfuscated or "/." in deobfuscated or "./" in deobfuscated:
        forms.append(normalize_path(deobfuscated))
    if path and len(decoded) > 1:
        # The path without its leading slash: what a route parameter holds.
        forms.append(decoded.lstrip("/"))
        # And the first segment that is not a plain name: a route parameter on its own
        # (`/files/1 AND 1=1` holds `1 AND 1=1`).
        for segment in folded.split("/")[1:]:
            if segment and not _PLAIN_SEGMENT.fullmatch(segment):
                forms.append(segment)
                break
    return forms


def base64_variants(value: str) -> list[str]:
    """Only the base64 decodings of ``value`` and their decoded forms (for a value that
    is otherwise inert: a single token of word characters)."""
    out: list[str] = []
    for decoding in _base64_decodings(value):
        text = squeeze(decoding)
        for form in (text, *_decoded_forms(fully_decoded(text), path=False)):
            if form and form not in out and form != value and len(out) < VARIANTS_MAX:
                out.append(form)
    return out


def variants(value: str, *, path: bool = False) -> list[str]:
    """``value`` first, then its distinct decoded forms (at most :data:`VARIANTS_MAX`)."""
    value = squeeze(value)
    out = [value]
    seen = {value}

    def add(form: str) -> None:
        if form and form not in seen and len(out) < VARIANTS_MAX:
            seen.add(form)
            out.append(form)

    decoded = fully_decoded(value)
    for form in _decoded_forms(decoded, path=path):
        add(form)
    decodings = _base64_decodings(value, path=path)
    if not decodings and decoded != value:
        decodings = _base64_decodings(decoded, path=path)
    for decoding in decodings:
        text = squeeze(decoding)
        add(text)
        for form in _decoded_forms(fully_decoded(text), path=False):
            add(form)
    return out
