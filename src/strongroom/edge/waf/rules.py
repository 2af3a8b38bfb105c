"""Signature rules and exclusions: documented TOML data files, compiled once, hot-reloaded.

The built-in files live beside this module (``rules/*.toml``, format in
``rules/README.md``); operators add files in ``WafSettings.rules_dir``, loaded after the
built-in ones (same id → the later rule replaces the earlier; ``enabled = false``
removes it). :class:`WafRules` polls the files' modification times and swaps in a new
:class:`RuleSet` when one changes; a file that no longer loads keeps its last good
version in force and is logged, so a typo never disarms the WAF.

Matching runs on RE2 (``google-re2``): linear time whatever the pattern or the input,
so no operator rule can make the WAF backtrack for seconds on a hostile value. The rules
that apply to a kind of location form one ``re2.Set`` that scans a value once and names
every rule that matched (~0.5 µs for a short value; Python ``re`` took 35-100 µs for
the same alternation); only those rules then run alone to quote evidence.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import re2
import structlog

from strongroom.edge.waf.findings import CRITICAL, ERROR, NOTICE, WARNING
from strongroom.edge.waf.request_parts import (
    ARGS,
    BODY,
    COOKIE,
    FORM,
    HEADER,
    JSON,
    MULTIPART,
    PATH,
    URLENCODED,
    XML,
    XML_DOCUMENT,
)

log = structlog.get_logger("strongroom.edge.waf")

BUILTIN_RULES_DIR = Path(__file__).with_name("rules")
SEVERITY_POINTS = {"critical": CRITICAL, "error": ERROR, "warning": WARNING, "notice": NOTICE}
PARANOIA_LEVELS = (1, 2, 3, 4)
# Location groups a rule may target besides kinds and ``header:<name>``.
INPUT = "input"
ALL = "all"
KINDS = frozenset(
    {PATH, ARGS, COOKIE, FORM, JSON, MULTIPART, XML, XML_DOCUMENT, BODY, HEADER, URLENCODED}
)
INPUT_KINDS = frozenset({PATH, ARGS, COOKIE, FORM, JSON, MULTIPART, XML, BODY})
# Headers with a fixed grammar that browsers and proxies fill in: they are not "input"
# (free values an application reads). Referer/Origin are URLs of *other* pages; real
# browsing sends arbitrary ones. Rules targeting ``all`` or ``header`` still see them.
STANDARD_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "access-control-request-headers",
        "access-control-request-method",
        "baggage",
        "cache-control",
        "connection",
        "content-encoding",
        "content-length",
        "content-type",
        "date",
        "device-memory",
        "dnt",
        "downlink",
        "dpr",
        "ect",
        "expect",
        "forwarded",
        "host",
        "idempotency-key",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "keep-alive",
        "max-forwards",
        "origin",
        "pragma",
        "priority",
        "purpose",
        "range",
        "referer",
        "rtt",
        "save-data",
        "soapaction",
        "te",
        "traceparent",
        "tracestate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "upgrade-insecure-requests",
        "via",
        "viewport-width",
        "width",
        "x-correlation-id",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-real-ip",
        "x-request-id",
        "x-requested-with",
    }
)
_RULE_KEYS = frozenset(
    {
        "id",
        "category",
        "severity",
        "paranoia",
        "targets",
        "names",
        "values",
        "case_sensitive",
        "patterns",
        "description",
        "enabled",
    }
)
_EXCLUSION_KEYS = frozenset({"route", "locations", "rule_ids", "categories", "inspect_body"})
_ID = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


# (standard header?, the header:<glob> rule targets the name matches)
HeaderClass = tuple[bool, tuple[str, ...]]


class RuleError(ValueError):
    """A rules file that cannot be used: its path and what is wrong."""


def is_standard_header(name: str) -> bool:
    return name in STANDARD_HEADERS or name.startswith("sec-")


def targets_part(targets: Iterable[str], kind: str, header: str | None) -> bool:
    """Whether a location of ``kind`` (a header's name) is among ``targets``."""
    for target in targets:
        if target in (ALL, kind):
            return True
        if target == INPUT and (
            kind in INPUT_KINDS
            or (kind == HEADER and header is not None and not is_standard_header(header))
        ):
            return True
        if (
            header is not None
            and target.startswith("header:")
            and glob_regex(target[7:]).match(header)
        ):
            return True
    return False


def glob_regex(glob: str) -> re.Pattern[str]:
    """``*`` (anything) and ``?`` (one character); everything else literal, brackets too."""
    return re.compile(
        "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob) + r"\Z",
        re.DOTALL,
    )


class Match(Protocol):
    def start(self) -> int: ...

    def end(self) -> int: ...


class Regex(Protocol):
    def search(self, text: str) -> Match | None: ...


class RegexSet(Protocol):
    def Match(self, text: str) -> list[int] | None: ...


def _options(case_sensitive: bool) -> Any:
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.log_errors = False  # errors are raised (and logged by us), not printed
    return options


def compile_pattern(pattern: str, *, case_sensitive: bool = False) -> Regex:
    """An RE2 regex; RuleError for what RE2 refuses (backreferences, lookaround …)."""
    try:
        regex: Regex = re2.compile(pattern, _options(case_sensitive))
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise RuleError(f"pattern {pattern!r}: {reason}") from exc
    return regex


@dataclass(frozen=True, slots=True)
class Rule:
    """One signature rule (see ``rules/README.md``)."""

    id: str
    category: str
    severity: int
    paranoia: int
    targets: frozenset[str]
    names: bool
    values: bool
    case_sensitive: bool
    patterns: tuple[str, ...]
    description: str
    source: str
    regex: Regex = field(compare=False, repr=False)

    def set_pattern(self) -> str:
        """The rule's patterns as one expression for a case-insensitive set."""
        body = "|".join(f"(?:{p})" for p in self.patterns)
        return f"(?-i:{body})" if self.case_sensitive else body

    def targets_part(self, kind: str, header: str | None, is_name: bool) -> bool:
        if (is_name and not self.names) or (not is_name and not self.values):
            return False
        return targets_part(self.targets, kind, header)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Rules not applied to some locations of some routes (see ``rules/README.md``)."""

    method: str | None
    path: re.Pattern[str] | None
    locations: tuple[re.Pattern[str], ...]
    rule_ids: tuple[re.Pattern[str], ...]
    categories: frozenset[str]
    inspect_body: bool
    source: str

    def applies_to(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.path is None or self.path.match(path) is not None

    def excludes(self, location: str, rule_id: str, category: str) -> bool:
        if not self.locations and not self.rule_ids and not self.categories:
            return False  # a route-only exclusion (inspect_body = false) drops no rule
        if self.locations and not any(p.match(location) for p in self.locations):
            return False
        if not self.rule_ids and not self.categories:
            return True
        return category in self.categories or any(p.match(rule_id) for p in self.rule_ids)


@dataclass(slots=True)
class RuleGroup:
    """The rules for one kind of location, scanned together by one RE2 set."""

    rules: tuple[Rule, ...]
    matcher: RegexSet | None

    def matches(self, text: str) -> Iterator[tuple[Rule, Match]]:
        if self.matcher is None:
            return
        hits = self.matcher.Match(text)
        if not hits:
            return
        for index in sorted(hits):
            rule = self.rules[index]
            found = rule.regex.search(text)
            if found is not None:
                yield rule, found


def rule_set(rules: tuple[Rule, ...]) -> RegexSet | None:
    if not rules:
        return None
    matcher = re2.Set.SearchSet(_options(case_sensitive=False))
    try:
        for rule in rules:
            matcher.Add(rule.set_pattern())
        matcher.Compile()
    except re2.error as exc:  # e.g. past RE2's memory budget
        raise RuleError(f"the rules do not compile together: {exc}") from exc
    typed: RegexSet = matcher
    return typed


@dataclass(slots=True)
class RuleSet:
    """The compiled rules and exclusions in force, with per-location groups cached."""

    rules: tuple[Rule, ...]
    exclusions: tuple[Exclusion, ...]
    version: str
    _groups: dict[tuple[str, HeaderClass | None, bool, int], RuleGroup] = field(
        default_factory=dict
    )
    _header_globs: tuple[tuple[str, re.Pattern[str]], ...] = ()

    def __post_init__(self) -> None:
        globs = {t[7:] for r in self.rules for t in r.targets if t.startswith("header:")}
        self._header_globs = tuple((g, glob_regex(g)) for g in sorted(globs))

    def header_class(self, name: str) -> HeaderClass:
        """What decides which rules read a header: standard or not, and the
        ``header:<glob>`` targets its name matches. Header names are client-chosen, so
        groups are cached per class, never per name."""
        return is_standard_header(name), tuple(g for g, rx in self._header_globs if rx.match(name))

    def group(self, kind: str, header: str | None, is_name: bool, paranoia: int) -> RuleGroup:
        key = (kind, self.header_class(header) if header is not None else None, is_name, paranoia)
        found = self._groups.get(key)
        if found is None:
            rules = tuple(
                r
                for r in self.rules
                if r.paranoia <= paranoia and r.targets_part(kind, header, is_name)
            )
            found = RuleGroup(rules, rule_set(rules))
            self._groups[key] = found
        return found

    def validate(self) -> None:
        """Compile every rule into one set now, so no group can fail at request time
        (each group is a subset)."""
        rule_set(self.rules)

    def exclusions_for(self, method: str, path: str) -> list[Exclusion]:
        return [e for e in self.exclusions if e.applies_to(method, path)]


def _strings(value: object, what: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{what} must be a string or a list of strings")
    return list(value)


def _bool(table: dict[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise RuleError(f"{key} must be true or false")
    return value


def parse_rule(table: dict[str, Any], source: str) -> Rule | str:
    """A rule from its TOML table, or just its id when it says ``enabled = false``."""
    unknown = set(table) - _RULE_KEYS
    rule_id = table.get("id")
    if not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
        raise RuleError(f"rule id {rule_id!r} must match {_ID.pattern}")
    where = f"rule {rule_id}"
    if unknown:
        raise RuleError(f"{where}: unknown keys {sorted(unknown)}")
    if not _bool(table, "enabled", True):
        return rule_id
    category = table.get("category")
    if not isinstance(category, str) or not _ID.fullmatch(category):
        raise RuleError(f"{where}: category must be a short lower-case word")
    severity = table.get("severity")
    if severity not in SEVERITY_POINTS:
        raise RuleError(f"{where}: severity must be one of {sorted(SEVERITY_POINTS)}")
    paranoia = table.get("paranoia", 1)
    if paranoia not in PARANOIA_LEVELS:
        raise RuleError(f"{where}: paranoia must be 1-4")
    targets = frozenset(_strings(table.get("targets", [INPUT]), f"{where}: targets"))
    for target in targets:
        if target not in KINDS and target not in (INPUT, ALL) and not target.startswith("header:"):
            raise RuleError(f"{where}: unknown target {target!r}")
    patterns = tuple(_strings(table.get("patterns"), f"{where}: patterns"))
    if not patterns:
        raise RuleError(f"{where}: patterns must not be empty")
    case_sensitive = _bool(table, "case_sensitive", False)
    for pattern in patterns:
        try:
            compile_pattern(pattern, case_sensitive=case_sensitive)
        except RuleError as exc:
            raise RuleError(f"{where}: {exc}") from exc
    description = table.get("description", "")
    if not isinstance(description, str):
        raise RuleError(f"{where}: description must be a string")
    rule = Rule(
        id=rule_id,
        category=category,
        severity=SEVERITY_POINTS[severity],
        paranoia=paranoia,
        targets=targets,
        names=_bool(table, "names", True),
        values=_bool(table, "values", True),
        case_sensitive=case_sensitive,
        patterns=patterns,
        description=description,
        source=source,
        regex=compile_pattern(
            "|".join(f"(?:{p})" for p in patterns), case_sensitive=case_sensitive
        ),
    )
    return rule


def parse_exclusion(table: dict[str, Any], source: str) -> Exclusion:
    unknown = set(table) - _EXCLUSION_KEYS
    if unknown:
        raise RuleError(f"exclusion: unknown keys {sorted(unknown)}")
    method: str | None = None
    path: re.Pattern[str] | None = None
    route = table.get("route")
    if route is not None:
        if not isinstance(route, str) or " " not in route.strip():
            raise RuleError(f"exclusion route {route!r} must be 'METHOD /path/glob'")
        verb, _, glob = route.strip().partition(" ")
        method = None if verb == "*" else verb.upper()
        path = glob_regex(glob.strip())
    return Exclusion(
        method=method,
        path=path,
        locations=tuple(
            glob_regex(g) for g in _strings(table.get("locations", []), "exclusion locations")
        ),
        rule_ids=tuple(
            glob_regex(g) for g in _strings(table.get("rule_ids", []), "exclusion rule_ids")
        ),
        categories=frozenset(_strings(table.get("categories", []), "exclusion categories")),
        inspect_body=_bool(table, "inspect_body", True),
        source=source,
    )


@dataclass(frozen=True, slots=True)
class RulesFile:
    """One parsed file: its rules (or ids it disables) and exclusions."""

    rules: tuple[Rule | str, ...]
    exclusions: tuple[Exclusion, ...]
    digest: str


def parse_file(path: Path) -> RulesFile:
    data = path.read_bytes()
    try:
        document = tomllib.loads(data.decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RuleError(f"{path}: {exc}") from exc
    unknown = set(document) - {"rule", "exclusion"}
    if unknown:
        raise RuleError(f"{path}: unknown tables {sorted(unknown)}")
    try:
        rules = tuple(parse_rule(t, path.name) for t in document.get("rule", []))
        exclusions = tuple(parse_exclusion(t, path.name) for t in document.get("exclusion", []))
    except RuleError as exc:
        raise RuleError(f"{path}: {exc}") from exc
    return RulesFile(rules, exclusions, hashlib.sha256(data).hexdigest()[:16])


def combine(files: Iterable[RulesFile]) -> RuleSet:
    """Later files' rules replace earlier ones with the same id; ids alone disable."""
    rules: dict[str, Rule] = {}
    exclusions: list[Exclusion] = []
    digest = hashlib.sha256()
    for parsed in files:
        digest.update(parsed.digest.encode())
        for rule in parsed.rules:
            if isinstance(rule, str):
                rules.pop(rule, None)
            else:
                rules.pop(rule.id, None)
                rules[rule.id] = rule
        exclusions.extend(parsed.exclusions)
    return RuleSet(tuple(rules.values()), tuple(exclusions), digest.hexdigest()[:12])


def _rule_files(directory: Path | None) -> list[Path]:
    if directory is None or not directory.is_dir():
        return []
    return sorted(directory.glob("*.toml"))


class WafRules:
    """The rule set in force, reloaded from its files when they change."""

    def __init__(self, extra_dir: Path | None = None, builtin_dir: Path = BUILTIN_RULES_DIR):
        self._builtin_dir = builtin_dir
        self._extra_dir = extra_dir
        self._parsed: dict[Path, tuple[tuple[int, int], RulesFile]] = {}
        self._stamps: dict[Path, tuple[int, int]] = {}
        self.errors: dict[str, str] = {}
        self.reloads = 0
        for path in _rule_files(builtin_dir):  # a broken built-in file is a bug: fail loudly
            self._parsed[path] = (self._stamp(path), parse_file(path))
        self.current = self._load()

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size

    def _paths(self) -> list[Path]:
        return _rule_files(self._builtin_dir) + _rule_files(self._extra_dir)

    def _load(self) -> RuleSet:
        files: list[RulesFile] = []
        stamps: dict[Path, tuple[int, int]] = {}
        for path in self._paths():
            try:
                stamp = self._stamp(path)
            except OSError:
                continue
            stamps[path] = stamp
            known = self._parsed.get(path)
            if known is None or known[0] != stamp:
                try:
                    parsed = parse_file(path)
                except (OSError, RuleError) as exc:
                    self.errors[str(path)] = str(exc)
                    log.warning("edge.waf_rules_invalid", file=str(path), error=str(exc))
                    if known is not None:
                        files.append(known[1])  # keep its last good version
                    continue
                self._parsed[path] = (stamp, parsed)
                self.errors.pop(str(path), None)
                known = self._parsed[path]
            files.append(known[1])
        self._stamps = stamps
        for gone in set(self._parsed) - set(stamps):
            del self._parsed[gone]
        ruleset = combine(files)
        ruleset.validate()
        return ruleset

    def changed(self) -> bool:
        paths = self._paths()
        if set(paths) != set(self._stamps):
            return True
        try:
            return any(self._stamp(p) != self._stamps[p] for p in paths)
        except OSError:
            return True

    def reload_if_changed(self) -> bool:
        """Poll the files; swap in a new rule set when one changed. True if it did."""
        if not self.changed():
            return False
        previous = self.current.version
        try:
            loaded = self._load()
        except RuleError as exc:
            self.errors["(all files)"] = str(exc)
            log.warning("edge.waf_rules_invalid", file="(all files)", error=str(exc))
            return False
        self.errors.pop("(all files)", None)
        self.current = loaded
        if self.current.version == previous:
            return False
        self.reloads += 1
        log.info(
            "edge.waf_rules_reloaded", version=self.current.version, rules=len(self.current.rules)
        )
        return True
