"""Normalization: every decoded form an application may see, bounded in count and size."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from strongroom.edge.waf.normalize import (
    VARIANTS_MAX,
    base64_text,
    decode_bytes,
    deobfuscate,
    normalize_path,
    percent_decode,
    squeeze,
    variants,
)


def test_plain_value_is_its_only_variant() -> None:
    assert variants("hello") == ["hello"]


def test_the_raw_value_always_comes_first() -> None:
    assert variants("%3Cscript%3E")[0] == "%3Cscript%3E"


def test_double_and_triple_url_encoding_are_decoded() -> None:
    assert "'" in variants("%2527")
    assert "<" in variants("%25253C")


def test_iis_percent_u_encoding_is_decoded() -> None:
    assert "<script>" in variants("%u003Cscript%u003E")


def test_plus_is_a_space_only_where_the_server_says_so() -> None:
    assert percent_decode("a+b", plus_is_space=True) == "a b"
    assert percent_decode("a+b") == "a+b"


def test_overlong_utf8_decodes_to_the_character_it_smuggles() -> None:
    assert "../etc/passwd" in variants("%C0%AE%C0%AE%C0%AFetc%C0%AFpasswd")
    assert decode_bytes(b"\xc0\xae") == "."


def test_invalid_utf8_bytes_become_latin1_characters() -> None:
    assert decode_bytes(b"caf\xe9") == "café"


def test_html_entities_named_decimal_hex_and_without_semicolon() -> None:
    assert "<svg/onload=alert(1)>" in variants("&lt;svg/onload&equals;alert(1)&gt;")
    assert "jAvascript:x" in variants("j&#X41vascript:x")
    assert "confirm(document)" in variants("confirm&#0000000040document)")
    assert "<b>" in variants("&ltb&gt")


def test_url_then_html_layers_are_both_peeled() -> None:
    assert "javascript:" in variants("javas%26#99;ript:")


def test_javascript_escapes_are_decoded() -> None:
    assert "aaaa'+#{16*8787}+'bbb" in variants("aaaa\\u0027%2b#{16*8787}%2b\\u0027bbb")
    assert "<" in variants("\\x3c")


def test_fullwidth_and_circled_letters_fold_to_ascii() -> None:
    assert "<script>" in variants("\uff1cscript\uff1e")
    assert "curl http://GOOGLE.COM" in variants("curl http://ⒼⓄⓄⒼⓁⒺ.ⒸⓄⓂ")


def test_zero_width_characters_are_dropped() -> None:
    assert "javascript:alert(1)" in variants("java\u200bscript:alert(1)")


def test_characters_truncating_to_crlf_become_line_breaks() -> None:
    forms = variants("%e5%98%8dSet-cookie:a=b")
    assert "\nSet-cookie:a=b" in forms


def test_quotes_and_escapes_inside_words_are_removed() -> None:
    assert deobfuscate("cat /et'c/pa'ss'wd") == "cat /etc/passwd"
    assert deobfuscate('w\\h"o"ami') == "whoami"


def test_string_concatenation_is_folded() -> None:
    assert deobfuscate('Ex"&"e"&"cute(') == "Execute("
    assert deobfuscate("'ale'+'rt(1)'") == "'alert(1)'"


def test_sql_inline_comments_are_removed() -> None:
    assert deobfuscate("UN/**/ION SEL/*!50000*/ECT") == "UNION SELECT"


def test_paths_are_resolved() -> None:
    assert normalize_path("/static/img/../../etc/passwd") == "/etc/passwd"
    assert normalize_path("\\\\host\\share\\..\\x") == "/host/x"
    assert normalize_path("/a//b/./c/") == "/a/b/c/"


def test_path_variants_include_the_resolved_path() -> None:
    assert "/etc/passwd" in variants("/static/..%2f..%2fetc/passwd", path=True)


def test_base64_payloads_are_decoded_with_or_without_padding() -> None:
    encoded = base64.b64encode(b"<script>alert(1)</script>").decode()
    assert "<script>alert(1)</script>" in variants(encoded)
    assert "<script>alert(1)</script>" in variants(encoded.rstrip("="))


def test_base64url_is_decoded() -> None:
    encoded = base64.urlsafe_b64encode(b"?x=1&y=<svg/onload=alert(1)>").decode()
    assert "?x=1&y=<svg/onload=alert(1)>" in variants(encoded)


def test_base64_whose_plus_signs_a_form_decoder_turned_into_spaces() -> None:
    encoded = base64.b64encode(b"<img src=x onerror=alert(1)>>>").decode()
    assert "+" in encoded
    assert "<img src=x onerror=alert(1)>>>" in variants(encoded.replace("+", " "))


def test_base64_in_a_path_is_decoded_after_the_slash() -> None:
    encoded = base64.b64encode(b"../../etc/passwd").decode().rstrip("=")
    assert "../../etc/passwd" in variants("/" + encoded, path=True)


def test_base64_token_inside_a_longer_value() -> None:
    encoded = base64.b64encode(b"${jndi:ldap://x/a}").decode()
    assert "${jndi:ldap://x/a}" in variants(f"data={encoded}&x=1")


def test_base64_that_decodes_to_binary_is_ignored() -> None:
    assert base64_text("3q2+7wABAgMEBQYHCAkKCw==") is None
    assert variants("550e8400e29b41d4a716446655440000") == ["550e8400e29b41d4a716446655440000"]


def test_words_are_not_mistaken_for_base64() -> None:
    assert variants("internationalization") == ["internationalization"]
    assert variants("Administrator") == ["Administrator"]


def test_padding_runs_are_squeezed() -> None:
    padded = "A" * 100_000 + "' OR 1=1--"
    assert squeeze(padded) == "A" * 16 + "' OR 1=1--"
    assert variants(padded)[0] == "A" * 16 + "' OR 1=1--"


def test_short_values_are_not_squeezed() -> None:
    assert squeeze("aaaaaaaaaaaaaaaaaaaaaa") == "aaaaaaaaaaaaaaaaaaaaaa"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_variants_are_bounded_distinct_and_start_with_the_value(value: str) -> None:
    forms = variants(value)
    assert 1 <= len(forms) <= VARIANTS_MAX
    assert len(set(forms)) == len(forms)
    assert forms[0] == squeeze(value)
    assert all(len(form) <= max(len(value), 1) * 2 + 16 for form in forms)


def test_utf16_escapes_become_characters_and_lone_surrogates_are_replaced() -> None:
    # JSON-in-a-query (`\ud83d\ude00`) and IIS `%uD83D`: RE2 cannot encode surrogates.
    forms = variants("%5Cud83d%5Cude00 %uD800 \\udc00")
    assert any("\U0001f600" in form for form in forms)
    for form in forms:
        form.encode()


def test_windows_best_fit_slashes_become_separators() -> None:
    forms = variants("..%u2216..%u2216etc%u2216passwd")
    assert "../../etc/passwd" in forms or any("..\\..\\etc" in form for form in forms)


def test_a_value_form_encoded_twice_is_also_read_with_spaces() -> None:
    assert "1 UNION ALL SELECT NULL" in variants("1+UNION+ALL+SELECT+NULL")
    assert variants("c++") == ["c++"]
