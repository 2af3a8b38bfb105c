"""Split a request into the named values the WAF inspects, as the application will read them.

Every value carries a *location* — ``path``, ``args:<name>``, ``header:<name>``,
``cookie:<name>``, ``json:$.a.b[0]``, ``form:<name>``, ``multipart:<name>``,
``xml:<element>`` / ``xml:<element>@<attribute>``, ``body`` — that evidence names and
exclusions match on. Names (query and form argument names, JSON keys, multipart field
names and file names) are values too: attackers put payloads there because WAFs forget.

Parsing is bounded: a body the WAF cannot inspect completely (too deep, too many values,
larger than the inspection limit, a decompression bomb) is refused with
:class:`NotInspectable`, never waved through uninspected.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import NamedTuple

import orjson

from strongroom.edge.guard import GateRequest
from strongroom.edge.waf.normalize import decode_bytes, percent_decode

# Arguments (query + form) and multipart parts read per request; beyond this the request
# is refused: PHP's max_input_vars is 1,000, real forms stay far below.
ARGS_MAX = 1_000
MULTIPART_PARTS_MAX = 256
# XML elements + attributes read per document.
XML_VALUES_MAX = 10_000
# Query strings, cookies and headers are short by the edge's own limits; the body's limit
# is a setting (``WafSettings.inspect_body_bytes_max``).

# Kinds of locations (the part of a location before ':').
PATH = "path"
ARGS = "args"
HEADER = "header"
COOKIE = "cookie"
JSON = "json"
FORM = "form"
MULTIPART = "multipart"
XML = "xml"
# A whole XML document, for the rules about its structure (DOCTYPE, entities, XInclude).
XML_DOCUMENT = "xml-document"
BODY = "body"
# A whole query string or form body, decoded once: for the few rules whose syntax uses
# '&' and '=' themselves (LDAP filters), which splitting into arguments tears apart.
URLENCODED = "urlencoded"

_JSON_TYPES = ("application/json", "+json", "application/x-ndjson", "application/csp-report")
_FORM_TYPE = "application/x-www-form-urlencoded"
_MULTIPART_TYPE = "multipart/form-data"
_XML_TYPES = ("application/xml", "text/xml", "+xml", "application/soap")
# Media types whose bodies are binary: inspected only if they decode as text anyway.
_BINARY_PREFIXES = ("image/", "audio/", "video/", "font/", "application/octet-stream")
# Headers whose values are bearer credentials in token68 syntax: pods verify them
# cryptographically before reading anything, and evidence must never quote them.
_CREDENTIAL = re.compile(rb"(?i)(?:bearer|dpop|basic) +[A-Za-z0-9._~+/-]+=*")
_JWT = re.compile(rb"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))""", re.IGNORECASE)
_CHARSET_UTF7 = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']utf-7["']""", re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(
    r"""(?:^|;)\s*(name|filename\*?)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))""", re.IGNORECASE
)
_XML_TAG = re.compile(r"<([^>]*)>", re.DOTALL)
_XML_NAME = re.compile(r"/?\s*([^\s/>=]+)")
_XML_ATTRIBUTE = re.compile(r"""([^\s=/"']+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


class Part(NamedTuple):
    """One inspected value and where it came from (a tuple: a request has dozens, and a
    frozen dataclass costs several times as much to build)."""

    location: str
    kind: str
    value: str
    # An argument name, JSON key, multipart field or file name rather than a value.
    is_name: bool = False


@dataclass(frozen=True, slots=True)
class PartLimits:
    """The bounds of what the WAF parses (from ``WafSettings``)."""

    body_bytes_max: int
    json_depth_max: int
    json_values_max: int
    json_string_chars_max: int


class NotInspectableError(Exception):
    """A request the WAF cannot inspect completely; answered with ``status`` + ``type_id``.

    Type ids: ``json-too-deep`` (400), ``json-too-large`` (413: too many values or a
    string too long), ``too-many-arguments`` (413: query/form arguments, cookies or
    multipart parts past their caps), ``body-not-inspectable`` (413: larger than the
    inspection limit, not buffered, or a compressed body that expands past it).
    """

    def __init__(self, status: int, type_id: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.type_id = type_id
        self.detail = detail


def _too_large(detail: str) -> NotInspectableError:
    return NotInspectableError(413, "body-not-inspectable", detail)


def _too_many(detail: str) -> NotInspectableError:
    return NotInspectableError(413, "too-many-arguments", detail)


def media_type(request: GateRequest) -> str:
    raw = request.header(b"content-type")
    if raw is None:
        return ""
    return raw.split(b";", 1)[0].strip().lower().decode("latin-1")


def urlencoded_parts(text: str, kind: str) -> Iterator[Part]:
    """``a=1&b=2`` as a server decodes it (``+`` is a space), names included; then the
    whole string decoded once (kind ``urlencoded``, location ``<kind>``)."""
    for count, pair in enumerate(text.split("&")):
        if count >= ARGS_MAX:
            raise _too_many(f"more than {ARGS_MAX} arguments")
        if not pair:
            continue
        raw_name, has_value, raw_value = pair.partition("=")
        name = percent_decode(raw_name, plus_is_space=True)
        location = f"{kind}:{name}"
        yield Part(location, kind, name, is_name=True)
        if has_value and raw_value:
            yield Part(location, kind, percent_decode(raw_value, plus_is_space=True))
    if "&" in text:
        yield Part(kind, URLENCODED, percent_decode(text, plus_is_space=True))


def header_parts(request: GateRequest) -> Iterator[Part]:
    for raw_name, raw_value in request.headers:
        if not raw_value:
            continue
        if raw_name == b"cookie":
            yield from cookie_parts(decode_bytes(raw_value))
            continue
        if raw_name in (b"authorization", b"proxy-authorization") and _CREDENTIAL.fullmatch(
            raw_value.strip()
        ):
            continue
        if raw_name == b"dpop" and _JWT.fullmatch(raw_value.strip()):
            continue
        name = raw_name.decode("latin-1")
        yield Part(f"header:{name}", HEADER, decode_bytes(raw_value))


def cookie_parts(text: str) -> Iterator[Part]:
    for count, pair in enumerate(text.split(";")):
        if count >= ARGS_MAX:
            raise _too_many(f"more than {ARGS_MAX} cookies")
        name, _, value = pair.strip().partition("=")
        if not name and not value:
            continue
        location = f"cookie:{name}"
        yield Part(location, COOKIE, name, is_name=True)
        if value:
            yield Part(location, COOKIE, value)


def json_parts(body: bytes, limits: PartLimits) -> list[Part] | None:
    """Every key and string of a JSON document; None when it is not JSON at all.

    Scalars other than strings (numbers, booleans, null) carry no text to inspect: they
    only count towards ``json_values_max``, without a stack entry each.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    parts: list[Part] = []
    append = parts.append
    values = 0
    chars_max = limits.json_string_chars_max
    depth_max = limits.json_depth_max
    # Paths carry the "json:" prefix from the start: one string per location.
    stack: list[tuple[object, str, int]] = [(document, "json:$", 0)]
    while stack:
        node, path, depth = stack.pop()
        if isinstance(node, dict):
            if depth >= depth_max:
                raise NotInspectableError(
                    400, "json-too-deep", f"JSON nested deeper than {depth_max}"
                )
            for key, child in node.items():
                values += 1
                if len(key) > chars_max:
                    raise NotInspectableError(
                        413, "json-too-large", f"a JSON key is over {chars_max}"
                    )
                child_path = f"{path}.{key}"
                append(Part(child_path, JSON, key, True))
                if isinstance(child, str):
                    values += 1
                    if len(child) > chars_max:
                        raise NotInspectableError(
                            413, "json-too-large", f"a JSON string is over {chars_max}"
                        )
                    if child:
                        append(Part(child_path, JSON, child))
                elif isinstance(child, (dict, list)):
                    stack.append((child, child_path, depth + 1))
                else:
                    values += 1
        elif isinstance(node, list):
            if depth >= depth_max:
                raise NotInspectableError(
                    400, "json-too-deep", f"JSON nested deeper than {depth_max}"
                )
            for index, child in enumerate(node):
                if isinstance(child, (dict, list, str)):
                    stack.append((child, f"{path}[{index}]", depth + 1))
                else:
                    values += 1
        elif isinstance(node, str):
            values += 1
            if len(node) > chars_max:
                raise NotInspectableError(
                    413, "json-too-large", f"a JSON string is over {chars_max}"
                )
            if node:
                append(Part(path, JSON, node))
        else:
            values += 1
        if values > limits.json_values_max:
            raise NotInspectableError(
                413, "json-too-large", f"more than {limits.json_values_max} JSON values"
            )
    return parts


def _disposition(headers: str) -> tuple[str | None, str | None]:
    name: str | None = None
    filename: str | None = None
    for line in headers.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() != "content-disposition":
            continue
        for match in _DISPOSITION_PARAM.finditer(value):
            param = match.group(1).lower()
            text = match.group(2) if match.group(2) is not None else match.group(3).strip()
            if param == "name":
                name = text.replace('\\"', '"')
            else:
                filename = text.replace('\\"', '"')
    return name, filename


def multipart_parts(body: bytes, content_type: bytes) -> list[Part] | None:
    """Field names, file names and text contents of a multipart/form-data body."""
    found = _BOUNDARY.search(content_type.decode("latin-1"))
    if found is None:
        return None
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1")
    sections = body.split(delimiter)
    if len(sections) > MULTIPART_PARTS_MAX + 2:
        raise _too_many(f"more than {MULTIPART_PARTS_MAX} multipart parts")
    parts: list[Part] = []
    for raw_section in sections[1:]:
        if raw_section.startswith(b"--"):
            break
        section = raw_section.removeprefix(b"\r\n").removeprefix(b"\n")
        head, separator, content = section.partition(b"\r\n\r\n")
        if not separator:
            head, separator, content = section.partition(b"\n\n")
        name, filename = _disposition(decode_bytes(head))
        field = name if name is not None else ""
        location = f"{MULTIPART}:{field}"
        if name is not None:
            parts.append(Part(location, MULTIPART, name, is_name=True))
        if filename:
            parts.append(Part(location, MULTIPART, filename, is_name=True))
        content = content.removesuffix(b"\r\n").removesuffix(b"\n")
        if not content:
            continue
        text = decode_bytes(content)
        if filename is not None and not text.isprintable() and not _is_text(content):
            continue  # an uploaded binary file: no injection grammar applies to it
        parts.append(Part(location, MULTIPART, text))
    return parts


def _is_text(data: bytes) -> bool:
    try:
        text = data[:4096].decode()
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\t\r\n" for char in text)


def xml_parts(body: bytes) -> list[Part]:
    """The document itself (``xml``, kind ``xml-document``), then its text and attributes.

    A tolerant scan rather than a parser: malformed XML is exactly what attackers send,
    and no entity is ever expanded. The DOCTYPE, the XML declaration and comments are
    left to the rules that read the whole document.
    """
    utf7 = _CHARSET_UTF7.match(body) is not None
    text = body.decode("utf-7", "replace") if utf7 else decode_bytes(body)
    parts = [Part(XML, XML_DOCUMENT, text)]
    open_elements: list[str] = []
    element = ""
    position = 0
    length = len(text)
    while position < length and len(parts) < XML_VALUES_MAX:
        start = text.find("<", position)
        if start < 0:
            start = length
        if start > position:
            content = text[position:start].strip()
            if content:
                parts.append(Part(f"{XML}:{element}", XML, unescape(content)))
        if start >= length:
            break
        if text.startswith("<!--", start):
            end = text.find("-->", start + 4)
            end = length if end < 0 else end + 3
        elif text.startswith("<![CDATA[", start):
            end = text.find("]]>", start + 9)
            end = length if end < 0 else end + 3
            parts.append(Part(f"{XML}:{element}", XML, text[start + 9 : end - 3]))
        elif text[start : start + 9].upper() == "<!DOCTYPE":
            bracket = text.find("[", start)
            close = text.find(">", start)
            if 0 <= bracket < close or (close < 0 <= bracket):
                subset_end = text.find("]", bracket)
                close = text.find(">", subset_end) if subset_end >= 0 else -1
            end = length if close < 0 else close + 1
        else:
            tag = _XML_TAG.match(text, start)
            if tag is None:
                parts.append(Part(f"{XML}:{element}", XML, unescape(text[start:])))
                break
            end = tag.end()
            inner = tag.group(1)
            if not inner.startswith(("?", "!")):
                named = _XML_NAME.match(inner)
                tag_name = named.group(1) if named else ""
                if inner.startswith("/"):
                    if open_elements:
                        open_elements.pop()
                elif not inner.endswith("/") and len(open_elements) < XML_VALUES_MAX:
                    open_elements.append(tag_name)
                element = open_elements[-1] if open_elements else ""
                for attribute in _XML_ATTRIBUTE.finditer(inner):
                    value = attribute.group(2)
                    if value is None:
                        value = attribute.group(3)
                    parts.append(
                        Part(f"{XML}:{tag_name}@{attribute.group(1)}", XML, unescape(value))
                    )
        position = end
    return parts


def _decompressed(body: bytes, request: GateRequest, limit: int) -> bytes:
    """The body as the application would read it after Content-Encoding, within ``limit``.

    A body that is not actually in the declared encoding is inspected as sent (an
    application may ignore the header); one that expands past the limit is refused.
    """
    encoding = (request.header(b"content-encoding") or b"").strip().lower()
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        wbits = 47 if encoding != b"deflate" else 15
        try:
            decompressor = zlib.decompressobj(wbits)
            data = decompressor.decompress(body, limit + 1)
        except zlib.error:
            return body
        if len(data) > limit or decompressor.unconsumed_tail:
            raise _too_large(f"the decompressed body is over {limit} bytes")
        return data
    return body


def body_parts(request: GateRequest, limits: PartLimits) -> list[Part]:
    body = request.body
    if body is None:
        raise _too_large("the body was too large for the edge to buffer")
    if not body:
        return []
    if len(body) > limits.body_bytes_max:
        raise _too_large(f"the body is over {limits.body_bytes_max} bytes")
    body = _decompressed(body, request, limits.body_bytes_max)
    kind = media_type(request)
    if kind.startswith(_JSON_TYPES) or kind.endswith("+json"):
        parsed = json_parts(body, limits)
        if parsed is not None:
            return parsed
    elif kind == _FORM_TYPE:
        return list(urlencoded_parts(decode_bytes(body), FORM))
    elif kind == _MULTIPART_TYPE:
        parsed = multipart_parts(body, request.header(b"content-type") or b"")
        if parsed is not None:
            return parsed
    elif kind.startswith(_XML_TYPES) or kind.endswith("+xml"):
        return xml_parts(body)
    elif not kind:
        # No Content-Type: frameworks read such a body as JSON when it parses (FastAPI
        # does), so inspect it as JSON; a binary one no text parser will read.
        parsed = json_parts(body, limits)
        if parsed is not None:
            return parsed
        if not _is_text(body):
            return []
    elif kind.startswith(_BINARY_PREFIXES) and not _is_text(body):
        return []
    return [Part(BODY, BODY, decode_bytes(body))]


def request_parts(request: GateRequest, limits: PartLimits, *, body: bool = True) -> list[Part]:
    """Every inspectable value of ``request``; raises :class:`NotInspectableError`.

    ``body=False`` leaves the body out (a route excluded from body inspection).
    """
    target = decode_bytes(request.target)
    path, _, query = target.partition("?")
    parts = [Part(PATH, PATH, path)]
    if query:
        parts.extend(urlencoded_parts(query.split("#", 1)[0], ARGS))
    parts.extend(header_parts(request))
    if body:
        parts.extend(body_parts(request, limits))
    return parts
