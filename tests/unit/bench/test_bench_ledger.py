"""The ledger bench's parsing, bookkeeping and verdicts; the bench itself never runs here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from bench import ledger
from bench._harness import LoadResult

PGBENCH_STDOUT = """\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: <builtin: TPC-B (sort of)>
scaling factor: 10
query mode: simple
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 15 s
number of transactions actually processed: 49821
number of failed transactions: 3 (0.006%)
latency average = 9.608 ms
latency stddev = 5.551 ms
initial connection time = 26.880 ms
tps = 3321.874990 (without initial connection time)
"""

PGBENCH_STDERR = """\
starting vacuum...end.
progress: 5.0 s, 3115.0 tps, lat 10.277 ms stddev 5.565, 0 failed
progress: 10.0 s, 3479.5 tps, lat 9.218 ms stddev 5.556, 3 failed
"""


def test_pgbench_tps_excludes_connection_time_and_counts_failures() -> None:
    figures = ledger.parse_pgbench(PGBENCH_STDOUT + PGBENCH_STDERR)
    assert (figures["tps"], figures["transactions"], figures["failed"]) == (3321.87499, 49821, 3)
    assert (figures["clients"], figures["latency_avg_ms"]) == (32, 9.608)


def test_pgbench_progress_lines_become_a_time_series() -> None:
    figures = ledger.parse_pgbench(PGBENCH_STDOUT + PGBENCH_STDERR)
    assert figures["progress"] == [
        {"at_s": 5.0, "tps": 3115.0, "latency_ms": 10.277},
        {"at_s": 10.0, "tps": 3479.5, "latency_ms": 9.218},
    ]


def test_a_pgbench_run_that_printed_no_report_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a pgbench report"):
        ledger.parse_pgbench("pgbench: error: connection to server failed\n")


def test_pgbench_log_keeps_committed_latencies_in_ms_and_drops_failed_ones() -> None:
    log = "0 1 8123 0 1700000000 123456\n3 7 failed 0 1700000000 223456\n1 2 250 0 1700000000 5\n"
    assert ledger.parse_pgbench_log(log) == [8.123, 0.25]


def test_pgbench_run_command_logs_each_transaction_when_asked(tmp_path: Path) -> None:
    argv = ledger.pgbench_run_command("db", 14.6, log_prefix=tmp_path / "tx")
    assert argv[:7] == ["pgbench", "-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
    log_flag = f"--log-prefix={tmp_path / 'tx'}"
    assert argv[7:] == ["-c", "32", "-j", "2", "-T", "15", "-P", "5", "-l", log_flag, "db"]


def test_pgbench_reference_is_the_mean_of_the_runs_around_the_scenarios() -> None:
    assert ledger.pgbench_reference([{"tps": 3000.0}, {"tps": 3500.0}]) == 3250.0
    assert ledger.pgbench_reference([]) is None


@pytest.mark.parametrize("label", ["x; DROP DATABASE postgres", 'a"b', "A", "x" * 60])
def test_database_names_that_are_not_plain_identifiers_are_refused(label: str) -> None:
    with pytest.raises(ValueError, match="not a safe database name"):
        ledger.database_name(label)


def test_database_names_are_unique_per_call() -> None:
    assert ledger.database_name("ledger") != ledger.database_name("ledger")
    assert ledger.database_name("ledger", "abc").startswith("strongroom_bench_ledger_")


def test_idle_and_iowait_jiffies_are_not_busy() -> None:
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    stat = "cpu  100 0 50 800 40 5 5 0 30 0\ncpu0 50 0 25 400 20 2 3 0 15 0\n"
    assert ledger.parse_proc_stat_cpu(stat) == (160, 1000)


def test_busy_share_between_two_readings() -> None:
    assert ledger.busy_pct((100, 1000), (250, 1200)) == 75.0
    assert ledger.busy_pct((100, 1000), (100, 1000)) is None


def test_lua_strings_escape_quotes_backslashes_and_newlines() -> None:
    assert ledger.lua_string('a"b\\c\nd') == '"a\\"b\\\\c\\nd"'


def test_every_wallet_and_the_token_reach_the_script() -> None:
    run = ledger.ScriptRun(token="t.o.k", run_tag="0123456789abcde", seed=7)
    script = ledger.single_transfer_script(run, ["w1", "w2", "w3"])
    assert 'local wallets = {"w1", "w2", "w3"}' in script
    assert 'local token = "t.o.k"' in script
    assert "local ITEM_ERROR = nil" in script
    assert '"/v1/transfers"' in script


def test_batch_script_counts_failed_items_with_the_given_pattern() -> None:
    run = ledger.ScriptRun.fresh("tok")
    script = ledger.batch_transfer_script(run, ["w1", "w2"], 1000, ledger.BATCH_ITEM_ERROR)
    assert 'local ITEM_ERROR = "\\"status\\":\\"error\\""' in script
    assert "local batch_size = 1000" in script


def test_a_transfer_between_distinct_wallets_needs_two() -> None:
    with pytest.raises(ValueError, match="two distinct wallets"):
        ledger.hot_account_script(ledger.ScriptRun.fresh("tok"), ["w1"], "fees")


def test_fresh_runs_never_share_a_run_tag() -> None:
    tags = {ledger.ScriptRun.fresh("tok").run_tag for _ in range(100)}
    assert len(tags) == 100
    assert all(len(tag) == 15 and int(tag, 16) >= 0 for tag in tags)


def test_script_report_after_wrk_report() -> None:
    output = (
        "Requests/sec:   10.00\n"
        "ledger-status 409 3\nledger-status 503 1\nledger-item-errors 12\n"
        'ledger-sample 409 {"type":"https://strongroom.dev/problems/idempotency-conflict"}\n'
    )
    report = ledger.parse_script_report(output)
    assert report.statuses == {"409": 3, "503": 1}
    assert report.item_errors == 12
    assert report.samples["409"].endswith('idempotency-conflict"}')


def _account(kind: str, currency: str = "EUR", **counters: int) -> dict[str, Any]:
    return {"id": kind, "kind": kind, "currency": currency, **counters}


def test_a_ledger_balances_when_debits_equal_credits_in_each_currency() -> None:
    accounts = [
        _account("system", debits_posted=100),
        _account("wallet", credits_posted=70, debits_posted=5),
        _account("wallet", credits_posted=35),
    ]
    totals = ledger.ledger_totals(accounts)
    assert ledger.is_balanced(totals)
    assert totals["wallet_debits"] == {"EUR": 5}


def test_an_unmatched_pending_debit_unbalances_the_ledger() -> None:
    accounts = [_account("wallet", debits_pending=1), _account("wallet", credits_pending=0)]
    assert not ledger.is_balanced(ledger.ledger_totals(accounts))


def test_each_currency_must_balance_on_its_own() -> None:
    accounts = [
        _account("system", "EUR", debits_posted=5),
        _account("wallet", "USD", credits_posted=5),
    ]
    assert not ledger.is_balanced(ledger.ledger_totals(accounts))


def test_counters_may_be_nested_under_balances() -> None:
    account = {"currency": "EUR", "balances": {"debits_posted": "12", "credits_posted": 3}}
    assert ledger.account_counters(account) == {
        "debits_posted": 12,
        "credits_posted": 3,
        "debits_pending": 0,
        "credits_pending": 0,
    }


def _load(requests: int, non_2xx: int = 0, seconds: float = 10.0) -> LoadResult:
    return LoadResult(
        tool="wrk",
        connections=8,
        requests=requests,
        duration_s=seconds,
        requests_per_s=requests / seconds,
        latency_ms={"50": 4.0, "99": 40.0},
        non_2xx_3xx=non_2xx,
    )


def _figures(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "load": _load(100, non_2xx=2),
        "report": ledger.ScriptReport({"409": 2}, item_errors=30, samples={}),
        "items_per_request": 1000,
        "wallet_debit_per_item": 1,
        "steady": ledger.Window(8.0, 72_000, {"pod": 2.0, "edge": 0.5}, 90.0),
        "run_wallet_debits_delta": 98_000,
    }
    return ledger.scenario_figures(**{**args, **overrides})


def test_the_rate_is_what_the_books_committed_in_the_steady_window() -> None:
    figures = _figures()
    assert figures["transfers_per_s"] == 9000.0
    assert figures["pod_cpu_us_per_transfer"] == round(2.0 / 72_000 * 1e6, 1)


def test_acknowledged_transfers_exclude_failed_requests_and_failed_items() -> None:
    figures = _figures()
    assert figures["acknowledged"] == 98 * 1000 - 30
    assert figures["acknowledged_per_s"] == 9797.0


def test_transfers_in_flight_at_the_end_are_committed_but_not_acknowledged() -> None:
    figures = _figures(run_wallet_debits_delta=99_000)
    assert (figures["acknowledged_missing"], figures["committed_unacknowledged"]) == (0, 1030)


def test_an_acknowledged_transfer_absent_from_the_books_is_reported_missing() -> None:
    figures = _figures(run_wallet_debits_delta=97_000)
    assert figures["acknowledged_missing"] == 970


def test_journal_entries_that_debit_the_wallets_twice_count_once() -> None:
    figures = _figures(
        load=_load(500),
        report=ledger.ScriptReport({}, 0, {}),
        items_per_request=1,
        wallet_debit_per_item=2,
        steady=ledger.Window(4.0, 800, {"pod": 1.0, "edge": 0.1}, 50.0),
        run_wallet_debits_delta=1000,
    )
    assert (figures["acknowledged"], figures["committed_in_ledger"]) == (500, 500)
    assert figures["transfers_per_s"] == 100.0


def _backends(single_rate: float, single_p99: float, batch_rate: float) -> dict[str, Any]:
    def row(rate: float, p99: float) -> dict[str, Any]:
        return {"transfers_per_s": rate, "latency_ms": {"50": 1.0, "99": p99}}

    return {
        "postgres": {
            "scenarios": {
                "single": row(single_rate, single_p99),
                "batch": row(batch_rate, 300.0),
                "hot": row(single_rate / 2, single_p99),
            }
        }
    }


def test_single_target_needs_both_the_rate_and_the_p99() -> None:
    met = _backends(1700.0, 49.0, 1.0)
    slow = _backends(1700.0, 51.0, 1.0)
    ledger.add_ratios(met, 3000.0)
    ledger.add_ratios(slow, 3000.0)
    assert met["postgres"]["scenarios"]["single"]["target_met"] is True
    assert slow["postgres"]["scenarios"]["single"]["target_met"] is False
    assert met["postgres"]["scenarios"]["single"]["vs_pgbench"] == 0.567


def test_batch_target_is_three_times_pgbench() -> None:
    backends = _backends(1.0, 1.0, 8999.0)
    ledger.add_ratios(backends, 3000.0)
    assert backends["postgres"]["scenarios"]["batch"]["target_met"] is False
    backends = _backends(1.0, 1.0, 9000.0)
    ledger.add_ratios(backends, 3000.0)
    assert backends["postgres"]["scenarios"]["batch"]["target_met"] is True


def test_hot_account_rate_is_compared_with_single_transfers() -> None:
    backends = _backends(2000.0, 10.0, 1.0)
    ledger.add_ratios(backends, 3000.0)
    assert backends["postgres"]["scenarios"]["hot"]["vs_single"] == 0.5


def test_without_pgbench_no_ratio_and_the_target_is_unknown() -> None:
    backends = _backends(2000.0, 10.0, 20000.0)
    ledger.add_ratios(backends, None)
    rows = backends["postgres"]["scenarios"]
    assert rows["single"]["vs_pgbench"] is None
    # No reference, no verdict: None (unknown), never a false "missed".
    assert rows["batch"]["vs_pgbench"] is None
    assert rows["batch"]["target_met"] is None


def test_the_embedded_profile_is_reported_against_pgbench_but_not_held_to_its_targets() -> None:
    backends = _backends(2000.0, 10.0, 20000.0)
    backends["sqlite"] = _backends(100.0, 900.0, 200.0)["postgres"]
    ledger.add_ratios(backends, 3000.0)
    rows = backends["sqlite"]["scenarios"]
    assert rows["single"]["vs_pgbench"] == 0.033
    assert rows["single"]["target"] is None and "target_met" not in rows["single"]
    assert backends["postgres"]["scenarios"]["single"]["target_met"] is True


class _Jtis:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    def first_use(self, key: str, expires_at: float) -> bool:
        new = key not in self.seen
        self.seen.add(key)
        return new


def test_proofs_made_ahead_pass_the_servers_dpop_check() -> None:
    from strongroom.auth.rfc9449_dpop import DpopNonces, verify_proof  # noqa: PLC0415

    nonces = DpopNonces(b"k" * 32, 60)
    nonce = nonces.current(time.time())
    signer = ledger.DpopSigner()
    url = "https://localhost:8443/v1/transfers"
    proof = signer.proof("POST", url, nonce=nonce, access_token="tok.en")
    verified = verify_proof(
        proof,
        method="POST",
        url=url,
        now=time.time(),
        window_s=60,
        leeway_s=30,
        replay_cache=_Jtis(),
        nonces=nonces,
        access_token="tok.en",
    )
    assert (verified.htu, verified.nonce) == (url, nonce)


def test_proof_files_hold_distinct_proofs_for_every_wrk_thread(tmp_path: Path) -> None:
    files = ledger.write_proofs(
        ledger.DpopSigner(),
        "https://localhost:8443/v1/transfers",
        access_token="tok",
        nonce="n",
        count=11,
        work_dir=tmp_path,
    )
    proofs = [line for path in files for line in path.read_text().splitlines()]
    assert len(files) == ledger.WRK_THREADS
    assert len(proofs) >= 11
    assert len(set(proofs)) == len(proofs)


def test_proofs_needed_has_a_margin_a_floor_and_a_ceiling() -> None:
    assert ledger.proofs_needed(1000.0, 10.0) == 1000 * 10 * 1.5 + ledger.DPOP_PROOFS_MIN
    assert ledger.proofs_needed(0.0, 10.0) == ledger.DPOP_PROOFS_MIN
    assert ledger.proofs_needed(1e9, 10.0) == ledger.DPOP_PROOFS_MAX


def test_a_dpop_script_needs_a_proof_file_per_thread() -> None:
    run = ledger.ScriptRun.fresh("tok", scheme="DPoP", proof_files=(Path("/tmp/one"),))
    with pytest.raises(ValueError, match="proof files"):
        ledger.single_transfer_dpop_script(run, ["w1", "w2"])
