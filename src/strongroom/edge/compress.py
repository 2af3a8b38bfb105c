"""Response compression at the edge: negotiation (RFC 9110 §12.5.3) and buffered gzip/brotli.

Pods answer in identity; the edge compresses, so compression CPU is spent where it
scales by adding edge workers and the cache keeps one identity copy per object (the
cache memoises compressed variants, so a hit never recompresses).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence

import brotli

from strongroom.config import CacheSettings
from strongroom.edge.cache_control import combined_field, parse_cache_control, split_list

Headers = Sequence[tuple[bytes, bytes]]

BR = b"br"
GZIP = b"gzip"

# zlib wbits for a gzip wrapper (16 + 15-bit window), RFC 1952 framing.
_GZIP_WBITS = 31
# Clients send a handful of distinct Accept-Encoding strings; memoising the parse keeps
# negotiation off the per-request profile. Longer values are parsed every time so an
# attacker cannot pin large strings in the memo.
_CHOICE_MEMO_ENTRIES_MAX = 256
_CHOICE_MEMO_VALUE_BYTES_MAX = 256

# RFC 9110 §8.3.1 media types whose payload is text-like and shrinks well.
_COMPRESSIBLE_TYPES = frozenset(
    {
        b"application/json",
        b"application/javascript",
        b"application/ecmascript",
        b"application/xml",
        b"application/x-javascript",
        b"application/graphql-response+json",
        b"image/svg+xml",
    }
)
# Statuses that never carry content (RFC 9110 §6.4.1) or whose content must not change.
_NO_COMPRESS_STATUSES = frozenset({204, 206, 304})


def choose_encoding(accept_encoding: bytes | None) -> bytes | None:
    """``b"br"``, ``b"gzip"`` or None (identity) for a request's Accept-Encoding (RFC 9110 §12.5.3).

    - No field → None. §12.5.3 allows any coding then, but clients that omit the field
      (curl, scripts) usually cannot decode one, so we send identity.
    - q-values pick the coding; ``*`` covers codings not listed; ``x-gzip`` is ``gzip``
      (§8.4.1.3); a malformed q-value counts as q=0 so it can never select a coding.
    - A coding with q=0 is never chosen. br wins a tie with gzip (smaller at equal cost);
      identity wins only if its explicit q-value is strictly higher than both.
    """
    if accept_encoding is None:
        return None
    if len(accept_encoding) <= _CHOICE_MEMO_VALUE_BYTES_MAX:
        return _choose_memoised(accept_encoding)
    return _choose(accept_encoding)


def should_compress(
    status: int,
    resp_headers: Headers,
    body_len: int | None,
    settings: CacheSettings,
) -> bool:
    """Whether a buffered response is worth compressing and may be transformed.

    No for: compression disabled, statuses without (transformable) content, bodies of
    unknown length (streamed through untouched) or outside the configured size window,
    responses already content-coded or carrying Content-Range, ``Cache-Control:
    no-transform`` (RFC 9111 §5.2.2.6), and media types that do not shrink.
    """
    if not settings.compression or status < 200 or status in _NO_COMPRESS_STATUSES:
        return False
    if body_len is None or not (
        settings.compression_bytes_min <= body_len <= settings.compression_bytes_max
    ):
        return False
    content_type: bytes | None = None
    cache_control: list[bytes] = []
    for name, value in resp_headers:
        if name == b"content-encoding":
            if value.strip().lower() not in (b"", b"identity"):
                return False
        elif name == b"content-range":
            return False
        elif name == b"content-type":
            content_type = value
        elif name == b"cache-control":
            cache_control.append(value)
    if cache_control and b"no-transform" in parse_cache_control(cache_control):
        return False
    return content_type is not None and is_compressible_type(content_type)


def is_compressible_type(content_type: bytes) -> bool:
    """JSON, problem+json and other ``+json``/``+xml``, ``text/*``, JavaScript, XML, SVG."""
    media_type = content_type.partition(b";")[0].strip().lower()
    return (
        media_type.startswith(b"text/")
        or media_type in _COMPRESSIBLE_TYPES
        or media_type.endswith((b"+json", b"+xml"))
    )


def compress(body: bytes, encoding: bytes, settings: CacheSettings) -> bytes:
    """``body`` encoded with ``encoding`` (``b"gzip"`` or ``b"br"``) at the configured level."""
    if encoding == GZIP:
        compressor = zlib.compressobj(settings.gzip_level, zlib.DEFLATED, _GZIP_WBITS)
        return compressor.compress(body) + compressor.flush()
    if encoding == BR:
        encoded: bytes = brotli.compress(body, quality=settings.brotli_quality)
        return encoded
    raise ValueError(f"unsupported content coding {encoding!r}")


def vary_accept_encoding(headers: Headers) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``accept-encoding`` merged into Vary (RFC 9110 §12.5.5).

    A ``Vary: *`` already says "varies on everything" and is left alone.
    """
    out = list(headers)
    vary_at: int | None = None
    for index, (name, value) in enumerate(out):
        if name != b"vary":
            continue
        members = [member.lower() for member in split_list(value)]
        if b"*" in members or b"accept-encoding" in members:
            return out
        if vary_at is None:
            vary_at = index
    if vary_at is None:
        out.append((b"vary", b"accept-encoding"))
    else:
        name, value = out[vary_at]
        out[vary_at] = (name, value + b", accept-encoding" if value.strip() else b"accept-encoding")
    return out


def content_encoding_of(headers: Headers) -> bytes | None:
    """The response's content coding, None for identity."""
    value = combined_field(headers, b"content-encoding")
    if value is None:
        return None
    value = value.strip().lower()
    return None if value in (b"", b"identity") else value


@functools.lru_cache(maxsize=_CHOICE_MEMO_ENTRIES_MAX)
def _choose_memoised(accept_encoding: bytes) -> bytes | None:
    return _choose(accept_encoding)


def _choose(accept_encoding: bytes) -> bytes | None:
    qualities: dict[bytes, float] = {}
    for member in split_list(accept_encoding):
        coding, _, params = member.partition(b";")
        coding = coding.strip().lower()
        if coding == b"x-gzip":
            coding = GZIP
        quality = _qvalue(params)
        # A coding listed twice keeps its lowest weight: the restrictive reading is safe.
        qualities[coding] = min(quality, qualities.get(coding, quality))
    wildcard = qualities.get(b"*")
    br_q = qualities.get(BR, wildcard if wildcard is not None else 0.0)
    gzip_q = qualities.get(GZIP, wildcard if wildcard is not None else 0.0)
    identity_q = qualities.get(b"identity", 0.0)
    best, best_q = (BR, br_q) if br_q >= gzip_q else (GZIP, gzip_q)
    if best_q <= 0.0 or identity_q > best_q:
        return None
    return best


def _qvalue(params: bytes) -> float:
    """The ``q`` parameter (RFC 9110 §12.4.2); 1 when absent, 0 when malformed."""
    for param in params.split(b";"):
        key, sep, value = param.partition(b"=")
        if sep and key.strip().lower() == b"q":
            text = value.strip()
            if not text or len(text) > 5 or not text.replace(b".", b"", 1).isdigit():
                return 0.0
            quality = float(text)
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0
