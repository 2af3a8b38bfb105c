"""The edge's shared HTTP cache (RFC 9111) and request coalescing.

Pure and synchronous (except the coalescer): the proxy in ``edge/server.py`` asks it
questions and hands it responses; nothing here does I/O. One ``EdgeCache`` per edge
worker process, used from that worker's event loop only, so no locking.

Policy choices, each the conservative reading of the RFC:

- Storage needs *explicit* freshness (``s-maxage``, ``max-age`` or ``Expires``) or a
  ``no-cache`` response with a validator; no heuristic freshness (§4.2.2), because a
  payments API must not have an edge guess how long a response stays true.
- Only GET responses are stored; a HEAD is answered from the stored GET (§4.3.5's
  reverse is not needed); partial content (206, ``Range`` requests) bypasses the cache.
- Qualified ``private="x"`` / ``no-cache="x"`` are treated as unqualified (§5.2.2.4,
  §5.2.2.7 allow it); a response with ``Set-Cookie`` is never stored.
- Bodies are stored in identity coding. The edge negotiates compression itself and
  memoises each compressed variant beside the identity copy (counted in ``bytes_max``).
  A compressed variant's ETag gets a coding suffix inside the quotes (``"abc"`` →
  ``"abc-br"``, ``W/"abc"`` → ``W/"abc-gzip"``), as Apache httpd and Caddy do: distinct
  representations need distinct strong validators (RFC 9110 §8.8.3), which nginx's
  alternative (weakening to ``W/``) gives up. If-None-Match is compared with the ETag of
  the variant being served. Because the edge derives every coding from the identity
  copy, ``Vary: accept-encoding`` on an identity response does not split the cache.
  The proxy should therefore ask pods for identity (send no Accept-Encoding upstream).
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from strongroom.config import CacheSettings
from strongroom.edge.cache_control import (
    DELTA_SECONDS_MAX,
    Directives,
    combined_field,
    delta_seconds,
    field_values,
    parse_cache_control,
    parse_http_date,
    request_directives,
    split_list,
)
from strongroom.edge.compress import (
    choose_encoding,
    compress,
    content_encoding_of,
    should_compress,
    vary_accept_encoding,
)

Header = tuple[bytes, bytes]
Headers = Sequence[Header]
CacheKey = tuple[bytes, bytes, bytes]
T = TypeVar("T")

XCACHE_HIT = b"HIT"
XCACHE_MISS = b"MISS"
XCACHE_REVALIDATED = b"REVALIDATED"

# RFC 9110 §7.6.1 hop-by-hop fields: meaningful for one connection, never stored.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Recomputed for every response served from the cache, so never stored.
_RECOMPUTED = frozenset({b"age", b"content-length", b"x-cache"})
# A 304 may not change what the stored body is (RFC 9111 §3.2); Set-Cookie is per client.
_NOT_UPDATED_BY_304 = frozenset(
    {b"content-encoding", b"content-length", b"content-range", b"set-cookie"}
)
# RFC 9110 §15.4.5: what a 304 carries from the 200 it stands for.
_NOT_MODIFIED_FIELDS = frozenset(
    {b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary"}
)
_SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
# Status codes this cache implements the semantics of (for must-understand, §5.2.2.3).
_UNDERSTOOD_STATUSES = frozenset(
    {200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501}
)
# Partial content needs range handling this cache does not have; 304 only freshens.
_NEVER_STORED_STATUSES = frozenset({206, 304})
# Python object overhead per stored response and per header line, so many tiny objects
# cannot exceed bytes_max by more than a rounding error.
_ENTRY_OVERHEAD_BYTES = 512
_HEADER_OVERHEAD_BYTES = 64
_ENTITY_TAG = re.compile(rb'(?:W/)?"[^"]*"')


class CacheState(enum.Enum):
    MISS = "miss"
    FRESH = "fresh"
    STALE = "stale"


MISS = CacheState.MISS
FRESH = CacheState.FRESH
STALE = CacheState.STALE


@dataclass(slots=True)
class EncodedVariant:
    """A memoised compressed representation of a stored response."""

    headers: list[Header]
    body: bytes
    etag: bytes | None


@dataclass(slots=True)
class CachedResponse:
    """A stored response with what RFC 9111 §4.2 needs to judge it, precomputed at store time."""

    status: int
    # Served as-is: hop-by-hop, Age and Content-Length removed; Vary merged if compressible.
    headers: list[Header]
    body: bytes
    # response_time of §4.2.3: when the response (or the 304 that freshened it) arrived.
    stored_at: float
    key: CacheKey
    # corrected_initial_age of §4.2.3.
    initial_age: float
    freshness_lifetime: float
    etag: bytes | None
    last_modified: bytes | None
    last_modified_at: float | None
    vary: tuple[bytes, ...]
    vary_values: tuple[bytes | None, ...]
    # must-revalidate / proxy-revalidate / s-maxage: never served stale (§4.2.4, §5.2.2.8).
    must_revalidate: bool
    # Response no-cache: stored, but revalidated before every use (§5.2.2.4).
    no_cache: bool
    # How long past expiry it may answer while every pod fails (RFC 5861 or settings).
    stale_if_error_s: float
    compressible: bool
    size: int
    # Compressed variants by coding; None records "compression did not shrink it".
    encoded: dict[bytes, EncodedVariant | None] = field(default_factory=dict)

    def current_age(self, now: float) -> float:
        """RFC 9111 §4.2.3 current_age."""
        return self.initial_age + max(0.0, now - self.stored_at)

    def is_fresh(self, now: float) -> bool:
        """RFC 9111 §4.2: fresh while the freshness lifetime exceeds the current age."""
        return not self.no_cache and self.freshness_lifetime > self.current_age(now)

    def conditional_headers(self) -> list[Header]:
        """Validators to send upstream when revalidating this response (RFC 9111 §4.3.1)."""
        headers: list[Header] = []
        if self.etag is not None:
            headers.append((b"if-none-match", self.etag))
        if self.last_modified is not None:
            headers.append((b"if-modified-since", self.last_modified))
        return headers


@dataclass(slots=True)
class CacheLookup:
    """What the proxy does next: MISS → fetch (and maybe store); FRESH → serve; STALE → revalidate.

    For STALE, send ``conditional_headers`` upstream instead of the client's own
    validators; on 304 call ``freshen``, on 200 ``store``. ``only_if_cached`` with MISS
    means answer 504 without contacting a pod (RFC 9111 §5.2.1.7).
    """

    state: CacheState
    key: CacheKey
    response: CachedResponse | None = None
    conditional_headers: list[Header] = field(default_factory=list)
    only_if_cached: bool = False


@dataclass(slots=True, frozen=True)
class _Freshness:
    lifetime: float
    must_revalidate: bool
    no_cache: bool
    stale_if_error_s: float


class EdgeCache:
    """An LRU, byte-bounded RFC 9111 shared cache keyed by (GET, host, target) plus Vary values."""

    def __init__(self, settings: CacheSettings, *, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        # Least recently used first; each key's variants newest first.
        self._entries: OrderedDict[CacheKey, list[CachedResponse]] = OrderedDict()
        self._bytes = 0

    # Introspection (metrics, tests) -----------------------------------------------------
    @property
    def settings(self) -> CacheSettings:
        return self._settings

    @property
    def bytes_used(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return sum(len(variants) for variants in self._entries.values())

    # Requests ----------------------------------------------------------------------------
    def request_is_cacheable(self, method: bytes, headers: Headers) -> bool:
        """Whether to consult the cache at all: GET/HEAD, no ``no-store`` (§5.2.1.5), no Range."""
        if not self._settings.enabled or method not in (b"GET", b"HEAD"):
            return False
        for name, value in headers:
            if name == b"range":
                return False
            if name == b"cache-control" and b"no-store" in parse_cache_control((value,)):
                return False
        return True

    @staticmethod
    def key_for(host: bytes, target: bytes) -> CacheKey:
        """Method-normalised key: a HEAD uses the stored GET."""
        return (b"GET", host.lower(), target)

    def lookup(self, method: bytes, target: bytes, host: bytes, headers: Headers) -> CacheLookup:
        """Select a stored response for the request and judge its freshness (RFC 9111 §4)."""
        key = self.key_for(host, target)
        directives = request_directives(headers)
        only_if_cached = b"only-if-cached" in directives
        variants = self._entries.get(key)
        cached = None if variants is None else _select(variants, headers)
        if cached is None:
            return CacheLookup(MISS, key, only_if_cached=only_if_cached)
        self._entries.move_to_end(key)
        if self._satisfies(cached, directives, self._clock()):
            return CacheLookup(FRESH, key, cached, only_if_cached=only_if_cached)
        return CacheLookup(
            STALE, key, cached, cached.conditional_headers(), only_if_cached=only_if_cached
        )

    # Responses ---------------------------------------------------------------------------
    def response_is_storable(
        self, method: bytes, req_headers: Headers, status: int, resp_headers: Headers
    ) -> bool:
        """RFC 9111 §3 for a shared cache, with this module's conservative choices."""
        return self._freshness(method, req_headers, status, resp_headers) is not None

    def response_is_shareable(
        self, req_headers: Headers, status: int, resp_headers: Headers
    ) -> bool:
        """Whether a fetched response may answer *other* clients' concurrent requests.

        For the coalescer's ``shareable``: storable for a shared cache, and not varying on
        a request header (other than Accept-Encoding, which the edge negotiates itself),
        since waiters may have sent different values.
        """
        if self._freshness(b"GET", req_headers, status, resp_headers) is None:
            return False
        return not _vary_fields(resp_headers)

    def store(
        self,
        key: CacheKey,
        req_headers: Headers,
        status: int,
        resp_headers: Headers,
        body: bytes,
        *,
        method: bytes = b"GET",
        request_time: float | None = None,
    ) -> bool:
        """Store a complete response if RFC 9111 §3 allows; True if stored.

        ``request_time`` (when the request was sent upstream) makes the Age computation
        of §4.2.3 count upstream latency. A response that may not be stored removes the
        variant it would have replaced: the origin's newest answer wins.
        """
        freshness = self._freshness(method, req_headers, status, resp_headers)
        if freshness is None:
            self._discard_selected(key, req_headers)
            return False
        if len(body) > self._settings.object_bytes_max:
            self._discard_selected(key, req_headers)
            return False
        cached = self._build(
            key=key,
            req_headers=req_headers,
            status=status,
            resp_headers=resp_headers,
            body=body,
            freshness=freshness,
            request_time=request_time,
        )
        if cached.size > self._settings.bytes_max:
            self._discard_selected(key, req_headers)
            return False
        self._insert(cached)
        return True

    def freshen(
        self,
        key: CacheKey,
        req_headers: Headers,
        resp_headers_304: Headers,
        *,
        request_time: float | None = None,
    ) -> CachedResponse | None:
        """Update the stored response a 304 validated (RFC 9111 §4.3.3, §4.3.4), else None.

        The response selected for this request is updated when the 304's validators
        match it (a strong ETag compares strongly, a weak one weakly, else Last-Modified);
        a 304 with no validator updates the response we revalidated. On None the caller
        must fetch unconditionally. If the merged headers no longer allow storage, the
        updated response is returned to answer this request and is not kept.
        """
        variants = self._entries.get(key)
        cached = None if variants is None else _select(variants, req_headers)
        if cached is None:
            return None
        if not _validators_match(cached, resp_headers_304):
            self._discard_selected(key, req_headers)
            return None
        merged = _merge_304(cached.headers, resp_headers_304)
        freshness = self._freshness(b"GET", req_headers, cached.status, merged)
        keep = freshness is not None
        updated = self._build(
            key=key,
            req_headers=req_headers,
            status=cached.status,
            # The 304's own Age counts toward the refreshed age (§4.2.3); it is not stored.
            resp_headers=[*merged, *((n, v) for n, v in resp_headers_304 if n == b"age")],
            body=cached.body,
            freshness=freshness or _Freshness(0.0, True, True, 0.0),
            request_time=request_time,
        )
        if updated.etag == cached.etag:
            for encoding, variant in cached.encoded.items():
                if variant is None:
                    updated.encoded[encoding] = None
                else:
                    updated.encoded[encoding] = self._variant(updated, encoding, variant.body)
                    updated.size += len(variant.body)
        self._remove(cached)
        if keep and updated.size <= self._settings.bytes_max:
            self._insert(updated)
        return updated

    def serve(
        self,
        cached: CachedResponse,
        req_headers: Headers,
        *,
        method: bytes = b"GET",
        x_cache: bytes = XCACHE_HIT,
    ) -> tuple[int, list[Header], bytes]:
        """Status, headers and body answering the request from ``cached``.

        Adds Age (RFC 9111 §5.1), Content-Length and ``x-cache``; negotiates a memoised
        compressed variant; answers 304 itself when If-None-Match matches the served
        variant's ETag (weak comparison, RFC 9110 §13.1.2) or, without If-None-Match,
        If-Modified-Since is not older than Last-Modified (§13.1.3). HEAD gets no body.
        """
        accept_encoding: bytes | None = None
        if_none_match: bytes | None = None
        if_modified_since: bytes | None = None
        for name, value in req_headers:
            if name == b"accept-encoding":
                accept_encoding = (
                    value if accept_encoding is None else accept_encoding + b"," + value
                )
            elif name == b"if-none-match":
                if_none_match = value if if_none_match is None else if_none_match + b"," + value
            elif name == b"if-modified-since":
                if_modified_since = value
        headers, body, etag = cached.headers, cached.body, cached.etag
        if cached.compressible:
            encoding = choose_encoding(accept_encoding)
            if encoding is not None:
                variant = self._encoded(cached, encoding)
                if variant is not None:
                    headers, body, etag = variant.headers, variant.body, variant.etag
        age = min(int(cached.current_age(self._clock())), DELTA_SECONDS_MAX)
        age_header = (b"age", str(age).encode())
        if 200 <= cached.status < 300 and _not_modified(
            cached, etag, if_none_match, if_modified_since
        ):
            not_modified = [pair for pair in headers if pair[0] in _NOT_MODIFIED_FIELDS]
            not_modified += (age_header, (b"x-cache", x_cache))
            return 304, not_modified, b""
        out = [*headers, age_header]
        if cached.status != 204:
            out.append((b"content-length", str(len(body)).encode()))
        out.append((b"x-cache", x_cache))
        return cached.status, out, b"" if method == b"HEAD" else body

    def usable_on_error(self, cached: CachedResponse) -> bool:
        """Whether a stale response may answer when no pod can (RFC 9111 §4.2.4, RFC 5861).

        Never for must-revalidate, proxy-revalidate, s-maxage or no-cache responses.
        """
        if cached.must_revalidate or cached.no_cache:
            return False
        staleness = cached.current_age(self._clock()) - cached.freshness_lifetime
        return staleness <= cached.stale_if_error_s

    # Invalidation ------------------------------------------------------------------------
    def invalidate(self, host: bytes, target: bytes) -> None:
        """Drop every stored response for the URI (RFC 9111 §4.4)."""
        variants = self._entries.pop(self.key_for(host, target), None)
        if variants:
            self._bytes -= sum(cached.size for cached in variants)

    def invalidate_after_unsafe(
        self, method: bytes, host: bytes, target: bytes, status: int, resp_headers: Headers
    ) -> None:
        """RFC 9111 §4.4: a non-error response to an unsafe method invalidates the target URI
        and the same-origin Location and Content-Location URIs."""
        if method in _SAFE_METHODS or not 200 <= status < 400:
            return
        self.invalidate(host, target)
        for name in (b"location", b"content-location"):
            value = combined_field(resp_headers, name)
            if value is not None:
                same_origin = _same_origin_target(host, value.strip())
                if same_origin is not None:
                    self.invalidate(host, same_origin)

    # Internals ---------------------------------------------------------------------------
    def _satisfies(self, cached: CachedResponse, directives: Directives, now: float) -> bool:
        """Whether ``cached`` may be served without revalidation (§4.2, §5.2.1)."""
        if cached.no_cache or b"no-cache" in directives:
            return False
        age = cached.current_age(now)
        if b"max-age" in directives:
            max_age = delta_seconds(directives[b"max-age"])
            # max-age=0 is how clients ask for an end-to-end revalidation.
            if max_age is None or max_age == 0 or age > max_age:
                return False
        if b"min-fresh" in directives:
            min_fresh = delta_seconds(directives[b"min-fresh"])
            if min_fresh is None or cached.freshness_lifetime - age < min_fresh:
                return False
        if cached.freshness_lifetime > age:
            return True
        if b"max-stale" in directives and not cached.must_revalidate:
            argument = directives[b"max-stale"]
            if argument is None:
                return True
            max_stale = delta_seconds(argument)
            return max_stale is not None and age - cached.freshness_lifetime <= max_stale
        return False

    def _freshness(
        self, method: bytes, req_headers: Headers, status: int, resp_headers: Headers
    ) -> _Freshness | None:
        """None unless RFC 9111 §3 (and this cache's stricter choices) allow storage."""
        if not self._settings.enabled or method != b"GET":
            return None
        if status < 200 or status in _NEVER_STORED_STATUSES:
            return None
        if b"no-store" in request_directives(req_headers):
            return None
        directives = parse_cache_control(field_values(resp_headers, b"cache-control"))
        if b"must-understand" in directives:
            if status not in _UNDERSTOOD_STATUSES:
                return None
        elif b"no-store" in directives:
            return None
        if b"private" in directives:
            return None
        has_validator = False
        expires: bytes | None = None
        date: bytes | None = None
        for name, value in resp_headers:
            if name == b"set-cookie":
                return None
            if name == b"vary" and b"*" in split_list(value):
                return None
            if name in (b"etag", b"last-modified"):
                has_validator = True
            elif name == b"expires" and expires is None:
                expires = value
            elif name == b"date" and date is None:
                date = value
        authorized = any(name == b"authorization" for name, _ in req_headers)
        if authorized and not (
            b"public" in directives or b"s-maxage" in directives or b"must-revalidate" in directives
        ):
            return None
        no_cache = b"no-cache" in directives
        if b"s-maxage" in directives:
            lifetime = float(delta_seconds(directives[b"s-maxage"]) or 0)
        elif b"max-age" in directives:
            lifetime = float(delta_seconds(directives[b"max-age"]) or 0)
        elif expires is not None:
            expires_at = parse_http_date(expires)
            date_at = parse_http_date(date)
            if date_at is None:
                date_at = self._clock()
            # An invalid Expires (e.g. "0") means already expired (§5.3).
            lifetime = 0.0 if expires_at is None else max(0.0, expires_at - date_at)
        elif no_cache:
            lifetime = 0.0
        else:
            return None
        if (lifetime <= 0 or no_cache) and not has_validator:
            return None
        stale_if_error = delta_seconds(directives.get(b"stale-if-error"))
        return _Freshness(
            lifetime=lifetime,
            must_revalidate=b"must-revalidate" in directives
            or b"proxy-revalidate" in directives
            or b"s-maxage" in directives,
            no_cache=no_cache,
            stale_if_error_s=float(stale_if_error)
            if stale_if_error is not None
            else self._settings.stale_if_error_s,
        )

    def _build(
        self,
        *,
        key: CacheKey,
        req_headers: Headers,
        status: int,
        resp_headers: Headers,
        body: bytes,
        freshness: _Freshness,
        request_time: float | None,
    ) -> CachedResponse:
        now = self._clock()
        headers = _storable_headers(resp_headers)
        date_at = parse_http_date(combined_field(headers, b"date"))
        apparent_age = 0.0 if date_at is None else max(0.0, now - date_at)
        age_field = field_values(resp_headers, b"age")
        age_value = delta_seconds(age_field[0].split(b",")[0].strip()) if age_field else None
        response_delay = 0.0 if request_time is None else max(0.0, now - request_time)
        initial_age = max(apparent_age, (age_value or 0) + response_delay)
        compressible = should_compress(status, headers, len(body), self._settings)
        if compressible:
            headers = vary_accept_encoding(headers)
        etag_field = combined_field(headers, b"etag")
        etags = _ENTITY_TAG.findall(etag_field) if etag_field is not None else []
        last_modified = combined_field(headers, b"last-modified")
        vary = _vary_fields(headers)
        return CachedResponse(
            status=status,
            headers=headers,
            body=body,
            stored_at=now,
            key=key,
            initial_age=initial_age,
            freshness_lifetime=freshness.lifetime,
            etag=etags[0] if etags else None,
            last_modified=last_modified,
            last_modified_at=parse_http_date(last_modified),
            vary=vary,
            vary_values=tuple(_vary_value(req_headers, name) for name in vary),
            must_revalidate=freshness.must_revalidate,
            no_cache=freshness.no_cache,
            stale_if_error_s=freshness.stale_if_error_s,
            compressible=compressible,
            size=_ENTRY_OVERHEAD_BYTES
            + len(body)
            + sum(len(key_part) for key_part in key)
            + sum(len(name) + len(value) + _HEADER_OVERHEAD_BYTES for name, value in headers),
        )

    def _insert(self, cached: CachedResponse) -> None:
        variants = self._entries.get(cached.key)
        if variants is None:
            variants = self._entries[cached.key] = []
        for index, other in enumerate(variants):
            if other.vary == cached.vary and other.vary_values == cached.vary_values:
                del variants[index]
                self._bytes -= other.size
                break
        variants.insert(0, cached)
        self._bytes += cached.size
        while len(variants) > self._settings.variants_per_key_max:
            self._bytes -= variants.pop().size
        self._entries.move_to_end(cached.key)
        self._evict()

    def _evict(self) -> None:
        """Drop least recently used variants until within bytes_max.

        The most recently used key's newest variant is evicted last, and it alone always
        fits (callers check), so the loop ends with it still resident.
        """
        while self._bytes > self._settings.bytes_max:
            key, variants = next(iter(self._entries.items()))
            self._bytes -= variants.pop().size
            if not variants:
                del self._entries[key]

    def _discard_selected(self, key: CacheKey, req_headers: Headers) -> None:
        variants = self._entries.get(key)
        if variants is None:
            return
        cached = _select(variants, req_headers)
        if cached is not None:
            self._remove(cached)

    def _remove(self, cached: CachedResponse) -> None:
        variants = self._entries.get(cached.key)
        if variants is None:
            return
        for index, other in enumerate(variants):
            if other is cached:
                del variants[index]
                self._bytes -= cached.size
                if not variants:
                    del self._entries[cached.key]
                return

    def _is_resident(self, cached: CachedResponse) -> bool:
        variants = self._entries.get(cached.key)
        return variants is not None and any(other is cached for other in variants)

    def _encoded(self, cached: CachedResponse, encoding: bytes) -> EncodedVariant | None:
        """The memoised compressed variant, compressing on first use; None → serve identity."""
        if encoding in cached.encoded:
            return cached.encoded[encoding]
        data = compress(cached.body, encoding, self._settings)
        variant = self._variant(cached, encoding, data) if len(data) < len(cached.body) else None
        extra = 0 if variant is None else len(data)
        if not self._is_resident(cached):
            return variant
        if cached.size + extra > self._settings.bytes_max:
            # The object and this variant together cannot fit: serve without memoising.
            return variant
        cached.encoded[encoding] = variant
        cached.size += extra
        self._bytes += extra
        self._entries.move_to_end(cached.key)
        self._evict()
        return variant

    @staticmethod
    def _variant(cached: CachedResponse, encoding: bytes, data: bytes) -> EncodedVariant:
        etag = None if cached.etag is None else _etag_with_suffix(cached.etag, encoding)
        headers = [pair for pair in cached.headers if pair[0] != b"etag"]
        if etag is not None:
            headers.append((b"etag", etag))
        headers.append((b"content-encoding", encoding))
        return EncodedVariant(headers=headers, body=data, etag=etag)


def with_x_cache(headers: Headers, value: bytes) -> list[Header]:
    """``headers`` plus ``x-cache: HIT|MISS|REVALIDATED`` (any existing x-cache replaced)."""
    out = [pair for pair in headers if pair[0] != b"x-cache"]
    out.append((b"x-cache", value))
    return out


class CoalescingOverflow(Exception):
    """More callers are waiting on one key than ``coalesce_waiters_max``; answer 503."""


class CoalescedFetchCancelled(Exception):
    """The shared fetch was cancelled from inside while this caller still waited for it."""


class _Flight(Generic[T]):
    __slots__ = ("shareable", "task", "waiters")

    def __init__(self, task: asyncio.Future[T], shareable: Callable[[T], bool] | None) -> None:
        self.task = task
        # The leader's predicate: it closes over the request the response answered.
        self.shareable = shareable
        self.waiters = 0


class Coalescer(Generic[T]):
    """Collapse concurrent cache misses on one key into a single upstream fetch.

    The fetch runs in its own task, so the caller that started it (the leader) can be
    cancelled — its client went away — without stranding the others; only when every
    waiter has gone is the fetch cancelled. An exception from the fetch reaches every
    waiter.

    Pass ``shareable`` (e.g. built on ``EdgeCache.response_is_shareable``): a result it
    rejects — a private response, one that varies on request headers — is returned to
    the leader only, and each follower performs its own fetch. A result is shared only
    if the *leader's* predicate accepts it (it judges the request the response answered,
    e.g. one carrying Authorization) and the follower's own predicate does too. Without
    any predicate, every result is shared.
    """

    def __init__(self, *, waiters_max: int) -> None:
        self._waiters_max = waiters_max
        self._flights: dict[Hashable, _Flight[T]] = {}

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    async def run(
        self,
        key: Hashable,
        fetch: Callable[[], Awaitable[T]],
        *,
        shareable: Callable[[T], bool] | None = None,
    ) -> T:
        flight = self._flights.get(key)
        leader = flight is None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(fetch()), shareable)
            self._flights[key] = flight
            flight.task.add_done_callback(self._lander(key, flight))
        elif flight.waiters >= self._waiters_max:
            raise CoalescingOverflow(f"{flight.waiters} callers already wait on this key")
        flight.waiters += 1
        try:
            result = await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if flight.task.cancelled() and (task is None or task.cancelling() == 0):
                raise CoalescedFetchCancelled("the shared fetch was cancelled") from None
            raise
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                # Nobody wants the answer any more: stop the fetch, and let the next
                # caller start a fresh one instead of joining a cancelled flight.
                self._land(key, flight)
                flight.task.cancel()
        if leader:
            return result
        if (flight.shareable is None or flight.shareable(result)) and (
            shareable is None or shareable(result)
        ):
            return result
        return await fetch()

    def _lander(self, key: Hashable, flight: _Flight[T]) -> Callable[[object], None]:
        def land(_done: object) -> None:
            self._land(key, flight)

        return land

    def _land(self, key: Hashable, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


# Module helpers -------------------------------------------------------------------------
def _select(variants: list[CachedResponse], req_headers: Headers) -> CachedResponse | None:
    """The newest stored variant whose Vary'd request fields match (RFC 9111 §4.1)."""
    for cached in variants:
        if not cached.vary:
            return cached
        if all(
            _vary_value(req_headers, name) == value
            for name, value in zip(cached.vary, cached.vary_values, strict=True)
        ):
            return cached
    return None


def _vary_fields(headers: Headers) -> tuple[bytes, ...]:
    """Lower-cased Vary field names, without Accept-Encoding for identity responses.

    The edge derives every content coding from the identity copy itself, so an identity
    response's Accept-Encoding variance is handled by negotiation, not by the key.
    """
    names: list[bytes] = []
    identity = content_encoding_of(headers) is None
    for value in field_values(headers, b"vary"):
        for member in split_list(value):
            name = member.lower()
            if name not in names and not (identity and name == b"accept-encoding"):
                names.append(name)
    return tuple(names)


def _vary_value(headers: Headers, name: bytes) -> bytes | None:
    """The request's value for a Vary'd field, whitespace-normalised (RFC 9111 §4.1)."""
    values = field_values(headers, name)
    if not values:
        return None
    return b",".join(member for value in values for member in split_list(value))


def _storable_headers(headers: Headers) -> list[Header]:
    """Drop hop-by-hop fields, those Connection names (RFC 9110 §7.6.1) and recomputed ones."""
    connection_named = {
        member.lower()
        for value in field_values(headers, b"connection")
        for member in split_list(value)
    }
    return [
        (name, value)
        for name, value in headers
        if name not in HOP_BY_HOP and name not in _RECOMPUTED and name not in connection_named
    ]


def _merge_304(stored: list[Header], update: Headers) -> list[Header]:
    """RFC 9111 §3.2: the 304's fields replace the stored ones of the same name."""
    replacements = [
        (name, value)
        for name, value in _storable_headers(update)
        if name not in _NOT_UPDATED_BY_304
    ]
    replaced = {name for name, _ in replacements}
    return [pair for pair in stored if pair[0] not in replaced] + replacements


def _validators_match(cached: CachedResponse, resp_headers_304: Headers) -> bool:
    """RFC 9111 §4.3.4: does the 304 identify ``cached`` as the selected representation?"""
    etag_field = combined_field(resp_headers_304, b"etag")
    if etag_field is not None:
        tags: list[bytes] = _ENTITY_TAG.findall(etag_field)
        if not tags or cached.etag is None:
            return False
        tag = tags[0]
        if tag.startswith(b"W/"):
            return _opaque(tag) == _opaque(cached.etag)
        return tag == cached.etag
    last_modified = combined_field(resp_headers_304, b"last-modified")
    if last_modified is not None:
        return last_modified == cached.last_modified
    return True


def _not_modified(
    cached: CachedResponse,
    etag: bytes | None,
    if_none_match: bytes | None,
    if_modified_since: bytes | None,
) -> bool:
    """RFC 9110 §13.2.2 order: If-None-Match if present, else If-Modified-Since."""
    if if_none_match is not None:
        if if_none_match.strip() == b"*":
            return True
        if etag is None:
            return False
        opaque = _opaque(etag)
        return any(_opaque(tag) == opaque for tag in _ENTITY_TAG.findall(if_none_match))
    if if_modified_since is not None and cached.last_modified_at is not None:
        since = parse_http_date(if_modified_since)
        return since is not None and cached.last_modified_at <= since
    return False


def _opaque(tag: bytes) -> bytes:
    """The opaque-tag, for weak comparison (RFC 9110 §8.8.3.2)."""
    return tag[2:] if tag.startswith(b"W/") else tag


def _etag_with_suffix(etag: bytes, encoding: bytes) -> bytes | None:
    """``"abc"`` → ``"abc-br"``; None for a malformed tag (then the variant has no ETag)."""
    if len(etag) < 2 or not etag.endswith(b'"'):
        return None
    return etag[:-1] + b"-" + encoding + b'"'


def _same_origin_target(host: bytes, reference: bytes) -> bytes | None:
    """The origin-form target of a Location/Content-Location on ``host``, else None (§4.4)."""
    if reference.startswith(b"/") and not reference.startswith(b"//"):
        return reference
    for scheme in (b"https://", b"http://"):
        if reference[: len(scheme)].lower() == scheme:
            authority, slash, path = reference[len(scheme) :].partition(b"/")
            if authority.lower() != host.lower():
                return None
            return slash + path if slash else b"/"
    return None
