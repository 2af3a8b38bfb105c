"""The WAF's decision: every value of a request, in every decoded form, scored.

Anomaly scoring as in the OWASP Core Rule Set: each signature rule or tokenizing
detector that fires adds its severity's points once per request (critical 5, error 4,
warning 3, notice 2); the request is blocked when the total reaches the inbound
threshold (5: one critical finding, or two lesser ones together). Rules above the
configured paranoia level do not count. Exclusions from the rule files drop findings at
chosen locations of chosen routes.

Cost is what a per-request WAF lives or dies by (target: ≤ 100 µs for a typical API
call), so values that cannot carry an attack (identifiers, numbers, timestamps: nothing
but word characters and ``.:@-``) skip the decoders and detectors and are only checked
for a base64 payload; fixed-grammar headers are matched as sent; the signature rules for
a location run as one RE2 set; inspection stops as soon as the request is going to be
blocked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from strongroom.config import WafSettings
from strongroom.edge.guard import GateRequest
from strongroom.edge.waf import normalize
from strongroom.edge.waf.findings import CRITICAL, Finding
from strongroom.edge.waf.request_parts import (
    HEADER,
    PATH,
    URLENCODED,
    NotInspectableError,
    Part,
    PartLimits,
    request_parts,
)
from strongroom.edge.waf.rules import (
    Exclusion,
    HeaderClass,
    RuleGroup,
    RuleSet,
    WafRules,
    is_standard_header,
    targets_part,
)
from strongroom.edge.waf.shell import detect_shell
from strongroom.edge.waf.sqli import detect_sqli
from strongroom.edge.waf.xss import detect_xss

# Evidence quoted per match in security events (never more: values may be personal data).
EXCERPT_CHARS_MAX = 64
# Context kept before a match in its excerpt.
EXCERPT_LEAD_CHARS = 16
# Values made only of these characters carry no injection grammar: identifiers, amounts,
# timestamps, e-mail addresses, UUIDs. They are only checked for base64 payloads (headers
# are always inspected in full: a scanner's User-Agent can be one word; and ".." and
# "__" are not inert: traversal, __proto__).
_INERT = re.compile(r"[\w@:-][\w.@:-]*")
_HEX_OR_UUID = re.compile(r"[0-9A-Fa-f-]+")
# A path of plain segments: rules read it as is, nothing to decode, no grammar to parse.
_INERT_PATH = re.compile(r"/[\w./-]*")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]")
# Clean verdicts remembered per rule set: names (argument names, JSON keys, cookie names)
# and header values repeat from request to request, and a value that drew no finding
# once draws none again under the same rules. Only values up to this length, and at most
# this many (the memo is emptied when full: hostile unique values only cost a miss).
CLEAN_VALUE_CHARS_MAX = 256
CLEAN_ENTRIES_MAX = 4096
# A JWS in compact serialization (RFC 7515 §7.1): a signed token in a form field, query or
# JSON value (OAuth client assertions, tokens sent to introspection and revocation).
_JWS = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")

# Headers that carry client addresses (a fixed grammar, read as sent while they hold
# one) and what they may hold: IPv4/IPv6 addresses, ports, "unknown", RFC 7239 pairs.
_ADDRESS_HEADERS = frozenset(
    {"header:x-forwarded-for", "header:x-real-ip", "header:forwarded", "header:x-forwarded-host"}
)
_ADDRESS_LIST = re.compile(r'\s*[\w.:\[\]"=-]+(?:\s*[,;]\s*[\w.:\[\]"=-]+)*\s*')
# The header class an address header is inspected as once it holds something else.
_UNPARSED_HEADER = "x-unparsed-address"

Detect = Callable[[str, int], Finding | None]


@dataclass(frozen=True, slots=True)
class Detector:
    """A tokenizing detector and the locations it reads (rule target syntax)."""

    name: str
    detect: Detect
    targets: frozenset[str]


# SQL, HTML/JavaScript and shell grammars: they read every kind of input value. The
# User-Agent is input (it is not in the standard-header list); Referer/Accept are not.
DETECTORS = (
    Detector("sqli", detect_sqli, frozenset({"input"})),
    Detector("xss", detect_xss, frozenset({"input"})),
    Detector("shell", detect_shell, frozenset({"input"})),
)


@dataclass(frozen=True, slots=True)
class WafMatch:
    """One rule or detector that fired, where, on what, for how many points."""

    rule_id: str
    category: str
    location: str
    excerpt: str
    score: int

    def as_dict(self) -> dict[str, object]:
        return {
            "rule_id": self.rule_id,
            "category": self.category,
            "location": self.location,
            "excerpt": self.excerpt,
            "score": self.score,
        }


@dataclass(slots=True)
class WafResult:
    """The verdict on one request."""

    score: int = 0
    matches: list[WafMatch] = field(default_factory=list)
    # Points reached the inbound threshold (whatever the mode: the gate decides).
    blocked: bool = False
    # The request could not be inspected completely (too large, too deep, not buffered).
    not_inspectable: NotInspectableError | None = None

    @property
    def rule_ids(self) -> list[str]:
        return [m.rule_id for m in self.matches]


def jws_header(value: str) -> str | None:
    """The decoded protected header of a JWS-shaped value, or None when it is not one
    (its first segment must decode to a JSON object naming an ``alg``)."""
    header = normalize.base64_text(value.partition(".")[0])
    if header is None or not header.lstrip().startswith("{") or '"alg"' not in header:
        return None
    return header


def excerpt(text: str, start: int, end: int) -> str:
    """≤ 64 printable characters around ``text[start:end]``."""
    lead = max(0, start - EXCERPT_LEAD_CHARS)
    piece = text[lead : max(end, lead + 1)][:EXCERPT_CHARS_MAX]
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", piece)[:EXCERPT_CHARS_MAX]


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one kind of location is inspected."""

    group: RuleGroup
    detectors: tuple[Detector, ...]
    # A fixed-grammar header: its value as sent, rules only.
    as_sent: bool
    # Values here may skip decoding when they are single inert tokens (not headers).
    may_be_inert: bool
    is_path: bool


class _Scoring:
    """Findings of one request: each rule counts once, at its highest score; excluded
    ones not at all."""

    __slots__ = ("attempts", "exclusions", "paranoia", "result", "seen", "threshold")

    def __init__(self, paranoia: int, threshold: int, exclusions: list[Exclusion]) -> None:
        self.paranoia = paranoia
        self.threshold = threshold
        self.exclusions = exclusions
        self.result = WafResult()
        # rule id -> index of its match in result.matches
        self.seen: dict[str, int] = {}
        # Findings offered, excluded or not (a value that drew none is clean everywhere).
        self.attempts = 0

    def add(self, rule_id: str, category: str, location: str, evidence: str, score: int) -> bool:
        """Record a finding; True once the request is to be blocked."""
        self.attempts += 1
        result = self.result
        known = self.seen.get(rule_id)
        if known is not None and result.matches[known].score >= score:
            return False
        for exclusion in self.exclusions:
            if exclusion.excludes(location, rule_id, category):
                return False
        match = WafMatch(rule_id, category, location, evidence, score)
        if known is None:
            self.seen[rule_id] = len(result.matches)
            result.matches.append(match)
            result.score += score
        else:  # a stronger finding of the same rule (another form or location)
            result.score += score - result.matches[known].score
            result.matches[known] = match
        if result.score >= self.threshold:
            result.blocked = True
        return result.blocked


class Waf:
    """Inspects requests against the rules in force (``rules.current``) and detectors."""

    def __init__(
        self,
        settings: WafSettings,
        rules: WafRules,
        detectors: Sequence[Detector] = DETECTORS,
    ) -> None:
        self.settings = settings
        self.rules = rules
        self.detectors = tuple(detectors)
        self.limits = PartLimits(
            body_bytes_max=settings.inspect_body_bytes_max,
            json_depth_max=settings.json_depth_max,
            json_values_max=settings.json_values_max,
            json_string_chars_max=settings.json_string_chars_max,
        )
        # (location or kind, value) -> None for values that drew no finding; a new dict
        # per rule set, so a thread still inspecting under the old rules cannot write
        # verdicts into the new rules' memo.
        self._clean: dict[tuple[str, str], None] = {}
        self._clean_ruleset: RuleSet | None = None
        self._allowed_methods = frozenset(m.upper().encode() for m in settings.allowed_methods)
        self._plans: dict[tuple[str, HeaderClass | None, bool], _Plan] = {}
        self._plans_ruleset: RuleSet | None = None
        # Detectors read kinds and "input"/"all" only, so a header's class (standard or
        # not, and the rule globs its name matches) decides their plan as well.
        for detector in self.detectors:
            if any(t.startswith("header:") for t in detector.targets):
                raise ValueError(f"detector {detector.name}: header:<name> targets unsupported")

    def inspect(self, request: GateRequest) -> WafResult:
        ruleset = self.rules.current
        method = request.method.decode("latin-1")
        path = normalize.decode_bytes(request.path)
        exclusions = ruleset.exclusions_for(method, path)
        scoring = _Scoring(self.settings.paranoia, self.settings.inbound_threshold, exclusions)
        if request.method not in self._allowed_methods and scoring.add(
            "protocol-method", "protocol", "method", excerpt(method, 0, len(method)), CRITICAL
        ):
            return scoring.result
        try:
            parts = request_parts(
                request, self.limits, body=all(e.inspect_body for e in exclusions)
            )
        except NotInspectableError as exc:
            scoring.result.not_inspectable = exc
            return scoring.result
        clean = self._clean
        if self._clean_ruleset is not ruleset:
            clean = self._clean = {}
            self._clean_ruleset = ruleset
        for part in parts:
            value = part.value
            if part.is_name:
                key: tuple[str, str] | None = (part.kind, value)
            elif part.kind == HEADER:
                key = (part.location, value)
            elif part.kind == PATH:
                # Routes repeat (/v1/transfers): a clean path need not be decoded again.
                key = (PATH, value)
            else:
                key = None
            if key is not None:
                if key in clean:
                    continue
                if len(value) > CLEAN_VALUE_CHARS_MAX:
                    key = None
            attempts = scoring.attempts
            if self._inspect_part(part, ruleset, scoring):
                break
            if key is not None and scoring.attempts == attempts:
                if len(clean) >= CLEAN_ENTRIES_MAX:
                    clean.clear()
                clean[key] = None
        return scoring.result

    def _plan(
        self, ruleset: RuleSet, part: Part, paranoia: int, header: str | None = None
    ) -> _Plan:
        """What inspects a kind of location, cached per rule set by kind and header class
        (never by client-chosen names, so the cache stays a handful of entries)."""
        if header is None and part.kind == HEADER:
            header = part.location[len(HEADER) + 1 :]
        key = (part.kind, ruleset.header_class(header) if header else None, part.is_name)
        if self._plans_ruleset is not ruleset:
            self._plans.clear()
            self._plans_ruleset = ruleset
        plan = self._plans.get(key)
        if plan is None:
            plan = _Plan(
                group=ruleset.group(part.kind, header, part.is_name, paranoia),
                detectors=tuple(
                    d for d in self.detectors if targets_part(d.targets, part.kind, header)
                ),
                as_sent=header is not None and is_standard_header(header),
                may_be_inert=header is None,
                is_path=part.kind == PATH,
            )
            self._plans[key] = plan
        return plan

    def _inspect_part(self, part: Part, ruleset: RuleSet, scoring: _Scoring) -> bool:
        """Run the part's rules and detectors over its forms; True once blocked."""
        value = part.value
        if _HEX_OR_UUID.fullmatch(value):
            # Hex digits and hyphens (ids, idempotency keys, digests) spell no attack in
            # any decoding: no quote, bracket, operator or letter beyond a-f.
            return False
        plan = self._plan(ruleset, part, scoring.paranoia)
        if (
            plan.as_sent
            and part.location in _ADDRESS_HEADERS
            and not _ADDRESS_LIST.fullmatch(value)
        ):
            # A client-address header that holds no addresses: applications log and
            # look these up, so it is inspected as any other input.
            plan = self._plan(ruleset, part, scoring.paranoia, header=_UNPARSED_HEADER)
        if plan.as_sent:
            # Fixed-grammar headers (Accept, Host, Referer …) are read by the stack as
            # sent, never decoded: only the rules for every header apply (Log4Shell,
            # Shellshock, CR/LF), on the value as sent.
            forms = [value]
        elif plan.may_be_inert and _JWS.fullmatch(value) and (header := jws_header(value)):
            # A signed token's claims are data its verifier checks before use (an `aud` of
            # https://localhost is no SSRF); its protected header is read unverified (kid,
            # jku, x5u: where token-header injections live), so that is what is inspected.
            forms = [header]
        elif plan.may_be_inert and _INERT.fullmatch(value) and ".." not in value:
            if "__" in value:
                forms = [value]
            elif (
                part.is_name
                or len(value) < normalize.BASE64_CHARS_MIN
                or _HEX_OR_UUID.fullmatch(value)
            ):
                return False
            else:
                forms = normalize.base64_variants(value)
                if not forms:
                    return False
        elif part.kind == URLENCODED:
            # A whole query/form string: its arguments get every form already; this
            # part only serves the rules that read across '&'.
            forms = [value, normalize.fully_decoded(value)]
        elif plan.is_path and _INERT_PATH.fullmatch(value) and "/." not in value:
            # Plain segments: rules read the path as is; only a base64 payload (which
            # is written in these characters) gets decoded forms.
            forms = [value, *normalize.base64_variants(value.lstrip("/"))]
        else:
            forms = normalize.variants(value, path=plan.is_path)
        group = plan.group
        detectors = plan.detectors
        paranoia = scoring.paranoia
        location = part.location
        is_path = plan.is_path
        for form in forms:
            for rule, found in group.matches(form):
                if scoring.add(
                    rule.id,
                    rule.category,
                    location,
                    excerpt(form, found.start(), found.end()),
                    rule.severity,
                ):
                    return True
            if is_path and form.startswith("/"):
                # Grammars read a path as a route parameter holds it, without its leading
                # slash (a form of its own): "/wiki/A_(b)" is no SQL division.
                continue
            for detector in detectors:
                finding = detector.detect(form, paranoia)
                if finding is not None and finding.paranoia <= paranoia:
                    evidence = _UNPRINTABLE.sub("?", finding.evidence)[:EXCERPT_CHARS_MAX]
                    if scoring.add(
                        finding.rule_id, finding.category, location, evidence, finding.severity
                    ):
                        return True
        return False
