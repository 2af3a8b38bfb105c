"""One canonical byte string per audit entry: RFC 8785 JSON Canonicalization Scheme (JCS).

The Merkle leaf is these exact bytes (:func:`leaf_bytes`); they are stored and served as they
are, so a verifier hashes bytes and never has to re-encode anything. JCS is used so that any
party can also *read* a leaf with an ordinary JSON parser and, within JCS's number domain,
re-create it byte for byte.

One deliberate departure, for money: RFC 8785 §3.2.2.3 writes every number as an IEEE-754
double, which rounds integers beyond ±(2^53 - 1) — and ledger amounts go up to 2^63 - 1. Here
every ``int`` is written as its exact decimal digits. For integers within ±(2^53 - 1), which is
every integer JCS can represent exactly, this *is* the JCS output; larger ones stay exact (a
parser that reads numbers as doubles would round them, so read amounts as integers). Writing
big integers as strings, as RFC 8785 Appendix D suggests, was rejected: ``1`` and ``"1"``
would then collide, and a canonical form must be injective. ``float`` values (possible in
client-supplied metadata) follow JCS exactly; NaN and infinities are refused.

Two encoders produce the same bytes. :func:`reference_canonical_json` is the specification in
code: iterative, so that deeply nested client metadata cannot exhaust the interpreter's
recursion limit, and pure Python. :func:`canonical_json` first tries orjson's compact,
key-sorted output (C speed: ~7x faster on an ordinary entry) on the values where it provably
agrees with the reference (see :func:`_orjson_agrees`), and otherwise falls back to it; a
hypothesis test compares the two on arbitrary values. The leaf format never depends on
which one ran.

Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import repeat
from json.encoder import encode_basestring
from typing import Any

import orjson

from strongroom.ledger.model import EVENT_TYPES as LEDGER_EVENT_TYPES

# The leaf's "v" field: a reader can tell this layout from any later one.
LEAF_FORMAT_VERSION = 1
# One entry's bytes: far above the largest ledger event (4 KiB metadata, 64 journal legs),
# and a bound on what the sequencer holds in memory per entry of a batch.
LEAF_BYTES_MAX = 64 * 1024
# occurred_at_us stays a JCS-exact integer: 2^53 µs after the epoch is the year 2255.
OCCURRED_AT_US_MAX = 2**53 - 1

EVENT_TYPES: frozenset[str] = LEDGER_EVENT_TYPES | frozenset(
    {
        # Payments and settlements: one event per state change.
        "payment.created",
        "payment.authorized",
        "payment.captured",
        "payment.settled",
        "payment.failed",
        "payment.canceled",
        "payment.refunded",
        "settlement.created",
        "settlement.submitted",
        "settlement.completed",
        "settlement.failed",
        # Authentication and administration.
        "tenant.created",
        "tenant.suspended",
        "tenant.reactivated",
        "tenant.closed",
        "oauth_client.created",
        "oauth_client.suspended",
        "oauth_client.reactivated",
        "user.created",
        "user.disabled",
        "user.reactivated",
        "signing_key.rotated",
        "config.changed",
        # Automated security response.
        "siem.action_taken",
        "siem.action_lifted",
        # Edge blocklist entries (block or allow an address, network or client).
        "edge_block.added",
        "edge_block.removed",
    }
)
"""Every event an audit entry may record; the ledger's own event types are included as is."""

ACTOR_KINDS: frozenset[str] = frozenset({"client", "user", "operator", "system"})
"""Who caused an event: an OAuth client, an end user, a human operator, or Strongroom itself."""

AUDIT_RECORD_ERRORS: frozenset[str] = frozenset(
    {"invalid-record", "unencodable-value", "entry-too-large", "malformed-leaf"}
)


class AuditRecordError(ValueError):
    """A record that cannot become a leaf, or bytes that are not a canonical leaf.

    ``code`` is one of :data:`AUDIT_RECORD_ERRORS`.
    """

    def __init__(self, code: str, message: str) -> None:
        assert code in AUDIT_RECORD_ERRORS, code
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit entry, before it has an index (the sequencer assigns that later).

    ``tenant_id`` is ``None`` for platform-wide events; ``request_id`` is ``None`` for events
    no request caused (a scheduled key rotation, an expiry). ``data`` is the event's own
    JSON-compatible payload: ``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples and
    string-keyed mappings.
    """

    event_type: str
    tenant_id: str | None
    actor_kind: str
    actor_id: str
    request_id: str | None
    subject_ids: tuple[str, ...]
    data: Mapping[str, Any]
    occurred_at_us: int

    def __post_init__(self) -> None:
        if self.event_type not in EVENT_TYPES:
            raise AuditRecordError("invalid-record", f"unknown event type {self.event_type!r}")
        if self.actor_kind not in ACTOR_KINDS:
            raise AuditRecordError("invalid-record", f"unknown actor kind {self.actor_kind!r}")
        if not isinstance(self.actor_id, str) or not self.actor_id:
            raise AuditRecordError("invalid-record", "actor_id must be a non-empty string")
        if self.tenant_id is not None and not isinstance(self.tenant_id, str):
            raise AuditRecordError("invalid-record", "tenant_id must be a string or None")
        if self.request_id is not None and not isinstance(self.request_id, str):
            raise AuditRecordError("invalid-record", "request_id must be a string or None")
        subjects = self.subject_ids
        if not isinstance(subjects, tuple) or not all(map(isinstance, subjects, repeat(str))):
            raise AuditRecordError("invalid-record", "subject_ids must be a tuple of strings")
        if type(self.data) is not dict and not isinstance(self.data, Mapping):
            raise AuditRecordError("invalid-record", "data must be a mapping")
        at = self.occurred_at_us
        if type(at) is not int or not 0 <= at <= OCCURRED_AT_US_MAX:
            raise AuditRecordError(
                "invalid-record", f"occurred_at_us must be an integer in 0..{OCCURRED_AT_US_MAX}"
            )

    @classmethod
    def trusted(
        cls,
        *,
        event_type: str,
        tenant_id: str | None,
        actor_kind: str,
        actor_id: str,
        request_id: str | None,
        subject_ids: tuple[str, ...],
        data: Mapping[str, Any],
        occurred_at_us: int,
    ) -> AuditRecord:
        """A record read back from storage that validated it when it was written, without
        re-running the checks (the sequencer loads thousands of rows a batch).

        Nothing trusts the *result* further: its leaf is whatever the stored row says, and
        a row rewritten into an invalid record yields bytes that :func:`parse_leaf` (the
        verifier's check) refuses, just as a valid rewrite yields a leaf that no longer
        matches the stored hash. Only storage adapters' read paths may use this.
        """
        record = object.__new__(cls)
        _set_event_type(record, event_type)
        _set_tenant_id(record, tenant_id)
        _set_actor_kind(record, actor_kind)
        _set_actor_id(record, actor_id)
        _set_request_id(record, request_id)
        _set_subject_ids(record, subject_ids)
        _set_data(record, data)
        _set_occurred_at_us(record, occurred_at_us)
        return record


def _slot_setter(name: str) -> Callable[[AuditRecord, Any], None]:
    """The ``__set__`` of one of AuditRecord's slots: :meth:`AuditRecord.trusted` fills them
    through these, as ``object.__setattr__`` (what a frozen dataclass's ``__init__`` calls)
    costs about twice as much."""
    setter: Callable[[AuditRecord, Any], None] = getattr(AuditRecord, name).__set__
    return setter


_set_event_type = _slot_setter("event_type")
_set_tenant_id = _slot_setter("tenant_id")
_set_actor_kind = _slot_setter("actor_kind")
_set_actor_id = _slot_setter("actor_id")
_set_request_id = _slot_setter("request_id")
_set_subject_ids = _slot_setter("subject_ids")
_set_data = _slot_setter("data")
_set_occurred_at_us = _slot_setter("occurred_at_us")


_LEAF_FIELDS = frozenset(
    {
        "v",
        "event_type",
        "tenant_id",
        "actor_kind",
        "actor_id",
        "request_id",
        "subject_ids",
        "data",
        "occurred_at_us",
    }
)


def leaf_bytes(record: AuditRecord) -> bytes:
    """The canonical bytes of ``record``: exactly what is stored, served and hashed as a leaf."""
    encoded = _canonical(
        {
            "v": LEAF_FORMAT_VERSION,
            "event_type": record.event_type,
            "tenant_id": record.tenant_id,
            "actor_kind": record.actor_kind,
            "actor_id": record.actor_id,
            "request_id": record.request_id,
            "subject_ids": record.subject_ids,
            "data": record.data,
            "occurred_at_us": record.occurred_at_us,
        },
        agrees=_leaf_agrees(record),
    )
    if len(encoded) > LEAF_BYTES_MAX:
        raise AuditRecordError(
            "entry-too-large", f"entry is {len(encoded)} bytes; at most {LEAF_BYTES_MAX}"
        )
    return encoded


def parse_leaf(data: bytes) -> AuditRecord:
    """The record whose :func:`leaf_bytes` are exactly ``data``, or ``malformed-leaf``.

    Strict: bytes that decode to a valid record but are not its canonical form (other key
    order, whitespace, escapes, duplicate keys) are refused, so one record has one leaf.
    """
    if len(data) > LEAF_BYTES_MAX:
        raise AuditRecordError("malformed-leaf", f"leaf is over {LEAF_BYTES_MAX} bytes")
    try:
        fields = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise AuditRecordError("malformed-leaf", f"leaf is not JSON: {exc}") from None
    if not isinstance(fields, dict) or set(fields) != _LEAF_FIELDS:
        raise AuditRecordError("malformed-leaf", "leaf does not have the audit entry fields")
    if fields["v"] != LEAF_FORMAT_VERSION or type(fields["v"]) is not int:
        raise AuditRecordError("malformed-leaf", f"unsupported leaf version {fields['v']!r}")
    if not isinstance(fields["subject_ids"], list):
        raise AuditRecordError("malformed-leaf", "subject_ids is not a list")
    try:
        record = AuditRecord(
            event_type=fields["event_type"],
            tenant_id=fields["tenant_id"],
            actor_kind=fields["actor_kind"],
            actor_id=fields["actor_id"],
            request_id=fields["request_id"],
            subject_ids=tuple(fields["subject_ids"]),
            data=fields["data"],
            occurred_at_us=fields["occurred_at_us"],
        )
        canonical = leaf_bytes(record)
    except AuditRecordError as exc:
        raise AuditRecordError("malformed-leaf", exc.message) from None
    if canonical != data:
        raise AuditRecordError("malformed-leaf", "leaf is not in canonical form")
    return record


class _Text:
    """Already-encoded JSON text waiting on the encoder's stack."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


_CLOSE_OBJECT = _Text("}")
_CLOSE_ARRAY = _Text("]")
_COMMA = _Text(",")


def canonical_json(value: object) -> bytes:
    """RFC 8785 canonical JSON of ``value`` as UTF-8, with exact integers (see module doc).

    orjson's output where it provably equals :func:`reference_canonical_json`'s, the
    reference encoder everywhere else (floats, integers beyond 64 bits, subclasses, keys
    outside the Basic Multilingual Plane, errors).
    """
    return _canonical(value, agrees=_orjson_agrees(value))


def _canonical(value: object, *, agrees: bool) -> bytes:
    """orjson's output if ``agrees`` (``value`` is in :func:`_orjson_agrees`'s domain) and it
    passes the checks below, else the reference encoder's."""
    if agrees:
        try:
            encoded = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except TypeError:  # beyond 64 bits, a lone surrogate, nesting past orjson's limit
            pass
        else:
            if encoded.isascii() or _SUPPLEMENTARY_UTF8.search(encoded) is None:
                return encoded
    return reference_canonical_json(value)


def _leaf_agrees(record: AuditRecord) -> bool:
    """:func:`_orjson_agrees` of a leaf's fields (string keys, an int version), with the
    scalar fields checked at once: cheaper than walking the whole leaf object."""
    return (
        _ORJSON_SCALARS.issuperset(
            map(
                type,
                (
                    record.event_type,
                    record.tenant_id,
                    record.actor_kind,
                    record.actor_id,
                    record.request_id,
                    record.occurred_at_us,
                ),
            )
        )
        and _orjson_agrees(record.subject_ids)
        and _orjson_agrees(record.data)
    )


# orjson agrees with JCS on exactly these types (exact types, not subclasses: a subclass
# may override what either encoder reads); floats are left out on purpose, orjson writes
# them in another layout (1e+30 vs 1e30, 1 vs 1.0).
_ORJSON_SCALARS = frozenset({str, int, bool, type(None)})
_STR = frozenset({str})
# The agreement check walks every value; past this many (each is at least one byte of the
# leaf, so such a value cannot be a leaf anyway) the reference encoder decides alone.
_AGREEMENT_VALUES_MAX = LEAF_BYTES_MAX
# The lead byte of a 4-byte UTF-8 sequence: a character above U+FFFF. orjson sorts keys by
# code point, JCS (RFC 8785 §3.2.3) by UTF-16 code unit; the two orders differ only when a
# key holds such a character, so any output holding one is re-encoded by the reference.
_SUPPLEMENTARY_UTF8 = re.compile(b"[\xf0-\xf4]")


def _orjson_agrees(value: object) -> bool:
    """Whether ``value`` is built only of exact ``dict`` (``str`` keys), ``list``, ``tuple``,
    ``str``, ``int``, ``bool`` and ``None``: the domain where orjson's ``OPT_SORT_KEYS``
    output is the JCS output, up to the two checks :func:`canonical_json` makes on it.

    On that domain: strings are escaped exactly as ``encode_basestring`` escapes them
    (short forms for quote, backslash and the five JSON controls, other controls as lowercase
    ``\\u00xx``, everything else raw UTF-8; the unit tests compare every code point);
    integers are their decimal digits within 64 bits and refused beyond (the reference then
    writes them); keys sort by code point. A lone surrogate makes orjson refuse, and the
    reference raises its own error.
    """
    scalars = _ORJSON_SCALARS
    if type(value) in scalars:
        return True
    pending: list[Any] = [value]  # containers only
    seen = 0
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind is dict:
            if not _STR.issuperset(map(type, item)):
                return False
            children: Any = item.values()
        elif kind is list or kind is tuple:
            children = item
        else:
            return False
        seen += len(children)
        if seen > _AGREEMENT_VALUES_MAX:
            return False
        if not scalars.issuperset(map(type, children)):
            pending.extend([child for child in children if type(child) not in scalars])
    return True


def reference_canonical_json(value: object) -> bytes:
    """RFC 8785 canonical JSON of ``value``: the specification in code (pure Python)."""
    try:
        return _encode(value).encode("utf-8")
    except AuditRecordError:
        raise
    except UnicodeEncodeError:
        # RFC 8785 §3.2.2.2 needs valid Unicode: a lone surrogate has no UTF-8 form.
        raise AuditRecordError("unencodable-value", "string has a lone surrogate") from None
    except ValueError as exc:  # an int with more digits than sys.get_int_max_str_digits()
        raise AuditRecordError("unencodable-value", str(exc)) from None


def _encode(value: object) -> str:
    parts: list[str] = []
    out = parts.append
    stack: list[object] = [value]
    push, pop = stack.append, stack.pop
    while stack:
        item = pop()
        if type(item) is _Text:
            out(item.text)
        elif item is None:
            out("null")
        elif item is True:
            out("true")
        elif item is False:
            out("false")
        elif isinstance(item, str):
            out(_string(item))
        elif isinstance(item, int):
            out(int.__repr__(item))
        elif isinstance(item, float):
            out(_number(item))
        elif isinstance(item, Mapping):
            out("{")
            push(_CLOSE_OBJECT)
            keys = _sorted_keys(item)
            for position in range(len(keys) - 1, -1, -1):
                key = keys[position]
                push(item[key])
                push(_Text(("," if position else "") + _string(key) + ":"))
        elif isinstance(item, list | tuple):
            out("[")
            push(_CLOSE_ARRAY)
            for position in range(len(item) - 1, -1, -1):
                push(item[position])
                if position:
                    push(_COMMA)
        else:
            raise AuditRecordError(
                "unencodable-value", f"{type(item).__name__} is not a JSON value"
            )
    return "".join(parts)


def _string(text: str) -> str:
    """RFC 8785 §3.2.2.2: escape only ``"``, ``\\`` and controls, short forms where JSON has them.

    ``json.encoder.encode_basestring`` (the C escaper behind ``ensure_ascii=False``) does
    exactly this, with lowercase hex in ``\\u00xx`` as JCS requires.
    """
    return encode_basestring(text)


def _sorted_keys(mapping: Mapping[Any, Any]) -> list[str]:
    """RFC 8785 §3.2.3: members sorted by the UTF-16 code units of their names."""
    for key in mapping:
        if not isinstance(key, str):
            raise AuditRecordError("unencodable-value", f"object key {key!r} is not a string")
    return sorted(mapping, key=lambda key: key.encode("utf-16-be"))


def _number(value: float) -> str:
    """RFC 8785 §3.2.2.3: ECMAScript ``Number.prototype.toString`` of a finite double.

    ``float.__repr__`` gives the shortest digits that round-trip, as ECMAScript requires;
    only the layout (plain, fraction or exponent, chosen by the decimal exponent) differs.
    """
    if not math.isfinite(value):
        raise AuditRecordError("unencodable-value", f"{value} is not a JSON number")
    if value == 0:
        return "0"  # also -0.0 (ECMAScript prints it as 0)
    mantissa, _, exponent = float.__repr__(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # The value is 0.DIGITS * 10^point (ECMAScript's k digits and exponent n).
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        text = digits + "0" * (point - count)
    elif 0 < point <= 21:
        text = digits[:point] + "." + digits[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + digits
    else:
        power = point - 1
        head = digits[0] + ("." + digits[1:] if count > 1 else "")
        text = f"{head}e{'+' if power >= 0 else '-'}{abs(power)}"
    return ("-" if value < 0 else "") + text
