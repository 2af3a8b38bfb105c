"""Cross-site scripting detection: read a value as HTML, as an attribute and as JavaScript.

A value can reach a page in three places, so it is read three ways (libinjection's html5
idea, reduced): as HTML text, where it must open a tag that runs script (`<script>`, an
`on*=` handler, a `javascript:` URL in a URL attribute, `<iframe srcdoc>`); inside an
attribute, where it must break out and add a handler (`" onfocus=alert(1)`); and inside a
script or a URL, where it must call or reach a JavaScript sink (`'-alert(1)//`,
`javascript:...`, `document.cookie`, `.constructor(`). Each reading needs structure,
not words: "a < b and c > d", "<3 thanks!", "Tom & Jerry's <Best> Shop" and
"JavaScript: Basics" open no scripting construct, so they pass.

Tags are scanned with the HTML tokenizer's rules (a tag starts with `<` and a letter;
attributes are separated by whitespace or `/`; values may be quoted), not with a regex
per payload. Every scan is linear and capped (tags, attributes, sinks per value).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

from strongroom.edge.waf.findings import Finding, detector_finding, excerpt

# Tags, and attributes per tag, read from one value: an attack needs one; the caps bound
# the work on huge HTML-looking bodies.
TAGS_PER_VALUE_MAX = 64
ATTRIBUTES_PER_TAG_MAX = 32
# JavaScript sink candidates examined per value.
SINKS_PER_VALUE_MAX = 32
# Characters of a call's argument list read when deciding it is JavaScript, not prose.
CALL_ARGUMENT_CHARS_MAX = 256

# DOM event names (the attribute is "on" + name). Unknown on*= attributes still count at
# paranoia 2, or at 1 when their value is JavaScript, since browsers add events yearly.
_EVENTS = frozenset(
    {
        "abort", "activate", "afterprint", "afterscriptexecute", "afterupdate",
        "animationcancel", "animationend", "animationiteration", "animationstart", "auxclick",
        "beforeactivate", "beforecopy", "beforecut", "beforedeactivate", "beforeeditfocus",
        "beforeinput", "beforematch", "beforepaste", "beforeprint", "beforescriptexecute",
        "beforetoggle", "beforeunload", "beforeupdate", "begin", "blur", "bounce", "cancel",
        "canplay", "canplaythrough", "cellchange", "change", "click", "close", "command",
        "contentvisibilityautostatechange", "contextlost", "contextmenu", "contextrestored",
        "controlselect", "copy", "cuechange", "cut", "dataavailable", "datasetchanged",
        "datasetcomplete", "dblclick", "deactivate", "drag", "dragend", "dragenter", "dragexit",
        "dragleave", "dragover", "dragstart", "drop", "durationchange", "emptied", "encrypted",
        "end", "ended", "error", "errorupdate", "filterchange", "finish", "focus", "focusin",
        "focusout", "formdata", "fullscreenchange", "fullscreenerror", "gotpointercapture",
        "hashchange", "help", "input", "invalid", "keydown", "keypress", "keyup",
        "layoutcomplete", "load", "loadeddata", "loadedmetadata", "loadend", "loadstart",
        "losecapture", "lostpointercapture", "message", "messageerror", "mousedown",
        "mouseenter", "mouseleave", "mousemove", "mouseout", "mouseover", "mouseup",
        "mousewheel", "move", "moveend", "movestart", "mozfullscreenchange", "offline",
        "online", "orientationchange", "pagehide", "pageshow", "paste", "pause", "play",
        "playing", "pointercancel", "pointerdown", "pointerenter", "pointerleave",
        "pointermove", "pointerout", "pointerover", "pointerrawupdate", "pointerup", "popstate",
        "progress", "propertychange", "ratechange", "readystatechange", "repeat", "reset",
        "resize", "rowenter", "rowexit", "rowsdelete", "rowsinserted", "scroll", "scrollend",
        "scrollsnapchange", "scrollsnapchanging", "search", "securitypolicyviolation", "seeked",
        "seeking", "select", "selectionchange", "selectstart", "show", "slotchange", "stalled",
        "start", "storage", "submit", "suspend", "timeupdate", "toggle", "touchcancel",
        "touchend", "touchmove", "touchstart", "transitioncancel", "transitionend",
        "transitionrun", "transitionstart", "unhandledrejection", "unload", "volumechange",
        "waiting", "webkitanimationend", "webkitanimationiteration", "webkitanimationstart",
        "webkitmouseforcechanged", "webkitmouseforcedown", "webkitmouseforceup",
        "webkitmouseforcewillbegin", "webkitplaybacktargetavailabilitychanged",
        "webkittransitionend", "wheel", "zoom"
    }
)  # fmt: skip
# Tags that load or run content, with the attributes that make them do it.
_EMBEDDING_TAGS: dict[str, frozenset[str]] = {
    "iframe": frozenset({"src", "srcdoc", "name"}),
    "frame": frozenset({"src"}),
    "frameset": frozenset({"src", "rows", "cols"}),
    "object": frozenset({"data", "type", "classid", "codebase"}),
    "embed": frozenset({"src", "type", "code"}),
    "applet": frozenset({"code", "codebase", "archive", "object"}),
    "portal": frozenset({"src"}),
    "base": frozenset({"href"}),
    "import": frozenset({"implementation"}),
}
_URL_ATTRIBUTES = frozenset(
    {
        "href", "src", "action", "formaction", "data", "xlink:href", "background", "poster",
        "dynsrc", "lowsrc", "codebase", "code", "cite", "to", "from", "values", "by", "content",
        "ping", "archive", "longdesc", "usemap", "manifest", "icon", "profile", "classid"
    }
)  # fmt: skip
_SCRIPT_SCHEMES = ("javascript:", "vbscript:", "livescript:")
_DOCUMENT_SCHEMES = (
    "data:text/html",
    "data:application/xhtml",
    "data:image/svg",
    "data:text/xml",
    "data:application/xml",
)
_URL_JUNK = str.maketrans("", "", "\t\n\r\x00")
_JS_KEYWORDS = frozenset(
    {
        "typeof", "new", "void", "delete", "await", "yield", "return", "throw", "in", "of",
        "instanceof", "async", "function", "var", "let", "const", "case"
    }
)  # fmt: skip

# "<" then a letter opens a tag in the HTML tokenizer; the name runs to whitespace, / or >.
_TAG_RE = re.compile(r"<([a-z][^\s/><]*)")
_ATTRIBUTE_RE = re.compile(r"""[\s/]*([^\s/>=][^\s/>=]*)(?:\s*=\s*("[^"]*"?|'[^']*'?|[^\s>]*))?""")
# An attribute written outside a tag: a value that breaks out of one (`" onfocus=x`).
_HANDLER_RE = re.compile(r"on([a-z]{3,})\s*=\s*")
_SCHEME_RE = re.compile(
    "(?:"
    + "|".join(
        "[\\t\\n\\r]*".join(re.escape(c) for c in word) for word in ("javascript", "vbscript")
    )
    + r")[\t\n\r]*:"
)
# JavaScript sinks: called, tagged, called through call/apply/bind, or passed as a value.
_SINK_WORDS = frozenset(
    {
        "alert", "prompt", "confirm", "eval", "settimeout", "setinterval", "execscript",
        "msgbox", "fetch", "atob", "importscripts", "print", "write", "writeln", "open",
    }
)  # fmt: skip
_CALL_AFTER_RE = re.compile(r"(?:\?\.\s*)?(\(|`|\.\s*(?:call|apply|bind)\s*\()")
_METHOD_OWNER_RE = re.compile(
    r"(?<![\w$])(?:document|window|top|self|parent|frames|globalthis|this)\s*\.\s*$"
)
_SINK_NAMES = "(?:alert|prompt|confirm|eval|settimeout|setinterval|fetch|print)"
_SINK_VALUE_RE = re.compile(
    r"\(\s*" + _SINK_NAMES + r"\s*\)\s*[(`]"  # (alert)(1)
    r"|\.\s*[a-z]+\s*\(\s*" + _SINK_NAMES + r"\s*\)"  # [1].some(confirm)
    r"|=\s*" + _SINK_NAMES + r"\s*(?:[,;]\s*[\w$]+\s*\(|\})"  # _=alert,_(1)  {onerror=eval}
    r"|on[a-z]+\s*=\s*" + _SINK_NAMES + r"\b"  # window.onerror=eval
)
# DOM objects reached from script, each checked only when its words are present.
_DOCUMENT_RE = re.compile(
    r"document\s*(?:\.\s*|\[\s*['\"`])\s*(?:cookie|domain|write|location|documentelement"
    r"|body\s*\.\s*innerhtml)"
)
_GLOBALS = frozenset({"window", "top", "self", "parent", "globalthis", "frames"})
_GLOBAL_RE = re.compile(
    r"(window|top|self|parent|globalthis|frames)\s*(?:\[\s*['\"`/(]|\.\s*location\b)"
)
_HTML_SINK_RE = re.compile(r"\.\s*(?:inner|outer)html\s*=")
_PROTOTYPE_WORDS = frozenset({"constructor", "__proto__", "fromcharcode"})
_PROTOTYPE_RE = re.compile(
    r"\.\s*constructor\s*\(|constructor\s*\.\s*constructor|\[\s*['\"`]constructor['\"`]"
    r"|__proto__\s*[\[.=]|^__proto__$|string\s*\.\s*fromcharcode\s*\("
)
_JSFUCK_RE = re.compile(r"[\[\]()!+]{24,}")
# Code built from strings: Function('alert(1)')(), new Function`...`, import('//evil/x.js').
_CODE_FROM_STRING_RE = re.compile(
    r"function\(\s*(['\"`])[^'\"`]{0,256}\1\s*\)\s*\(|new\s+function\s*[(`]"
    r"|import\s*\(\s*['\"`](?://|https?:|data:)"
)
# A script body that opens with three bare words ("on the box lol") never runs: the
# whole block is a syntax error unless one of the first two is a keyword (`var x`, `new F`).
_PROSE_START_RE = re.compile(r"\s*([a-z]+)\s+([a-z]+)\s+[a-z]")
_JS_LEADING_WORDS = frozenset(
    {
        "var", "let", "const", "new", "typeof", "void", "delete", "return", "await", "async",
        "function", "yield", "in", "of", "instanceof", "throw", "case", "do", "else", "class",
        "import", "export", "if", "for", "while", "with", "try", "switch", "static", "get", "set"
    }
)  # fmt: skip
_SCRIPT_BODY_RE = re.compile(r"[\w$\])](?:\?\.)?\(|=>|\.\s*[a-z]+\s*=|\beval\b")
_JS_CODE_RE = re.compile(
    r"[\w$\])](?:\?\.)?[(`]|^\s*[({\[!]|=>|\.\s*[a-z]+\s*=|javascript:|\beval\b"
)
_WORD_BREAKS = str.maketrans(dict.fromkeys("'\"`;#()/*-+=<>,.|&!~%^{}[]:?\\@", " "))
_STRAY_TAG_RE = re.compile(r"<[^<>]{0,64}>")
_TRIGGERS = ("<", "(", "`", "=", ":", "[", "document", "__proto__")


def detect_xss(value: str, paranoia: int = 1) -> Finding | None:
    """Return a finding if `value` would run script as HTML, in an attribute or as JS."""
    if len(value) < 3:
        return None
    low = value.lower()
    if not any(trigger in low for trigger in _TRIGGERS):
        return None
    if "\x00" in low:
        low = low.replace("\x00", "")
    weak: Finding | None = None
    for check in (_check_tags, _check_outside_tags):
        found = check(low)
        if found is None:
            continue
        if found.paranoia <= 1:
            return found
        weak = weak or found
    if "<" in low:
        # Filters that strip tags turn "o<x>nfocus=alert<x>(1)" into a handler: read the
        # value again with tag-like fragments removed.
        stripped = _STRAY_TAG_RE.sub("", low)
        if stripped != low:
            found = _check_outside_tags(stripped)
            if found is not None and found.paranoia <= 1:
                return found
    if weak is not None and weak.paranoia <= paranoia:
        return weak
    return None


def _finding(rule: str, level: int, text: str, at: int) -> Finding:
    return detector_finding(rule, "xss", level, excerpt(text, at))


# --- HTML ------------------------------------------------------------------------------


def _attributes(low: str, pos: int) -> Iterator[tuple[str, str]]:
    """(name, unquoted value) pairs of the tag whose name ends at `pos`."""
    for _ in range(ATTRIBUTES_PER_TAG_MAX):
        if pos >= len(low) or low[pos] == ">":
            return
        m = _ATTRIBUTE_RE.match(low, pos)
        if m is None or m.end() == pos:
            return
        pos = m.end()
        raw = m.group(2) or ""
        if raw[:1] in ("'", '"'):
            raw = raw[1:-1] if len(raw) > 1 and raw[-1] == raw[0] else raw[1:]
        yield m.group(1), raw


def _check_tags(low: str) -> Finding | None:
    if "<" not in low:
        return None
    weak: Finding | None = None
    for count, m in enumerate(_TAG_RE.finditer(low)):
        if count >= TAGS_PER_VALUE_MAX:
            break
        name = m.group(1).rsplit(":", 1)[-1]
        at = m.start()
        if name == "script":
            if _script_element(low, m.end()):
                return _finding("xss-script-tag", 1, low, at)
            weak = weak or _finding("xss-script-tag", 2, low, at)
            continue
        if name == "style" and _dangerous_style(low[m.end() : m.end() + CALL_ARGUMENT_CHARS_MAX]):
            return _finding("xss-style", 1, low, at)
        loading = False
        for attribute, content in _attributes(low, m.end()):
            loading = loading or attribute in _EMBEDDING_TAGS.get(name, ())
            if attribute.startswith("on") and len(attribute) > 2:
                if attribute[2:] in _EVENTS or _JS_CODE_RE.search(content):
                    return _finding("xss-event-handler", 1, low, at)
                weak = weak or _finding("xss-event-handler", 2, low, at)
            elif attribute in _URL_ATTRIBUTES or attribute.endswith(":href"):
                if _script_scheme(content):
                    return _finding("xss-js-uri", 1, low, at)
            elif attribute == "srcdoc":
                return _finding("xss-dangerous-tag", 1, low, at)
            elif attribute == "style" and _dangerous_style(content):
                return _finding("xss-style", 1, low, at)
            elif attribute == "http-equiv" and name == "meta":
                return _finding("xss-dangerous-tag", 1, low, at)
        if name in _EMBEDDING_TAGS:
            if loading:
                return _finding("xss-dangerous-tag", 1, low, at)
            weak = weak or _finding("xss-dangerous-tag", 2, low, at)
        elif name in ("svg", "math", "style", "link", "form", "xml", "template") and not weak:
            weak = _finding("xss-tag", 3, low, at)
    return weak


def _script_element(low: str, end: int) -> bool:
    """`<script src=..>`, `<script>alert(1)`, `<script>..</script>` — not "<script> tag"."""
    rest = low[end : end + CALL_ARGUMENT_CHARS_MAX]
    close = rest.find(">")
    if close < 0:
        return True  # the value ends inside the tag: `"><script `
    if any(content for _name, content in _attributes(low, end)):
        return True  # `<script src=//x>`, `<script/x=1>`
    body = rest[close + 1 :].split("<", 1)[0]
    if "</script" in low[end:] or not body.strip():
        return True
    prose = _PROSE_START_RE.match(body)
    if prose is not None and not _JS_LEADING_WORDS.intersection(prose.groups()):
        return False  # "<script> on the box": three bare words are a syntax error in JS
    return bool(_SCRIPT_BODY_RE.search(body))


def _script_scheme(url: str) -> bool:
    """Whether a URL attribute's value runs script (browsers drop tabs/newlines/controls)."""
    cleaned = url.translate(_URL_JUNK).lstrip(" \x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c")
    cleaned = cleaned.lstrip("\ufeff\u200b\u00a0")
    return cleaned.startswith(_SCRIPT_SCHEMES) or cleaned.startswith(_DOCUMENT_SCHEMES)


def _dangerous_style(css: str) -> bool:
    return any(
        marker in css
        for marker in ("expression(", "javascript:", "behavior:", "-moz-binding", "@import")
    )


# --- attribute break-outs, URLs and JavaScript ---------------------------------------------


def _check_outside_tags(low: str) -> Finding | None:
    weak: Finding | None = None
    if "=" in low and "on" in low:
        found = _check_handlers(low)
        if found is not None:
            if found.paranoia <= 1:
                return found
            weak = found
    if ":" in low:
        found = _check_schemes(low)
        if found is not None:
            if found.paranoia <= 1:
                return found
            weak = weak or found
    words = set(low.translate(_WORD_BREAKS).split())
    for gate, pattern in (
        ("document" in words, _DOCUMENT_RE),
        (not words.isdisjoint(_GLOBALS) and ("[" in low or "location" in words), _GLOBAL_RE),
        ("innerhtml" in words or "outerhtml" in words, _HTML_SINK_RE),
        (not words.isdisjoint(_PROTOTYPE_WORDS), _PROTOTYPE_RE),
        ("[]" in low, _JSFUCK_RE),
        ("function" in words or "import" in words, _CODE_FROM_STRING_RE),
    ):
        if gate:
            m = pattern.search(low)
            if (
                m is not None
                and _word_start(low, m.start())
                and (pattern is not _DOCUMENT_RE or _in_code(low, m.start(), m.end()))
            ):
                return _finding("xss-js-sink", 1, low, m.start())
    sinks = words & _SINK_WORDS
    if sinks and ("(" in low or "`" in low):
        found = _check_sinks(low, sinks)
        if found is not None:
            return found
    return weak


def _in_code(low: str, start: int, end: int) -> bool:
    """`'+document.cookie+'` sits in code; "how to use document.cookie in js" sits in prose."""
    before = low[max(0, start - 16) : start].rstrip()
    after = low[end : end + 16].lstrip()
    prose_before = bool(before) and (before[-1].isalnum() or before[-1] == "_")
    prose_after = bool(after) and (after[0].isalnum() or after[0] == "_")
    return not (prose_before or prose_after)


def _word_start(low: str, at: int) -> bool:
    return at == 0 or not (low[at - 1].isalnum() or low[at - 1] in "_$")


def _check_handlers(low: str) -> Finding | None:
    weak: Finding | None = None
    for count, m in enumerate(_HANDLER_RE.finditer(low)):
        if count >= SINKS_PER_VALUE_MAX:
            break
        if m.start() and (low[m.start() - 1].isalnum() or low[m.start() - 1] in "_-.:"):
            continue
        known = m.group(1) in _EVENTS
        code = low[m.end() : m.end() + CALL_ARGUMENT_CHARS_MAX].lstrip("\"'`")
        before = low[max(0, m.start() - 16) : m.start()].rstrip(" \t\n\r\f/+")
        breaks_out = before.endswith(("'", '"', "`"))
        if known and (breaks_out or _JS_CODE_RE.search(code)):
            return _finding("xss-event-handler", 1, low, m.start())
        if breaks_out and _JS_CODE_RE.search(code):
            return _finding("xss-event-handler", 1, low, m.start())
        if known:
            weak = weak or _finding("xss-event-handler", 2, low, m.start())
    return weak


def _sink_owner_ok(low: str, at: int, sink: str) -> bool:
    """`server.setTimeout(` is a method of some object; `window.setTimeout(` is the sink."""
    before = low[max(0, at - 24) : at].rstrip()
    if before.endswith(".") or sink in ("write", "writeln", "open"):
        return _METHOD_OWNER_RE.search(before) is not None
    return True


def _check_sinks(low: str, sinks: set[str]) -> Finding | None:
    m = _SINK_VALUE_RE.search(low)
    if m is not None:
        return _finding("xss-js-sink", 1, low, m.start())
    examined = 0
    for sink in sorted(sinks):  # sorted: the same value always yields the same evidence
        at = low.find(sink)
        while at >= 0 and examined < SINKS_PER_VALUE_MAX:
            examined += 1
            end = at + len(sink)
            call = _CALL_AFTER_RE.match(low, end)
            if (
                call is not None
                and _word_start(low, at)
                and not (end < len(low) and (low[end].isalnum() or low[end] in "_$"))
                and _at_expression_start(low, at)
                and _sink_owner_ok(low, at, sink)
                and (sink != "print" or call.group(1) != "(")
                and _javascript_call(low, at, sink, call)
            ):
                return _finding("xss-js-sink", 1, low, at)
            at = low.find(sink, end)
    return None


def _check_schemes(low: str) -> Finding | None:
    stripped = low.lstrip(" \t\n\r\f\x0b\ufeff\u200b\u00a0")
    if stripped.startswith(_DOCUMENT_SCHEMES[:2]):
        return _finding("xss-js-uri", 1, low, 0)
    if "data:" in low:
        at = low.find("data:text/html")
        if at >= 0 and (at == 0 or not low[at - 1].isalnum()):
            return _finding("xss-js-uri", 1, low, at)
    if "script" not in low and "\t" not in low and "\n" not in low and "\r" not in low:
        return None
    weak: Finding | None = None
    for count, m in enumerate(_SCHEME_RE.finditer(low)):
        if count >= SINKS_PER_VALUE_MAX:
            break
        if m.start() and low[m.start() - 1].isalnum():
            continue
        code = low[m.end() : m.end() + CALL_ARGUMENT_CHARS_MAX]
        code = code.lstrip(" \t\n\r\f\x0b\ufeff\u200b\u00a0/")
        # The script is what follows the scheme up to a blank ("'javascript:' protocol"
        # and "JavaScript: Basics" are prose).
        code = code.split(None, 1)[0] if code.strip() else ""
        if _JS_CODE_RE.search(code) or code.startswith(("%", "\\")):
            return _finding("xss-js-uri", 1, low, m.start())
        weak = weak or _finding("xss-js-uri", 2, low, m.start())
    return weak


def _javascript_call(low: str, at: int, sink: str, call: re.Match[str]) -> bool:
    """`alert(1)`, alert`1`, `eval(x)`: not "confirm() is supported" nor Markdown `eval`."""
    opener = call.group(1)
    if opener == "`":
        # A tagged template needs its closing backtick; "`eval` or" is Markdown code.
        first = low[call.end() : call.end() + 1]
        return (
            low[at - 1 : at] != "`"
            and first not in ("", " ", "\t", "\n", ",", ".", ";", ":", ")", "]", "}", "!", "?")
            and low.find("`", call.end()) >= 0
        )
    if opener != "(":
        return True  # .call( / .apply( / .bind(
    close = _closing_paren(low, call.end())
    arguments = low[call.end() : close]
    if not arguments.strip() and sink not in ("alert", "prompt", "confirm", "print"):
        return False  # eval() / setTimeout() run nothing
    if not _javascript_arguments(low, call.end()):
        return False
    following = low[close + 1 : close + 2 + 16].lstrip(" \t\"'")
    # Prose goes on with a word ("confirm() is only supported"); code does not.
    return not following or not (following[0].isalnum() or following[0] == "_")


def _closing_paren(low: str, start: int) -> int:
    depth, end, quote = 1, start, ""
    limit = min(len(low), start + CALL_ARGUMENT_CHARS_MAX)
    while end < limit:
        char = low[end]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return end
        end += 1
    return end


def _at_expression_start(low: str, at: int) -> bool:
    """A sink right after prose ("please alert(1)") is a word; after code it is a call."""
    before = low[max(0, at - 16) : at].rstrip()
    return not before or not (before[-1].isalnum() or before[-1] == "_")


def _javascript_arguments(low: str, start: int) -> bool:
    """Whether the text after a `(` is a JavaScript argument list rather than prose."""
    arguments = low[start : _closing_paren(low, start)]
    words = re.findall(r"[\w$]+|'[^']*'|\"[^\"]*\"|\S", arguments)
    for left, right in itertools.pairwise(words):
        if left in _JS_KEYWORDS:
            continue
        if (left[0].isalnum() or left[0] in "_$'\"") and (right[0].isalnum() or right[0] in "_$"):
            # Two words side by side ("1 day", "by friday") are prose, not an expression.
            return False
    return True
