"""WAF: detection and false positives on the GoTestWAF corpus, and inspection cost.

Run: ``.venv/bin/python bench/waf.py`` (~20 s; ``--quick`` ~8 s). In-process, one core, no
servers: the WAF engine (``Waf.inspect``, the same call the edge's gate makes) on

1. **the corpus** (``../shared/corpus/gotestwaf``, loaded by ``bench/waf_corpus.py`` as the
   exact requests GoTestWAF sends): share of attack requests blocked (detection) and of
   benign requests blocked (false positives), overall and per category with counts, at
   paranoia levels 1-4. Blocked = anomaly score ≥ the inbound threshold (5) or refused as
   not inspectable, i.e. what the gate answers 403/413 in block mode.
2. **inspection cost** (µs per request, p50/p99 of ``perf_counter_ns`` around
   ``inspect``): typical API requests (``POST /v1/transfers`` with a ~200-byte JSON body,
   a bearer JWT, a DPoP proof and the usual headers; a balance read; a filtered list)
   and every corpus request, benign and attack.

Targets (issue 6): ≥ 95% detection and ≤ 1% benign blocked at paranoia 1; ≤ 100 µs p50
added per typical API request. Results: ``bench/results/waf.json`` and ``.png``. Edge
throughput with the WAF on vs off is measured through the edge (``bench/edge.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    RESULTS_DIR,
    busy_machine_note,
    machine_info,
    percentile,
    write_chart,
    write_json,
)
from bench.waf_corpus import CorpusRequest, coarse_category, corpus_dir, load_corpus
from rich.console import Console
from rich.table import Table

from strongroom.config import WafSettings
from strongroom.edge.guard import GateRequest
from strongroom.edge.waf.engine import Waf
from strongroom.edge.waf.rules import WafRules

console = Console()

TARGET_DETECTION = 0.95
TARGET_BENIGN_BLOCKED = 0.01
TARGET_TYPICAL_P50_US = 100.0
PARANOIA_LEVELS = (1, 2, 3, 4)
# Timed inspections per typical request (after a warm-up of a tenth of that).
TYPICAL_ITERATIONS = 20_000
TYPICAL_ITERATIONS_QUICK = 5_000
# Times each corpus request is inspected for the cost figures.
CORPUS_ROUNDS = 5
CORPUS_ROUNDS_QUICK = 1

_JWT = (
    b"eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IjIwMjQtMTEifQ."
    b"eyJpc3MiOiJodHRwczovL2FwaS5zdHJvbmdyb29tLmRldiIsInN1YiI6ImNsaWVudF8wMUhaWDNLNE01Ti"
    b"IsImF1ZCI6Imh0dHBzOi8vYXBpLnN0cm9uZ3Jvb20uZGV2L3YxIiwiZXhwIjoxNzMyNjIwMDAwLCJzY29w"
    b"ZSI6InRyYW5zZmVyczp3cml0ZSIsImNuZiI6eyJqa3QiOiIwWmNPQ09SWk5ZeS1EV3BxcTMwalp5SkdIVE"
    b"4wZDJIZ2xCVjN1aWd1QTRJIn19."
    b"MEUCIQCx3b5yL2xwQ0pJ2vUj8aK1p9cZ3xv0Qm1z8bN4YwR1JQIgQ2hhbGxlbmdlLXNpZ25hdHVyZS1ieXRlcw"
)
_DPOP = (
    b"eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwiY3J2IjoiUC0yNTYi"
    b"LCJ4IjoiZjgzT0ozRDJ4RjFCZzh2dWI5dExlMWdITXpWNzZlOFR1czl1UEh2UlZFVSIsInkiOiJ4X0ZFelJ1"
    b"OW0zNkhMTl90dWU2NTlMTnBYVzZwQ3lTdGlrWWpLSVdJNWEwIn19."
    b"eyJqdGkiOiI0YTNmMmI5ZS0xYzQyLTQ5ZTYtOWI3Mi0zZTBhMWQ4ZjZjNTEiLCJodG0iOiJQT1NUIiwiaHR1"
    b"IjoiaHR0cHM6Ly9hcGkuc3Ryb25ncm9vbS5kZXYvdjEvdHJhbnNmZXJzIiwiaWF0IjoxNzMyNjE5OTQwfQ."
    b"MEQCIG9wZW4tc2lnbmF0dXJlLWJ5dGVzLWZvci1iZW5jaAIgYmVuY2gtc2lnbmF0dXJlLWJ5dGVz"
)
_API_HEADERS = [
    (b"host", b"api.strongroom.dev"),
    (b"user-agent", b"strongroom-python/1.4.0 httpx/0.28.1 CPython/3.12.4"),
    (b"accept", b"application/json"),
    (b"accept-encoding", b"gzip, deflate, br"),
    (b"authorization", b"DPoP " + _JWT),
    (b"dpop", _DPOP),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
]


def typical_api_requests() -> dict[str, GateRequest]:
    """The requests an API client sends most, as the edge's gates see them."""
    transfer = {
        "from_account": "acc_01HZX3K4M5N6P7Q8R9S0T1V2W3",
        "to_account": "acc_01HZX3K4M5N6P7Q8R9S0T1V2W4",
        "amount": "125.50",
        "currency": "EUR",
        "reference": "Invoice 2024-117, March rent",
        "metadata": {"order_id": "ORD-2024-000117"},
    }
    body = json.dumps(transfer, separators=(",", ":")).encode()
    post_headers = [
        *_API_HEADERS,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"idempotency-key", b"9b1f0c1e-3c0e-4a5e-8c47-2f1e0a6b7d11"),
    ]
    return {
        "POST /v1/transfers (JSON ~200 B)": GateRequest(
            "203.0.113.7", b"POST", b"/v1/transfers", post_headers, "bench", body=body
        ),
        "GET /v1/accounts/{id}/balance": GateRequest(
            "203.0.113.7",
            b"GET",
            b"/v1/accounts/acc_01HZX3K4M5N6P7Q8R9S0T1V2W3/balance",
            list(_API_HEADERS),
            "bench",
        ),
        "GET /v1/transfers?filters": GateRequest(
            "203.0.113.7",
            b"GET",
            b"/v1/transfers?account=acc_01HZX3K4M5N6P7Q8R9S0T1V2W3&status=posted"
            b"&created_after=2024-11-01T00:00:00Z&limit=50&cursor=eyJpZCI6IjAxSFpYM0s0In0",
            list(_API_HEADERS),
            "bench",
        ),
    }


def timed(waf: Waf, request: GateRequest, iterations: int) -> list[float]:
    """µs per ``inspect`` call, sorted."""
    for _ in range(max(1, iterations // 10)):
        waf.inspect(request)
    samples: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        started = clock()
        waf.inspect(request)
        samples.append((clock() - started) / 1000)
    samples.sort()
    return samples


def cost(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": round(percentile(ordered, 50), 1),
        "p99_us": round(percentile(ordered, 99), 1),
        "mean_us": round(sum(ordered) / len(ordered), 1),
        "samples": len(ordered),
    }


def blocked(waf: Waf, request: CorpusRequest) -> tuple[bool, list[str]]:
    result = waf.inspect(request.gate_request())
    if result.not_inspectable is not None:
        return True, [result.not_inspectable.type_id]
    return result.blocked, result.rule_ids


def rate(hits: int, total: int) -> float:
    return round(hits / total, 4) if total else 0.0


def score_corpus(corpus: list[CorpusRequest], paranoia: int) -> dict[str, Any]:
    """Detection and false positives at one paranoia level, overall and per category."""
    waf = Waf(WafSettings(paranoia=paranoia), WafRules())
    per_category: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_placeholder: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    missed: list[dict[str, str]] = []
    false_positives: list[dict[str, Any]] = []
    attacks = attacks_blocked = benign = benign_blocked = 0
    for request in corpus:
        hit, rule_ids = blocked(waf, request)
        counts = per_category[coarse_category(request)]
        counts[0] += 1
        counts[1] += hit
        if request.attack:
            attacks += 1
            attacks_blocked += hit
            placeholder = per_placeholder[f"{request.placeholder}/{request.encoder}"]
            placeholder[0] += 1
            placeholder[1] += hit
            if not hit:
                missed.append({"request": request.name, "payload": request.payload[-120:]})
        else:
            benign += 1
            benign_blocked += hit
            if hit:
                false_positives.append(
                    {"request": request.name, "payload": request.payload, "rule_ids": rule_ids}
                )
    return {
        "paranoia": paranoia,
        "attacks": attacks,
        "attacks_blocked": attacks_blocked,
        "detection": rate(attacks_blocked, attacks),
        "benign": benign,
        "benign_blocked": benign_blocked,
        "benign_blocked_rate": rate(benign_blocked, benign),
        "categories": {
            name: {"requests": n, "blocked": b, "rate": rate(b, n)}
            for name, (n, b) in sorted(per_category.items())
        },
        "placeholders": {
            name: {"requests": n, "blocked": b, "rate": rate(b, n)}
            for name, (n, b) in sorted(per_placeholder.items())
        },
        "missed": missed,
        "false_positives": false_positives,
    }


def corpus_cost(corpus: list[CorpusRequest], rounds: int) -> dict[str, dict[str, float]]:
    waf = Waf(WafSettings(), WafRules())
    samples: dict[str, list[float]] = {"benign": [], "attack": []}
    requests = [(r.attack, r.gate_request()) for r in corpus]
    clock = time.perf_counter_ns
    for _ in range(rounds):
        for attack, request in requests:
            started = clock()
            waf.inspect(request)
            samples["attack" if attack else "benign"].append((clock() - started) / 1000)
    return {kind: cost(values) for kind, values in samples.items()}


def print_tables(document: dict[str, Any]) -> None:
    levels = document["corpus"]["paranoia"]
    if levels:
        overall = Table(title="GoTestWAF corpus: blocked requests by paranoia level")
        for column in ("paranoia", "attacks blocked", "detection", "benign blocked", "rate"):
            overall.add_column(column, justify="right")
        for level in levels:
            overall.add_row(
                str(level["paranoia"]),
                f"{level['attacks_blocked']}/{level['attacks']}",
                f"{level['detection']:.1%}",
                f"{level['benign_blocked']}/{level['benign']}",
                f"{level['benign_blocked_rate']:.1%}",
            )
        console.print(overall)
        per = Table(title="Per category: blocked / requests (paranoia 1 … 4)")
        per.add_column("category")
        for level in levels:
            per.add_column(f"PL{level['paranoia']}", justify="right")
        for name in levels[0]["categories"]:
            cells = []
            for level in levels:
                c = level["categories"][name]
                cells.append(f"{c['blocked']}/{c['requests']} ({c['rate']:.0%})")
            per.add_row(name, *cells)
        console.print(per)
    costs = Table(title="Inspection cost per request (µs, one core, in process)")
    for column in ("requests", "p50 µs", "p99 µs", "mean µs", "samples"):
        costs.add_column(column, justify="right")
    for name, figures in {**document["cost"]["typical"], **document["cost"]["corpus"]}.items():
        costs.add_row(
            name,
            f"{figures['p50_us']:.1f}",
            f"{figures['p99_us']:.1f}",
            f"{figures['mean_us']:.1f}",
            f"{figures['samples']:,}",
        )
    console.print(costs)


def draw_chart(document: dict[str, Any]) -> Callable[[Any], None]:
    def draw(figure: Any) -> None:
        left, middle, right = figure.subplots(1, 3)
        levels = document["corpus"]["paranoia"]
        if levels:
            names = [f"PL{level['paranoia']}" for level in levels]
            left.plot(names, [100 * lv["detection"] for lv in levels], "o-", label="detection")
            left.plot(
                names,
                [100 * lv["benign_blocked_rate"] for lv in levels],
                "s-",
                label="benign blocked",
            )
            left.axhline(100 * TARGET_DETECTION, color="green", linestyle="--", linewidth=0.8)
            left.axhline(100 * TARGET_BENIGN_BLOCKED, color="red", linestyle="--", linewidth=0.8)
            left.set_ylim(0, 101)
            left.set_title("GoTestWAF corpus (%)")
            left.legend()
            categories = levels[0]["categories"]
            labels = list(categories)
            middle.barh(labels, [100 * categories[c]["rate"] for c in labels], color="#4c72b0")
            middle.set_xlim(0, 100)
            middle.set_title("blocked per category at PL1 (%)")
            middle.invert_yaxis()
        costs = {**document["cost"]["typical"], **document["cost"]["corpus"]}
        labels = list(costs)
        positions = range(len(labels))
        right.bar([p - 0.2 for p in positions], [costs[k]["p50_us"] for k in labels], 0.4)
        right.bar([p + 0.2 for p in positions], [costs[k]["p99_us"] for k in labels], 0.4)
        right.set_xticks(list(positions), [k.split(" (")[0] for k in labels], rotation=30)
        right.axhline(TARGET_TYPICAL_P50_US, color="red", linestyle="--", linewidth=0.8)
        right.legend(["target p50 (typical)", "p50", "p99"])
        right.set_yscale("log")
        right.set_title("inspection cost (µs)")

    return draw


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer timing samples (~8 s)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "waf.json")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "waf.png")
    args = parser.parse_args(argv)
    started = datetime.now(UTC)
    notes: list[str] = []
    busy = busy_machine_note()
    if busy:
        notes.append(busy)
    directory = corpus_dir()
    corpus: list[CorpusRequest] = []
    if directory is None:
        notes.append("../shared/corpus/gotestwaf absent: corpus figures skipped")
    else:
        corpus = load_corpus(directory)
        console.print(f"corpus: {len(corpus)} requests from {directory}")
    levels = []
    for paranoia in PARANOIA_LEVELS if corpus else ():
        console.print(f"scoring the corpus at paranoia {paranoia} ...")
        levels.append(score_corpus(corpus, paranoia))
    iterations = TYPICAL_ITERATIONS_QUICK if args.quick else TYPICAL_ITERATIONS
    console.print(f"timing typical API requests ({iterations:,} each) ...")
    waf = Waf(WafSettings(), WafRules())
    typical: dict[str, dict[str, float]] = {}
    for name, request in typical_api_requests().items():
        result = waf.inspect(request)
        if result.blocked or result.not_inspectable is not None:
            notes.append(f"typical request {name!r} was blocked: {result.rule_ids}")
        typical[name] = cost(timed(waf, request, iterations))
    corpus_costs: dict[str, dict[str, float]] = {}
    if corpus:
        rounds = CORPUS_ROUNDS_QUICK if args.quick else CORPUS_ROUNDS
        console.print(f"timing the corpus ({rounds} rounds) ...")
        corpus_costs = {
            f"corpus {kind}": figures for kind, figures in corpus_cost(corpus, rounds).items()
        }
    document: dict[str, Any] = {
        "bench": "waf",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine_info(),
        "targets": {
            "detection_min": TARGET_DETECTION,
            "benign_blocked_max": TARGET_BENIGN_BLOCKED,
            "typical_p50_us_max": TARGET_TYPICAL_P50_US,
        },
        "rules": {
            "version": waf.rules.current.version,
            "signature_rules": len(waf.rules.current.rules),
            "detectors": [d.name for d in waf.detectors],
        },
        "corpus": {"directory": str(directory) if directory else None, "paranoia": levels},
        "cost": {"typical": typical, "corpus": corpus_costs},
        "notes": notes,
    }
    if levels:
        first = levels[0]
        if first["detection"] < TARGET_DETECTION:
            notes.append(f"detection at PL1 below {TARGET_DETECTION:.0%}")
        if first["benign_blocked_rate"] > TARGET_BENIGN_BLOCKED:
            notes.append(f"benign blocked at PL1 above {TARGET_BENIGN_BLOCKED:.0%}")
    slow = [n for n, f in typical.items() if f["p50_us"] > TARGET_TYPICAL_P50_US]
    if slow:
        notes.append(f"typical requests above {TARGET_TYPICAL_P50_US:.0f} µs p50: {slow}")
    print_tables(document)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    write_json(args.out, document)
    write_chart(args.chart, draw_chart(document), size=(17, 5))
    console.print(f"wrote {args.out} and {args.chart}")
    return 0


if __name__ == "__main__":
    started_at = time.monotonic()
    code = main()
    console.print(f"bench took {time.monotonic() - started_at:.0f} s")
    sys.exit(code)
