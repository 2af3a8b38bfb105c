"""What a WAF detector reports: one finding per value it flags."""

from __future__ import annotations

from dataclasses import dataclass

# Anomaly points per severity, as in the OWASP Core Rule Set: a request is blocked when
# its points reach the inbound threshold (5 by default, so one critical finding blocks).
CRITICAL = 5
ERROR = 4
WARNING = 3
NOTICE = 2


@dataclass(frozen=True, slots=True)
class Finding:
    # Stable identifier operators exclude and SIEM rules match on (e.g. "sqli-tokens").
    rule_id: str
    # sqli | xss | rce | lfi | ssrf | xxe | ssti | jndi | nosqli | crlf | ldap | ssi | mail
    # | scanner | protocol
    category: str
    # Anomaly points (CRITICAL … NOTICE).
    severity: int
    # The lowest paranoia level (1 to 4) at which this finding counts.
    paranoia: int
    # A short excerpt or token fingerprint (≤ 64 characters) for the security event.
    evidence: str


# Evidence kept per finding: enough to recognise the attack in a security event.
EVIDENCE_CHARS_MAX = 64


def excerpt(text: str, at: int) -> str:
    """Up to ``EVIDENCE_CHARS_MAX`` characters of ``text`` from ``at``, whitespace folded."""
    return " ".join(text[at : at + EVIDENCE_CHARS_MAX].split())


def detector_finding(rule: str, category: str, level: int, evidence: str) -> Finding:
    """A tokenizing detector's finding: critical at paranoia 1, a warning above."""
    return Finding(
        rule_id=rule,
        category=category,
        severity=CRITICAL if level == 1 else WARNING,
        paranoia=level,
        evidence=evidence[:EVIDENCE_CHARS_MAX],
    )
