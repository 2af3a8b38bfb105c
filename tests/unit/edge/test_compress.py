"""Content-coding negotiation and buffered compression (RFC 9110 §12.5.3, RFC 9111 §5.2.2.6)."""

from __future__ import annotations

import gzip

import brotli
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strongroom.config import CacheSettings
from strongroom.edge.compress import (
    choose_encoding,
    compress,
    should_compress,
    vary_accept_encoding,
)

SETTINGS = CacheSettings()
JSON = [(b"content-type", b"application/json")]


def test_no_accept_encoding_means_identity() -> None:
    """RFC 9110 §12.5.3 allows any coding then; we choose identity for simple clients."""
    assert choose_encoding(None) is None


def test_empty_accept_encoding_means_identity() -> None:
    """RFC 9110 §12.5.3: an empty value means only identity is acceptable."""
    assert choose_encoding(b"") is None


def test_gzip_is_chosen_when_only_gzip_is_accepted() -> None:
    assert choose_encoding(b"gzip") == b"gzip"


def test_br_wins_a_tie_with_gzip() -> None:
    assert choose_encoding(b"gzip, deflate, br") == b"br"


def test_higher_q_value_wins() -> None:
    """RFC 9110 §12.4.2: q-values rank preferences."""
    assert choose_encoding(b"br;q=0.5, gzip;q=0.9") == b"gzip"


def test_q_zero_excludes_a_coding() -> None:
    """RFC 9110 §12.5.3: q=0 means not acceptable."""
    assert choose_encoding(b"br;q=0, gzip") == b"gzip"
    assert choose_encoding(b"br;q=0") is None


def test_wildcard_covers_unlisted_codings() -> None:
    """RFC 9110 §12.5.3: * matches any coding not explicitly listed."""
    assert choose_encoding(b"*") == b"br"
    assert choose_encoding(b"br;q=0, *") == b"gzip"


def test_wildcard_q_zero_excludes_unlisted_codings() -> None:
    assert choose_encoding(b"*;q=0") is None
    assert choose_encoding(b"gzip, *;q=0") == b"gzip"


def test_identity_with_higher_q_wins() -> None:
    assert choose_encoding(b"gzip;q=0.5, identity") is None


def test_x_gzip_is_gzip() -> None:
    """RFC 9110 §8.4.1.3: x-gzip is equivalent to gzip."""
    assert choose_encoding(b"x-gzip") == b"gzip"


def test_coding_names_are_case_insensitive() -> None:
    """RFC 9110 §8.4.1: content-coding tokens are case-insensitive."""
    assert choose_encoding(b"GZIP;Q=1") == b"gzip"


def test_malformed_q_value_excludes_the_coding() -> None:
    assert choose_encoding(b"br;q=high, gzip;q=0.1") == b"gzip"
    assert choose_encoding(b"gzip;q=2") is None


@st.composite
def accept_encodings(draw: st.DrawFn) -> tuple[bytes, dict[bytes, str]]:
    codings = draw(
        st.lists(
            st.tuples(
                st.sampled_from([b"br", b"gzip", b"x-gzip", b"identity", b"*", b"deflate"]),
                st.sampled_from(["0", "0.0", "0.000", "0.001", "0.5", "1", "1.000", None]),
            ),
            max_size=6,
        )
    )
    parts = [coding if q is None else coding + f";q={q}".encode() for coding, q in codings]
    return b", ".join(parts), {coding: q or "1" for coding, q in codings}


@given(accept_encodings())
def test_choose_encoding_never_picks_a_coding_with_q_zero(
    case: tuple[bytes, dict[bytes, str]],
) -> None:
    """RFC 9110 §12.5.3: a coding with q=0 (explicitly, or through *) is never used."""
    value, _ = case
    chosen = choose_encoding(value)
    if chosen is None:
        return
    names = [b"gzip", b"x-gzip"] if chosen == b"gzip" else [chosen]
    weights = []
    for member in value.split(b","):
        coding, _, params = member.strip().partition(b";")
        if coding.strip().lower() in names:
            weights.append(float(params.partition(b"=")[2] or b"1"))
    if not weights:
        wildcard = [
            member for member in value.split(b",") if member.strip().partition(b";")[0] == b"*"
        ]
        weights = [float(member.partition(b"=")[2] or b"1") for member in wildcard]
    assert weights
    assert min(weights) > 0


def test_json_in_the_size_window_is_compressed() -> None:
    assert should_compress(200, JSON, 2048, SETTINGS)


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/problem+json",
        b"text/html; charset=utf-8",
        b"application/javascript",
        b"application/xml",
        b"image/svg+xml",
        b"application/vnd.api+json",
    ],
)
def test_text_like_types_are_compressible(content_type: bytes) -> None:
    assert should_compress(200, [(b"content-type", content_type)], 2048, SETTINGS)


def test_binary_types_are_not_compressed() -> None:
    assert not should_compress(200, [(b"content-type", b"image/png")], 2048, SETTINGS)


def test_missing_content_type_is_not_compressed() -> None:
    assert not should_compress(200, [], 2048, SETTINGS)


def test_already_encoded_responses_are_not_compressed() -> None:
    headers = [*JSON, (b"content-encoding", b"gzip")]
    assert not should_compress(200, headers, 2048, SETTINGS)


def test_small_and_large_bodies_are_not_compressed() -> None:
    assert not should_compress(200, JSON, SETTINGS.compression_bytes_min - 1, SETTINGS)
    assert not should_compress(200, JSON, SETTINGS.compression_bytes_max + 1, SETTINGS)


def test_unknown_length_is_not_compressed() -> None:
    """Only buffered bodies are compressed; streamed ones pass through."""
    assert not should_compress(200, JSON, None, SETTINGS)


@pytest.mark.parametrize("status", [204, 206, 304, 101])
def test_statuses_without_transformable_content_are_not_compressed(status: int) -> None:
    """RFC 9110 §15.3.5, §15.4.5: 204 and 304 have no content; 206 ranges must not change."""
    assert not should_compress(status, JSON, 2048, SETTINGS)


def test_no_transform_forbids_compression() -> None:
    """RFC 9111 §5.2.2.6: an intermediary must not transform the content."""
    headers = [*JSON, (b"cache-control", b"public, no-transform")]
    assert not should_compress(200, headers, 2048, SETTINGS)


def test_disabled_compression_compresses_nothing() -> None:
    settings = CacheSettings(compression=False)
    assert not should_compress(200, JSON, 2048, settings)


@given(st.binary(max_size=4096))
def test_gzip_round_trips(body: bytes) -> None:
    assert gzip.decompress(compress(body, b"gzip", SETTINGS)) == body


@given(st.binary(max_size=4096))
def test_brotli_round_trips(body: bytes) -> None:
    assert brotli.decompress(compress(body, b"br", SETTINGS)) == body


def test_unknown_coding_is_refused() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        compress(b"x", b"zstd", SETTINGS)


def test_vary_is_added_when_absent() -> None:
    """RFC 9110 §12.5.5: a negotiated response lists Accept-Encoding in Vary."""
    assert vary_accept_encoding(JSON) == [*JSON, (b"vary", b"accept-encoding")]


def test_vary_is_merged_into_an_existing_field() -> None:
    headers = vary_accept_encoding([(b"vary", b"accept-language")])
    assert headers == [(b"vary", b"accept-language, accept-encoding")]


def test_vary_already_listing_accept_encoding_is_unchanged() -> None:
    headers = [(b"vary", b"Accept-Encoding")]
    assert vary_accept_encoding(headers) == headers


def test_vary_star_is_unchanged() -> None:
    headers = [(b"vary", b"*")]
    assert vary_accept_encoding(headers) == headers
