"""`audit.canonical`: one byte string per audit entry (RFC 8785 JCS, integers kept exact).

Cross-checked against Trail of Bits' `rfc8785` package (test-only dependency) wherever its
domain allows: everything except integers beyond ±(2^53 - 1), which it refuses and we keep.
The orjson fast path of `canonical_json`/`leaf_bytes` is compared with the reference encoder
on arbitrary values, so existing leaves keep their exact bytes whichever path runs.
"""

from __future__ import annotations

import json
import math
import struct
from decimal import Decimal
from enum import IntEnum, StrEnum
from typing import Any

import orjson
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.audit.canonical import (
    ACTOR_KINDS,
    EVENT_TYPES,
    LEAF_BYTES_MAX,
    AuditRecord,
    AuditRecordError,
    canonical_json,
    leaf_bytes,
    parse_leaf,
    reference_canonical_json,
)
from strongroom.ledger.model import AMOUNT_MAX
from strongroom.ledger.model import EVENT_TYPES as LEDGER_EVENT_TYPES

JCS_SAFE_INTEGER = 2**53 - 1


def _record(**changes: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "event_type": "transfer.posted",
        "tenant_id": "t-1",
        "actor_kind": "client",
        "actor_id": "client-7",
        "request_id": "req-42",
        "subject_ids": ("tr-1", "acc-1", "acc-2"),
        "data": {"posted_amount": 1500, "released_amount": 0},
        "occurred_at_us": 1_700_000_000_000_000,
    }
    fields.update(changes)
    return AuditRecord(**fields)


# -- RFC 8785 examples -----------------------------------------------------------------------


def test_rfc8785_section_3_2_2_example_is_reproduced() -> None:
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(json.loads(source)) == expected.encode()


def test_members_sort_by_utf16_code_units_as_in_rfc8785_section_3_2_3() -> None:
    names = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    encoded = canonical_json(dict.fromkeys(names, 0)).decode()
    order = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert list(json.loads(encoded)) == order


# RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
RFC8785_NUMBERS = {
    "0000000000000000": "0",
    "8000000000000000": "0",
    "0000000000000001": "5e-324",
    "8000000000000001": "-5e-324",
    "7fefffffffffffff": "1.7976931348623157e+308",
    "ffefffffffffffff": "-1.7976931348623157e+308",
    "4340000000000000": "9007199254740992",
    "c340000000000000": "-9007199254740992",
    "4430000000000000": "295147905179352830000",
    "44b52d02c7e14af5": "9.999999999999997e+22",
    "44b52d02c7e14af6": "1e+23",
    "44b52d02c7e14af7": "1.0000000000000001e+23",
    "444b1ae4d6e2ef4e": "999999999999999700000",
    "444b1ae4d6e2ef4f": "999999999999999900000",
    "444b1ae4d6e2ef50": "1e+21",
    "3eb0c6f7a0b5ed8c": "9.999999999999997e-7",
    "3eb0c6f7a0b5ed8d": "0.000001",
    "41b3de4355555553": "333333333.3333332",
    "41b3de4355555554": "333333333.33333325",
    "41b3de4355555555": "333333333.3333333",
    "41b3de4355555556": "333333333.3333334",
    "41b3de4355555557": "333333333.33333343",
    "becbf647612f3696": "-0.0000033333333333333333",
    "43143ff3c1cb0959": "1424953923781206.2",
}


@pytest.mark.parametrize(("bits", "expected"), sorted(RFC8785_NUMBERS.items()))
def test_doubles_serialise_as_in_rfc8785_appendix_b(bits: str, expected: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value) == expected.encode()


# -- agreement with an independent implementation ---------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-JCS_SAFE_INTEGER, max_value=JCS_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_encoding_equals_rfc8785_within_its_number_domain(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_double_serialises_as_rfc8785_does(value: float) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


# -- the fast path and the reference encoder ---------------------------------------------------


class Level(IntEnum):
    HIGH = 3


class Colour(StrEnum):
    RED = "red"


class Text(str):
    __slots__ = ()


# Everything either encoder may meet: plain JSON without floats (the fast path's domain), and
# on top of it every code point (lone surrogates too), keys beyond the BMP (where UTF-16 and
# code-point order differ), floats, integers past 64 bits, subclasses of the JSON types, and
# values that are not JSON at all.
any_text = st.text() | st.lists(
    st.sampled_from(["\ud800", "\udfff", "\U0001f600", "\ufb33"]) | st.characters(), max_size=6
).map("".join)
# Text the fast path keeps (characters beyond the BMP send a value to the reference).
bmp_text = st.text(st.characters(max_codepoint=0xFFFF), max_size=8)
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | bmp_text
    | st.sampled_from(["\ufb33", "\ue000", "\x7f", "\u2028", "\x1f", "\\", '"', "\u00e9"])
)
odd_scalars = (
    st.integers()
    | st.floats()
    | any_text
    | st.sampled_from(
        [Level.HIGH, Colour.RED, Text("t"), Decimal("1.5"), b"x", 2**64, -(2**63) - 1]
    )
)


def _values(
    scalars: st.SearchStrategy[Any], keys: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=5)
            | st.lists(inner, max_size=5).map(tuple)
            | st.dictionaries(keys, inner, max_size=5)
        ),
        max_leaves=30,
    )


plain_values = _values(plain_scalars, bmp_text | st.sampled_from(["\ufb33", "\ue000"]))
any_values = plain_values | _values(
    plain_scalars | odd_scalars, any_text | st.sampled_from(["\U0001f600", "\ufb33", 1, None])
)


def _outcome(encode: Any, value: Any) -> bytes | str:
    try:
        return bytes(encode(value))
    except AuditRecordError as exc:
        return exc.code


@settings(max_examples=1000, deadline=None)
@given(any_values)
def test_the_fast_path_encodes_exactly_as_the_reference_encoder(value: Any) -> None:
    assert _outcome(canonical_json, value) == _outcome(reference_canonical_json, value)


def test_orjson_escapes_every_code_point_as_the_reference_encoder() -> None:
    """What the fast path relies on; it keeps non-BMP text for the reference, so the
    supplementary planes are compared on orjson itself."""
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    assert orjson.dumps(every) == reference_canonical_json(every)
    bmp = every[: every.index("\U00010000")]
    assert canonical_json({bmp: [bmp]}) == reference_canonical_json({bmp: [bmp]})


def test_keys_beyond_the_bmp_keep_utf16_order_on_the_fast_path() -> None:
    value = {"\ufb33": 1, "\U0001f600": 2, "\ue000": 3, "z": 4}
    assert canonical_json(value) == reference_canonical_json(value)
    assert list(json.loads(canonical_json(value))) == ["z", "\U0001f600", "\ue000", "\ufb33"]


# Records as stored rows may hold them: ordinary ones (the fast path), and rewritten rows
# that no validation stopped (AuditRecord.trusted) with any value in any field.
trusted_records = st.builds(
    AuditRecord.trusted,
    event_type=st.sampled_from(sorted(EVENT_TYPES)),
    tenant_id=st.none() | bmp_text,
    actor_kind=st.sampled_from(sorted(ACTOR_KINDS)),
    actor_id=bmp_text.filter(bool),
    request_id=st.none() | bmp_text,
    subject_ids=st.lists(bmp_text, max_size=4).map(tuple),
    data=st.dictionaries(bmp_text, plain_values, max_size=5),
    occurred_at_us=st.integers(min_value=0, max_value=2**53 - 1),
) | st.builds(
    AuditRecord.trusted,
    event_type=any_text,
    tenant_id=st.none() | any_text,
    actor_kind=any_text,
    actor_id=any_text | st.integers(),
    request_id=st.none() | any_text | st.integers(),
    subject_ids=st.lists(any_text | st.integers(), max_size=4).map(tuple),
    data=st.dictionaries(any_text, any_values, max_size=5) | any_values,
    occurred_at_us=st.integers() | st.floats(),
)


def _leaf_object(record: AuditRecord) -> dict[str, Any]:
    return {
        "v": 1,
        "event_type": record.event_type,
        "tenant_id": record.tenant_id,
        "actor_kind": record.actor_kind,
        "actor_id": record.actor_id,
        "request_id": record.request_id,
        "subject_ids": record.subject_ids,
        "data": record.data,
        "occurred_at_us": record.occurred_at_us,
    }


@settings(max_examples=500, deadline=None)
@given(trusted_records)
def test_leaf_bytes_are_the_reference_encoding_of_any_record(record: AuditRecord) -> None:
    expected = _outcome(reference_canonical_json, _leaf_object(record))
    if isinstance(expected, bytes) and len(expected) > LEAF_BYTES_MAX:
        expected = "entry-too-large"
    assert _outcome(leaf_bytes, record) == expected


def test_a_trusted_record_equals_the_validated_one() -> None:
    validated = _record()
    fields = {name: getattr(validated, name) for name in AuditRecord.__slots__}
    assert AuditRecord.trusted(**fields) == validated
    assert leaf_bytes(AuditRecord.trusted(**fields)) == leaf_bytes(validated)


def test_a_trusted_record_is_not_revalidated_but_its_leaf_is_refused_by_parse_leaf() -> None:
    fields = {name: getattr(_record(), name) for name in AuditRecord.__slots__}
    invalid = AuditRecord.trusted(**{**fields, "event_type": "account.teleported"})
    with pytest.raises(AuditRecordError) as raised:
        parse_leaf(leaf_bytes(invalid))
    assert raised.value.code == "malformed-leaf"


# -- integers are exact ----------------------------------------------------------------------


@pytest.mark.parametrize("amount", [AMOUNT_MAX, -AMOUNT_MAX, JCS_SAFE_INTEGER + 1, 10**30])
def test_integers_beyond_the_double_range_are_written_exactly(amount: int) -> None:
    encoded = canonical_json({"amount": amount})
    assert encoded == b'{"amount":%d}' % amount
    assert json.loads(encoded)["amount"] == amount


def test_an_integer_and_its_digits_as_a_string_encode_differently() -> None:
    assert canonical_json(AMOUNT_MAX) != canonical_json(str(AMOUNT_MAX))


def test_int_enums_encode_as_their_number_and_booleans_as_literals() -> None:
    class Level(IntEnum):
        HIGH = 3

    assert canonical_json([Level.HIGH, True, False]) == b"[3,true,false]"


# -- values JCS cannot encode ----------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        math.nan,
        math.inf,
        -math.inf,
        {1: "non-string key"},
        b"bytes",
        {"a set"},
        Decimal("1.5"),
        "lone surrogate \ud800",
        {"key \udfff": 1},
    ],
    ids=["nan", "inf", "-inf", "int-key", "bytes", "set", "decimal", "surrogate", "surrogate-key"],
)
def test_values_outside_json_are_refused(value: Any) -> None:
    with pytest.raises(AuditRecordError) as raised:
        canonical_json(value)
    assert raised.value.code == "unencodable-value"


def test_deep_nesting_does_not_exhaust_the_stack() -> None:
    depth = 20_000
    value: Any = 0
    for _ in range(depth):
        value = [value]
    assert canonical_json(value) == b"[" * depth + b"0" + b"]" * depth


# -- the audit record and its leaf -------------------------------------------------------------


def test_leaf_bytes_of_a_record_are_pinned() -> None:
    assert leaf_bytes(_record()) == (
        b'{"actor_id":"client-7","actor_kind":"client",'
        b'"data":{"posted_amount":1500,"released_amount":0},'
        b'"event_type":"transfer.posted","occurred_at_us":1700000000000000,'
        b'"request_id":"req-42","subject_ids":["tr-1","acc-1","acc-2"],"tenant_id":"t-1","v":1}'
    )


def test_leaf_carries_a_format_version() -> None:
    assert json.loads(leaf_bytes(_record()))["v"] == 1


def test_platform_events_without_tenant_or_request_encode_nulls() -> None:
    record = _record(event_type="signing_key.rotated", tenant_id=None, request_id=None)
    fields = json.loads(leaf_bytes(record))
    assert fields["tenant_id"] is None and fields["request_id"] is None


def test_data_key_order_does_not_change_the_leaf() -> None:
    one = _record(data={"a": 1, "b": {"y": 2, "x": 3}})
    other = _record(data={"b": {"x": 3, "y": 2}, "a": 1})
    assert leaf_bytes(one) == leaf_bytes(other)


records = st.builds(
    AuditRecord,
    event_type=st.sampled_from(sorted(EVENT_TYPES)),
    tenant_id=st.none() | st.text(min_size=1),
    actor_kind=st.sampled_from(sorted(ACTOR_KINDS)),
    actor_id=st.text(min_size=1),
    request_id=st.none() | st.text(),
    subject_ids=st.lists(st.text(), max_size=4).map(tuple),
    data=st.dictionaries(st.text(), json_values | st.integers(), max_size=5),
    occurred_at_us=st.integers(min_value=0, max_value=2**53 - 1),
)


@settings(max_examples=200, deadline=None)
@given(records)
def test_parse_leaf_inverts_leaf_bytes(record: AuditRecord) -> None:
    encoded = leaf_bytes(record)
    assert leaf_bytes(parse_leaf(encoded)) == encoded


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b.replace(b",", b", ", 1),  # whitespace
        lambda b: b'{"v":1,' + b[1:-7] + b"}",  # keys out of order
        lambda b: b.replace(b'"v":1', b'"v":2'),  # unknown version
        lambda b: b.replace(b'"v":1', b'"v":1.0'),  # version not an integer
        lambda b: b.replace(b'"tenant_id":"t-1",', b""),  # missing field
        lambda b: b.replace(b"}", b',"extra":0}', 1),  # extra field
        lambda b: b.replace(b"client-7", b"client\\u002d7"),  # needless escape
        lambda b: b.replace(b'"transfer.posted"', b'"transfer.teleported"'),  # unknown event
        lambda b: b[:-1],  # truncated
    ],
    ids=[
        "whitespace",
        "order",
        "version",
        "float-version",
        "missing",
        "extra",
        "escape",
        "event",
        "truncated",
    ],
)
def test_parse_leaf_refuses_anything_but_the_canonical_form(mangle: Any) -> None:
    encoded = leaf_bytes(_record())
    with pytest.raises(AuditRecordError) as raised:
        parse_leaf(mangle(encoded))
    assert raised.value.code == "malformed-leaf"


def test_an_entry_over_the_size_limit_is_refused() -> None:
    with pytest.raises(AuditRecordError) as raised:
        leaf_bytes(_record(data={"blob": "x" * LEAF_BYTES_MAX}))
    assert raised.value.code == "entry-too-large"


@pytest.mark.parametrize(
    "changes",
    [
        {"event_type": "account.teleported"},
        {"actor_kind": "robot"},
        {"actor_id": ""},
        {"tenant_id": 7},
        {"request_id": b"req"},
        {"subject_ids": ["a", "b"]},
        {"subject_ids": ("a", 1)},
        {"data": [1, 2]},
        {"occurred_at_us": -1},
        {"occurred_at_us": 2**53},
        {"occurred_at_us": 1.5},
    ],
    ids=lambda changes: next(iter(changes)),
)
def test_invalid_records_are_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(AuditRecordError) as raised:
        _record(**changes)
    assert raised.value.code == "invalid-record"


def test_every_ledger_event_type_is_an_audit_event_type() -> None:
    assert LEDGER_EVENT_TYPES <= EVENT_TYPES


def test_the_issue_event_types_are_covered() -> None:
    assert {
        "account.created",
        "account.frozen",
        "account.closed",
        "account.limit_changed",
        "transfer.created",
        "transfer.posted",
        "transfer.voided",
        "transfer.expired",
        "transfer.reversed",
        "oauth_client.created",
        "oauth_client.suspended",
        "signing_key.rotated",
        "config.changed",
        "siem.action_taken",
        "siem.action_lifted",
    } <= EVENT_TYPES
    assert any(t.startswith("payment.") for t in EVENT_TYPES)
    assert any(t.startswith("settlement.") for t in EVENT_TYPES)


def test_actor_kinds_are_the_four_issue_kinds() -> None:
    assert {"client", "user", "operator", "system"} == ACTOR_KINDS
