"""Parsing the fields that drive caching: Cache-Control, delta-seconds and HTTP-dates.

Pure functions over the proxy's header lists (``(name, value)`` byte pairs, names
lower-cased). They are tolerant of junk because the input is attacker-controlled: a
malformed directive is kept as an unparseable value and the caller treats it in the
safe direction (an invalid ``max-age`` means "stale", RFC 9111 §4.2.1).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence

Headers = Sequence[tuple[bytes, bytes]]
Directives = dict[bytes, bytes | None]

# RFC 9111 §1.2.2: a delta-seconds too large to represent is treated as 2^31.
DELTA_SECONDS_MAX = 2**31

# Directives whose argument is delta-seconds. When one is repeated, the smallest value
# wins: RFC 9111 §4.2.1 asks for the most restrictive reading of conflicting directives.
_DELTA_DIRECTIVES = frozenset(
    {b"max-age", b"s-maxage", b"min-fresh", b"max-stale", b"stale-if-error"}
)

_MONTHS = {
    b"jan": 1,
    b"feb": 2,
    b"mar": 3,
    b"apr": 4,
    b"may": 5,
    b"jun": 6,
    b"jul": 7,
    b"aug": 8,
    b"sep": 9,
    b"oct": 10,
    b"nov": 11,
    b"dec": 12,
}


def field_values(headers: Headers, name: bytes) -> list[bytes]:
    """Every field line named ``name`` (already lower-case), in order."""
    return [value for field, value in headers if field == name]


def combined_field(headers: Headers, name: bytes) -> bytes | None:
    """The field lines for ``name`` joined with commas (RFC 9110 §5.3), or None if absent."""
    values = field_values(headers, name)
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return b", ".join(values)


def split_list(value: bytes) -> list[bytes]:
    """Members of a comma-separated list field, stripped, empties dropped (RFC 9110 §5.6.1)."""
    return [member.strip() for member in value.split(b",") if member.strip()]


def parse_cache_control(values: Iterable[bytes]) -> Directives:
    """Cache-Control directives from one or more field lines (RFC 9111 §5.2).

    Names are lower-cased; quoted arguments are unquoted (§5.2 asks recipients to accept
    both the token and the quoted-string form). A repeated delta-seconds directive keeps
    its smallest valid value; any other repeated directive keeps its first occurrence.
    """
    directives: Directives = {}
    for value in values:
        for name, argument in _directive_items(value):
            if name not in directives:
                directives[name] = argument
            elif name in _DELTA_DIRECTIVES:
                directives[name] = _more_restrictive(directives[name], argument)
    return directives


def request_directives(headers: Headers) -> Directives:
    """Request Cache-Control, with ``Pragma: no-cache`` honoured when Cache-Control is absent.

    RFC 9111 §5.4: Pragma is deprecated, but a cache should treat ``Pragma: no-cache`` as
    ``Cache-Control: no-cache`` when the request carries no Cache-Control field.
    """
    cache_control: list[bytes] = []
    pragma_no_cache = False
    for name, value in headers:
        if name == b"cache-control":
            cache_control.append(value)
        elif name == b"pragma" and b"no-cache" in value.lower():
            pragma_no_cache = True
    if cache_control:
        return parse_cache_control(cache_control)
    return {b"no-cache": None} if pragma_no_cache else {}


def delta_seconds(argument: bytes | None) -> int | None:
    """A delta-seconds argument as an int, or None when missing or malformed (RFC 9111 §1.2.2)."""
    if argument is None or not argument.isdigit():
        return None
    if len(argument) > 10:
        return DELTA_SECONDS_MAX
    return min(int(argument), DELTA_SECONDS_MAX)


def parse_http_date(value: bytes | None) -> float | None:
    """Seconds since the epoch for an HTTP-date in the three formats of RFC 9110 §5.6.7.

    IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``), obsolete RFC 850
    (``Sunday, 06-Nov-94 08:49:37 GMT``) and asctime (``Sun Nov  6 08:49:37 1994``).
    Returns None for anything else; callers treat that as "in the past" (RFC 9111 §5.3).
    """
    if value is None:
        return None
    parts = value.replace(b"-", b" ").split()
    try:
        if len(parts) == 6 and parts[5] == b"GMT":
            # IMF-fixdate or RFC 850: weekday, day, month, year, time, GMT.
            day, month_name, year_text, clock = parts[1], parts[2], parts[3], parts[4]
        elif len(parts) == 5:
            # asctime: weekday, month, day, time, year.
            month_name, day, clock, year_text = parts[1], parts[2], parts[3], parts[4]
        else:
            return None
        month = _MONTHS.get(month_name.lower())
        if len(year_text) not in (2, 4):
            return None
        hour_text, minute_text, second_text = clock.split(b":")
        year = int(year_text)
        if len(year_text) == 2:
            # RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past.
            year += 2000 if year < 70 else 1900
        hour, minute, second = int(hour_text), int(minute_text), int(second_text)
        day_number = int(day)
    except ValueError:
        return None
    if month is None or not (
        1 <= day_number <= 31 and hour <= 23 and minute <= 59 and second <= 60
    ):
        return None
    return float(calendar.timegm((year, month, day_number, hour, minute, second, 0, 0, 0)))


def _directive_items(value: bytes) -> list[tuple[bytes, bytes | None]]:
    if b'"' not in value:
        items: list[tuple[bytes, bytes | None]] = []
        for member in value.split(b","):
            name, sep, argument = member.partition(b"=")
            name = name.strip().lower()
            if name:
                items.append((name, argument.strip() if sep else None))
        return items
    return _directive_items_quoted(value)


def _directive_items_quoted(value: bytes) -> list[tuple[bytes, bytes | None]]:
    """Slow path for arguments that are quoted strings, which may contain commas."""
    items: list[tuple[bytes, bytes | None]] = []
    index, length = 0, len(value)
    while index < length:
        end = index
        while end < length and value[end] not in b",=":
            end += 1
        name = value[index:end].strip().lower()
        argument: bytes | None = None
        if end < length and value[end] == ord("="):
            end += 1
            while end < length and value[end] in b" \t":
                end += 1
            if end < length and value[end] == ord('"'):
                chunk = bytearray()
                end += 1
                while end < length and value[end] != ord('"'):
                    if value[end] == ord("\\") and end + 1 < length:
                        end += 1
                    chunk.append(value[end])
                    end += 1
                argument = bytes(chunk)
                end += 1
                while end < length and value[end] != ord(","):
                    end += 1
            else:
                start = end
                while end < length and value[end] != ord(","):
                    end += 1
                argument = value[start:end].strip()
        if name:
            items.append((name, argument))
        index = end + 1
    return items


def _more_restrictive(first: bytes | None, second: bytes | None) -> bytes | None:
    # A bare directive (no argument) yields to one with an argument; a malformed argument
    # wins because callers read it as "stale", the most restrictive outcome.
    if first is None:
        return second
    if second is None:
        return first
    first_seconds, second_seconds = delta_seconds(first), delta_seconds(second)
    if first_seconds is None:
        return first
    if second_seconds is None:
        return second
    return first if first_seconds <= second_seconds else second
