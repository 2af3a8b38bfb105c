"""Cache-Control, delta-seconds and HTTP-date parsing (RFC 9111 §5.2, RFC 9110 §5.6.7)."""

from __future__ import annotations

import email.utils

from hypothesis import given
from hypothesis import strategies as st

from strongroom.edge.cache_control import (
    DELTA_SECONDS_MAX,
    combined_field,
    delta_seconds,
    parse_cache_control,
    parse_http_date,
    request_directives,
)

SUNDAY_1994 = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


def test_directive_names_are_case_insensitive_and_arguments_kept() -> None:
    """RFC 9111 §5.2: directive names are case-insensitive."""
    assert parse_cache_control([b"Public, MAX-AGE=60"]) == {b"public": None, b"max-age": b"60"}


def test_field_lines_are_combined() -> None:
    """RFC 9110 §5.3: several field lines form one comma-separated list."""
    assert parse_cache_control([b"public", b"max-age=5"]) == {b"public": None, b"max-age": b"5"}


def test_quoted_argument_may_contain_commas() -> None:
    """RFC 9111 §5.2: arguments may be quoted-strings, which may contain commas."""
    parsed = parse_cache_control([b'no-cache="set-cookie, x-a", max-age=5'])
    assert parsed == {b"no-cache": b"set-cookie, x-a", b"max-age": b"5"}


def test_quoted_delta_seconds_is_accepted() -> None:
    """RFC 9111 §5.2: recipients should accept the quoted form of a token argument."""
    assert delta_seconds(parse_cache_control([b'max-age="30"'])[b"max-age"]) == 30


def test_repeated_max_age_keeps_the_most_restrictive() -> None:
    """RFC 9111 §4.2.1: conflicting directives → the most restrictive one is honoured."""
    assert parse_cache_control([b"max-age=60, max-age=5"])[b"max-age"] == b"5"


def test_repeated_max_age_with_a_malformed_value_keeps_the_malformed_one() -> None:
    """RFC 9111 §4.2.1: a malformed max-age means stale, the most restrictive reading."""
    assert parse_cache_control([b"max-age=60, max-age=soon"])[b"max-age"] == b"soon"


def test_pragma_no_cache_counts_when_cache_control_is_absent() -> None:
    """RFC 9111 §5.4: Pragma: no-cache is no-cache when the request has no Cache-Control."""
    assert b"no-cache" in request_directives([(b"pragma", b"no-cache")])


def test_pragma_is_ignored_when_cache_control_is_present() -> None:
    """RFC 9111 §5.4: Cache-Control takes precedence over Pragma."""
    headers = [(b"pragma", b"no-cache"), (b"cache-control", b"max-stale")]
    assert request_directives(headers) == {b"max-stale": None}


def test_delta_seconds_rejects_non_digits() -> None:
    """RFC 9111 §1.2.2: delta-seconds is 1*DIGIT."""
    assert delta_seconds(b"-1") is None
    assert delta_seconds(b"1.5") is None
    assert delta_seconds(None) is None


def test_delta_seconds_overflow_is_two_to_the_thirty_first() -> None:
    """RFC 9111 §1.2.2: too large a value is treated as 2^31."""
    assert delta_seconds(b"99999999999999999999") == DELTA_SECONDS_MAX


def test_imf_fixdate_parses() -> None:
    """RFC 9110 §5.6.7 preferred format."""
    assert parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT") == SUNDAY_1994


def test_rfc850_date_parses() -> None:
    """RFC 9110 §5.6.7: obsolete RFC 850 format, two-digit year."""
    assert parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT") == SUNDAY_1994


def test_asctime_date_parses() -> None:
    """RFC 9110 §5.6.7: ANSI C asctime() format."""
    assert parse_http_date(b"Sun Nov  6 08:49:37 1994") == SUNDAY_1994


def test_invalid_date_is_none() -> None:
    """RFC 9111 §5.3: e.g. Expires: 0 is invalid (callers treat it as the past)."""
    assert parse_http_date(b"0") is None
    assert parse_http_date(b"Sun, 06 Foo 1994 08:49:37 GMT") is None
    assert parse_http_date(b"Sun, 06 Nov 1994 25:49:37 GMT") is None


def test_combined_field_is_none_when_absent() -> None:
    assert combined_field([(b"a", b"1")], b"b") is None
    assert combined_field([(b"a", b"1"), (b"a", b"2")], b"a") == b"1, 2"


@given(st.binary(max_size=200))
def test_parse_cache_control_never_raises(value: bytes) -> None:
    """Attacker-controlled input: parsing must be total."""
    parsed = parse_cache_control([value])
    assert all(name == name.lower() for name in parsed)


@given(st.binary(max_size=64))
def test_parse_http_date_never_raises(value: bytes) -> None:
    parse_http_date(value)


@given(st.integers(min_value=0, max_value=4_000_000_000))
def test_formatted_dates_round_trip(timestamp: int) -> None:
    """Every IMF-fixdate we could be sent parses back to its instant."""
    text = email.utils.formatdate(timestamp, usegmt=True).encode()
    assert parse_http_date(text) == float(timestamp)
