"""SQL injection detection: tokenize a value as the tail of a SQL statement and parse it.

An injected value only works if, spliced into the application's SQL after a quote
(`name = '<value>'`) or as a bare number (`id = <value>`), the rest of the statement
still parses. So, as libinjection does, the value is tokenized from each plausible break
point — just after its first `'` or `"`, after a leading number, at its start — and the
token stream must continue as SQL: a boolean clause, UNION SELECT, a stacked statement,
ORDER BY, a comment, each up to the end of the value. English prose fails that parse
within a token or two ("D'or 1st parfume" is string, bareword, bareword), which is what
keeps false positives low; SQL-only constructs (UNION SELECT, `sleep(5)`, WAITFOR DELAY,
`; DROP TABLE`) are also looked for anywhere in the value.

Instead of libinjection's fingerprint list this module decides with a small, bounded
recursive-descent grammar; tokens are produced lazily, so prose costs a couple of tokens,
and every scan is capped (tokens per break point, break points per value, nesting depth).
"""

from __future__ import annotations

import re

from strongroom.edge.waf.findings import Finding, detector_finding, excerpt

# Tokens examined from one break point: a real injection decides within a few dozen; the
# cap bounds the work on long values built to look like endless valid SQL.
TOKENS_PER_BREAK_MAX = 256
# Characters tokenized after one break point, so one huge string or comment token cannot
# make a single regex match scan the whole value.
BREAK_WINDOW_CHARS_MAX = 4096
# Break points tried per anchor kind (UNION, `;`, SQL-only functions) in one value: the
# anchor regexes are specific, so benign values rarely have any.
ANCHORS_PER_VALUE_MAX = 32
# Parenthesis / sub-expression nesting followed before giving up on a parse.
NESTING_MAX = 16
# Clauses chained after one break (`' or 1=1 and 2=2 order by 1 limit 1`).
CLAUSES_MAX = 32

_TOKEN_RE = re.compile(
    r"""
    ([\s\x00]+)                                         # 1 whitespace
   |(/\*.*?\*/)                                         # 2 closed block comment: whitespace
   |(--[^\n]*|\#[^\n]*|/\*.*)                            # 3 line / unterminated block comment
   |([nNeEbBxX]?'(?:[^'\\]|\\.|'')*('?))                # 4 '-string, 5 its closing quote
   |("(?:[^"\\]|\\.|"")*("?))                           # 6 "-string, 7 its closing quote
   |(`[^`]*`)                                           # 8 `identifier`
   |(0[xX][0-9a-fA-F]+|0[bB][01]+
     |\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?
     |\d+[eE][+-]?\d+|\d+(?![^\W\d]))                   # 9 number
   |(@@?[\w$]*)                                         # 10 variable
   |([^\W\d][\w$]*|\d+[^\W\d][\w$]*)                    # 11 word ("1st" is a word)
   |(<=>|<>|!=|<=|>=|==|\|\||&&|::|:=|->>|->|<<|>>
     |[=<>+\-*/%^|&~!])                                 # 12 operator
   |([(),;.])                                           # 13 punctuation
   |(.)                                                 # 14 anything else
    """,
    re.S | re.X,
)

# MySQL executes the body of /*! ... */ (and /*!50000 ... */) comments as code.
_MYSQL_EXEC_COMMENT_RE = re.compile(r"/\*!\d*(.*?)\*/", re.S)

# Comments that end an injected statement: `'--`, `'-- -`, `'--+`, `'#`, `'/*` — not
# `"-----BEGIN CERTIFICATE-----` or a `"--option"`.
_COMMENT_BREAK_RE = re.compile(r"--(?:[-+]?\s|[-+]?$)|#|/\*")
_MYSQL_KEYWORD_COMMENT_RE = re.compile(
    r"/\*!\d*\s*(?:union|select|insert|update|delete|drop|from|where|and|or|having|order"
    r"|concat|sleep|benchmark)(?![\w$])"
)
_STATEMENT_STARTS = frozenset(
    {
        "select", "insert", "update", "delete", "drop", "exec", "execute", "declare", "create",
        "alter", "truncate"
    }
)  # fmt: skip
_LOGIC_WORDS = frozenset({"and", "or", "xor"})
_UNION_WORDS = frozenset({"union", "intersect", "except", "minus"})
# Statement, clause, predicate and literal keywords of the common dialects; any other word
# is a bareword (a name).
_KEYWORDS = frozenset(
    {
        "select", "insert", "update", "delete", "drop", "create", "alter", "truncate", "exec",
        "execute", "declare", "shutdown", "waitfor", "grant", "revoke", "merge", "call", "set",
        "if", "begin", "copy", "pragma", "attach", "load", "backup", "replace", "handler",
        "from", "where", "group", "order", "by", "having", "limit", "offset", "into", "outfile",
        "dumpfile", "procedure", "as", "on", "join", "inner", "outer", "cross", "natural",
        "straight_join", "using", "values", "top", "distinct", "distinctrow", "all", "asc",
        "desc", "union", "intersect", "except", "minus", "for", "fetch", "not", "like", "rlike",
        "regexp", "ilike", "glob", "similar", "sounds", "escape", "in", "is", "between",
        "exists", "case", "when", "then", "else", "end", "div", "mod", "collate", "binary",
        "any", "some", "delay", "time", "null", "true", "false", "unknown", "default",
        "current_user", "current_date", "current_time", "current_timestamp", "localtime",
        "localtimestamp", "system_user", "session_user"
    }
)  # fmt: skip
_OPERAND_WORDS = frozenset(
    {
        "null", "true", "false", "unknown", "default", "current_user", "current_date",
        "current_time", "current_timestamp", "localtime", "localtimestamp", "system_user",
        "session_user"
    }
)  # fmt: skip
# Words that never open a function call even when a `(` follows them.
_NOT_FUNCTIONS = frozenset(
    {
        "select", "union", "intersect", "except", "from", "where", "and", "or", "xor", "not",
        "in", "exists", "values", "on", "using", "as", "then", "when", "else", "case", "by",
        "order", "group", "having", "limit", "join", "into", "is"
    }
)  # fmt: skip
_COMPARISONS = frozenset({"=", "==", "<", ">", "<=", ">=", "<>", "!=", "<=>"})
_ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "|", "&", "<<", ">>", ":=", "->", "->>"})
_PREDICATES = frozenset({"like", "rlike", "regexp", "ilike", "glob", "similar", "sounds"})
_OBJECTS = frozenset(
    {
        "table", "database", "schema", "view", "procedure", "proc", "function", "user", "login",
        "index", "trigger", "column", "event", "role", "sequence", "temporary"
    }
)  # fmt: skip
_SELECT_MODIFIERS = frozenset(
    {
        "distinct", "all", "distinctrow", "straight_join", "sql_calc_found_rows",
        "high_priority", "sql_no_cache"
    }
)  # fmt: skip
# A SELECT statement may stop at one of these and still be valid.
_SELECT_FOLLOWERS = frozenset(
    {
        "from", "where", "union", "intersect", "except", "minus", "order", "group", "having",
        "limit", "into", "procedure", "for", "offset", "fetch"
    }
)  # fmt: skip

# Functions and identifiers that exist only in SQL dialects: a call to one of them is an
# injection wherever it appears in a value (time-based and error-based blind SQLi).
_TIME_FUNCTIONS = frozenset({"sleep", "benchmark", "pg_sleep", "dbms_lock.sleep"})
_SQL_FUNCTION_RE = re.compile(
    r"(sleep|benchmark|pg_sleep|pg_read_file|pg_ls_dir|lo_import|lo_export"
    r"|dbms_pipe\s*\.\s*receive_message|dbms_lock\s*\.\s*sleep|utl_inaddr\s*\.\s*\w+"
    r"|utl_http\s*\.\s*request|sys_eval|sys_exec|xp_cmdshell|xp_dirtree|xp_fileexist"
    r"|xp_regread|sp_executesql|sp_oacreate|sp_makewebtask|openrowset|opendatasource"
    r"|load_file|extractvalue|updatexml|group_concat|randomblob|sqlite_version"
    r"|name_const|geometrycollection|multipoint|multilinestring|json_keys|gtid_subset"
    r"|exp\s*\(\s*~|current_database|pg_client_encoding|sys\s*\.\s*fn_\w+)\s*\(",
)
# System catalogs, reached as `from <catalog>` / `<catalog>.table`, and server variables.
_SQL_IDENTIFIER_RE = re.compile(
    r"(information_schema|sysobjects|syscolumns|sysdatabases|pg_catalog|pg_shadow|pg_user"
    r"|sqlite_master|sqlite_schema|all_tables|user_tables|dba_users|mysql\s*\.\s*user"
    r"|master\s*\.\.\s*sys\w+)(?![\w$])"
    r"|@@(?:version|datadir|hostname|basedir|servername|tmpdir|global\.)"
)
_CATALOG_BEFORE_RE = re.compile(r"(?:from|join|[.(,])\s*$")
# Words gating the anchor regexes above (a set lookup is cheaper than a failed scan).
_FUNCTION_WORDS = frozenset(
    {
        "sleep", "benchmark", "pg_sleep", "pg_read_file", "pg_ls_dir", "lo_import", "lo_export",
        "dbms_pipe", "dbms_lock", "utl_inaddr", "utl_http", "sys_eval", "sys_exec",
        "xp_cmdshell", "xp_dirtree", "xp_fileexist", "xp_regread", "sp_executesql",
        "sp_oacreate", "sp_makewebtask", "openrowset", "opendatasource", "load_file",
        "extractvalue", "updatexml", "group_concat", "randomblob", "sqlite_version",
        "name_const", "geometrycollection", "multipoint", "multilinestring", "json_keys",
        "gtid_subset", "exp", "current_database", "pg_client_encoding", "sys"
    }
)  # fmt: skip
_CATALOG_WORDS = frozenset(
    {
        "information_schema", "sysobjects", "syscolumns", "sysdatabases", "pg_catalog",
        "pg_shadow", "pg_user", "sqlite_master", "sqlite_schema", "all_tables", "user_tables",
        "dba_users", "mysql", "master"
    }
)  # fmt: skip
_STACKED_WORDS = frozenset(
    {
        "select", "insert", "update", "delete", "drop", "create", "alter", "truncate", "exec",
        "execute", "declare", "shutdown", "waitfor", "grant", "revoke", "call", "set", "if",
        "begin", "copy", "attach", "load", "backup", "replace", "merge"
    }
)  # fmt: skip
_WORD_BREAKS = str.maketrans(dict.fromkeys("'\"`;#()/*-+=<>,.|&!~%^{}[]:?\\", " "))
_WAITFOR_RE = re.compile(r"waitfor\s+(?:delay|time)\s*['\"(@]")
_UNION_RE = re.compile(r"union|intersect|except|minus")
_STACKED_RE = re.compile(
    r";[\s\x00]*(?:/\*.*?\*/[\s\x00]*)*(?:select|insert|update|delete|drop|create|alter"
    r"|truncate|exec|execute|declare|shutdown|waitfor|grant|revoke|call|set|if|begin|copy"
    r"|attach|load|backup|replace|merge)(?![\w$])",
    re.S,
)
# A value containing none of these cannot hold any construct this module flags.
_HINTS = ("'", '"', "`", ";", "#", "--", "/*", "(", "or", "and", "union", "select", "@@", "||",
          "&&", "waitfor", "group", "having", "limit")  # fmt: skip

# What may follow a break: a closing paren, an operator, a comment, a clause keyword.
_CLAUSE_START_RE = re.compile(
    r"[\s)]*(?:[;&|=<>!+\-*/%^~#]|(?:or|and|xor|union|intersect|except|minus|order|group"
    r"|having|limit|offset|procedure|into|waitfor|like|rlike|regexp|not|in|between|is|div"
    r"|sounds|glob|ilike|similar)(?![\w$]))"
)
# A leading number or name (`1`, `-1`, `1e1`, `admin`) before the first clause.
_LEAD_RE = re.compile(r"\s*-?[\w$@.]+")
_LEADING_KEYWORDS = _KEYWORDS | _LOGIC_WORDS
_EOF = ("", "")
_FAIL = (-1, 0)
# Operand strength: bareword < string < number/variable < parenthesized comparison < call
# or subquery. "' or 'x" alone is weak (prose quotes words); "' or 1--" is not.
_PLAIN, _TEXT, _LITERAL, _PREDICATE, _CALL, _SUBQUERY = 1, 2, 3, 4, 5, 6
_QUOTE, _NUMBER, _START, _WORD = "quote", "number", "start", "word"


def detect_sqli(value: str, paranoia: int = 1) -> Finding | None:
    """Return a finding if `value` reads as SQL injected into a string or number context."""
    if len(value) < 2:
        return None
    low = value.lower()
    if not any(hint in low for hint in _HINTS):
        return None
    if "/*!" in low:
        # Only MySQL runs /*! ... */ bodies; a SQL keyword inside one is an injection.
        m = _MYSQL_KEYWORD_COMMENT_RE.search(low)
        if m is not None:
            return _finding("sqli-comment", 1, low, m.start())
        low = _MYSQL_EXEC_COMMENT_RE.sub(r" \1 ", low)
    words = set(low.translate(_WORD_BREAKS).split())
    weak = _check_anchors(low, words)
    if weak is not None and weak.paranoia <= 1:
        return weak
    found = _check_breaks(low)
    if found is not None and found.paranoia <= 1:
        return found
    weak = weak or found
    if weak is not None and weak.paranoia <= paranoia:
        return weak
    return None


def _sql_before(low: str, at: int) -> bool:
    """Whether what precedes `at` can precede an expression: an operator, `(`, a keyword."""
    before = low[max(0, at - 24) : at].rstrip()
    if not before or not (before[-1].isalnum() or before[-1] == "_"):
        return True
    word = re.split(r"[^\w$]", before)[-1]
    return word in _KEYWORDS or word in _LOGIC_WORDS or word.isdigit()


def _word_start(low: str, at: int) -> bool:
    return at == 0 or not (low[at - 1].isalnum() or low[at - 1] in "_$.")


def _check_anchors(low: str, words: set[str]) -> Finding | None:
    """SQL-only constructs that are an injection wherever they appear."""
    weak: Finding | None = None
    functions = (
        _SQL_FUNCTION_RE.finditer(low)
        if "(" in low and not words.isdisjoint(_FUNCTION_WORDS)
        else ()
    )
    for i, m in enumerate(functions):
        if i >= ANCHORS_PER_VALUE_MAX:
            break
        if not _word_start(low, m.start()):
            continue
        name = re.sub(r"\s+", "", m.group(1))
        if name == "sleep" and not _sql_before(low, m.start()):
            continue  # "an internal sleep(5) call": prose around the word
        parser = _Parser(low, m.start())
        end, strength = parser.operand(0, 0)
        if (
            end > 0
            and strength == _CALL
            and parser.call_has_sql_arguments
            and parser.tok(2)[0] != ")"  # sleep() / benchmark() take arguments
            and (name != "sleep" or parser.tok(end)[0] not in ("n", "1", "s"))
            # "sleep(1) in c": IN takes a parenthesized list in SQL, a noun in prose
            and not (parser.is_word(end, "in") and parser.tok(end + 1)[0] != "(")
        ):
            rule = "sqli-time" if name in _TIME_FUNCTIONS else "sqli-function"
            return _finding(rule, 1, low, m.start(), parser=parser, end=end)
    catalogs = (
        _SQL_IDENTIFIER_RE.finditer(low)
        if "@@" in low or not words.isdisjoint(_CATALOG_WORDS)
        else ()
    )
    for i, m in enumerate(catalogs):
        if i >= ANCHORS_PER_VALUE_MAX:
            break
        at = m.start()
        if m.group(1) is None or (
            _word_start(low, at)
            and (
                _CATALOG_BEFORE_RE.search(low, max(0, at - 8), at) is not None
                or low.startswith(".", m.end())
            )
        ):
            return _finding("sqli-schema", 1, low, at)
    if "waitfor" in words:
        m3 = _WAITFOR_RE.search(low)
        if m3 is not None:
            return _finding("sqli-time", 1, low, m3.start())
    unions = _UNION_RE.finditer(low) if not words.isdisjoint(_UNION_WORDS) else ()
    for i, m in enumerate(unions):
        if i >= ANCHORS_PER_VALUE_MAX:
            break
        if not _word_start(low, m.start()) or low[m.end() : m.end() + 1].isalnum():
            continue
        parser = _Parser(low, m.start())
        level, end = parser.union(0)
        if level:
            found = _finding("sqli-union", level, low, m.start(), parser=parser, end=end)
            if level == 1:
                return found
            weak = weak or found
    stacked = (
        _STACKED_RE.finditer(low) if ";" in low and not words.isdisjoint(_STACKED_WORDS) else ()
    )
    for i, m in enumerate(stacked):
        if i >= ANCHORS_PER_VALUE_MAX:
            break
        parser = _Parser(low, m.start())
        level, end = parser.statement(1)
        if level:
            found = _finding("sqli-stacked", level, low, m.start(), parser=parser, end=end)
            if level == 1:
                return found
            weak = weak or found
    return weak


def _check_breaks(low: str) -> Finding | None:
    """Parse the value as the continuation of a statement from each plausible break."""
    weak: Finding | None = None
    for quote in "'\"":
        at = low.find(quote)
        if at < 0 or _CLAUSE_START_RE.match(low, at + 1) is None:
            continue  # "O'Brien": a name goes on after the quote, no clause does
        parser = _Parser(low, at + 1, quote)
        level, end, rule = parser.tail(0, _QUOTE)
        if level:
            found = _finding(rule, level, low, at, parser=parser, end=end)
            if level == 1:
                return found
            weak = weak or found
    lead = _LEAD_RE.match(low)
    if (
        lead is not None
        and lead.group().strip(" \t\n\r\f\v-") not in _LEADING_KEYWORDS
        and _CLAUSE_START_RE.match(low, lead.end()) is None
    ):
        return weak  # "Rent for March": a word, then no clause
    parser = _Parser(low, 0)
    kind, text = parser.tok(0)
    start, context = 0, _START
    if kind == "o" and text == "-" and parser.tok(1)[0] == "1":
        start, context = 2, _NUMBER
    elif kind == "1":
        start, context = 1, _NUMBER
    elif kind in ("n", "v"):
        start, context = 1, _WORD
    elif kind == "(" and parser.is_word(1, "select"):
        # `(select ...)` as a whole value: a subquery where a number was expected.
        end, specific = parser.select(1, 0)
        if end > 0 and (specific or parser.selected_from):
            return _finding("sqli-statement", 1, low, 0, parser=parser, end=end)
        return weak
    elif kind == "k" and text in _STATEMENT_STARTS:
        level, end = parser.statement(0)
        if level and (level == 1 or weak is None):
            return _finding("sqli-statement", level, low, 0, parser=parser, end=end)
        return weak
    elif kind not in (")", "&", ";") and not (kind == "k" and text in _UNION_WORDS):
        return weak
    level, end, rule = parser.tail(start, context)
    if level:
        if context == _WORD:
            level += 1  # `name or 1=1` is rarer and closer to prose than `' or 1=1`
        found = _finding(rule, level, low, 0, parser=parser, end=end)
        if level == 1:
            return found
        weak = weak or found
    return weak


def _finding(
    rule: str, level: int, low: str, at: int, *, parser: _Parser | None = None, end: int = 0
) -> Finding:
    fingerprint = parser.fingerprint(end) if parser is not None else ""
    text = excerpt(low, at)
    return detector_finding(rule, "sqli", level, f"{fingerprint}: {text}" if fingerprint else text)


class _Parser:
    """A bounded recursive-descent parser over lazily produced SQL tokens.

    Every method takes a token index and returns the index after what it parsed, or -1
    when the tokens there are not that construct; tokens past the cap read as the end.
    """

    __slots__ = (
        "_done",
        "_end",
        "_pos",
        "_start",
        "_text",
        "_toks",
        "call_has_sql_arguments",
        "quote",
        "selected_from",
    )

    def __init__(self, text: str, pos: int, quote: str = "") -> None:
        self._text = text
        self._start = pos
        self._end = min(len(text), pos + BREAK_WINDOW_CHARS_MAX)
        self.quote = quote
        self._pos = pos
        self._toks: list[tuple[str, str]] = []
        self._done = False
        self.call_has_sql_arguments = False
        self.selected_from = False

    # --- tokens -----------------------------------------------------------------------

    def tok(self, i: int) -> tuple[str, str]:
        toks = self._toks
        while len(toks) <= i and not self._done:
            self._lex()
        return toks[i] if i < len(toks) else _EOF

    def _lex(self) -> None:
        text, pos, toks, end = self._text, self._pos, self._toks, self._end
        while True:
            if pos >= end or len(toks) >= TOKENS_PER_BREAK_MAX:
                self._done = True
                self._pos = pos
                return
            m = _TOKEN_RE.match(text, pos, end)
            if m is None:  # unreachable: the last alternative matches any character
                self._done = True
                return
            pos = m.end()
            group = m.lastindex
            if group in (1, 2):
                continue
            if group == 3:
                toks.append(("c", m.group(3)))
            elif group == 4:
                toks.append(("s" if m.group(5) else "q", ""))
            elif group == 6:
                toks.append(("s" if m.group(7) else "q", ""))
            elif group == 8:
                toks.append(("b", m.group(8)))
            elif group == 9:
                toks.append(("1", m.group(9)))
            elif group == 10:
                toks.append(("v", m.group(10)))
            elif group == 11:
                word = m.group(11)
                if word in _LOGIC_WORDS:
                    toks.append(("&", word))
                elif word in _KEYWORDS:
                    toks.append(("k", word))
                else:
                    toks.append(("n", word))
            elif group == 12:
                op = m.group(12)
                toks.append(("&", op) if op in ("||", "&&") else ("o", op))
            elif group == 13:
                punct = m.group(13)
                toks.append((punct, punct))
            else:
                toks.append(("x", m.group(14)))
            self._pos = pos
            return

    def fingerprint(self, end: int) -> str:
        kinds = []
        for kind, text in self._toks[: max(end, 1)][:16]:
            if kind == "k":
                kinds.append("U" if text in _UNION_WORDS else "k")
            else:
                kinds.append(kind)
        return "".join(kinds)

    def _qualified(self, i: int) -> bool:
        """`master.dbo.xp_cmdshell`, `master..sp_who`: a name followed by `.name`."""
        j = i + 1
        if self.tok(j)[0] != ".":
            return False
        if self.tok(j + 1)[0] == ".":
            j += 1
        return self.tok(j + 1)[0] in ("n", "k", "b")

    def is_word(self, i: int, *words: str) -> bool:
        """Whether token `i` is one of `words` (a keyword, name or logic word)."""
        kind, text = self.tok(i)
        return kind in ("k", "n", "&") and text in words

    # --- expressions --------------------------------------------------------------------

    def operand(self, i: int, depth: int) -> tuple[int, int]:
        """A primary expression: literal, name, call, parenthesized expression, subquery."""
        if depth > NESTING_MAX:
            return _FAIL
        kind, text = self.tok(i)
        if kind == "o" and text in ("-", "+", "~", "!"):
            j, strength = self.operand(i + 1, depth + 1)
            return (j, max(strength, _LITERAL)) if j >= 0 else _FAIL
        if kind in ("s", "q"):
            return i + 1, _TEXT
        if kind in ("1", "v"):
            return i + 1, _LITERAL
        if kind == "b":
            return i + 1, _PLAIN
        if kind == "(":
            return self._parenthesized(i, depth)
        if kind not in ("n", "k"):
            return _FAIL
        if text in ("not", "binary"):
            j, strength = self.operand(i + 1, depth + 1)
            return (j, max(strength, _LITERAL)) if j >= 0 else _FAIL
        if text == "exists" and self.tok(i + 1)[0] == "(":
            return self._parenthesized(i + 1, depth)
        if text == "case":
            return self._case(i, depth)
        if self.tok(i + 1)[0] == "(" and text not in _NOT_FUNCTIONS:
            j = self._arguments(i + 1, depth)
            return (j, _CALL) if j >= 0 else _FAIL
        if kind == "k":
            if text in ("true", "false"):
                return i + 1, _PREDICATE  # a boolean is a condition: `1 or true`
            return (i + 1, _LITERAL) if text in _OPERAND_WORDS else _FAIL
        j, strength = i + 1, _PLAIN
        for _ in range(8):  # qualified names: schema.table.column, master..sysdatabases
            if self.tok(j)[0] != ".":
                break
            nkind, ntext = self.tok(j + 1)
            if nkind in ("n", "k", "b") or (nkind == "o" and ntext == "*"):
                j, strength = j + 2, _LITERAL
            elif nkind == ".":
                j += 1
            else:
                break
        if strength == _LITERAL and self.tok(j)[0] == "(":
            k = self._arguments(j, depth)
            return (k, _CALL) if k >= 0 else _FAIL
        return j, strength

    def _arguments(self, i: int, depth: int) -> int:
        """`( ... )` of a call: any balanced tokens (CAST(x AS int), EXTRACT(y FROM z))."""
        level, j, sql_like = 0, i, False
        for _ in range(TOKENS_PER_BREAK_MAX):
            kind, _text = self.tok(j)
            if kind == "(":
                level += 1
            elif kind == ")":
                level -= 1
                if level == 0:
                    self.call_has_sql_arguments = (
                        self.call_has_sql_arguments or sql_like or (j == i + 1)
                    )
                    return j + 1
            elif kind in ("", "c", ";"):
                self.call_has_sql_arguments = self.call_has_sql_arguments or sql_like
                return j if kind != ";" else -1
            elif kind in ("x",):
                return -1
            elif kind not in ("n",):
                sql_like = True
            j += 1
        return j

    def _parenthesized(self, i: int, depth: int) -> tuple[int, int]:
        """`( select ... )`, `( cond [, cond] )`; an unclosed `(` may run to the end."""
        if self.is_word(i + 1, "select"):
            j, _specific = self.select(i + 1, depth + 1)
            strength = _SUBQUERY
        else:
            j, pred, strength = self.condition(i + 1, depth + 1)
            if pred:
                strength = max(strength, _PREDICATE)
            for _ in range(64):
                if j < 0 or self.tok(j)[0] != ",":
                    break
                j, _pred, _s = self.condition(j + 1, depth + 1)
        if j < 0:
            return _FAIL
        kind = self.tok(j)[0]
        if kind == ")":
            return j + 1, strength
        if kind in ("", "c"):
            return j, strength
        return _FAIL

    def _case(self, i: int, depth: int) -> tuple[int, int]:
        j = i + 1
        for _ in range(TOKENS_PER_BREAK_MAX):
            kind, text = self.tok(j)
            if kind in ("", ";"):
                return _FAIL
            if kind == "k" and text == "end":
                return j + 1, _CALL
            j += 1
        return _FAIL

    def expression(self, i: int, depth: int) -> tuple[int, int]:
        """Operands joined by arithmetic, concatenation, casts and COLLATE."""
        j, strength = self.operand(i, depth)
        if j < 0:
            return _FAIL
        for _ in range(64):
            kind, text = self.tok(j)
            if kind == "o" and text == "::" and self.tok(j + 1)[0] in ("n", "k"):
                j += 2
                continue
            if (
                (kind == "o" and text in _ARITHMETIC)
                or (kind == "k" and text in ("div", "mod", "collate"))
                or (kind == "&" and text == "||")  # concatenation outside MySQL
            ):
                k, more = self.operand(j + 1, depth + 1)
                if k < 0:
                    return j, strength
                # Arithmetic on strings (`''-'`) is SQL; concatenation alone is not.
                floor = _TEXT if text == "||" else _LITERAL
                j, strength = k, max(strength, more, floor)
                continue
            break
        return j, strength

    def condition(self, i: int, depth: int) -> tuple[int, bool, int]:
        """An expression, optionally compared: `1=1`, `x like 'a%'`, `y in (...)`."""
        if depth > NESTING_MAX:
            return -1, False, 0
        j, strength = self.expression(i, depth)
        if j < 0:
            return -1, False, 0
        kind, text = self.tok(j)
        if kind == "o" and text in _COMPARISONS:
            k = j + 1
            if self.is_word(k, "any", "all", "some"):
                k += 1
            k, right = self.expression(k, depth + 1)
            return (k, True, max(strength, right)) if k >= 0 else (-1, False, 0)
        if kind != "k":
            return j, False, strength
        negated = text == "not"
        if negated:
            j += 1
            kind, text = self.tok(j)
        if text in _PREDICATES:
            j += 1
            if self.is_word(j, "to", "like"):
                j += 1
            k, right = self.expression(j, depth + 1)
            if k >= 0 and self.is_word(k, "escape"):
                k, _s = self.expression(k + 1, depth + 1)
            return (k, True, max(strength, right)) if k >= 0 else (-1, False, 0)
        if text == "in":
            if self.tok(j + 1)[0] != "(":
                return -1, False, 0
            k, right = self._parenthesized(j + 1, depth + 1)
            return (k, True, max(strength, right)) if k >= 0 else (-1, False, 0)
        if text == "between":
            k, right = self.expression(j + 1, depth + 1)
            if k < 0 or not self.is_word(k, "and"):
                return -1, False, 0
            k, more = self.expression(k + 1, depth + 1)
            return (k, True, max(strength, right, more)) if k >= 0 else (-1, False, 0)
        if text == "is" and not negated:
            k = j + 1
            if self.is_word(k, "not"):
                k += 1
            if self.is_word(k, "null", "true", "false", "unknown"):
                return k + 1, True, strength
            return -1, False, 0
        if negated:
            return -1, False, 0
        return j, False, strength

    # --- statements ---------------------------------------------------------------------

    def select(self, i: int, depth: int) -> tuple[int, bool]:
        """`select <list> [from ...]`; specific when the list is more than prose.

        Sets `selected_from` when the statement has a FROM clause.
        """
        j = i + 1
        while self.is_word(j, *_SELECT_MODIFIERS):
            j += 1
        if self.is_word(j, "top") and self.tok(j + 1)[0] == "1":
            j += 2
        items, specific = 0, False
        for _ in range(64):
            kind, text = self.tok(j)
            if kind == "o" and text == "*":
                j, specific = j + 1, True
            else:
                j, strength = self.expression(j, depth + 1)
                while j >= 0 and self.tok(j)[0] == "&":  # `select null and 'a'='a'`
                    j, _pred, more = self.condition(j + 1, depth + 1)
                    strength = max(strength, more)
                if j < 0:
                    return -1, False
                specific = specific or strength >= _TEXT
                if self.is_word(j, "as"):
                    j += 1
                akind = self.tok(j)[0]
                if akind in ("n", "s", "b") or (akind == "q"):
                    j += 1
            items += 1
            if self.tok(j)[0] != ",":
                break
            j += 1
        if items >= 2:
            specific = True
        if self.is_word(j, "from"):
            self.selected_from = True
            j = self._table_refs(j + 1, depth)
            if j < 0:
                return -1, False
        kind, text = self.tok(j)
        valid = kind in ("", "c", ";", ")") or (kind in ("k", "n") and text in _SELECT_FOLLOWERS)
        if kind == "k" and text == "where":
            k, pred, _s = self.condition(j + 1, depth + 1)
            return (k, True) if k >= 0 and pred else (j, specific)
        return (j, specific) if valid else (-1, False)

    def _table_refs(self, i: int, depth: int) -> int:
        j = i
        for _ in range(64):
            kind, text = self.tok(j)
            if (
                kind in ("n", "b", ".", ",")
                or (kind == "o" and text == "*")
                or (kind == "k" and text in ("as", "join", "inner", "outer", "cross", "natural"))
            ):
                j += 1
            elif kind == "(":
                j, _s = self._parenthesized(j, depth + 1)
                if j < 0:
                    return -1
            else:
                break
        return j

    def union(self, i: int) -> tuple[int, int]:
        """`union [all|distinct] [(] select ...` → (paranoia level or 0, end)."""
        j = i + 1
        if self.is_word(j, "all", "distinct"):
            j += 1
        while self.tok(j)[0] == "(":
            j += 1
        if not self.is_word(j, "select"):
            return 0, j
        end, specific = self.select(j, 0)
        if end < 0:
            return 0, j
        # "union select name from users" is SQL even with a bare column list.
        return (1 if specific or self.selected_from else 2), end

    def statement(self, i: int) -> tuple[int, int]:
        """A statement stacked after `;` (or a whole value that is one) → (level, end)."""
        kind, text = self.tok(i)
        nkind, ntext = self.tok(i + 1)
        if kind not in ("k", "n"):
            return 0, i
        level = 0
        if text == "select":
            end, specific = self.select(i, 0)
            if end < 0:
                return 0, i
            return (1 if specific else 2), end
        if (text == "insert" and ntext == "into") or (
            text == "update" and nkind in ("n", "b") and self.is_word(i + 2, "set")
        ):
            level = 1
        elif text == "delete" and ntext == "from":
            tail = self.tok(i + 3)[0]
            level = 1 if tail in ("", "c", ";") or self.is_word(i + 3, "where") else 2
        elif text in ("drop", "create", "alter", "truncate") and ntext in _OBJECTS:
            # `drop table users--` ends after the name; "drop table reservation for 4" goes on.
            j = i + 2
            if self.is_word(j, "if") and self.is_word(j + 1, "exists", "not"):
                j += 3 if self.is_word(j + 1, "not") else 2
            while self.tok(j)[0] in ("n", "b", ".", "k") and j < i + 8:
                j += 1
            level = 1 if self.tok(j)[0] in ("", "c", ";", "(") else 2
        elif text == "truncate" and nkind in ("n", "b"):
            level = 2
        elif text in ("exec", "execute"):
            if (
                (nkind in ("(", "s") and i > 0)  # exec('...') only stacked, not as a value
                or nkind == "v"
                or ntext == "immediate"
                or (nkind == "n" and ("_" in ntext or self._qualified(i + 1)))
            ):
                level = 1
        elif (
            (text == "declare" and nkind == "v")
            or (text == "set" and nkind == "v")
            or (text == "waitfor" and ntext in ("delay", "time"))
            or (text == "shutdown" and (nkind in ("", "c", ";") or ntext == "with"))
        ):
            level = 1
        elif text in ("if", "begin"):
            level = self._guarded_statement(i)
        elif (
            (text == "call" and nkind == "n" and self.tok(i + 2)[0] == "(")
            or (text == "copy" and nkind == "n" and self.is_word(i + 2, "from", "to"))
            or (text in ("grant", "revoke") and (ntext in ("all", "select", "insert", "update")))
            or (text == "load" and ntext in ("data", "xml"))
            or (text in ("attach", "backup") and ntext == "database")
        ):
            level = 1
        return level, i + 2

    def _guarded_statement(self, i: int) -> int:
        """`if (1=1) waitfor delay ...` / `begin ... end`: level of the inner statement."""
        j = i + 1
        if self.is_word(i, "if"):
            j, pred, _s = self.condition(j, 1)
            if j < 0 or not pred:
                return 0
        for _ in range(4):
            if self.tok(j)[0] == ";" or self.is_word(j, "begin", "then"):
                j += 1
        level, _end = self.statement(j)
        return level

    # --- the continuation after a break -------------------------------------------------

    def tail(self, i: int, context: str) -> tuple[int, int, str]:
        """Clauses after a break, valid to the end → (level or 0, end index, rule id)."""
        while self.tok(i)[0] == ")":
            i += 1
        level, clauses, rule = 9, 0, "sqli-tokens"
        for _ in range(CLAUSES_MAX):
            kind, text = self.tok(i)
            if kind in ("", "c"):
                break
            if kind == ";":
                if self.tok(i + 1)[0] in ("", "c"):
                    i += 1
                    break
                found, end = self.statement(i + 1)
                return (found, end, "sqli-stacked") if found else (0, i, rule)
            if kind == "&":
                j, pred, strength = self.condition(i + 1, 0)
                if j < 0:
                    return 0, i, rule
                strong = (
                    pred or strength >= _PREDICATE or (context == _QUOTE and strength == _LITERAL)
                )
                level = min(level, 1 if strong else 2)
                rule = "sqli-tautology"
            elif kind == "k" and text in _UNION_WORDS:
                found, end = self.union(i)
                return (found, end, "sqli-union") if found else (0, i, rule)
            elif kind == "k" and text in ("order", "group") and self.is_word(i + 1, "by"):
                j, strength = self._expression_list(i + 2)
                if j < 0:
                    return 0, i, rule
                while self.is_word(j, "asc", "desc"):
                    j += 1
                level = min(level, 1 if strength >= _LITERAL else 2)
            elif kind == "k" and text == "having":
                j, pred, strength = self.condition(i + 1, 0)
                if j < 0:
                    return 0, i, rule
                level = min(level, 1 if pred or strength >= _PREDICATE else 2)
            elif kind == "k" and text in ("limit", "offset"):
                j, _strength = self._expression_list(i + 1)
                if j < 0:
                    return 0, i, rule
                level = min(level, 2)
            elif (kind == "k" and text == "procedure" and self.tok(i + 2)[0] == "(") or (
                kind == "k" and text == "into" and self.is_word(i + 1, "outfile", "dumpfile")
            ):
                return 1, i + 2, "sqli-tokens"
            elif kind == "k" and text == "waitfor" and self.is_word(i + 1, "delay", "time"):
                return 1, i + 2, "sqli-time"
            elif context in (_QUOTE, _NUMBER, _START) and self._is_binary_operator(kind, text):
                j, right = self._operator_clause(i)
                if j < 0:
                    return 0, i, rule
                # `'+(select ..)+'` after a quote; after a number only a subquery counts
                # ("12 | result.append(row)" is code, not an injection).
                needed = _PREDICATE if context == _QUOTE else _SUBQUERY
                # "5 - 10 items" is arithmetic in prose: weakest after a number.
                # "the '-' operator" quotes a symbol: an operator then only text is weaker.
                weak_level = 2 if context == _QUOTE and right >= _LITERAL else 3
                level = min(level, 1 if right >= needed else weak_level)
            else:
                return 0, i, rule
            clauses += 1
            i = j
        if clauses == 0:
            kind, comment = self.tok(i)
            if (
                context == _QUOTE
                and kind == "c"
                and self.quote not in comment
                and _COMMENT_BREAK_RE.match(comment) is not None
                and not self._text[max(0, self._start - 2) : self._start - 1].isspace()
            ):
                # `admin'--`: the quote is closed and the application's rest commented out;
                # `"#top"` and `'--'` close their quote again, so they are text.
                return 1, i + 1, "sqli-comment"
            return 0, i, rule
        return level, i, rule

    def _is_binary_operator(self, kind: str, text: str) -> bool:
        if kind == "o":
            return text in _COMPARISONS or (text in _ARITHMETIC and text not in ("->", "->>"))
        return kind == "k" and text in (_PREDICATES | {"in", "between", "is", "not", "div"})

    def _operator_clause(self, i: int) -> tuple[int, int]:
        """`'+(select ...)+'`, `'='`, `1 rlike (select ...)`: an operator and its operand."""
        kind, text = self.tok(i)
        if kind == "k":
            # Reuse the predicate grammar with a placeholder left operand.
            j = i
            if text == "not":
                j += 1
                kind, text = self.tok(j)
            if text in _PREDICATES:
                j += 1
                if self.is_word(j, "to", "like"):
                    j += 1
                return self.expression(j, 1)
            if text == "in" and self.tok(j + 1)[0] == "(":
                return self._parenthesized(j + 1, 1)
            if text == "is":
                k = j + 1 + int(self.is_word(j + 1, "not"))
                return (k + 1, _LITERAL) if self.is_word(k, "null", "true", "false") else _FAIL
            if text == "between":
                k, right = self.expression(j + 1, 1)
                if k < 0 or not self.is_word(k, "and"):
                    return _FAIL
                k, more = self.expression(k + 1, 1)
                return (k, max(right, more)) if k >= 0 else _FAIL
            return _FAIL
        return self.expression(i + 1, 1)

    def _expression_list(self, i: int) -> tuple[int, int]:
        j, strength = self.expression(i, 1)
        for _ in range(64):
            if j < 0 or self.tok(j)[0] != ",":
                break
            j, more = self.expression(j + 1, 1)
            strength = max(strength, more)
        return (j, strength) if j >= 0 else _FAIL
