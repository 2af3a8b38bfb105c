"""The GoTestWAF corpus (``../shared/corpus/gotestwaf``) as the HTTP requests GoTestWAF sends.

Every payload x encoder x placeholder of every test case becomes one
:class:`CorpusRequest`, built the way GoTestWAF's Go code builds it (encoders: Plain, URL =
Go's ``url.PathEscape``, Base64, Base64Flat; placeholders: URLPath, URLParam, Header,
UserAgent, JSONRequest, HTMLForm, HTMLMultipartForm, XMLBody, SOAPBody, RawRequest).
GraphQL and gRPC placeholders need endpoints of those kinds and are skipped, as GoTestWAF
skips them without one. A set whose name contains ``false`` is benign, every other set
is an attack set (GoTestWAF's rule).

Random names (GoTestWAF's ``RandomHex``) come from a seeded generator, so a run is
reproducible. Used by ``bench/waf.py``, ``tests/unit/edge/waf/test_corpus_floors.py`` and
the edge replay test: :meth:`CorpusRequest.gate_request` for the WAF alone,
:meth:`CorpusRequest.http_bytes` for a real connection.
"""

from __future__ import annotations

import base64
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from strongroom.edge.guard import GateRequest

CORPUS_DIR = Path(__file__).resolve().parent.parent.parent / "shared" / "corpus" / "gotestwaf"
HOST = "127.0.0.1"
# Go's net/http client sends these when nothing else is set.
GO_USER_AGENT = "Go-http-client/1.1"
SKIPPED_PLACEHOLDERS = frozenset({"GraphQL", "gRPC"})
PAYLOAD_MARK = "{{payload}}"
# GoTestWAF's RandomHex(Seed): 5 random bytes as 10 hex digits.
RANDOM_HEX_BYTES = 5
JSON_WRAPPER = '{"test":true, "%s": "%s"}'
SOAP_WRAPPER = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
\txmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
\t<soapenv:Header>
\t\t<ns1:RequestHeader soapenv:actor="http://schemas.xmlsoap.org/soap/actor/next"
\t\t\tsoapenv:mustUnderstand="0" xmlns:ns1="https://www.google.com/apis/ads/publisher/v202002">
\t\t</ns1:RequestHeader>
\t</soapenv:Header>
\t<soapenv:Body>
\t\t<getAdUnitsByStatement xmlns="https://www.google.com/apis/ads/publisher/v202002">
\t\t\t<filterStatement>
\t\t\t\t<%s>%s</%s>
\t\t\t</filterStatement>
\t\t</getAdUnitsByStatement>
\t</soapenv:Body>
</soapenv:Envelope>"""

# Go's url.PathEscape keeps unreserved characters and $&+:=@ (shouldEscape,
# encodePathSegment); everything else is %XX with upper-case hex.
_PATH_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~$&+:=@")
_XML_ESCAPES = {
    '"': "&#34;",
    "'": "&#39;",
    "&": "&amp;",
    "<": "&lt;",
    ">": "&gt;",
    "\t": "&#x9;",
    "\n": "&#xA;",
    "\r": "&#xD;",
}


def go_path_escape(value: str) -> str:
    return "".join(
        chr(b) if b in _PATH_SAFE else f"%{b:02X}" for b in value.encode("utf-8", "surrogatepass")
    )


def js_unicode(value: str) -> str:
    """GoTestWAF's JSUnicode encoder: every UTF-16 code unit as ``\\uXXXX``."""
    data = value.encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{data[i]:02x}{data[i + 1]:02x}" for i in range(0, len(data), 2))


def xml_entity(value: str) -> str:
    """GoTestWAF's XMLEntity encoder: Go's ``xml.Encoder.Encode(string)``."""
    return "<string>" + "".join(_XML_ESCAPES.get(c, c) for c in value) + "</string>"


def encode(encoder: str, payload: str) -> str:
    if encoder == "Plain":
        return payload
    if encoder == "URL":
        return go_path_escape(payload)
    if encoder in ("Base64", "Base64Flat"):
        encoded = base64.b64encode(payload.encode()).decode()
        return encoded if encoder == "Base64" else encoded.replace("=", "")
    raise ValueError(f"unknown encoder {encoder!r}")


@dataclass(frozen=True, slots=True)
class CorpusRequest:
    """One request GoTestWAF sends, labelled."""

    set: str
    case: str
    category: str
    attack: bool
    payload: str
    encoder: str
    placeholder: str
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes

    @property
    def name(self) -> str:
        return f"{self.set}/{self.case} {self.placeholder}/{self.encoder}"

    def gate_request(self, body_bytes_max: int | None = None) -> GateRequest:
        """The request as edge gates see it (header names lower-case, whole body)."""
        body: bytes | None = self.body
        if body_bytes_max is not None and len(self.body) > body_bytes_max:
            body = None
        return GateRequest(
            client_ip="127.0.0.1",
            method=self.method,
            target=self.target,
            headers=[(k.lower(), v) for k, v in self.headers],
            request_id="corpus",
            body=body,
        )

    def http_bytes(self) -> bytes:
        """The request on the wire (HTTP/1.1, Host and Content-Length as Go writes them)."""
        lines = [self.method + b" " + self.target + b" HTTP/1.1", b"Host: " + HOST.encode()]
        lines += [k + b": " + v for k, v in self.headers]
        if self.body or self.method not in (b"GET", b"HEAD"):
            lines.append(b"Content-Length: " + str(len(self.body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + self.body


class _Builder:
    """Builds requests like GoTestWAF's placeholders, with reproducible random names."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def hex(self, count: int = RANDOM_HEX_BYTES) -> str:
        return self._random.randbytes(count).hex()

    def build(
        self, placeholder: str, config: dict[str, Any] | None, value: str
    ) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        """(method, target, headers, body) for ``value`` (already encoded)."""
        headers = [(b"User-Agent", GO_USER_AGENT.encode())]
        raw = value.encode("utf-8", "surrogatepass")
        if placeholder == "URLPath":
            return b"GET", b"/" + raw, headers, b""
        if placeholder == "URLParam":
            return b"GET", b"/?" + self.hex().encode() + b"=" + raw, headers, b""
        if placeholder == "Header":
            headers.append((b"X-" + self.hex().encode(), raw))
            return b"GET", b"/", headers, b""
        if placeholder == "UserAgent":
            return b"GET", b"/", [(b"User-Agent", raw)], b""
        if placeholder == "JSONRequest":
            body = (JSON_WRAPPER % (self.hex(), js_unicode(value))).encode()
            headers.append((b"Content-Type", b"application/json"))
            return b"POST", b"/", headers, body
        if placeholder == "HTMLForm":
            headers.append((b"Content-Type", b"application/x-www-form-urlencoded"))
            return b"POST", b"/", headers, self.hex().encode() + b"=" + raw
        if placeholder == "HTMLMultipartForm":
            boundary = self.hex(30).encode()
            name = self.hex().encode()
            body = (
                b"--" + boundary + b"\r\n"
                b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n'
                + raw + b"\r\n--" + boundary + b"--\r\n"
            )  # fmt: skip
            headers.append((b"Content-Type", b"multipart/form-data; boundary=" + boundary))
            return b"POST", b"/", headers, body
        if placeholder == "XMLBody":
            headers.append((b"Content-Type", b"text/xml"))
            return b"POST", b"/", headers, raw
        if placeholder == "SOAPBody":
            element = "ab" + self.hex()
            body = (SOAP_WRAPPER % (element, xml_entity(value), element)).encode()
            headers.append((b"SOAPAction", b'"http://schemas.xmlsoap.org/soap/actor/next"'))
            headers.append((b"Content-Type", b"text/xml"))
            return b"POST", b"/", headers, body
        if placeholder == "RawRequest":
            conf = config or {}
            path = str(conf.get("path") or "/").replace(PAYLOAD_MARK, value)
            target = ("/" + path.lstrip("/")).encode("utf-8", "surrogatepass")
            raw_headers = [
                (str(k).encode(), str(v).replace(PAYLOAD_MARK, value).encode())
                for k, v in (conf.get("headers") or {}).items()
            ]
            if not any(k.lower() == b"user-agent" for k, _ in raw_headers):
                raw_headers.insert(0, headers[0])
            body = str(conf.get("body") or "").replace(PAYLOAD_MARK, value).encode()
            return str(conf["method"]).encode(), target, raw_headers, body
        raise ValueError(f"unknown placeholder {placeholder!r}")


def _load_yaml(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError:
        # Go's YAML accepts \' inside double quotes, PyYAML does not (corpus README).
        document = yaml.safe_load(text.replace("\\'", "'"))
    if not isinstance(document, dict):
        raise ValueError(f"{path}: not a test case")
    return document


def _placeholders(entries: list[Any]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    for entry in entries:
        if isinstance(entry, str):
            yield entry, None
        elif isinstance(entry, dict):
            for name, config in entry.items():
                yield str(name), config if isinstance(config, dict) else None


def corpus_dir() -> Path | None:
    """The corpus directory, or None where ``../shared/`` is not present."""
    return CORPUS_DIR if (CORPUS_DIR / "testcases").is_dir() else None


def load_corpus(directory: Path = CORPUS_DIR, seed: int = 2025) -> list[CorpusRequest]:
    """Every sendable request of the corpus, in a stable order."""
    builder = _Builder(seed)
    requests: list[CorpusRequest] = []
    for path in sorted((directory / "testcases").glob("*/*.yml")):
        test_set = path.parent.name
        document = _load_yaml(path)
        attack = "false" not in test_set
        category = str(document.get("type") or ("benign" if not attack else test_set))
        for payload in document.get("payload") or []:
            for encoder in document.get("encoder") or ["Plain"]:
                for placeholder, config in _placeholders(document.get("placeholder") or []):
                    if placeholder in SKIPPED_PLACEHOLDERS:
                        continue
                    value = encode(str(encoder), str(payload))
                    method, target, headers, body = builder.build(placeholder, config, value)
                    requests.append(
                        CorpusRequest(
                            set=test_set,
                            case=path.stem,
                            category=category,
                            attack=attack,
                            payload=str(payload),
                            encoder=str(encoder),
                            placeholder=placeholder,
                            method=method,
                            target=target,
                            headers=tuple(headers),
                            body=body,
                        )
                    )
    return requests


_CATEGORY_ALIASES = (
    (re.compile(r"nosql", re.IGNORECASE), "NoSQL injection"),
    (re.compile(r"sql", re.IGNORECASE), "SQL injection"),
    (re.compile(r"xss", re.IGNORECASE), "XSS"),
    (re.compile(r"rce|shell|rawrequest", re.IGNORECASE), "RCE / shell"),
    (re.compile(r"lfi|path traversal", re.IGNORECASE), "Path traversal / LFI"),
)


def coarse_category(request: CorpusRequest) -> str:
    """Corpus labels folded into families ("8KB SQL Injection" → "SQL injection")."""
    if not request.attack:
        return "benign"
    for pattern, name in _CATEGORY_ALIASES:
        if pattern.search(request.category) or pattern.search(request.case):
            return name
    return request.category
