"""OS command injection detection: read a value the way a POSIX shell or cmd.exe would.

Injected text only runs if the shell, splitting the application's command line, reaches a
command separator (`;`, `|`, `||`, `&&`, `&`, a newline) or a substitution (`$(...)`,
backticks) and then a word that names a program. So the value is split at those points
with sh's word rules — quotes and backslashes removed (`c'a't`, `c\\at`), `$IFS` read as a
blank, `$@`/`$9` expanding to nothing, `{cat,/etc/passwd}` brace lists — and the first
word of each command is looked up among known programs. Many program names are English
words ("cat food; dog food", "rm 12", "please | forward"), so those count only with
arguments that look like a command line: an option, a path, a URL or address, a
redirection, a variable. Programs that are not words (`whoami`, `wget`, `powershell`)
count on their own.

Interpreters reached through an eval sink (`${@print(...)}` in PHP, `os.system(...)`,
VBScript `Execute(`), YAML deserialization tags and Shellshock function definitions run
commands too, so they are reported here as well (category `rce`).
"""

from __future__ import annotations

import re

from strongroom.edge.waf.findings import Finding, detector_finding, excerpt

# Separators and substitutions examined per value; the words read per command.
COMMANDS_PER_VALUE_MAX = 48
WORDS_PER_COMMAND_MAX = 8
# Characters of a command read after its separator.
COMMAND_CHARS_MAX = 256
# Plain words among a command's arguments from which it reads as a sentence about a
# command ("rm -rf is dangerous, don't") rather than one.
PROSE_WORDS_MIN = 3

# Programs whose name is not an English word: running one is the attack.
_STRONG = frozenset(
    {
        "whoami", "wget", "uname", "ifconfig", "ipconfig", "getent", "nslookup", "powershell",
        "pwsh", "certutil", "bitsadmin", "busybox", "systeminfo", "netstat", "tasklist",
        "taskkill", "wmic", "mshta", "rundll32", "regsvr32", "cscript", "wscript", "ncat",
        "netcat", "socat", "mkfifo", "mknod", "chmod", "chown", "chattr", "crontab", "useradd",
        "usermod", "userdel", "passwd", "msfvenom", "nmap", "xterm", "tcpdump", "iptables",
        "sysctl", "lsb_release", "printenv", "nohup", "setsid", "xxd", "hexdump", "od",
        "strace", "gdb", "telnet", "tftp", "smbclient", "rpcclient", "nbtstat", "arp",
        "traceroute", "tracert", "pathping", "lsmod", "insmod", "modprobe", "dmesg",
        "journalctl", "systemctl", "launchctl", "osascript", "doas", "pkexec"
    }
)  # fmt: skip
# Programs whose name is also a word: they need command-line-looking arguments.
_WEAK = frozenset(
    {
        "cat", "ls", "id", "echo", "ping", "bash", "sh", "zsh", "ksh", "csh", "tcsh", "dash",
        "ash", "fish", "nc", "rm", "cp", "mv", "touch", "more", "less", "head", "tail", "grep",
        "egrep", "fgrep", "find", "sort", "kill", "killall", "pkill", "sleep", "python",
        "python2", "python3", "perl", "php", "ruby", "node", "nodejs", "lua", "java",
        "jrunscript", "env", "export", "set", "type", "dir", "ver", "ps", "pwd", "who",
        "uptime", "date", "which", "whereis", "locate", "tar", "zip", "unzip", "gzip", "gunzip",
        "bzip2", "awk", "gawk", "sed", "xargs", "timeout", "expr", "printf", "rev", "dd",
        "eval", "exec", "source", "cut", "tr", "tee", "ln", "file", "stat", "diff",
        "md5sum", "sha1sum", "sha256sum", "base64", "openssl", "ssh", "scp", "ftp", "net",
        "reg", "sc", "del", "copy", "move", "ren", "start", "call", "cmd", "findstr",
        "hostname", "history", "w", "last", "lastlog", "mount", "df", "du", "free", "top", "vi",
        "vim", "nano", "ed", "fetch", "lynx", "links", "at", "cron", "sqlite3", "mysql", "psql",
        "nl", "tac", "strings", "host", "dig", "whois", "curl", "sudo", "service"
    }
)  # fmt: skip
# Programs that do harm with no arguments at all (`;id`, `| whoami`, `& dir`).
_BARE = frozenset(
    {
        "id", "whoami", "uname", "ls", "pwd", "ps", "env", "dir", "ver", "ifconfig", "ipconfig",
        "hostname", "netstat", "systeminfo", "uptime", "printenv", "tasklist"
    }
)  # fmt: skip
# cmd.exe commands: case-insensitive, with /x options.
_WINDOWS = frozenset(
    {
        "dir", "type", "del", "copy", "move", "ren", "set", "ver", "echo", "ping", "net", "reg",
        "sc", "start", "call", "cmd", "powershell", "pwsh", "certutil", "bitsadmin", "wmic",
        "tasklist", "taskkill", "systeminfo", "ipconfig", "nslookup", "whoami", "findstr",
        "more", "timeout", "mshta", "rundll32", "regsvr32", "cscript", "wscript", "tracert",
        "pathping", "nbtstat", "arp", "netstat", "hostname"
    }
)  # fmt: skip
_INTERPRETERS = frozenset(
    {
        "bash", "sh", "zsh", "ksh", "csh", "tcsh", "dash", "ash", "fish", "python", "python2",
        "python3", "perl", "php", "ruby", "node", "nodejs", "lua", "cmd", "powershell", "pwsh",
        "nc", "ncat", "netcat", "socat", "busybox", "jrunscript"
    }
)  # fmt: skip
# System locations an argument may start with (after `=` too: `if=/etc/passwd`).
_SYSTEM_PATHS = (
    "/etc/", "/bin/", "/sbin/", "/usr/", "/dev/", "/proc/", "/tmp/", "/var/", "/root/",  # noqa: S108
    "/home/", "/opt/", "/boot/", "/lib/", "/sys/", "~/", "c:\\", "c:/", "%systemroot%",
    "%windir%", "%comspec%", "%temp%", "\\\\",
)  # fmt: skip
# Paths that make an argument a command line even amid prose.
_UNIX_SYSTEM_PATHS = (
    "/etc/", "/bin/", "/sbin/", "/usr/", "/dev/", "/proc/", "/tmp/", "/var/", "/root/",  # noqa: S108
    "/home/", "c:\\windows", "c:/windows",
)  # fmt: skip
# A plain word of a sentence, as one shell word.
_SENTENCE_WORD_RE = re.compile(r"[A-Za-z]{2,}(?:'[a-z]{1,2})?[.,!?]?")
# What makes a fetch a dropper: writing the file, or a script/binary as the target.
_DROPPER_RE = re.compile(
    r"(?:^|\s)(?:-[a-z]*[oO]|--output|-urlcache|-split|/transfer)\b"
    r"|\.(?:sh|py|pl|ps1|exe|elf|bin|bat|vbs|hta|dll|jar|php)(?:[?\s]|$)"
)
# A word of a sentence: letters, an apostrophe ("don't"), trailing punctuation.
_PROSE_ARGUMENT_RE = re.compile(r"(?<![\w/\\.$%-])[A-Za-z]{2,}(?:'[a-z]{1,2})?(?![\w/\\=])")
_SYSTEM_DIRS = frozenset(
    {
        "/", "/etc", "/bin", "/root", "/tmp", "/var", "/home", "/proc", "~"  # noqa: S108
    }
)  # fmt: skip
# Programs that, given a system path or the right option, are an attack on their own
# (a value that is just "find all files below /lib" or "at /home/x/app.js:5" is not).
_START_PROGRAMS = frozenset(
    {
        "cat", "tac", "nl", "more", "less", "head", "tail", "type", "ls", "dir", "rm", "cp",
        "mv", "chmod", "chown", "strings", "od", "xxd", "base64", "grep", "bash", "sh", "zsh",
        "ksh", "csh", "dash", "ash", "python", "python2", "python3", "perl", "ruby", "php",
        "node", "lua", "nc", "ncat", "netcat", "socat", "curl", "wget", "fetch", "lynx", "echo",
        "printf", "ping", "telnet", "powershell", "pwsh", "cmd", "certutil", "bitsadmin",
        "busybox", "dd", "tar"
    }
)  # fmt: skip
# Directories whose programs a command names by full path (paths in values, not files we
# open).
_BINARY_DIRS = ("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/tmp/")  # noqa: S108

_SEPARATOR_RE = re.compile(r"\|\||&&|[;|&\n\r`]|\$\(|[<>]\(")
# One shell word: plain characters, backslash escapes, single- and double-quoted parts.
_WORD_RE = re.compile(r"""(?:[^\s;|&<>()`'"\\#]|\\.|'[^']*'?|"[^"]*"?)+""", re.S)
# Characters that expand to nothing for sh in a word: quotes, backslashes, $@, $*, $1..$9.
_EMPTY_RE = re.compile(r"""['"\\]|\$[@*0-9]|\$\{[@*0-9]?\}|\$\(\)""")
_IFS_RE = re.compile(r"\$\{?ifs\}?(?:\$[@*0-9]|\$\{[0-9]\})?", re.I)
# Programs whose first argument is a host: `|| curl x.oast.fun`, `; ping example.com`.
_NETWORK = frozenset(
    {
        "ping", "nc", "ncat", "netcat", "host", "dig", "whois", "ssh", "scp", "ftp", "tftp",
        "nslookup", "curl", "wget", "telnet", "fetch", "lynx", "links", "socat"
    }
)  # fmt: skip
# `net user`, `net localgroup administrators`: cmd.exe's account and share enumeration.
_NET_VERBS = frozenset({"user", "localgroup", "group", "view", "share", "use", "accounts"})
_PROSE_WORD_RE = re.compile(r"[A-Za-z]{2,}")
_BLANK_RE = re.compile(r"\s")
# Arguments that are paths or variables: `/etc`, `./x`, `~/.ssh`, `c:\\`, `%TEMP%`.
_PATH_STARTS = ("/", "./", "../", "~", "c:", "%")
_VARIABLE_RE = re.compile(r"\$[a-zA-Z_{(]")
_IPV4_RE = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
_HOST_RE = re.compile(r"^[\w-]+(?:\.[\w-]+)+\.?(?::\d+)?(?:/\S*)?$")
_FILE_RE = re.compile(r"^[\w.-]+\.[a-z0-9]{1,5}$")
_GLOB_PATH_RE = re.compile(r"^(?:/[\w?*\[\]-]+){2,}$")
_SHELLSHOCK_RE = re.compile(r"\(\s*\)\s*\{[^}]{0,64};\s*\}\s*;")
_CODE_SINK_RE = re.compile(
    r"(?:system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|assert"
    r"|create_function|call_user_func(?:_array)?|os\s*\.\s*(?:system|popen|exec\w*|spawn\w*)"
    r"|subprocess\s*\.\s*(?:run|popen|call|check_output|check_call|getoutput)|execsync"
    r"|spawnsync|__import__|runtime\s*\.\s*getruntime\s*\(\s*\)\s*\.\s*exec|processbuilder)"
    r"\(\s*['\"`$\[(]"
    # PHP complex syntax runs a call: ${@system(...)}, {${phpinfo()}}, ${system('id')}
    r"|\$\{\s*@\s*[a-z_]\w*\s*\(|\{\s*\$\{|\$\{\s*(?:system|exec|passthru|shell_exec|phpinfo"
    r"|eval|assert|print|popen|file_get_contents|base64_decode)\s*\("
    r"|<\?(?:php|=)|!!(?:python|ruby|java|perl)/|require\s*\(\s*['\"`]child_process"
)
# Words gating _CODE_SINK_RE (its `${`, `{${`, `<?` and `!!` forms are gated by characters).
_CODE_SINK_WORDS = frozenset(
    {
        "system", "exec", "shell_exec", "passthru", "popen", "proc_open", "pcntl_exec",
        "assert", "create_function", "call_user_func", "call_user_func_array", "os",
        "subprocess", "child_process", "execsync", "spawnsync", "__import__", "runtime",
        "processbuilder", "require"
    }
)  # fmt: skip
_SINK_ARGUMENT_RE = re.compile(r"\(\s*['\"`$\[(]")
_CODE_WORD_BREAKS = str.maketrans(dict.fromkeys("'\"`;#()/*-+=<>,.|&!~%^{}[]:?\\@$", " "))
_PROGRAMS = _STRONG | _WEAK | _WINDOWS
_OBFUSCATION_RE = re.compile(r"""['"\\$=,+/?*]""")
# The first word after a separator, before quote/escape removal.
_HEAD_RE = re.compile(r"[\s{(!]*([^\s;|&<>()`#]*)")
_VBSCRIPT_MARKERS = (
    "execute(", "executeglobal", "createobject(", "wscript.shell", "response.write",
    "on error resume next", "server.scripttimeout", "response.end", "eval(",
)  # fmt: skip
_VBSCRIPT_ONLY = ("execute(", "executeglobal", "createobject(", "wscript.shell",
                  "on error resume next", "server.scripttimeout")  # fmt: skip
# Quoted fragments glued back together: "ex"&"ecute(", 'ale'+'rt(', "sys"."tem(".
_CONCAT_RE = re.compile(r"""(["'])\s*[&+.]\s*\1""")
_TRIGGERS = (";", "|", "&", "\n", "\r", "`", "$", "(", "<?", "!!")


def detect_shell(value: str, paranoia: int = 1) -> Finding | None:
    """Return a finding if `value` would run a command when spliced into a shell line."""
    if len(value) < 2:
        return None
    starts_with_program = _start_command(value)
    if not starts_with_program and not any(trigger in value for trigger in _TRIGGERS):
        return None
    text = value.replace("\x00", "")
    weak: Finding | None = None
    for found in (
        _check_code(text),
        _check_separators(text),
        _check_start(text) if starts_with_program else None,
    ):
        if found is None:
            continue
        if found.paranoia <= 1:
            return found
        weak = weak or found
    if weak is not None and weak.paranoia <= paranoia:
        return weak
    return None


def _finding(rule: str, level: int, text: str, at: int) -> Finding:
    return detector_finding(rule, "rce", level, excerpt(text, at))


def _start_command(value: str) -> bool:
    """Whether the value's first word is a program name (checked without a separator)."""
    head = value.lstrip()[:48].split(None, 1)
    if not head:
        return False
    word = head[0].lower().rsplit("=", 1)[-1].rsplit("/", 1)[-1].removesuffix(".exe")
    return word in _STRONG or word in _WEAK


# --- interpreters ------------------------------------------------------------------------


def _check_code(text: str) -> Finding | None:
    low = text.lower()
    if "ifs" in low:
        for m in _IFS_RE.finditer(low):
            # `cat${IFS}/etc/passwd` glues $IFS between words; prose ("split at $IFS
            # whitespace") keeps blanks around it.
            before = low[m.start() - 1 : m.start()]
            after = low[m.end() : m.end() + 1]
            if (before and not before.isspace()) or (after and (after.isalnum() or after in "/$-")):
                return _finding("rce-shell-obfuscation", 1, text, m.start())
    if "{" in low:
        shellshock = _SHELLSHOCK_RE.search(low)
        if shellshock is not None:
            return _finding("rce-shellshock", 1, text, shellshock.start())
    if "(" in low or "<?" in low or "!!" in low:
        glued = _CONCAT_RE.sub("", low) if ("'" in low or '"' in low) else low
        if (
            "<?" in glued
            or "!!" in glued
            or "${" in glued
            or "{$" in glued
            # a sink call needs `(` then a quote, `$`, `[` or `(`: system('id')
            or (
                _SINK_ARGUMENT_RE.search(glued) is not None
                and not set(glued.translate(_CODE_WORD_BREAKS).split()).isdisjoint(_CODE_SINK_WORDS)
            )
        ):
            for m in _CODE_SINK_RE.finditer(glued):
                at = m.start()
                if at == 0 or not (glued[at - 1].isalnum() or glued[at - 1] in "_$"):
                    return _finding("rce-code-injection", 1, glued, at)
        if (
            ("execute" in glued or "eval" in glued or "response" in glued)
            and sum(marker in glued for marker in _VBSCRIPT_MARKERS) >= 2
            and any(marker in glued for marker in _VBSCRIPT_ONLY)
        ):
            return _finding("rce-code-injection", 1, glued, 0)
    return None


# --- shell command lines ----------------------------------------------------------------


def _check_separators(text: str) -> Finding | None:
    weak: Finding | None = None
    first_blank = -1  # computed on the first lone `&`
    first_equals = -1
    backticks = 0
    for count, m in enumerate(_SEPARATOR_RE.finditer(text)):
        if count >= COMMANDS_PER_VALUE_MAX:
            break
        separator = m.group()
        if separator == "`":
            backticks += 1
            if backticks % 2 == 0:
                continue  # the closing backtick of a pair opens nothing
        if separator == "&":
            # `a=1&id=2`: a lone `&` in a space-less key=value string joins query pairs.
            if first_blank < 0:
                blank = _BLANK_RE.search(text)
                first_blank = blank.start() if blank is not None else len(text)
                first_equals = text.find("=")
            if 0 <= first_equals < m.start() < first_blank:
                continue
        substitution = separator in ("`", "$(", "<(", ">(")
        if separator == "`" and (
            text.startswith("`", m.end()) or text[m.start() - 1 : m.start()] == "`"
        ):
            continue  # ``literal`` and ```fences``` in Markdown/reST are not substitutions
        if not _may_name_program(text, m.end()):
            continue
        level = _judge_command(text, m.end(), substitution, start=False)
        if level:
            found = _finding("rce-shell-command", level, text, m.start())
            if level == 1:
                return found
            weak = weak or found
    return weak


def _check_start(text: str) -> Finding | None:
    level = _judge_command(text, 0, substitution=False, start=True)
    return _finding("rce-shell-command", level, text, 0) if level else None


def _may_name_program(text: str, pos: int) -> bool:
    """Cheap pre-check of the word after a separator before the full sh word split."""
    m = _HEAD_RE.match(text, pos)
    if m is None:
        return False
    head = m.group(1)
    if head.isalpha():
        return head.lower() in _PROGRAMS
    if not head:
        return text.startswith(("'", '"', "\\", "$"), m.end())
    return _OBFUSCATION_RE.search(head) is not None or bool(_program(head))


def _normalize(word: str) -> str:
    return _EMPTY_RE.sub("", word)


def _words(text: str, pos: int) -> tuple[list[str], str]:
    """Words of the simple command at `pos`, and what ended it (metachar or "")."""
    end = min(len(text), pos + COMMAND_CHARS_MAX)
    segment = text[pos:end]
    if "$" in segment:
        segment = _IFS_RE.sub(" ", segment)
    words: list[str] = []
    i = 0
    while i < len(segment) and len(words) < WORDS_PER_COMMAND_MAX:
        char = segment[i]
        if char in " \t\x0b\x0c{(!":
            i += 1
            continue
        if char == "#":  # a comment runs to the end of the line
            return words, char
        m = _WORD_RE.match(segment, i)
        if m is None:
            return words, char
        words.append(m.group())
        i = m.end()
    return words, ""


def _judge_command(text: str, pos: int, substitution: bool, start: bool) -> int:
    """Paranoia level at which the command at `pos` is an injection (0: it is not)."""
    raw_words, terminator = _words(text, pos)
    words = [_normalize(word) for word in raw_words]
    # Leading VAR=value assignments are skipped by sh; `cmd=cat` also names `cat`.
    while words and "=" in words[0] and not words[0].startswith("="):
        name, _, rest = words[0].partition("=")
        if not name.replace("_", "").isalnum():
            break
        if rest and _program(rest):
            words[0] = rest
            break
        words.pop(0)
    if not words:
        return 0
    head = words[0]
    if "," in head and text[pos : pos + 8].lstrip(" \t(").startswith("{"):
        words = head.split(",") + words[1:]
        head = words[0]
    if "+" in head and not start:
        words = head.split("+") + words[1:]
        head = words[0]
    program = _program(head)
    if not program:
        if _GLOB_PATH_RE.match(head) and sum(c in "?*[" for c in head) >= 2:
            return 1
        return 0
    arguments = words[1:]
    lowered_program = program.lower()
    windows = lowered_program in _WINDOWS
    unix_name = program == lowered_program  # Unix program names are case-sensitive.
    known = (unix_name and (program in _STRONG or program in _WEAK)) or windows
    if not known:
        return 0
    full_path = "/" in head or "\\" in head
    if _markdown_code(text, pos, substitution):
        # "run `sleep 4` to wait": inline code in prose needs the stronger evidence.
        return 1 if _sensitive(lowered_program, arguments, terminator, text) else 3
    if start:
        return 1 if _sensitive(lowered_program, arguments, terminator, text) else 0
    if terminator in ("<", ">") and _redirects_to_path(text, pos):
        return 1  # `cat</etc/passwd`, `id>/tmp/x`
    strong = (program in _STRONG and unix_name) or (windows and lowered_program in _STRONG)
    if full_path and head.startswith(_BINARY_DIRS):
        return 1
    if strong and (arguments or lowered_program in _BARE):
        return 1
    if not arguments:
        if lowered_program in _BARE and (unix_name or windows):
            return 1 if _ends_command(terminator, text, pos) else 0
        if lowered_program in _INTERPRETERS and terminator in ("", ";", "&", "\n", "`", ")"):
            return 1 if substitution or _after_pipe(text, pos) else 2
        return 2 if substitution else 0
    # "rm -rf is dangerous, don't run it": a sentence after the option is prose about a
    # command, not one; a system path or variable still makes it a command line.
    if lowered_program == "net" and arguments[0].lower() in _NET_VERBS:
        return 1
    found = 2 if _prose_arguments(raw_words[1:]) else 1
    if _shell_arguments(lowered_program, arguments, terminator, windows):
        return found
    if any("\\x" in word or "\\0" in word or word.endswith("$") for word in raw_words[1:]):
        return 1  # printf '\x69\x64' spells a command in escapes; `x$(...)` substitutes one
    if substitution and text[pos - 2 : pos] == "$(" and lowered_program in _START_PROGRAMS:
        return 1  # `$(printf 'id')`, `$(cat x)`: only a shell reads `$(` before a program
    if terminator == "|" and _pipes_into_program(text, pos):
        return 1
    if windows and _shell_arguments(lowered_program, raw_words[1:], terminator, windows):
        return found  # cmd.exe keeps backslashes: C:\Windows\win.ini
    if lowered_program == "net" and arguments[0].lower() in _NET_VERBS:
        return 1
    return 2 if substitution else 0


def _program(word: str) -> str:
    """The program a command word runs: basename, without .exe."""
    base = word.replace("\\", "/").rsplit("/", 1)[-1]
    for suffix in (".exe", ".EXE", ".com"):
        base = base.removesuffix(suffix)
    lowered = base.lower()
    if lowered in _STRONG or lowered in _WEAK or lowered in _WINDOWS:
        return base
    return ""


def _ends_command(terminator: str, text: str, pos: int) -> bool:
    """A bare `id`/`ls`/`dir` counts when nothing prose-like follows it."""
    if terminator in ("", ";", "&", "\n", "\r", "`", ")", "#"):
        return True
    if terminator == "|":
        rest = text[pos:].split("|", 1)
        if len(rest) > 1 and not rest[1].strip():
            return True  # `;id|`: piped into whatever the application appends
        following, _ = _words(rest[1] if len(rest) > 1 else "", 0)
        return bool(following) and bool(_program(_normalize(following[0])))
    return False


def _markdown_code(text: str, pos: int, substitution: bool) -> bool:
    """A backticked word set in prose, as Markdown writes inline code."""
    if not substitution or pos < 1 or text[pos - 1] != "`":
        return False
    close = text.find("`", pos)
    if close < 0:
        return False  # an unclosed substitution
    prefix = text[max(0, pos - 1 - COMMAND_CHARS_MAX) : pos - 1].rstrip()
    if prefix.endswith((";", "|", "&", "=", "(", "$")):
        return False  # `;`id``, `x=`id``: shell syntax right before it
    outside = prefix + " " + text[close + 1 : close + 1 + COMMAND_CHARS_MAX]
    if len(_PROSE_WORD_RE.findall(outside)) < 2:
        return False  # `id` alone, or `echo `whoami``: no prose around it
    before = text[pos - 2 : pos - 1]
    after = text[close + 1 : close + 2]
    return (not before or before.isspace() or before in "([{'\"*_[") and (
        not after or after.isspace() or after in ".,;:!?)]}'\"*_"
    )


def _redirects_to_path(text: str, pos: int) -> bool:
    """`cat</etc/passwd`, `id>/tmp/x`, `>&2` — not `<file|dir>` in documentation."""
    at = min((i for i in (text.find("<", pos), text.find(">", pos)) if i >= 0), default=-1)
    if at < 0:
        return False
    target = text[at + 1 : at + 4].lstrip("<> \t")
    # `>&2` duplicates a descriptor; a digit alone after `<` is prose ("I <3 this").
    return target.startswith(("/", "~", "$", "&")) or (text[at] == ">" and target[:1].isdigit())


def _pipes_into_program(text: str, pos: int) -> bool:
    """`{echo,aWQ=}|{base64,-d}|bash`: the output of one known program feeds another."""
    bar = text.find("|", pos, pos + COMMAND_CHARS_MAX)
    if bar < 0:
        return False
    following, _ = _words(text, bar + 1)
    if not following:
        return False
    head = _normalize(following[0]).split(",", 1)[0]
    if "/" in head and not head.startswith(("/", "./")):
        return False  # `| @nodejs/python`: a name, not a program path
    return bool(_program(head))


def _after_pipe(text: str, pos: int) -> bool:
    return text[:pos].rstrip().endswith("|")


def _shell_arguments(program: str, arguments: list[str], terminator: str, windows: bool) -> bool:
    """Whether the arguments look like a command line rather than words of a sentence."""
    if not arguments:
        return False  # `a+b,c` split into words the raw text does not have
    first = arguments[0]
    for argument in arguments:
        if not argument:
            continue
        if (
            argument[0] == "-"
            and len(argument) > 1
            and (argument[1].isalpha() or argument[1] == "-")
        ):
            return True
        if windows and argument[0] == "/" and 1 < len(argument) <= 4 and argument[1:].isalpha():
            return True
        if argument.startswith(_PATH_STARTS) or _VARIABLE_RE.search(argument):
            return True
        if "\\" in argument or ("*" in argument and (argument == "*" or "." in argument)):
            return True
        if _IPV4_RE.search(argument) or "://" in argument:
            return True
    if program in ("sleep", "timeout") and first.isdigit() and len(arguments) == 1:
        return terminator in ("", ";", "&", "|", "\n", "`", ")", "#")
    if program in _NETWORK:
        return bool(_HOST_RE.match(first)) and "." in first
    if program in ("cat", "more", "less", "head", "tail", "type", "nl", "tac", "strings",
                   "rm", "cp", "mv", "del", "copy"):  # fmt: skip
        return bool(_FILE_RE.match(first))
    return False


def _prose_arguments(words: list[str]) -> bool:
    """Whether arguments read as a sentence (a few plain words) with nothing a command
    line needs to do harm: no system path, variable, address or escape."""
    prose = 0
    for word in words:
        lowered = word.lower()
        if lowered.startswith(_UNIX_SYSTEM_PATHS) or _VARIABLE_RE.search(word):
            return False
        if _IPV4_RE.search(word) or "://" in word or "%" in word or "\\x" in word:
            return False
        if " " in word:  # a quoted stretch of text ("don't run it as root!")
            prose += len(_PROSE_ARGUMENT_RE.findall(word))
        elif _SENTENCE_WORD_RE.fullmatch(word):
            prose += 1
    return prose >= PROSE_WORDS_MIN


def _sensitive(program: str, arguments: list[str], terminator: str, text: str) -> bool:
    """A value that *is* a command line (no separator) needs unmistakable arguments."""
    if program not in _START_PROGRAMS and program not in _STRONG:
        return False
    if sum(1 for a in arguments if _SENTENCE_WORD_RE.fullmatch(a)) >= PROSE_WORDS_MIN - 1:
        return False  # "cat /etc/hosts windows equivalent": a search about a command
    joined = " ".join(arguments).lower()
    for argument in arguments:
        lowered = argument.lower().rstrip(".,;:'\")")
        target = lowered.partition("=")[2] if "=" in lowered else lowered
        if target in _SYSTEM_DIRS or target.startswith(_SYSTEM_PATHS):
            return True
    if program in _INTERPRETERS:
        flags = {argument.lower() for argument in arguments[:3]}
        if flags & {"-c", "-e", "-i", "-r", "/c", "/k", "-enc", "-encodedcommand", "-command",
                    "-nop", "-w"}:  # fmt: skip
            return True
    if program in ("curl", "wget", "fetch", "lynx", "certutil", "bitsadmin", "powershell"):
        # A download that runs or stores what it fetches, or fetches from a bare address;
        # "curl -X POST https://api.example.com" is how documentation shows an API call.
        return "://" in joined and (
            terminator in ("|", ">")
            or _IPV4_RE.search(joined) is not None
            or _DROPPER_RE.search(joined) is not None
        )
    if program in ("nc", "ncat", "netcat", "telnet", "ping", "socat"):
        return bool(_IPV4_RE.search(joined)) and any(a.startswith("-") for a in arguments)
    return False
