"""Realistic benign traffic, generated deterministically: what the WAF must let through.

Browsing GETs with free-text searches (quotes, apostrophes, ``&``, ``<3``, emoji, code
people search for), analytics parameters and cookies (utm_*, gclid, fbclid, _ga, JSON
and base64 cookies, JWT sessions), e-commerce and account forms (names with apostrophes,
addresses, phone numbers, passwords with symbols), reviews and comments in prose and
markdown, real browsers' and clients' headers, the API's own JSON (transfers with notes),
GraphQL queries, links inside values, file uploads. Prose deliberately uses the words
and symbols SQL, HTML and shell grammars are made of ("select your size", "a < b",
"cats & dogs | pets"), because real users do.

Every request comes from a seeded generator (``benign_requests(seed)``), so a failure
names a request that can be rebuilt and the measured rate is stable.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlencode

from strongroom.edge.guard import GateRequest

SEED = 20261127
REQUESTS_DEFAULT = 3_000


@dataclass(frozen=True, slots=True)
class BenignRequest:
    name: str
    request: GateRequest


USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.6778.81 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
    "Mozilla/5.0 (Linux; Android 13; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Wget/1.21.4",
    "PostmanRuntime/7.42.0",
    "Dalvik/2.1.0 (Linux; U; Android 12; SM-G991B Build/SP1A.210812.016)",
    "MyBankApp/5.12.1 (iPhone; iOS 18.1; Scale/3.00)",
    "strongroom-python/1.4.0 httpx/0.28.1 CPython/3.12.4",
    "Go-http-client/2.0",
    "axios/1.7.7",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Java/17.0.9",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
]

# Free text typed into search boxes and message fields: keywords of SQL, shell and
# HTML as English uses them, punctuation, formulas, emoticons.
FREE_TEXT = [
    "where can i buy a select comfort bed",
    "best union square restaurants",
    "drop shipping business ideas",
    "delete facebook account permanently",
    "how to insert a table in word",
    "update drivers windows 11",
    "1=1 is true in boolean logic",
    "sql vs nosql pros and cons",
    'what does "or" mean in logic',
    "mom & pop shop near me",
    "salt & vinegar chips",
    "tom & jerry episodes",
    "kids under 5 eat free",
    "temperature > 30 degrees",
    "i'm lovin' it",
    "the cat's pajamas",
    "rock 'n' roll hall of fame",
    '"to kill a mockingbird" summary',
    "c:\\windows\\temp cleanup",
    "program files x86 vs program files",
    "how to use sudo apt-get update",
    "echo dot 5th gen",
    "cat 6 ethernet cable",
    "ping pong table",
    "sleep number bed",
    "python os.path.join example",
    "javascript alert box",
    "onclick vs addEventListener",
    "<p> tag html",
    "script for wedding speech",
    "bash birthday party ideas",
    "shell gas station near me",
    "curl hair products",
    "top 10 movies 2024",
    "who is the ceo of apple",
    "file a tax return",
    "set the table",
    "exec chair",
    "union pacific stock",
    "select all shortcut mac",
    "order by phone number",
    "having a bad day",
    "limit order vs market order",
    "group by meaning",
    "null and void",
    "true or false quiz",
    "where is waldo",
    "from russia with love",
    "drop table mountain",
    "'90s music hits",
    "50's diner",
    "a+ grade",
    "c++ or java",
    "1+1",
    "x+y=z",
    "a/b testing",
    "24/7 support",
    "#metoo",
    "$5 pizza",
    "€ symbol keyboard",
    "30% off coupon",
    "user@example.com",
    "http://example.com",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
    "tel:+441234567890",
    "mailto:a@b.com?subject=Hi%20there",
    "Hello, I'd like to cancel my order #4411 -- it's a duplicate. Thanks!",
    "Please call me at (555) 123-4567 between 9am & 5pm.",
    'Re: "Your account" <noreply@bank.example>',
    "My password doesn't work; I tried \"abc123\" and 'abc123!' -- neither works.",
    "Can I pay with AMEX? (Card ending 1234)",
    "Delivery instructions: leave at back door; beware of dog!!",
    "<3 <3 <3",
    "=) =D :P ;-)",
    ">:( angry",
    "The formula is =SUM(A1:A10) in Excel.",
    '=HYPERLINK("https://example.com","click")',
    'IF(A1>0,"yes","no")',
    "50% off -- today only!!!",
    "Where's my #$%&! package??",
    '"; DROP everything and read this book" - great review',
    'I selected "other" from the dropdown',
    "He said: 'where are you from?' and I said: 'London'",
    "Question: is 1 > 0? Answer: yes.",
    "x < 10 && y > 5",
    "We're at 1 Union Sq., Apt 3 -- ring bell",
    "Temp: -5°C / 23°F",
    "Ref: INV-2024/11/001; PO# 778",
    "Size: 10 1/2 (US) | 44 (EU)",
    "Colour: black/white; Qty: 2",
    '{"name":"Anne","tags":["a","b"]}',
    "[1, 2, 3]",
    "key1=val1&key2=val2",
    "a=1; b=2",
    "/path/to/file.txt",
    "..",
    "...",
    ".htaccess tutorial",
    "web.config example",
    "select your country",
    "order now",
    "insert coin",
    "update available",
    "delete this",
    "create account",
    "alter ego",
    "grant application",
    "exec director",
    "union rep",
    "from the desk of",
    "where to eat",
    "and then there were none",
    "or else",
    "not found",
    "null pointer exception",
    "true story",
    "false alarm",
]
# In-app browsers, crawlers and old clients.
MORE_USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    "Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebkit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/440.0.0.0;FBBV/123;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.0;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36 Instagram 312.0.0.0 Android (29/10; 420dpi; 1080x2220; samsung; SM-G973F; beyond1; exynos9820; en_US; 551234567)",
    "WhatsApp/2.23.20.0",
    "Twitterbot/1.0",
    "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 6.1; Trident/7.0; SLCC2; .NET CLR 2.0.50727; .NET4.0C; .NET4.0E)",
]
USER_AGENTS += MORE_USER_AGENTS

ACCEPTS = [
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
    "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "application/json",
    "application/json, text/plain, */*",
    "*/*",
]
LANGUAGES = ["en-US,en;q=0.9", "en-GB,en;q=0.9,fr;q=0.8", "de-DE,de;q=0.9,en;q=0.8", "fr-FR"]

SEARCHES = [
    "python list comprehension",
    "c++ vector push_back vs emplace_back",
    "select distinct sql tutorial",
    "sql join vs union",
    "how to drop a table in postgres",
    "mysql order by date desc limit 10",
    "insert into table values example",
    "update where sql",
    'java string.format("%d")',
    "javascript array.map((x) => x * 2)",
    "document.getElementById not working",
    "what does <div> mean in html",
    "html <br> vs <br/>",
    "bash for loop over files",
    "rm -rf node_modules",
    "grep -r 'TODO' .",
    "ls -la | grep .env",
    "cat /etc/hosts windows equivalent",
    "kubectl get pods -n kube-system",
    "git reset --hard HEAD~1",
    "docker run -it --rm ubuntu bash",
    "regex ^[a-z0-9._%+-]+@[a-z0-9.-]+$",
    "1=1 match result",
    "1 + 1 = 2",
    "x > y and y > z",
    "a < b < c",
    "i <3 you",
    "<3",
    "rock & roll",
    "cats & dogs | pets",
    "salt & pepper",
    "Ben & Jerry's",
    "O'Reilly books",
    "Tom's Hardware",
    "it's 5 o'clock somewhere",
    "don't stop me now",
    '"exact phrase" search',
    '"new york" OR "boston"',
    "drop me a line",
    "select your size",
    "union station chicago",
    "union square cafe",
    "delete account",
    "where is my order?",
    "order by phone",
    "table for two",
    "waitfor it",
    "sleep apnea symptoms",
    "benchmark results 2024",
    "from paris with love",
    "and or not",
    "50% off shoes",
    "100% cotton t-shirt",
    "€50 gift card",
    "£20 under",
    "size 10 1/2",
    "2 x 4 lumber",
    "5' 11\" in cm",
    "6'2\" height",
    "café crème",
    "naïve résumé",
    "straße",
    "東京 ホテル",
    "москва погода",
    "مرحبا",
    "🍕 near me",
    "😀😃😄",
    "👍 thanks!",
    "#hashtag trends",
    "@username",
    "email@example.com",
    "C:\\Users\\me\\Documents",
    "C:\\Program Files (x86)\\App",
    "~/Downloads/report.pdf",
    "/usr/local/bin",
    "../ meaning in linux",
    "what is a .. in a path",
    "price > 100",
    "age >= 18",
    "n! factorial",
    "2^10",
    "x = (a + b) / 2",
    "f(x) = x^2",
    "sum(a, b)",
    "count(*) sql",
    "max() in python",
    "print('hello world')",
    'console.log("hi")',
    "echo $PATH",
    "${HOME} variable",
    "$100 bill",
    "{curly} [square] (round)",
    "3.14159",
    "1,000,000",
    "+44 20 7946 0958",
    "who's on first?",
    "what's up doc",
    "rock'n'roll",
    'shakespeare\'s "hamlet"',
    "the 'best' pizza",
    "alert system for seniors",
    "script writing tips",
    "javascript tutorial",
    "onload event",
    "iframe vs embed",
    "svg icons free",
    "eval function python",
    "exec summary template",
    "system design interview",
    "shell oil stock",
    "powershell get-childitem",
    "python -m venv .venv",
    "pip install requests",
    "npm i -D typescript",
    "curl -X POST https://api.example.com",
    "wget https://example.com/file.zip",
    "ping google.com",
    "nslookup example.com",
    "whoami",
    "id card renewal",
    "passwd file format",
    "etc etc",
    "Romeo & Juliet",
    "AT&T",
    "H&M",
    "M&M's",
    "P&G",
    "Q&A",
    "R&D budget",
    "black & white",
    "3 < 5",
    "->",
    "<-",
    "=>",
    ":)",
    ":-(",
    ";)",
    "-- dashes --",
    "#1 best seller",
    "--help",
    "/* comment */ in css",
    "// comment in js",
    "<!-- html comment -->",
    "`code` in markdown",
    "**bold** text",
    "to be or not to be",
    '"to be" or "not to be"',
    "black or white",
    "1 or 2 bedroom flat",
    "this & that",
    "== Heading ==",
    "<<< back",
    ">>> next",
    "<em>",
    "1-2 days shipping",
    "don't 'quote' me",
    "it's 'or' not 'and'",
    "%APPDATA% folder location",
    "%20 in url meaning",
    "what is &nbsp;",
    "&amp; vs &",
    "c#",
    "f#",
    ".net 8",
    "node.js",
    "vue {{ }} syntax",
    "jquery $(document).ready",
    "python if __name__ == '__main__'",
    "php echo vs print",
    "select option html",
    "union jack flag",
    "sleep(1) in c",
]

FIRST = [
    "Anne", "Seán", "Zoë", "Jean-Luc", "Mary Ann", "D'Angelo", "José", "Björn", "Siobhán",
    "Ng", "O", "Élodie", "Muhammad", "Li", "Ana-María", "Chloé", "Renée", "Priya", "Kwame",
]  # fmt: skip
LAST = [
    "O'Brien", "O'Connor", "D'Arcy", "McDonald", "van der Berg", "Smith-Jones", "Nguyen",
    "de la Cruz", "Müller", "Øster", "Dell'Acqua", "L'Estrange", "O'Neill", "St. John",
    "Al-Hassan", "Ó Briain", "Select", "Union", "Drop", "Null", "Or", "And",
]  # fmt: skip
STREETS = [
    "221B Baker Street", "1600 Amphitheatre Pkwy", "Apt #4; rear", "Flat 3/2, 10 Downing St.",
    "Unit 5 & 6, Mill Lane", "c/o John O'Hara, PO Box 123", "Rue de l'Église 12",
    "Hauptstraße 5 (Hinterhaus)", "12-14 Union St", "1 Select Way", "Suite 200 - 4th floor",
    "#12-03 Orchard Rd", "Calle 5 #10-20", "Bldg. A, Rm. 101", "3 Drop Lane",
]  # fmt: skip
CITIES = ["London", "Saint-Étienne", "New York, NY", "Zürich", "L'Aquila", "Washington, D.C."]
PHONES = [
    "+44 (0)20 7946 0958", "+1 (555) 010-9999", "555.010.1234", "+49 30 901820",
    "(02) 9999-9999", "+33 1 23 45 67 89 ext. 12", "07700 900123", "+1-800-FLOWERS",
]  # fmt: skip
PASSWORDS = [
    "P@ssw0rd!", "correct horse battery staple", "Tr0ub4dor&3", "hunter2", "S3cure#Pass;",
    "qwerty<>123", "p4ss'word\"x", "!@#$%^&*()", "a|b&c;d", "Pa$$w0rd$(x)", "--pass--",
    "1' or 'x", "<my-pass>", "OR1=1pass", "../..pw", "`tick`pass", "{{pass}}", "${pass}",
]  # fmt: skip
PROSE = [
    "Great product, would buy again!",
    "Fits well. I'm 5'11\" and ordered an L — perfect.",
    "Delivery was late (3 days) but support sorted it out; thanks Anna!",
    "Not bad... not great either. 3/5",
    "I <3 this jacket!!! 😍",
    "Price/quality ratio is excellent & the colour is exactly as shown.",
    "Select your size carefully: it runs small.",
    "Drop me a line if you need the manual, it's in the box.",
    "We met at Union Station and walked from there.",
    "If a < b and b < c then a < c, so the math checks out.",
    "Cats & dogs | pets section was empty :(",
    "rm -rf is dangerous, don't run it as root!",
    "Use `SELECT * FROM users WHERE id = 1` in the demo, per the tutorial.",
    "The docs say: ls -la /etc && cat README",
    "My kid wrote <script> on the box lol",
    "1=1 match in the final, what a game",
    'Order #12345 arrived damaged; box said "fragile" & "this side up".',
    "Tried it with C:\\Users\\me\\Documents\\report (final).pdf and it worked.",
    'Ask for "Dave" — he\'s the one who knows.',
    "It's the best; the 'premium' version isn't worth it.",
    "Where's the delete button? I want to drop my subscription.",
    "Ben & Jerry's > Häagen-Dazs, fight me.",
    "10/10 would recommend. 👍👍",
    "Shipping: 2-3 days; returns: 30 days; warranty: 1 year.",
    "Step 1) unpack; step 2) plug in; step 3) profit?",
    "email me at first.last+shop@example.co.uk",
    "see https://www.example.com/reviews?id=5&sort=new for more",
    "x > y, y > z => x > z",
    "Union of the two sets; intersection is empty.",
    "The sleep mode (5 min) is too short; set it to 10.",
    "Exec summary: sales up 10% & costs down 5%.",
    "For loop: for (i = 0; i < 10; i++) { sum += i; }",
    "Run `pip install -r requirements.txt` then `python app.py`.",
    'Java: System.out.println("Hello");',
    "Hello,\r\nI would like a refund.\r\nRegards,\r\nPat",
    "Line one\nline two\n\n-- \nSent from my phone",
    "Costs €1,299.00 (incl. VAT) or $1,399.99",
    "IBAN GB82 WEST 1234 5698 7654 32, BIC NWBKGB2L",
    "Invoice 2024-117 / March rent / ref: A&B Ltd.",
    "Meeting @ 10:30 — room 4B; bring laptops & chargers.",
    "I said \"no\" and she said 'yes' — classic.",
    "<b>bold</b> isn't rendered here?",
    "a<b>c but not really html",
    "Use the `<table>` element for tabular data only.",
    "Gave it 4 stars because the strap broke after 1 month :-(",
    "Is it 100% waterproof or just splash-proof?",
    "My name is Robert'); and I like XKCD.",
    "Pros: light, cheap. Cons: loud, hot.",
    "Tip: press Ctrl+Alt+Del, then select Task Manager.",
    "$HOME/.config is where it goes on Linux",
]
MARKDOWN = [
    "# Release notes\n\n- fixed `null` handling\n- **faster** start-up (2x)\n\n```python\n"
    "for x in range(10):\n    print(x)\n```\n",
    "## Steps\n1. Open *Settings*\n2. Select **Privacy & Security**\n3. Click [here]"
    "(https://example.com/help?topic=privacy&lang=en)\n",
    '> quoted text\n\nSee ![diagram](https://cdn.example.com/img/d1.png "Diagram")\n',
    "| a | b |\n|---|---|\n| 1 | 2 |\n",
    "Use `SELECT count(*) FROM orders;` to check.\n\n---\n\n_Thanks!_",
]
SITES = [
    "https://www.google.com/search?q=strongroom+bank&hl=en",
    "https://www.bing.com/search?q=transfer+limits",
    "https://duckduckgo.com/?q=iban+check&ia=web",
    "https://t.co/AbCdEf123",
    "https://www.facebook.com/",
    "https://l.instagram.com/?u=https%3A%2F%2Fshop.example.com%2F&e=AT0x",
    "https://news.ycombinator.com/item?id=42000000",
    "https://www.reddit.com/r/personalfinance/comments/abc123/best_bank/",
    "https://shop.example.com/cart?step=2",
    "https://github.com/strongroom/strongroom/issues/6",
    "http://localhost:3000/dashboard",
    "https://accounts.google.com/o/oauth2/v2/auth",
]
# Links users put in profile and review fields (a development server appears as a Referer
# above, never as someone's website).
PUBLIC_SITES = [site for site in SITES if "localhost" not in site]
RICH_TEXT = [
    "<p>Hi team,</p><p>The <strong>new</strong> card arrived &amp; works.</p>",
    '<p>See <a href="https://www.example.com/help?id=4&amp;lang=en" target="_blank" '
    'rel="noopener noreferrer">this article</a>.</p>',
    '<p><img src="https://cdn.example.com/u/42/photo.jpg" alt="my dog" width="300"></p>',
    "<ul><li>Select a plan</li><li>Drop the old one</li><li>Union benefits</li></ul>",
    "<blockquote>To be or not to be</blockquote><p>&lt;3 Shakespeare</p>",
    '<p style="text-align: center;"><em>Thanks!</em><br></p>',
    "<h2>Order #1234</h2><table><tr><td>Item</td><td>1 &times; €20</td></tr></table>",
    '<div class="ql-editor"><p>Line 1</p><p><br></p><p>Line 2 -- signed</p></div>',
]
TEMPLATES = [
    "Hi {{first_name}}, your order {{order.id}} has shipped!",
    "Dear {{ customer.name }},\n\nYour balance is {{ balance | currency }}.",
    "Hello ${name}, welcome back",
    "{% if user %}Hi {{ user }}{% endif %}",
    "Price: ${price} (incl. VAT)",
    "<%= user.name %> invited you",
]
CODE_SNIPPETS = [
    "$(document).ready(function () { $('#menu').toggle(); });",
    "const total = items.reduce((a, b) => a + b.price, 0);",
    "for i in range(10):\n    print(i * 2)",
    "if (a < b && b > c) { return a; }",
    "df.groupby('user').agg({'amount': 'sum'})",
    "git log --oneline | head -5",
    '<div class="row"><span>{{ item }}</span></div>',
    "x = y if y > 0 else -y  # clamp",
    "std::vector<int> v{1, 2, 3};",
    'System.out.println("total: " + total);',
    "npm run build && npm test",
]
PRODUCTS = ["shoes", "t-shirt", "jacket", "laptop", "coffee-maker", "desk-lamp", "backpack"]
FILE_NAMES = [
    "report (final).pdf", "IMG_2024-11-01 10.32.15.jpg", "résumé.docx", "budget & plan.xlsx",
    "O'Brien contract v2.pdf", "notes; draft.txt", "scan #3.png", "data[1].csv",
    "a+b=c.txt", "my file (1) (2).zip", "Screenshot 2024-11-27 at 09.41.02.png",
]  # fmt: skip
CURRENCIES = ["EUR", "GBP", "USD", "CHF", "JPY", "SEK"]
NOTES = [
    "Invoice 2024-117, March rent",
    "Rent — flat 3/2 (Apr)",
    "Dinner @ Luigi's 🍝",
    "Payback for tickets & popcorn",
    "Ref: PO#4471; order 99/2024",
    "Loan repayment 1 of 12",
    "Gift for Mum's 60th <3",
    "Salary Nov-2024 (net)",
    "Split: 50% / 50%",
    "Union dues Q4",
    "Drop-off fee",
    "Select Comfort mattress",
    '"Urgent" — please process today',
    "Refund for order #A-1029 (damaged)",
    "Transfer to savings -> holiday fund",
    "Insurance (car) + (home)",
    "From: Anne O'Brien; To: Seán D'Arcy",
    "Taxes 2023/24",
    "Coffee ☕ x 3",
    "Bill split: 3 ways = $45.30 each",
]
GRAPHQL = [
    "query { viewer { login repositories(first: 10) { nodes { name } } } }",
    "query Search($q: String!) { search(query: $q, type: REPOSITORY, first: 5) "
    "{ edges { node { ... on Repository { nameWithOwner } } } } }",
    "mutation AddStar($id: ID!) { addStar(input: {starrableId: $id}) { clientMutationId } }",
    '{ product(id: "42") { name price(currency: EUR) reviews(last: 3) { body rating } } }',
    "query ($after: String) { orders(first: 50, after: $after, orderBy: {field: CREATED_AT, "
    "direction: DESC}) { pageInfo { hasNextPage endCursor } } }",
]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random) -> str:
    header = {"alg": rng.choice(["RS256", "ES256", "HS256"]), "typ": "JWT"}
    if rng.random() < 0.5:
        header["kid"] = f"key-{rng.randrange(1, 99)}"
    claims = {
        "sub": f"user_{rng.randrange(10**6)}",
        "iss": rng.choice(
            ["https://auth.example.com/", "https://login.microsoftonline.com/x/v2.0"]
        ),
        "aud": rng.choice(["https://api.example.com", "web-app", "https://localhost:8443"]),
        "exp": 1732600000 + rng.randrange(10**5),
        "name": rng.choice(FIRST) + " " + rng.choice(LAST),
        "scope": "openid profile email",
    }
    signature = bytes(rng.randrange(256) for _ in range(rng.choice([32, 64, 256])))
    return ".".join(
        (
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(signature),
        )
    )


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _token(rng: random.Random, n: int, alphabet: str = "") -> str:
    chars = alphabet or "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "".join(rng.choice(chars) for _ in range(n))


def _cookies(rng: random.Random) -> str:
    jar = [
        f"_ga=GA1.2.{rng.randrange(10**9)}.{1700000000 + rng.randrange(10**7)}",
        f"_gid=GA1.2.{rng.randrange(10**9)}.{1732000000 + rng.randrange(10**6)}",
        f"_fbp=fb.1.{1732000000000 + rng.randrange(10**9)}.{rng.randrange(10**9)}",
        f"session={_jwt(rng)}",
        f"sid={_hex(rng, 32)}",
        f"csrftoken={_token(rng, 32)}",
        "cookieconsent_status=dismiss",
        "OptanonConsent=isGpcEnabled=0&datestamp=Wed+Nov+27+2024+10%3A12%3A01+GMT%2B0000"
        "&version=202409.1.0&groups=C0001%3A1%2CC0002%3A0",
        "prefs=" + quote(json.dumps({"theme": "dark", "lang": "en-GB", "cur": "€"})),
        "cart=" + base64.b64encode(json.dumps({"items": [1, 2], "n": 2}).encode()).decode(),
        "ajs_user_id=%22" + _hex(rng, 24) + "%22",
        f"PHPSESSID={_token(rng, 26, 'abcdefghijklmnopqrstuv0123456789')}",
        f"JSESSIONID={_hex(rng, 32).upper()}.node1",
        "__Host-next-auth.csrf-token=" + _hex(rng, 64) + "%7C" + _hex(rng, 64),
        "amp_6e403e=" + _token(rng, 22) + "...1hf2q7e9i.1hf2q7e9i.0.0.0",
        "last_search=" + quote(rng.choice(SEARCHES)),
        "recently_viewed=" + quote(",".join(rng.sample(PRODUCTS, 3))),
        f"_hjSessionUser_{rng.randrange(10**6)}="
        + base64.b64encode(
            json.dumps({"id": _hex(rng, 16), "created": 1732000000000, "existing": True}).encode()
        ).decode(),
    ]
    return "; ".join(rng.sample(jar, rng.randrange(1, 8)))


# Tracing, vendor and application headers real clients add (values with commas, JSON,
# base64, URL-encoding).
EXTRA_HEADERS = [
    (b"baggage", b"userId=alice,serverNode=DF%2028,isProduction=false"),
    (b"sentry-trace", b"771a43a4192642f0b136d5159a501700-b7ad6b7169203331-1"),
    (b"x-client-data", b"CIa2yQEIo7bJAQipncoBCKijygEIkqHLAQiFoM0BGOuMzgE="),
    (b"x-datadog-tags", b"_dd.p.dm=-1,_dd.p.tid=66f2e7d000000000"),
    (b"x-newrelic-id", b"VQQUUFNbCRAHU1JaBQcHUQ=="),
    (b"x-goog-api-client", b"gl-python/3.11.4 grpc/1.59.0 gax/2.12.0 gapic/2.14.0"),
    (b"x-device", b'{"os":"iOS","ver":"18.1","model":"iPhone15,2"}'),
    (b"x-original-url", b"/en/account/settings?tab=security"),
    (b"x-forwarded-for", b"unknown, 2001:db8:85a3::8a2e:370:7334"),
    (b"forwarded", b'for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'),
    (b"cache-control", b"no-cache, no-store, must-revalidate"),
    (b"authorization", b"Basic dXNlcjpwYXNz"),
    (b"x-request-start", b"t=1732700000123"),
]
EXTRA_COOKIES = [
    "euconsent-v2=CPzEX8APzEX8AAGABCENDgCsAP_AAH_AAAqIJDkR_C5EbCFBcGJ1AKoAMAIYAYAAQAAgABAAIAAQ"
    "AACAAAQAAAAEgAAAAAAAAAAA; addtl_consent=1~39.4.3.9",
    "__cf_bm=AbC.123-1732700000-1.0.1.1-XyZ; cf_clearance=abc_def-1732700000-0-1-a.b.c-250.0.0",
    'ab_test={"variant":"B","exp":"checkout-v2"}',
    "redirect=https%3A%2F%2Fshop.example.com%2Fcart%3Fstep%3D2",
    "search_history=select%20your%20size%7Cunion%20station%7Cdrop%20me%20a%20line",
    "msg=Thanks%20for%20your%20order%20%3C3",
    "wp-settings-1=libraryContent%3Dbrowse%26editor%3Dtinymce%26posts_list_mode%3Dlist",
]


def _browser_headers(
    rng: random.Random, host: str = "shop.example.com"
) -> list[tuple[bytes, bytes]]:
    ua = rng.choice(USER_AGENTS)
    headers = [
        (b"host", host.encode()),
        (b"user-agent", ua.encode()),
        (b"accept", rng.choice(ACCEPTS).encode()),
        (b"accept-language", rng.choice(LANGUAGES).encode()),
        (b"accept-encoding", b"gzip, deflate, br, zstd"),
    ]
    if "Chrome" in ua and rng.random() < 0.7:
        headers += [
            (b"sec-ch-ua", b'"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"'),
            (b"sec-ch-ua-mobile", b"?0"),
            (b"sec-ch-ua-platform", b'"Windows"'),
            (b"sec-fetch-site", b"same-origin"),
            (b"sec-fetch-mode", b"navigate"),
            (b"sec-fetch-dest", b"document"),
            (b"upgrade-insecure-requests", b"1"),
        ]
    if rng.random() < 0.6:
        headers.append((b"referer", rng.choice(SITES).encode()))
    if rng.random() < 0.7:
        jar = _cookies(rng)
        if rng.random() < 0.3:
            jar += "; " + rng.choice(EXTRA_COOKIES)
        headers.append((b"cookie", jar.encode()))
    if rng.random() < 0.3:
        headers.append(rng.choice(EXTRA_HEADERS))
    if rng.random() < 0.1:
        headers.append((b"x-forwarded-for", b"198.51.100.23, 10.0.0.1"))
    if rng.random() < 0.1:
        headers.append((b"if-none-match", f'W/"{_hex(rng, 16)}"'.encode()))
    if rng.random() < 0.05:
        headers.append((b"x-requested-with", b"XMLHttpRequest"))
    return headers


def _get(rng: random.Random, path: str, params: list[tuple[str, str]]) -> GateRequest:
    target = path + (
        "?" + urlencode(params, quote_via=rng.choice([quote_plus, quote])) if params else ""
    )
    return GateRequest("198.51.100.7", b"GET", target.encode(), _browser_headers(rng), "benign")


def _post(
    rng: random.Random, path: str, body: bytes, content_type: str, *, api: bool = False
) -> GateRequest:
    headers = _api_headers(rng) if api else _browser_headers(rng)
    headers += [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return GateRequest("198.51.100.7", b"POST", path.encode(), headers, "benign", body=body)


def _api_headers(rng: random.Random) -> list[tuple[bytes, bytes]]:
    return [
        (b"host", b"api.strongroom.dev"),
        (b"user-agent", rng.choice(USER_AGENTS[8:]).encode()),
        (b"accept", b"application/json"),
        (b"authorization", b"Bearer " + _jwt(rng).encode()),
        (
            b"idempotency-key",
            f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-8{_hex(rng, 3)}-{_hex(rng, 12)}".encode(),
        ),
        (b"traceparent", f"00-{_hex(rng, 32)}-{_hex(rng, 16)}-01".encode()),
    ]


def _analytics(rng: random.Random) -> list[tuple[str, str]]:
    params = []
    if rng.random() < 0.5:
        params += [
            (
                "utm_source",
                rng.choice(["google", "newsletter", "facebook", "t.co", "partner-site"]),
            ),
            ("utm_medium", rng.choice(["cpc", "email", "social", "referral"])),
            ("utm_campaign", rng.choice(["black_friday_2024", "Spring Sale (UK)", "retarget|v2"])),
        ]
        if rng.random() < 0.3:
            params.append(("utm_content", rng.choice(["hero-banner", "cta & footer", "txt link"])))
        if rng.random() < 0.3:
            params.append(("utm_term", rng.choice(SEARCHES)))
    if rng.random() < 0.2:
        params.append(("gclid", _token(rng, 90)))
    if rng.random() < 0.2:
        params.append(("fbclid", "IwAR" + _token(rng, 57)))
    if rng.random() < 0.1:
        params.append(("msclkid", _hex(rng, 32)))
    if rng.random() < 0.1:
        params.append(("_gl", f"1*{_token(rng, 6)}*_ga*{_token(rng, 20)}.."))
    return params


def search_page(rng: random.Random) -> GateRequest:
    params = [("q", rng.choice(SEARCHES if rng.random() < 0.6 else FREE_TEXT))]
    if rng.random() < 0.4:
        params.append(("page", str(rng.randrange(1, 20))))
    if rng.random() < 0.3:
        params.append(("sort", rng.choice(["price_asc", "-created", "relevance", "price desc"])))
    if rng.random() < 0.2:
        params.append(("filter[brand]", rng.choice(["H&M", "Levi's", "Dolce & Gabbana"])))
    return _get(
        rng, rng.choice(["/search", "/s", "/en-gb/search", "/api/search"]), params + _analytics(rng)
    )


def product_page(rng: random.Random) -> GateRequest:
    slug = rng.choice(PRODUCTS) + "-" + str(rng.randrange(1000, 99999))
    path = rng.choice([f"/p/{slug}", f"/products/{slug}.html", f"/en/{slug}/reviews"])
    params = _analytics(rng)
    if rng.random() < 0.3:
        params.append(("variant", str(rng.randrange(10**9, 10**10))))
    if rng.random() < 0.2:
        params.append(("ref", rng.choice(["homepage_carousel", "email:weekly", "a/b-test"])))
    return _get(rng, path, params)


def static_asset(rng: random.Random) -> GateRequest:
    path = rng.choice(
        [
            f"/static/js/main.{_hex(rng, 8)}.js",
            f"/assets/css/app-{_hex(rng, 10)}.css",
            "/favicon.ico",
            "/robots.txt",
            "/sitemap.xml",
            f"/img/products/{rng.randrange(1000)}/large@2x.webp",
            "/fonts/Inter-Var.woff2",
            "/.well-known/openid-configuration",
            "/.well-known/jwks.json",
            "/_next/static/chunks/pages/_app-" + _hex(rng, 16) + ".js",
            "/wiki/Bobby_Tables_(comic)",
            "/wiki/C%2B%2B",
            "/wiki/Rock_%26_roll",
            "/docs/v2/select-statement",
            "/blog/2024/11/why-we-drop-support-for-ie11",
            "/u/O%27Brien",
            "/search/c++",
            "/tags/c%23",
            "/files/My%20Report%20(1).pdf",
            "/@anne.obrien/posts",
            "/api/v1/users/me",
            "/wiki/Union_(set_theory)",
            "/wiki/Select_(SQL)",
            "/wiki/Bash_(Unix_shell)",
            "/wiki/Cat_(Unix)",
            "/questions/123/what-does-1-1-mean",
            "/r/sql/comments/abc/drop_vs_delete/",
            "/a/b;jsessionid=ABC123",
            "/files/%E6%9D%B1%E4%BA%AC.pdf",
            "/@user/status/123",
            "/c/1234/ex-tenant-('a')",
            "/en-us/shop/goods/MX3Y2LL/A",
            "/wp-json/wp/v2/posts",
        ]
    )
    params = [("v", _hex(rng, 8))] if rng.random() < 0.3 else []
    return _get(rng, path, params)


def redirect_flow(rng: random.Random) -> GateRequest:
    params = [
        ("response_type", "code"),
        ("client_id", f"app-{rng.randrange(1000)}"),
        (
            "redirect_uri",
            rng.choice(
                [
                    "https://app.example.com/callback",
                    "https://shop.example.com/auth/cb?x=1&y=2",
                    "com.example.app://oauth",
                ]
            ),
        ),
        ("scope", "openid profile email offline_access"),
        ("state", _token(rng, 32)),
        ("code_challenge", _token(rng, 43)),
        ("code_challenge_method", "S256"),
    ]
    if rng.random() < 0.5:
        params.append(
            (
                "next",
                rng.choice(
                    ["/account/orders?page=2", "/checkout#payment", "https://shop.example.com/"]
                ),
            )
        )
    return _get(rng, "/oauth/authorize", params)


def signup_form(rng: random.Random) -> GateRequest:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    fields = [
        ("first_name", first),
        ("last_name", last),
        ("email", f"{first.lower().replace(' ', '.')}.{rng.randrange(99)}@example.com"),
        ("phone", rng.choice(PHONES)),
        ("password", rng.choice(PASSWORDS)),
        ("address_line1", rng.choice(STREETS)),
        ("address_line2", rng.choice(["", "Apt #4; rear", "c/o Reception", "Floor 2 (left door)"])),
        ("city", rng.choice(CITIES)),
        ("postcode", rng.choice(["SW1A 1AA", "10001", "75008", "8001", "D02 X285"])),
        ("dob", rng.choice(["1990-01-31", "31/01/1990", "01.31.1990"])),
        ("newsletter", rng.choice(["on", "off"])),
        ("csrf_token", _token(rng, 40)),
    ]
    body = urlencode(fields).encode()
    return _post(
        rng,
        rng.choice(["/account/register", "/checkout/address"]),
        body,
        "application/x-www-form-urlencoded",
    )


def review_form(rng: random.Random) -> GateRequest:
    text = " ".join(rng.sample(PROSE + FREE_TEXT, rng.randrange(1, 4)))
    fields = [
        ("rating", str(rng.randrange(1, 6))),
        ("title", rng.choice(PROSE)[:40]),
        ("body", text),
        ("author", rng.choice(FIRST) + " " + rng.choice(LAST)),
    ]
    if rng.random() < 0.3:
        fields.append(("website", rng.choice(PUBLIC_SITES)))
    if rng.random() < 0.5:
        body = json.dumps(dict(fields)).encode()
        return _post(rng, "/api/reviews", body, "application/json")
    return _post(
        rng, "/reviews/new", urlencode(fields).encode(), "application/x-www-form-urlencoded"
    )


def comment_markdown(rng: random.Random) -> GateRequest:
    body = json.dumps(
        {
            "body": rng.choice(MARKDOWN) + "\n" + rng.choice(PROSE),
            "thread_id": rng.randrange(10**6),
            "parent": None,
            "mentions": ["@" + rng.choice(["anne", "sean_d", "dev-team"])],
        }
    ).encode()
    return _post(rng, "/api/comments", body, "application/json")


def contact_form(rng: random.Random) -> GateRequest:
    fields = [
        ("name", rng.choice(FIRST) + " " + rng.choice(LAST)),
        ("email", "someone@example.org"),
        (
            "subject",
            rng.choice(["Order question", "Re: your invoice #44", "Help!!", "Where's my refund?"]),
        ),
        ("message", "\n".join(rng.sample(PROSE, rng.randrange(1, 5)))),
    ]
    return _post(rng, "/contact", urlencode(fields).encode(), "application/x-www-form-urlencoded")


def login_form(rng: random.Random) -> GateRequest:
    fields = [
        (
            "username",
            rng.choice([f"{rng.choice(FIRST).lower()}@example.com", "o'brien", "admin", "j.smith"]),
        ),
        ("password", rng.choice(PASSWORDS)),
        ("remember_me", "1"),
        (
            "return_to",
            rng.choice(["/account", "/checkout?step=payment", "https://shop.example.com/"]),
        ),
    ]
    return _post(rng, "/login", urlencode(fields).encode(), "application/x-www-form-urlencoded")


def api_transfer(rng: random.Random) -> GateRequest:
    document: dict[str, object] = {
        "from_account": "acc_" + _token(rng, 26, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"),
        "to_account": "acc_" + _token(rng, 26, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"),
        "amount": f"{rng.randrange(1, 100000)}.{rng.randrange(100):02d}",
        "currency": rng.choice(CURRENCIES),
        "reference": rng.choice(NOTES),
    }
    if rng.random() < 0.7:
        document["metadata"] = {
            "note": rng.choice(NOTES + PROSE),
            "order_id": f"ORD-2024-{rng.randrange(10**6):06d}",
            "iban": rng.choice(
                [
                    "GB82 WEST 1234 5698 7654 32",
                    "DE89370400440532013000",
                    "FR14 2004 1010 0505 0001 3M02 606",
                ]
            ),
            "tags": rng.sample(["rent", "food", "travel", "a&b", "union-dues", "select"], 2),
        }
    if rng.random() < 0.2:
        document["scheduled_for"] = "2024-12-01T09:00:00+01:00"
    body = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
    return _post(rng, "/v1/transfers", body, "application/json", api=True)


def api_read(rng: random.Random) -> GateRequest:
    account = "acc_" + _token(rng, 26, "0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    choice = rng.randrange(3)
    if choice == 0:
        target = f"/v1/accounts/{account}/balance"
    elif choice == 1:
        params = [
            ("account", account),
            ("status", rng.choice(["posted", "pending", "posted,pending"])),
            ("created_after", "2024-11-01T00:00:00Z"),
            ("limit", str(rng.choice([10, 50, 100]))),
        ]
        if rng.random() < 0.5:
            params.append(("q", rng.choice(NOTES)))
        if rng.random() < 0.4:
            params.append(
                ("cursor", _b64url(json.dumps({"id": _hex(rng, 12), "ts": 1732000000}).encode()))
            )
        target = "/v1/transfers?" + urlencode(params)
    else:
        target = f"/v1/transfers/tr_{_hex(rng, 24)}"
    return GateRequest("203.0.113.7", b"GET", target.encode(), _api_headers(rng), "benign")


def graphql(rng: random.Random) -> GateRequest:
    document = {
        "query": rng.choice(GRAPHQL),
        "variables": {"q": rng.choice(SEARCHES), "id": _token(rng, 12), "after": None},
        "operationName": rng.choice(["Search", None, "AddStar"]),
    }
    if rng.random() < 0.3:
        target = "/graphql?" + urlencode(
            {"query": document["query"], "variables": json.dumps(document["variables"])}
        )
        return GateRequest("198.51.100.7", b"GET", target.encode(), _browser_headers(rng), "benign")
    return _post(rng, "/graphql", json.dumps(document).encode(), "application/json")


def upload(rng: random.Random) -> GateRequest:
    boundary = "----WebKitFormBoundary" + _token(
        rng, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    )
    file_name = rng.choice(FILE_NAMES)
    content = rng.choice(
        [
            b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00",
            b'name,amount,note\nAnne O\'Brien,12.50,"rent, april"\nBob,3,a&b\n',
            b"Just some notes.\nTODO: call Bob; buy milk & eggs.\n",
        ]
    )
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="description"\r\n\r\n'
            f"{rng.choice(PROSE)}\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{file_name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return _post(rng, "/upload", body, f"multipart/form-data; boundary={boundary}")


def csp_or_beacon(rng: random.Random) -> GateRequest:
    document = {
        "events": [
            {
                "name": rng.choice(["page_view", "add_to_cart", "search"]),
                "params": {
                    "page_location": rng.choice(PUBLIC_SITES),
                    "page_title": rng.choice(
                        ["Shoes & Boots | Shop", "Search: " + rng.choice(SEARCHES)]
                    ),
                    "search_term": rng.choice(SEARCHES),
                    "engagement_time_msec": rng.randrange(10**5),
                },
            }
        ],
        "client_id": f"{rng.randrange(10**9)}.{1732000000 + rng.randrange(10**5)}",
        "user_agent": rng.choice(USER_AGENTS),
    }
    return _post(rng, "/collect", json.dumps(document).encode(), "application/json")


def rich_text_post(rng: random.Random) -> GateRequest:
    """A WYSIWYG editor's HTML, a message template, or a pasted code snippet."""
    body = rng.choice([*RICH_TEXT, *TEMPLATES, *CODE_SNIPPETS])
    if rng.random() < 0.5:
        document = {"content": body, "format": "html", "draft": rng.random() < 0.5}
        return _post(
            rng,
            rng.choice(["/api/posts", "/api/messages", "/api/templates"]),
            json.dumps(document).encode(),
            "application/json",
        )
    fields = [("subject", rng.choice(PROSE)[:30]), ("body", body)]
    return _post(
        rng, "/forum/reply", urlencode(fields).encode(), "application/x-www-form-urlencoded"
    )


def profile_json(rng: random.Random) -> GateRequest:
    """JSON-LD, JSON Schema and data: URIs: keys and values with @, $ and base64."""
    avatar = base64.b64encode(bytes(rng.randrange(256) for _ in range(96))).decode()
    document = rng.choice(
        [
            {
                "@context": "https://schema.org",
                "@type": "Product",
                "name": rng.choice(PRODUCTS),
                "offers": {"@type": "Offer", "price": "19.99", "priceCurrency": "EUR"},
            },
            {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": "https://example.com/p",
                "type": "object",
                "properties": {"name": {"$ref": "#/$defs/name"}},
            },
            {"avatar": f"data:image/png;base64,iVBORw0KGgo{avatar}", "name": rng.choice(FIRST)},
            {"query": "{ __typename __schema { types { name } } }"},
            {
                "filters": {
                    "amount": {"gte": 100, "lte": 500},
                    "sort": "-created_at",
                    "q": rng.choice(SEARCHES),
                }
            },
        ]
    )
    return _post(rng, "/api/profile", json.dumps(document).encode(), "application/json")


def settings_form(rng: random.Random) -> GateRequest:
    document = {
        "display_name": rng.choice(FIRST) + " " + rng.choice(LAST),
        "bio": rng.choice(PROSE),
        "website": rng.choice(PUBLIC_SITES),
        "timezone": rng.choice(["Europe/London", "America/New_York", "Asia/Tokyo"]),
        "signature": rng.choice(
            ["-- \nAnne", "Cheers, J. <j@example.com>", "Sent from my iPhone", "/* no sig */"]
        ),
        "download_dir": rng.choice(
            ["C:\\Users\\me\\Documents", "D:\\Backups\\2024", "/home/me/Downloads", "~/Desktop"]
        ),
        "notify": {"email": True, "sms": False},
    }
    return _post(rng, "/api/me/settings", json.dumps(document).encode(), "application/json")


GENERATORS: list[tuple[str, int, Callable[[random.Random], GateRequest]]] = [
    ("search", 5, search_page),
    ("product", 4, product_page),
    ("static", 3, static_asset),
    ("oauth", 1, redirect_flow),
    ("signup", 2, signup_form),
    ("review", 2, review_form),
    ("comment", 1, comment_markdown),
    ("contact", 1, contact_form),
    ("login", 1, login_form),
    ("transfer", 3, api_transfer),
    ("api-read", 2, api_read),
    ("graphql", 1, graphql),
    ("upload", 1, upload),
    ("beacon", 1, csp_or_beacon),
    ("settings", 1, settings_form),
    ("rich-text", 2, rich_text_post),
    ("profile", 1, profile_json),
]


def benign_requests(count: int = REQUESTS_DEFAULT, seed: int = SEED) -> list[BenignRequest]:
    """``count`` benign requests, the same ones for the same seed."""
    rng = random.Random(seed)
    names = [name for name, _, _ in GENERATORS]
    weights = [weight for _, weight, _ in GENERATORS]
    makers = {name: make for name, _, make in GENERATORS}
    out = []
    for index in range(count):
        name = rng.choices(names, weights)[0]
        out.append(BenignRequest(f"{name}#{index}", makers[name](rng)))
    return out
