"""Request parsing: every value with its location, as the application reads it; bounded."""

from __future__ import annotations

import gzip
import json

import pytest

from strongroom.edge.guard import GateRequest
from strongroom.edge.waf.request_parts import (
    ARGS_MAX,
    NotInspectableError,
    Part,
    PartLimits,
    request_parts,
)

LIMITS = PartLimits(
    body_bytes_max=64 * 1024,
    json_depth_max=8,
    json_values_max=50,
    json_string_chars_max=1024,
)


def make(
    target: bytes = b"/",
    *,
    method: bytes = b"GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    body: bytes | None = b"",
    content_type: bytes | None = None,
) -> GateRequest:
    all_headers = list(headers or [])
    if content_type is not None:
        all_headers.append((b"content-type", content_type))
    return GateRequest("10.0.0.1", method, target, all_headers, "r1", body=body)


def values(parts: list[Part]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for part in parts:
        found.setdefault(part.location, []).append(part.value)
    return found


def test_path_and_query_arguments_with_names() -> None:
    parts = request_parts(make(b"/v1/items?q=a+b%27&tag=x&flag"), LIMITS)
    assert parts[0] == Part("path", "path", "/v1/items")
    assert Part("args:q", "args", "a b'") in parts
    assert Part("args:q", "args", "q", is_name=True) in parts
    assert Part("args:flag", "args", "flag", is_name=True) in parts


def test_path_stays_encoded_for_the_normalizer() -> None:
    parts = request_parts(make(b"/a%2f..%2fb"), LIMITS)
    assert parts[0].value == "/a%2f..%2fb"


def test_headers_are_values_cookies_are_split() -> None:
    request = make(
        headers=[
            (b"user-agent", b"Mozilla/5.0"),
            (b"cookie", b"sid=abc; theme=dark"),
            (b"x-custom", b"v"),
        ]
    )
    found = values(request_parts(request, LIMITS))
    assert found["header:user-agent"] == ["Mozilla/5.0"]
    assert found["cookie:sid"] == ["sid", "abc"]
    assert found["cookie:theme"] == ["theme", "dark"]
    assert found["header:x-custom"] == ["v"]


def test_bearer_tokens_and_dpop_proofs_are_not_inspected() -> None:
    jwt = b"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    request = make(headers=[(b"authorization", b"Bearer " + jwt), (b"dpop", jwt)])
    assert [p.location for p in request_parts(request, LIMITS)] == ["path"]


def test_an_authorization_header_that_is_not_a_token_is_inspected() -> None:
    request = make(headers=[(b"authorization", b"Bearer ' or 1=1--")])
    assert "header:authorization" in values(request_parts(request, LIMITS))


def test_json_keys_and_strings_with_paths() -> None:
    body = json.dumps({"a": {"b": ["x", {"c": "y"}]}, "n": 5, "t": True}).encode()
    parts = request_parts(make(method=b"POST", body=body, content_type=b"application/json"), LIMITS)
    assert Part("json:$.a.b[0]", "json", "x") in parts
    assert Part("json:$.a.b[1].c", "json", "y") in parts
    assert Part("json:$.a.b[1].c", "json", "c", is_name=True) in parts
    assert Part("json:$.n", "json", "n", is_name=True) in parts
    assert not any(p.value in ("5", "True") for p in parts)


def test_json_unicode_escapes_are_decoded_by_parsing() -> None:
    body = b'{"k": "\\u003cscript\\u003e"}'
    parts = request_parts(make(method=b"POST", body=body, content_type=b"application/json"), LIMITS)
    assert Part("json:$.k", "json", "<script>") in parts


def test_vendor_json_types_are_json() -> None:
    body = b'{"k": "v"}'
    request = make(method=b"POST", body=body, content_type=b"application/problem+json")
    assert Part("json:$.k", "json", "v") in request_parts(request, LIMITS)


def test_too_deep_json_is_refused() -> None:
    body = b'{"a":' * 9 + b"1" + b"}" * 9
    with pytest.raises(NotInspectableError) as raised:
        request_parts(make(method=b"POST", body=body, content_type=b"application/json"), LIMITS)
    assert (raised.value.status, raised.value.type_id) == (400, "json-too-deep")


def test_json_with_too_many_values_is_refused() -> None:
    body = json.dumps(list(range(51))).encode()
    with pytest.raises(NotInspectableError) as raised:
        request_parts(make(method=b"POST", body=body, content_type=b"application/json"), LIMITS)
    assert (raised.value.status, raised.value.type_id) == (413, "json-too-large")


def test_json_string_too_long_is_refused() -> None:
    body = json.dumps({"a": "x" * 1025}).encode()
    with pytest.raises(NotInspectableError) as raised:
        request_parts(make(method=b"POST", body=body, content_type=b"application/json"), LIMITS)
    assert raised.value.type_id == "json-too-large"


def test_invalid_json_is_inspected_as_raw_text() -> None:
    request = make(method=b"POST", body=b"{'a': <x>", content_type=b"application/json")
    assert Part("body", "body", "{'a': <x>") in request_parts(request, LIMITS)


def test_form_body_with_names() -> None:
    request = make(
        method=b"POST",
        body=b"name=O%27Brien&note=a+b",
        content_type=b"application/x-www-form-urlencoded",
    )
    found = values(request_parts(request, LIMITS))
    assert found["form:name"] == ["name", "O'Brien"]
    assert found["form:note"] == ["note", "a b"]


def test_too_many_arguments_are_refused() -> None:
    query = "&".join(f"a{i}=1" for i in range(ARGS_MAX + 1)).encode()
    with pytest.raises(NotInspectableError) as raised:
        request_parts(make(b"/?" + query), LIMITS)
    assert (raised.value.status, raised.value.type_id) == (413, "too-many-arguments")


def test_multipart_fields_file_names_and_text_contents() -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="comment"\r\n\r\n'
        b"hello\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="upload"; filename="../../x.php"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
        b"\x00\x01\x02\xff\r\n"
        b"--XyZ--\r\n"
    )
    request = make(method=b"POST", body=body, content_type=b"multipart/form-data; boundary=XyZ")
    found = values(request_parts(request, LIMITS))
    assert found["multipart:comment"] == ["comment", "hello"]
    assert found["multipart:upload"] == ["upload", "../../x.php"]


def test_multipart_with_bare_line_feeds() -> None:
    body = b'--b\nContent-disposition: form-data; name="/etc/passwd"\n\nTest\n--b--\n'
    request = make(method=b"POST", body=body, content_type=b'multipart/form-data; boundary="b"')
    found = values(request_parts(request, LIMITS))
    assert found["multipart:/etc/passwd"] == ["/etc/passwd", "Test"]


def test_xml_document_text_and_attributes() -> None:
    body = b'<?xml version="1.0"?><a x="1&amp;2"><b>&lt;script&gt;</b><![CDATA[<c>]]></a>'
    request = make(method=b"POST", body=body, content_type=b"application/xml")
    parts = request_parts(request, LIMITS)
    assert Part("xml", "xml-document", body.decode()) in parts
    found = values(parts)
    assert found["xml:a@x"] == ["1&2"]
    assert found["xml:b"] == ["<script>"]
    assert "<c>" in found["xml:a"] or "<c>" in found["xml:b"]


def test_utf7_xml_is_decoded() -> None:
    body = b'<?xml version="1.0" encoding="UTF-7"?>+ADw-foo+AD4-x+ADw-/foo+AD4-'
    request = make(method=b"POST", body=body, content_type=b"text/xml")
    found = values(request_parts(request, LIMITS))
    assert found["xml:foo"] == ["x"]


def test_other_bodies_are_inspected_raw_unless_binary() -> None:
    text = make(method=b"POST", body=b"<script>x</script>", content_type=b"text/plain")
    assert Part("body", "body", "<script>x</script>") in request_parts(text, LIMITS)
    image = make(method=b"POST", body=b"\x89PNG\r\n\x1a\n\x00\x00", content_type=b"image/png")
    assert not any(p.kind == "body" for p in request_parts(image, LIMITS))


def test_gzip_bodies_are_inspected_decompressed() -> None:
    request = make(
        method=b"POST",
        body=gzip.compress(b"cmd=cat"),
        headers=[(b"content-encoding", b"gzip")],
        content_type=b"application/x-www-form-urlencoded",
    )
    assert Part("form:cmd", "form", "cat") in request_parts(request, LIMITS)


def test_a_body_that_is_not_in_its_declared_encoding_is_inspected_as_sent() -> None:
    request = make(
        method=b"POST",
        body=b"cmd=cat",
        headers=[(b"content-encoding", b"gzip")],
        content_type=b"application/x-www-form-urlencoded",
    )
    assert Part("form:cmd", "form", "cat") in request_parts(request, LIMITS)


def test_a_decompression_bomb_is_refused() -> None:
    request = make(
        method=b"POST",
        body=gzip.compress(b"a" * (LIMITS.body_bytes_max + 1)),
        headers=[(b"content-encoding", b"gzip")],
        content_type=b"text/plain",
    )
    with pytest.raises(NotInspectableError) as raised:
        request_parts(request, LIMITS)
    assert raised.value.type_id == "body-not-inspectable"


def test_a_body_the_edge_did_not_buffer_is_not_inspectable() -> None:
    with pytest.raises(NotInspectableError) as raised:
        request_parts(make(method=b"POST", body=None), LIMITS)
    assert (raised.value.status, raised.value.type_id) == (413, "body-not-inspectable")


def test_a_body_over_the_inspection_limit_is_not_inspectable() -> None:
    request = make(method=b"POST", body=b"x" * (LIMITS.body_bytes_max + 1))
    with pytest.raises(NotInspectableError):
        request_parts(request, LIMITS)


def test_the_body_can_be_left_out() -> None:
    request = make(method=b"POST", body=None)
    assert [p.location for p in request_parts(request, LIMITS, body=False)] == ["path"]
