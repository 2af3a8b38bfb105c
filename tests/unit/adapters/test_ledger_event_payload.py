"""The outbox payload composed from parts equals the whole event encoded at once."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from strongroom import json_codec
from strongroom.adapters.db.ledger_store import _event_payload, _json

_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    type_=st.text(min_size=1, max_size=30),
    subjects=st.lists(st.text(max_size=36), max_size=4),
    data=st.dictionaries(st.text(max_size=10), _JSON, max_size=6),
    occurred_at_us=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_composed_payload_is_the_event_encoded_whole(
    type_: str, subjects: list[str], data: dict[str, Any], occurred_at_us: int
) -> None:
    composed = _event_payload(type_, _json(subjects), _json(data), occurred_at_us)
    whole = _json(
        {"type": type_, "subject_ids": subjects, "data": data, "occurred_at_us": occurred_at_us}
    )
    assert composed == whole
    assert json_codec.loads(composed)["data"] == json_codec.loads(_json(data))
