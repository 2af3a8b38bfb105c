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
