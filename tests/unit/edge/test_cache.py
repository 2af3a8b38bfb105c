"""The edge's RFC 9111 shared cache and request coalescing."""

from __future__ import annotations

import asyncio
import gzip
import random

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.config import CacheSettings
from strongroom.edge import cache as cache_module
from strongroom.edge.cache import (
    FRESH,
    MISS,
    STALE,
    XCACHE_MISS,
    XCACHE_REVALIDATED,
    CacheLookup,
    Coalescer,
    CoalescingOverflow,
    EdgeCache,
    with_x_cache,
)
from strongroom.edge.compress import compress

Headers = list[tuple[bytes, bytes]]
HOST = b"api.example"
TARGET = b"/v1/public/thing"
BODY = b'{"hello": "world"}'
JSON_BODY = b'{"items": [' + b", ".join(b'{"id": %d}' % i for i in range(200)) + b"]}"
DATE_1994 = b"Sun, 06 Nov 1994 08:49:37 GMT"
T0 = 784111777.0  # DATE_1994 as epoch seconds


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_cache(clock: Clock | None = None, **overrides: object) -> EdgeCache:
    return EdgeCache(CacheSettings.model_validate(overrides), clock=clock or Clock())


def resp(cache_control: bytes | None = b"max-age=60", *extra: tuple[bytes, bytes]) -> Headers:
    headers: Headers = [(b"content-type", b"application/octet-stream")]
    if cache_control is not None:
        headers.append((b"cache-control", cache_control))
    headers.extend(extra)
    return headers


def put(
    cache: EdgeCache,
    headers: Headers,
    *,
    req: Headers | None = None,
    status: int = 200,
    body: bytes = BODY,
    target: bytes = TARGET,
) -> bool:
    key = cache.lookup(b"GET", target, HOST, req or []).key
    return cache.store(key, req or [], status, headers, body)


def look(cache: EdgeCache, req: Headers | None = None, target: bytes = TARGET) -> CacheLookup:
    return cache.lookup(b"GET", target, HOST, req or [])


def header(headers: Headers, name: bytes) -> bytes | None:
    values = [value for field, value in headers if field == name]
    return values[0] if values else None


# Which requests consult the cache ------------------------------------------------------------
def test_get_and_head_are_cacheable_requests() -> None:
    cache = make_cache()
    assert cache.request_is_cacheable(b"GET", [])
    assert cache.request_is_cacheable(b"HEAD", [])


def test_unsafe_methods_bypass_the_cache() -> None:
    assert not make_cache().request_is_cacheable(b"POST", [])


def test_request_no_store_bypasses_the_cache() -> None:
    """RFC 9111 §5.2.1.5: no-store in a request."""
    assert not make_cache().request_is_cacheable(b"GET", [(b"cache-control", b"no-store")])


def test_range_requests_bypass_the_cache() -> None:
    """Partial content is not implemented, so ranges go to the pod (RFC 9111 §3.3, §3.4)."""
    assert not make_cache().request_is_cacheable(b"GET", [(b"range", b"bytes=0-1")])


def test_disabled_cache_consults_nothing() -> None:
    assert not make_cache(enabled=False).request_is_cacheable(b"GET", [])


# Storage (RFC 9111 §3) ---------------------------------------------------------------------
def test_response_with_max_age_is_stored_and_served_fresh() -> None:
    """RFC 9111 §3, §4.2: explicit freshness makes a response storable and reusable."""
    cache = make_cache()
    assert put(cache, resp())
    lookup = look(cache)
    assert lookup.state is FRESH
    assert lookup.response is not None
    assert lookup.response.body == BODY


def test_empty_cache_is_a_miss() -> None:
    assert look(make_cache()).state is MISS


def test_no_store_response_is_not_stored() -> None:
    """RFC 9111 §5.2.2.5."""
    cache = make_cache()
    assert not put(cache, resp(b"no-store, max-age=60"))
    assert look(cache).state is MISS


def test_private_response_is_not_stored_by_a_shared_cache() -> None:
    """RFC 9111 §5.2.2.7."""
    assert not put(make_cache(), resp(b"private, max-age=60"))


def test_qualified_private_is_treated_as_private() -> None:
    """RFC 9111 §5.2.2.7 allows treating private="field" as unqualified."""
    assert not put(make_cache(), resp(b'private="x-user", max-age=60'))


def test_response_with_set_cookie_is_not_stored() -> None:
    """A cookie is one client's; a shared cache must not hand it to another."""
    assert not put(make_cache(), resp(b"max-age=60", (b"set-cookie", b"sid=1")))


def test_request_no_store_prevents_storage() -> None:
    """RFC 9111 §5.2.1.5."""
    assert not put(make_cache(), resp(), req=[(b"cache-control", b"no-store")])


def test_response_without_explicit_freshness_is_not_stored() -> None:
    """RFC 9111 §4.2.2: heuristic freshness is optional; this cache never uses it."""
    cache = make_cache()
    headers = resp(None, (b"last-modified", DATE_1994))
    assert not cache.response_is_storable(b"GET", [], 200, headers)


def test_vary_star_is_not_stored() -> None:
    """RFC 9111 §4.1: Vary: * never matches a later request."""
    assert not put(make_cache(), resp(b"max-age=60", (b"vary", b"*")))


def test_partial_content_is_not_stored() -> None:
    """RFC 9111 §3.3: storing 206 needs range support this cache lacks."""
    assert not put(make_cache(), resp(), status=206)


def test_head_response_is_not_stored() -> None:
    """Only GET responses are stored: a HEAD response has no content to reuse."""
    cache = make_cache()
    assert not cache.response_is_storable(b"HEAD", [], 200, resp())


def test_authorized_response_without_permission_is_not_stored() -> None:
    """RFC 9111 §3.5: a request with Authorization needs public, s-maxage or must-revalidate."""
    cache = make_cache()
    assert not put(cache, resp(b"max-age=60"), req=[(b"authorization", b"Bearer t")])
    assert look(cache).state is MISS


@pytest.mark.parametrize(
    "cache_control", [b"public, max-age=60", b"s-maxage=60", b"max-age=60, must-revalidate"]
)
def test_authorized_response_with_permission_is_stored(cache_control: bytes) -> None:
    """RFC 9111 §3.5: public, s-maxage and must-revalidate each allow shared storage."""
    assert put(make_cache(), resp(cache_control), req=[(b"authorization", b"Bearer t")])


def test_must_understand_overrides_no_store_for_understood_status() -> None:
    """RFC 9111 §5.2.2.3: a cache understanding the status code ignores no-store."""
    assert put(make_cache(), resp(b"must-understand, no-store, max-age=60"))


def test_must_understand_with_unknown_status_is_not_stored() -> None:
    """RFC 9111 §5.2.2.3."""
    assert not put(make_cache(), resp(b"must-understand, max-age=60"), status=299)


def test_no_cache_response_without_validator_is_not_stored() -> None:
    """Storing it would buy nothing: every use needs a full fetch (RFC 9111 §5.2.2.4)."""
    assert not put(make_cache(), resp(b"no-cache"))


def test_no_cache_response_with_validator_is_stored_but_always_revalidated() -> None:
    """RFC 9111 §5.2.2.4: no-cache allows storage but not reuse without validation."""
    cache = make_cache()
    assert put(cache, resp(b"no-cache, max-age=600", (b"etag", b'"v1"')))
    lookup = look(cache)
    assert lookup.state is STALE
    assert lookup.conditional_headers == [(b"if-none-match", b'"v1"')]


def test_object_larger_than_object_bytes_max_is_not_stored() -> None:
    cache = make_cache(object_bytes_max=8)
    assert not put(cache, resp())
    assert look(cache).state is MISS


def test_unstorable_response_replaces_the_stored_one() -> None:
    """The origin's newest answer wins: a now-private resource stops being served."""
    cache = make_cache()
    put(cache, resp())
    put(cache, resp(b"private"))
    assert look(cache).state is MISS


# Freshness (RFC 9111 §4.2) -------------------------------------------------------------------
def test_response_becomes_stale_after_max_age() -> None:
    """RFC 9111 §4.2: fresh while freshness_lifetime > current_age."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=60", (b"etag", b'"a"')))
    clock.now += 59
    assert look(cache).state is FRESH
    clock.now += 2
    assert look(cache).state is STALE


def test_s_maxage_overrides_max_age() -> None:
    """RFC 9111 §5.2.2.10: a shared cache uses s-maxage over max-age."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=600, s-maxage=10", (b"etag", b'"a"')))
    clock.now += 11
    assert look(cache).state is STALE


def test_expires_minus_date_is_the_lifetime() -> None:
    """RFC 9111 §4.2.1: without max-age, freshness is Expires minus Date."""
    clock = Clock()
    cache = make_cache(clock)
    expires = b"Sun, 06 Nov 1994 08:50:37 GMT"  # Date + 60 s
    put(cache, resp(None, (b"date", DATE_1994), (b"expires", expires), (b"etag", b'"a"')))
    clock.now += 59
    assert look(cache).state is FRESH
    clock.now += 2
    assert look(cache).state is STALE


def test_max_age_overrides_expires() -> None:
    """RFC 9111 §5.3: Expires is ignored when max-age is present."""
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"date", DATE_1994), (b"expires", b"0")))
    assert look(cache).state is FRESH


def test_invalid_expires_means_already_expired() -> None:
    """RFC 9111 §5.3: an invalid Expires such as 0 is a time in the past."""
    cache = make_cache()
    assert not put(cache, resp(None, (b"expires", b"0")))
    assert put(cache, resp(None, (b"expires", b"0"), (b"etag", b'"a"')))
    assert look(cache).state is STALE


def test_upstream_age_counts_toward_current_age() -> None:
    """RFC 9111 §4.2.3: the Age received is part of corrected_initial_age."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=60", (b"age", b"50"), (b"etag", b'"a"')))
    clock.now += 9
    assert look(cache).state is FRESH
    clock.now += 2
    assert look(cache).state is STALE


def test_old_date_counts_as_apparent_age() -> None:
    """RFC 9111 §4.2.3: apparent_age = response_time - date_value."""
    clock = Clock(T0 + 30)
    cache = make_cache(clock)
    put(cache, resp(b"max-age=60", (b"date", DATE_1994), (b"etag", b'"a"')))
    clock.now += 31
    assert look(cache).state is STALE


def test_upstream_latency_counts_toward_age() -> None:
    """RFC 9111 §4.2.3: response_delay = response_time - request_time."""
    clock = Clock()
    cache = make_cache(clock)
    key = look(cache).key
    cache.store(key, [], 200, resp(b"max-age=10"), BODY, request_time=T0 - 4)
    lookup = look(cache)
    assert lookup.response is not None
    assert lookup.response.current_age(clock.now) == 4


def test_request_no_cache_forces_revalidation() -> None:
    """RFC 9111 §5.2.1.4."""
    cache = make_cache()
    put(cache, resp())
    assert look(cache, [(b"cache-control", b"no-cache")]).state is STALE


def test_request_pragma_no_cache_forces_revalidation() -> None:
    """RFC 9111 §5.4."""
    cache = make_cache()
    put(cache, resp())
    assert look(cache, [(b"pragma", b"no-cache")]).state is STALE


def test_request_max_age_zero_forces_revalidation() -> None:
    """RFC 9111 §5.2.1.1: max-age=0 accepts no response older than zero seconds."""
    cache = make_cache()
    put(cache, resp())
    assert look(cache, [(b"cache-control", b"max-age=0")]).state is STALE


def test_request_max_age_rejects_older_responses() -> None:
    """RFC 9111 §5.2.1.1."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp())
    clock.now += 20
    assert look(cache, [(b"cache-control", b"max-age=10")]).state is STALE
    assert look(cache, [(b"cache-control", b"max-age=30")]).state is FRESH


def test_request_min_fresh_needs_remaining_freshness() -> None:
    """RFC 9111 §5.2.1.3."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp())
    clock.now += 50
    assert look(cache, [(b"cache-control", b"min-fresh=20")]).state is STALE
    assert look(cache, [(b"cache-control", b"min-fresh=5")]).state is FRESH


def test_request_max_stale_accepts_a_stale_response() -> None:
    """RFC 9111 §5.2.1.2."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=10"))
    clock.now += 15
    assert look(cache, [(b"cache-control", b"max-stale=10")]).state is FRESH
    assert look(cache, [(b"cache-control", b"max-stale=2")]).state is STALE
    assert look(cache, [(b"cache-control", b"max-stale")]).state is FRESH


@pytest.mark.parametrize(
    "cache_control",
    [b"max-age=10, must-revalidate", b"max-age=10, proxy-revalidate", b"s-maxage=10"],
)
def test_revalidate_directives_forbid_stale_serving(cache_control: bytes) -> None:
    """RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10: no stale use, even when the client allows it."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(cache_control, (b"etag", b'"a"')))
    clock.now += 15
    lookup = look(cache, [(b"cache-control", b"max-stale")])
    assert lookup.state is STALE
    assert lookup.response is not None
    assert not cache.usable_on_error(lookup.response)


def test_stale_response_may_answer_when_pods_fail_for_a_bounded_time() -> None:
    """RFC 9111 §4.2.4: a disconnected cache may serve stale, within stale_if_error_s."""
    clock = Clock()
    cache = make_cache(clock, stale_if_error_s=30)
    put(cache, resp(b"max-age=10", (b"etag", b'"a"')))
    clock.now += 35
    stale = look(cache).response
    assert stale is not None
    assert cache.usable_on_error(stale)
    clock.now += 10
    assert not cache.usable_on_error(stale)


def test_stale_if_error_directive_sets_the_window() -> None:
    """RFC 5861 §4: the origin's stale-if-error overrides our default."""
    clock = Clock()
    cache = make_cache(clock, stale_if_error_s=30)
    put(cache, resp(b"max-age=10, stale-if-error=300", (b"etag", b'"a"')))
    clock.now += 200
    stale = look(cache).response
    assert stale is not None
    assert cache.usable_on_error(stale)


def test_only_if_cached_is_reported_on_a_miss() -> None:
    """RFC 9111 §5.2.1.7: the proxy answers 504 instead of fetching."""
    lookup = look(make_cache(), [(b"cache-control", b"only-if-cached")])
    assert lookup.state is MISS
    assert lookup.only_if_cached


# Validation (RFC 9111 §4.3) ------------------------------------------------------------------
def test_stale_lookup_offers_both_validators() -> None:
    """RFC 9111 §4.3.1: send If-None-Match for an ETag and If-Modified-Since for Last-Modified."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'"v1"'), (b"last-modified", DATE_1994)))
    clock.now += 2
    lookup = look(cache)
    assert lookup.state is STALE
    assert lookup.conditional_headers == [
        (b"if-none-match", b'"v1"'),
        (b"if-modified-since", DATE_1994),
    ]


def test_fresh_and_miss_lookups_carry_no_validators() -> None:
    cache = make_cache()
    assert look(cache).conditional_headers == []
    put(cache, resp(b"max-age=60", (b"etag", b'"v1"')))
    assert look(cache).conditional_headers == []


def test_304_freshens_the_stored_response() -> None:
    """RFC 9111 §4.3.4: update headers and restart the age clock."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=10", (b"etag", b'"v1"'), (b"x-version", b"1")))
    clock.now += 20
    lookup = look(cache)
    fresh = cache.freshen(
        lookup.key,
        [],
        [(b"etag", b'"v1"'), (b"cache-control", b"max-age=30"), (b"x-version", b"2")],
    )
    assert fresh is not None
    assert fresh.stored_at == clock.now
    assert header(fresh.headers, b"x-version") == b"2"
    assert fresh.body == BODY
    assert look(cache).state is FRESH
    clock.now += 29
    assert look(cache).state is FRESH


def test_age_of_a_304_counts_toward_the_refreshed_age() -> None:
    """RFC 9111 §4.2.3 applied to the freshened response (§4.3.4)."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'"v1"')))
    clock.now += 2
    fresh = cache.freshen(
        look(cache).key,
        [],
        [(b"etag", b'"v1"'), (b"cache-control", b"max-age=30"), (b"age", b"20")],
    )
    assert fresh is not None
    assert header(fresh.headers, b"age") is None
    clock.now += 9
    assert look(cache).state is FRESH
    clock.now += 2
    assert look(cache).state is STALE


def test_304_cannot_change_content_headers() -> None:
    """RFC 9111 §3.2: Content-Length (and what the stored body depends on) are not updated."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'"v1"')))
    clock.now += 2
    fresh = cache.freshen(
        look(cache).key,
        [],
        [(b"etag", b'"v1"'), (b"content-length", b"0"), (b"content-encoding", b"gzip")],
    )
    assert fresh is not None
    assert header(fresh.headers, b"content-length") is None
    assert header(fresh.headers, b"content-encoding") is None


def test_304_with_a_different_strong_etag_does_not_freshen() -> None:
    """RFC 9111 §4.3.4: the 304's strong validator selects which stored response to update."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'"v1"')))
    clock.now += 2
    assert cache.freshen(look(cache).key, [], [(b"etag", b'"v2"')]) is None
    assert look(cache).state is MISS


def test_304_with_a_weak_etag_matches_weakly() -> None:
    """RFC 9111 §4.3.4: weak validators identify the most recent matching response."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'W/"v1"')))
    clock.now += 2
    assert cache.freshen(look(cache).key, [], [(b"etag", b'W/"v1"')]) is not None


def test_304_without_validators_freshens_the_revalidated_response() -> None:
    """RFC 9111 §4.3.4: no validator in the 304, one stored response → update it."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"last-modified", DATE_1994)))
    clock.now += 2
    assert cache.freshen(look(cache).key, [], [(b"cache-control", b"max-age=5")]) is not None


def test_304_that_forbids_storage_answers_once_and_is_dropped() -> None:
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=1", (b"etag", b'"v1"')))
    clock.now += 2
    fresh = cache.freshen(
        look(cache).key, [], [(b"etag", b'"v1"'), (b"cache-control", b"no-store")]
    )
    assert fresh is not None
    assert look(cache).state is MISS


def test_freshen_of_an_unknown_key_is_none() -> None:
    cache = make_cache()
    assert cache.freshen(look(cache).key, [], [(b"etag", b'"v1"')]) is None


# Serving -------------------------------------------------------------------------------------
def served(
    cache: EdgeCache, req: Headers | None = None, **kwargs: bytes
) -> tuple[int, Headers, bytes]:
    lookup = look(cache, req)
    assert lookup.response is not None
    return cache.serve(lookup.response, req or [], **kwargs)


def test_hit_carries_age_content_length_and_x_cache() -> None:
    """RFC 9111 §5.1: a response from cache carries Age."""
    clock = Clock()
    cache = make_cache(clock)
    put(cache, resp(b"max-age=60", (b"age", b"3")))
    clock.now += 7.9
    status, headers, body = served(cache)
    assert status == 200
    assert body == BODY
    assert header(headers, b"age") == b"10"
    assert header(headers, b"content-length") == str(len(BODY)).encode()
    assert header(headers, b"x-cache") == b"HIT"
    assert [name for name, _ in headers].count(b"age") == 1


def test_serve_marks_revalidated_responses() -> None:
    cache = make_cache()
    put(cache, resp())
    _, headers, _ = served(cache, x_cache=XCACHE_REVALIDATED)
    assert header(headers, b"x-cache") == b"REVALIDATED"


def test_with_x_cache_replaces_an_existing_marker() -> None:
    headers = with_x_cache([(b"x-cache", b"HIT"), (b"a", b"1")], XCACHE_MISS)
    assert headers == [(b"a", b"1"), (b"x-cache", b"MISS")]


def test_head_is_served_from_the_stored_get_without_a_body() -> None:
    """RFC 9110 §9.3.2: HEAD is GET without content; the cache key normalises HEAD to GET."""
    cache = make_cache()
    put(cache, resp())
    lookup = cache.lookup(b"HEAD", TARGET, HOST, [])
    assert lookup.state is FRESH
    assert lookup.response is not None
    status, headers, body = cache.serve(lookup.response, [], method=b"HEAD")
    assert (status, body) == (200, b"")
    assert header(headers, b"content-length") == str(len(BODY)).encode()


def test_host_is_case_insensitive_in_the_key() -> None:
    """RFC 9110 §4.2.3: the host is normalised to lower case."""
    cache = make_cache()
    put(cache, resp())
    assert cache.lookup(b"GET", TARGET, b"API.Example", []).state is FRESH


def test_hop_by_hop_fields_are_not_stored() -> None:
    """RFC 9111 §3.1: hop-by-hop fields and those named in Connection are not stored."""
    cache = make_cache()
    put(
        cache,
        resp(
            b"max-age=60",
            (b"connection", b"x-trace"),
            (b"x-trace", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"x-kept", b"yes"),
        ),
    )
    _, headers, _ = served(cache)
    names = {name for name, _ in headers}
    assert names.isdisjoint({b"connection", b"x-trace", b"keep-alive", b"transfer-encoding"})
    assert b"x-kept" in names


def test_matching_if_none_match_is_answered_with_304() -> None:
    """RFC 9110 §13.1.2: If-None-Match uses the weak comparison."""
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"etag", b'"v1"'), (b"x-other", b"1")))
    for value in (b'"v1"', b'W/"v1"', b'"v0", "v1"', b"*"):
        status, headers, body = served(cache, [(b"if-none-match", value)])
        assert (status, body) == (304, b"")
        assert header(headers, b"etag") == b'"v1"'
        assert header(headers, b"x-other") is None  # RFC 9110 §15.4.5 field set


def test_non_matching_if_none_match_gets_the_full_response() -> None:
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"etag", b'"v1"')))
    status, _, body = served(cache, [(b"if-none-match", b'"v2"')])
    assert (status, body) == (200, BODY)


def test_if_modified_since_is_answered_with_304_when_not_modified() -> None:
    """RFC 9110 §13.1.3."""
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"last-modified", DATE_1994)))
    assert served(cache, [(b"if-modified-since", DATE_1994)])[0] == 304
    assert served(cache, [(b"if-modified-since", b"Sat, 05 Nov 1994 08:49:37 GMT")])[0] == 200


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    """RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present."""
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"etag", b'"v1"'), (b"last-modified", DATE_1994)))
    req = [(b"if-none-match", b'"v2"'), (b"if-modified-since", DATE_1994)]
    assert served(cache, req)[0] == 200


def test_conditionals_do_not_apply_to_error_responses() -> None:
    """RFC 9110 §13.2.1: preconditions are ignored when the response is not 2xx."""
    cache = make_cache()
    put(cache, resp(b"max-age=60", (b"etag", b'"v1"')), status=404)
    assert served(cache, [(b"if-none-match", b"*")])[0] == 404


# Compression of cached objects ----------------------------------------------------------------
def json_resp(*extra: tuple[bytes, bytes]) -> Headers:
    return [
        (b"content-type", b"application/json"),
        (b"cache-control", b"max-age=60"),
        (b"etag", b'"j1"'),
        *extra,
    ]


def test_hit_is_compressed_for_a_client_accepting_gzip() -> None:
    cache = make_cache()
    put(cache, json_resp(), body=JSON_BODY)
    status, headers, body = served(cache, [(b"accept-encoding", b"gzip")])
    assert status == 200
    assert gzip.decompress(body) == JSON_BODY
    assert header(headers, b"content-encoding") == b"gzip"
    assert header(headers, b"content-length") == str(len(body)).encode()
    assert header(headers, b"vary") == b"accept-encoding"


def test_compressed_variant_etag_carries_a_coding_suffix() -> None:
    """Distinct representations need distinct strong validators (RFC 9110 §8.8.3)."""
    cache = make_cache()
    put(cache, json_resp(), body=JSON_BODY)
    _, headers, body = served(cache, [(b"accept-encoding", b"br")])
    assert brotli.decompress(body) == JSON_BODY
    assert header(headers, b"etag") == b'"j1-br"'


def test_if_none_match_compares_with_the_served_variant() -> None:
    cache = make_cache()
    put(cache, json_resp(), body=JSON_BODY)
    gzip_req = [(b"accept-encoding", b"gzip")]
    assert served(cache, [*gzip_req, (b"if-none-match", b'"j1-gzip"')])[0] == 304
    assert served(cache, [*gzip_req, (b"if-none-match", b'"j1"')])[0] == 200
    assert served(cache, [(b"if-none-match", b'"j1"')])[0] == 304


def test_identity_hit_of_a_compressible_object_still_says_vary() -> None:
    """RFC 9110 §12.5.5: the response varies on Accept-Encoding whichever coding was chosen."""
    cache = make_cache()
    put(cache, json_resp(), body=JSON_BODY)
    _, headers, body = served(cache)
    assert body == JSON_BODY
    assert header(headers, b"content-encoding") is None
    assert header(headers, b"vary") == b"accept-encoding"


def test_compressed_variant_is_memoised(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def counting(body: bytes, encoding: bytes, settings: CacheSettings) -> bytes:
        calls.append(encoding)
        return compress(body, encoding, settings)

    monkeypatch.setattr(cache_module, "compress", counting)
    cache = make_cache()
    put(cache, json_resp(), body=JSON_BODY)
    before = cache.bytes_used
    for _ in range(3):
        served(cache, [(b"accept-encoding", b"gzip")])
    assert calls == [b"gzip"]
    assert cache.bytes_used > before


def test_body_that_does_not_shrink_is_served_identity() -> None:
    cache = make_cache()
    noise = random.Random(0).randbytes(2048)
    put(cache, json_resp(), body=noise)
    for _ in range(2):
        _, headers, body = served(cache, [(b"accept-encoding", b"gzip")])
        assert body == noise
        assert header(headers, b"content-encoding") is None
        assert header(headers, b"etag") == b'"j1"'


def test_no_transform_response_is_served_identity() -> None:
    """RFC 9111 §5.2.2.6."""
    cache = make_cache()
    headers = json_resp()
    headers[1] = (b"cache-control", b"max-age=60, no-transform")
    put(cache, headers, body=JSON_BODY)
    _, out, body = served(cache, [(b"accept-encoding", b"gzip")])
    assert body == JSON_BODY
    assert header(out, b"content-encoding") is None


# Vary (RFC 9111 §4.1) ------------------------------------------------------------------------
def test_vary_selects_by_request_header_value() -> None:
    """RFC 9111 §4.1: a stored response is reused only if Vary'd fields match."""
    cache = make_cache()
    en = [(b"accept-language", b"en")]
    put(cache, resp(b"max-age=60", (b"vary", b"Accept-Language")), req=en, body=b"hello")
    assert look(cache, en).state is FRESH
    assert look(cache, [(b"accept-language", b"de")]).state is MISS
    assert look(cache).state is MISS


def test_variants_for_different_values_coexist() -> None:
    cache = make_cache()
    en, de = [(b"accept-language", b"en")], [(b"accept-language", b"de")]
    vary = resp(b"max-age=60", (b"vary", b"accept-language"))
    put(cache, vary, req=en, body=b"hello")
    put(cache, vary, req=de, body=b"hallo")
    assert served(cache, en)[2] == b"hello"
    assert served(cache, de)[2] == b"hallo"


def test_vary_values_are_whitespace_normalised() -> None:
    """RFC 9111 §4.1: values may be normalised in ways that keep their semantics."""
    cache = make_cache()
    vary = resp(b"max-age=60", (b"vary", b"accept-language"))
    put(cache, vary, req=[(b"accept-language", b"en,  de")])
    assert look(cache, [(b"accept-language", b"en, de")]).state is FRESH


def test_vary_accept_encoding_on_identity_does_not_split_the_cache() -> None:
    """The edge derives every coding from the identity copy, so one entry serves all."""
    cache = make_cache()
    put(cache, json_resp((b"vary", b"accept-encoding")), req=[(b"accept-encoding", b"gzip")])
    assert look(cache, [(b"accept-encoding", b"br")]).state is FRESH


def test_variants_per_key_are_bounded() -> None:
    cache = make_cache(variants_per_key_max=2)
    vary = resp(b"max-age=60", (b"vary", b"x-v"))
    for value in (b"1", b"2", b"3"):
        put(cache, vary, req=[(b"x-v", value)])
    assert look(cache, [(b"x-v", b"1")]).state is MISS
    assert look(cache, [(b"x-v", b"3")]).state is FRESH
    assert len(cache) == 2


# Invalidation (RFC 9111 §4.4) ----------------------------------------------------------------
def test_invalidate_removes_the_uri() -> None:
    cache = make_cache()
    put(cache, resp())
    cache.invalidate(HOST, TARGET)
    assert look(cache).state is MISS
    assert cache.bytes_used == 0


def test_unsafe_success_invalidates_target_and_same_origin_location() -> None:
    """RFC 9111 §4.4: also the Location and Content-Location URIs on the same host."""
    cache = make_cache()
    put(cache, resp())
    put(cache, resp(), target=b"/v1/other")
    put(cache, resp(), target=b"/v1/third")
    cache.invalidate_after_unsafe(
        b"POST",
        HOST,
        TARGET,
        201,
        [(b"location", b"https://api.example/v1/other"), (b"content-location", b"/v1/third")],
    )
    assert look(cache).state is MISS
    assert look(cache, target=b"/v1/other").state is MISS
    assert look(cache, target=b"/v1/third").state is MISS


def test_unsafe_error_does_not_invalidate() -> None:
    """RFC 9111 §4.4: only non-error (2xx/3xx) responses invalidate."""
    cache = make_cache()
    put(cache, resp())
    cache.invalidate_after_unsafe(b"DELETE", HOST, TARGET, 500, [])
    assert look(cache).state is FRESH


def test_safe_method_does_not_invalidate() -> None:
    cache = make_cache()
    put(cache, resp())
    cache.invalidate_after_unsafe(b"GET", HOST, TARGET, 200, [])
    assert look(cache).state is FRESH


def test_location_on_another_host_is_not_invalidated() -> None:
    """RFC 9111 §4.4: a cache must not invalidate URIs of a different origin."""
    cache = make_cache()
    put(cache, resp(), target=b"/v1/other")
    cache.invalidate_after_unsafe(
        b"PUT", HOST, TARGET, 200, [(b"location", b"https://evil.example/v1/other")]
    )
    assert look(cache, target=b"/v1/other").state is FRESH


# Bounds --------------------------------------------------------------------------------------
def test_least_recently_used_is_evicted_first() -> None:
    cache = make_cache(bytes_max=3000)
    put(cache, resp(), target=b"/a", body=b"a" * 700)
    put(cache, resp(), target=b"/b", body=b"b" * 700)
    look(cache, target=b"/a")  # /a is now the most recently used
    put(cache, resp(), target=b"/c", body=b"c" * 700)
    assert look(cache, target=b"/b").state is MISS
    assert look(cache, target=b"/a").state is FRESH
    assert look(cache, target=b"/c").state is FRESH


operations = st.lists(
    st.tuples(
        st.sampled_from(["store", "hit", "invalidate", "vary"]),
        st.sampled_from([b"/a", b"/b", b"/c", b"/d", b"/e"]),
        st.integers(min_value=0, max_value=3000),
        st.sampled_from([b"gzip", b"br", b"identity"]),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_cache_never_exceeds_bytes_max(ops: list[tuple[str, bytes, int, bytes]]) -> None:
    """Invariant: accounted bytes stay within bytes_max and equal the stored sizes."""
    cache = make_cache(bytes_max=8192, object_bytes_max=4096)
    for op, target, size, coding in ops:
        if op == "store":
            put(cache, json_resp(), target=target, body=b"x" * size)
        elif op == "vary":
            put(
                cache,
                resp(b"max-age=60", (b"vary", b"x-v")),
                req=[(b"x-v", coding)],
                target=target,
                body=b"y" * size,
            )
        elif op == "hit":
            lookup = look(cache, [(b"accept-encoding", coding)], target=target)
            if lookup.response is not None:
                cache.serve(lookup.response, [(b"accept-encoding", coding)])
        else:
            cache.invalidate(HOST, target)
        assert cache.bytes_used <= 8192
        stored = [cached for variants in cache._entries.values() for cached in variants]
        assert cache.bytes_used == sum(cached.size for cached in stored)


@settings(max_examples=150, deadline=None)
@given(
    cache_control=st.lists(
        st.sampled_from(
            [b"max-age=60", b"s-maxage=60", b"must-revalidate", b"no-cache", b"private", b"public"]
        ),
        max_size=4,
    ).map(b", ".join),
    later=st.lists(
        st.sampled_from(
            [(b"authorization", b"Bearer other"), (b"cache-control", b"max-stale"), (b"x-a", b"1")]
        ),
        max_size=3,
    ),
)
def test_authorized_response_without_public_is_never_served(
    cache_control: bytes, later: Headers
) -> None:
    """RFC 9111 §3.5: without public/s-maxage/must-revalidate no one gets it from the cache."""
    cache = make_cache()
    authorized = [(b"authorization", b"Bearer secret")]
    headers = resp(cache_control, (b"etag", b'"a"'))
    put(cache, headers, req=authorized, body=b"secret balance")
    directives = {part.strip() for part in cache_control.split(b",")}
    if directives.isdisjoint({b"public", b"s-maxage=60", b"must-revalidate"}):
        for req in (later, authorized):
            lookup = look(cache, req)
            assert lookup.response is None
            assert lookup.state is MISS
        assert not cache.response_is_shareable(authorized, 200, headers)


@settings(max_examples=100, deadline=None)
@given(
    stored_value=st.sampled_from([b"en", b"de", b"fr", None]),
    asked_value=st.sampled_from([b"en", b"de", b"fr", None]),
)
def test_vary_never_serves_another_variant(
    stored_value: bytes | None, asked_value: bytes | None
) -> None:
    """RFC 9111 §4.1: a hit always matches the request's Vary'd field values."""
    cache = make_cache()
    stored_req = [] if stored_value is None else [(b"accept-language", stored_value)]
    asked_req = [] if asked_value is None else [(b"accept-language", asked_value)]
    put(cache, resp(b"max-age=60", (b"vary", b"accept-language")), req=stored_req)
    assert (look(cache, asked_req).state is FRESH) == (stored_value == asked_value)


# Coalescing ------------------------------------------------------------------------------------
def test_one_fetch_serves_every_concurrent_waiter() -> None:
    async def scenario() -> tuple[int, list[str]]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)
        calls = 0
        gate = asyncio.Event()

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "body"

        tasks = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(20)]
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*tasks)
        assert coalescer.in_flight == 0
        return calls, results

    calls, results = asyncio.run(scenario())
    assert calls == 1
    assert results == ["body"] * 20


def test_fetch_exception_reaches_every_waiter() -> None:
    async def scenario() -> list[BaseException | str]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)

        async def fetch() -> str:
            await asyncio.sleep(0.01)
            raise ConnectionError("pod down")

        tasks = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(5)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert all(isinstance(result, ConnectionError) for result in results)


def test_cancelled_leader_does_not_strand_followers() -> None:
    async def scenario() -> tuple[bool, list[str], int]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)
        calls = 0
        gate = asyncio.Event()

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await gate.wait()
            return "body"

        leader = asyncio.create_task(coalescer.run("k", fetch))
        await asyncio.sleep(0)
        followers = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(3)]
        await asyncio.sleep(0)
        leader.cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(*followers)
        return leader.cancelled(), results, calls

    leader_cancelled, results, calls = asyncio.run(scenario())
    assert leader_cancelled
    assert results == ["body"] * 3
    assert calls == 1


def test_fetch_is_cancelled_when_every_waiter_leaves() -> None:
    async def scenario() -> tuple[bool, str]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)
        fetch_cancelled = False

        async def slow() -> str:
            nonlocal fetch_cancelled
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                fetch_cancelled = True
                raise
            return "never"

        async def quick() -> str:
            return "fresh"

        task = asyncio.create_task(coalescer.run("k", slow))
        await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(0)
        # The next caller starts a new fetch rather than joining the cancelled one.
        return fetch_cancelled, await coalescer.run("k", quick)

    fetch_cancelled, result = asyncio.run(scenario())
    assert fetch_cancelled
    assert result == "fresh"


def test_waiters_beyond_the_bound_are_refused() -> None:
    async def scenario() -> list[BaseException | str]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=2)
        gate = asyncio.Event()

        async def fetch() -> str:
            await gate.wait()
            return "body"

        tasks = [asyncio.create_task(coalescer.run("k", fetch)) for _ in range(4)]
        await asyncio.sleep(0)
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(scenario())
    assert results[:2] == ["body", "body"]
    assert all(isinstance(result, CoalescingOverflow) for result in results[2:])


def test_unshareable_result_makes_followers_fetch_their_own() -> None:
    async def scenario() -> tuple[list[str], int]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)
        calls = 0

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            return f"private-{calls}"

        tasks = [
            asyncio.create_task(coalescer.run("k", fetch, shareable=lambda r: False))
            for _ in range(3)
        ]
        return list(await asyncio.gather(*tasks)), calls

    results, calls = asyncio.run(scenario())
    assert results[0] == "private-1"
    assert "private-1" not in results[1:]
    assert calls == 3


def test_leaders_predicate_decides_whether_a_result_is_shared() -> None:
    """The leader's predicate judges the request the response answered (e.g. Authorization)."""

    async def scenario() -> list[str]:
        coalescer: Coalescer[str] = Coalescer(waiters_max=100)
        calls = 0

        async def fetch() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            return f"answer-{calls}"

        leader = asyncio.create_task(coalescer.run("k", fetch, shareable=lambda r: False))
        await asyncio.sleep(0)
        follower = asyncio.create_task(coalescer.run("k", fetch, shareable=lambda r: True))
        return list(await asyncio.gather(leader, follower))

    assert asyncio.run(scenario()) == ["answer-1", "answer-2"]


def test_completed_flight_is_not_reused() -> None:
    async def scenario() -> list[int]:
        coalescer: Coalescer[int] = Coalescer(waiters_max=100)
        calls = 0

        async def fetch() -> int:
            nonlocal calls
            calls += 1
            return calls

        first = await coalescer.run("k", fetch)
        await asyncio.sleep(0)
        second = await coalescer.run("k", fetch)
        return [first, second]

    assert asyncio.run(scenario()) == [1, 2]
