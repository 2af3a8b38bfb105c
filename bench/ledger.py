"""Ledger throughput: durable transfers/s through the TLS edge, against pgbench on the same box.

Run: ``.venv/bin/python bench/ledger.py`` (~5 min; ``--quick`` ~2.5 min; ``--duration S``,
``--no-postgres``, ``--no-sqlite``).

One run, in order:

1. **Reference**: pgbench's TPC-B-like workload (``pgbench -i -s 10``, then 32 clients,
   2 threads, ``-T duration -P 5``, per-transaction log for p50/p99) on a throwaway database
   of the local PostgreSQL server (127.0.0.1:5432, user postgres). It runs again after the
   Strongroom scenarios on PostgreSQL: the reference is the mean of both runs, so a drift of
   the machine's fsync latency during the run shows up instead of skewing the ratios.
2. **PostgreSQL**: ``strongroom up`` (2 pods, 1 edge worker, TLS 1.3) on another throwaway
   database; 100 wallets funded from the tenant's clearing account; then, each with a
   warm-up and a measured wrk run (Lua scripts, a fresh UUID per transfer):

   * ``single``: ``POST /v1/transfers``, 32 connections, a random pair of wallets, amount 1;
   * ``single_dpop``: the same with DPoP (RFC 9449), as ``transfers:write`` is by default;
   * ``batch``: ``POST /v1/transfers/batch``, 8 connections, 1,000 non-atomic transfers each;
   * ``hot``: ``POST /v1/journal-entries``, 32 connections, three legs each (a wallet pays
     2, another wallet gets 1 and the tenant's ``fees`` account 1): one account touched by
     every request, compared with ``single``.
3. **SQLite**: the same four on the embedded profile (no database URL).

Transfers/s is what the books show committed per second under steady load: the bench
reads the wallets (``GET /v1/accounts``) twice while wrk runs, ``--duration`` apart, after
a lead-in; the CPU of the pods and the edge is read at the same moments. Once the load has
stopped and the books no longer change, it reads every account of the tenant and checks
that the ledger balances (per currency, Σ debits = Σ credits, posted and pending) and that
no acknowledged transfer is missing (wrk's 2xx responses, less the failed items of
batches, against what the wallets paid). Targets from issue 4: ``single`` ≥ 0.5x pgbench
tps with p99 ≤ 50 ms, ``batch`` ≥ 3x pgbench tps; the ratios are reported whatever they
are.

Bearer tokens: ``auth.dpop_required_scopes`` is emptied for this bench (by default
``transfers:write`` demands DPoP, and wrk cannot sign a proof per request).
``single_dpop`` measures that production path too: a DPoP-bound token and a fresh proof
per request, signed by the bench (Ed25519) just before the run and read by wrk's script
from one file per thread.

Everything runs on loopback; every process is stopped by PID and both databases are
dropped at the end, also on Ctrl-C or an error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    LOAD_GRACE_S,
    RESULTS_DIR,
    LoadResult,
    Processes,
    busy_machine_note,
    cpu_seconds,
    free_port,
    machine_info,
    parse_wrk,
    percentile,
    wait_ready,
    write_chart,
    write_json,
)
from rich.console import Console
from rich.table import Table

console = Console()

# --- the setup measured (named so the JSON and the README can say what was run) ----------

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"
PG_ADMIN_DSN = f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/postgres"
# A server that does not answer this fast is not there: skip, do not hang.
PG_CONNECT_TIMEOUT_S = 3
# pgbench as the issue asks: scale 10 (1M accounts rows), 32 clients on 2 threads.
PGBENCH_SCALE = 10
PGBENCH_CLIENTS = 32
PGBENCH_THREADS = 2
PGBENCH_PROGRESS_S = 5
# `pgbench -i -s 10` takes ~10-30 s here; far more means something is wrong.
PGBENCH_INIT_TIMEOUT_S = 300.0

PLATFORM_PODS = 2
PLATFORM_EDGE_WORKERS = 1
PLATFORM_READY_TIMEOUT_S = 120.0
HTTP_TIMEOUT_S = 30.0
# What the bench does and no more: open wallets, move money, read the books.
SCOPES = "accounts:read accounts:write transfers:write"
CURRENCY = "EUR"
WALLETS = 100
# Each wallet starts with this much (minor units): no run can drain one (a wallet pays at
# most 2 per request, and no run reaches 10^8 requests).
WALLET_FUNDING = 10**12
WRK_THREADS = 2
SINGLE_CONNECTIONS = 32
BATCH_CONNECTIONS = 8
BATCH_SIZE = 1_000
HOT_CONNECTIONS = 32
# The bench's tenant has ~100 accounts: far fewer pages than this bound. Pages of the
# API's largest size: one page is one consistent snapshot of the books.
ACCOUNT_PAGES_MAX = 1_000
ACCOUNT_PAGE_LIMIT = 500
# After wrk stops, requests still in flight (a batch takes seconds under load) commit
# before the books are checked: the bench waits until two readings this far apart agree,
# for at most QUIESCE_MAX_S. A check of paged reads taken mid-commit would tear.
SETTLE_S = 1.0
QUIESCE_MAX_S = 60.0
# An access token lives 300 s: one is fetched per scenario, so a run must fit in it.
DURATION_MAX_S = 240.0

# A DPoP proof is accepted for `auth.dpop_proof_window_s` (60 s) after its iat: every
# proof of a run is made just before it, so the run (and the signing) must end sooner.
DPOP_RUN_MAX_S = 45.0
# Proofs made per run: the rate measured for bearer `single` (an upper bound) with a
# margin, within a bound on the bench's memory and signing time (~40 µs a proof).
DPOP_PROOF_MARGIN = 1.5
DPOP_PROOFS_MIN = 2_000
DPOP_PROOFS_MAX = 400_000

# Issue 4's targets, against pgbench's tps on the same PostgreSQL.
TARGET_SINGLE_VS_PGBENCH = 0.5
TARGET_SINGLE_P99_MS = 50.0
TARGET_BATCH_VS_PGBENCH = 3.0
# The scenario table is wider than a default 80-column terminal.
TABLE_WIDTH = 180


# --- throwaway PostgreSQL databases ------------------------------------------------------


def postgres_unavailable() -> str | None:
    """Why the local PostgreSQL server cannot be used, or None when it answers."""
    import psycopg  # noqa: PLC0415 - only the PostgreSQL part needs the driver

    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=PG_CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {PG_HOST}:{PG_PORT} unreachable: {exc}"
    return None


def database_name(label: str, token: str | None = None) -> str:
    """``strongroom_bench_<label>_<random>``: unique, and obviously the bench's to drop."""
    suffix = token or secrets.token_hex(6)
    name = f"strongroom_bench_{label}_{suffix}"
    if re.fullmatch(r"[a-z0-9_]{1,63}", name) is None:
        raise ValueError(f"not a safe database name: {name!r}")
    return name


def database_url(name: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"


@contextlib.contextmanager
def throwaway_database(label: str) -> Iterator[str]:
    """Create a database, yield its name, drop it (closing its sessions) whatever happens."""
    import psycopg  # noqa: PLC0415

    name = database_name(label)
    with psycopg.connect(
        PG_ADMIN_DSN, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(
            PG_ADMIN_DSN, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- pgbench ------------------------------------------------------------------------------


def pgbench_connection_args() -> list[str]:
    return ["-h", PG_HOST, "-p", str(PG_PORT), "-U", PG_USER]


def pgbench_init_command(dbname: str, scale: int = PGBENCH_SCALE) -> list[str]:
    return ["pgbench", *pgbench_connection_args(), "-i", "-s", str(scale), "-q", dbname]


def pgbench_run_command(
    dbname: str,
    duration_s: float,
    *,
    clients: int = PGBENCH_CLIENTS,
    threads: int = PGBENCH_THREADS,
    progress_s: int = PGBENCH_PROGRESS_S,
    log_prefix: Path | None = None,
) -> list[str]:
    """The TPC-B-like run; with ``log_prefix``, a per-transaction log for percentiles."""
    argv = ["pgbench", *pgbench_connection_args(), "-c", str(clients), "-j", str(threads)]
    argv += ["-T", str(max(1, round(duration_s))), "-P", str(progress_s)]
    if log_prefix is not None:
        argv += ["-l", f"--log-prefix={log_prefix}"]
    return [*argv, dbname]


_PROGRESS = re.compile(
    r"^progress: ([\d.]+) s, ([\d.]+) tps, lat ([\d.]+) ms stddev ([\d.]+|NaN)(?:, (\d+) failed)?",
    re.MULTILINE,
)


def parse_pgbench(output: str) -> dict[str, Any]:
    """The figures of a pgbench run (stdout and stderr together: progress goes to stderr)."""
    tps = re.search(r"^tps = ([\d.]+) \(without initial connection time\)", output, re.MULTILINE)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    if tps is None or processed is None:
        raise ValueError(f"not a pgbench report:\n{output}")
    failed = re.search(r"number of failed transactions: (\d+)", output)
    average = re.search(r"latency average = ([\d.]+) ms", output)
    stddev = re.search(r"latency stddev = ([\d.]+) ms", output)
    clients = re.search(r"number of clients: (\d+)", output)
    progress = [
        {"at_s": float(at), "tps": float(rate), "latency_ms": float(lat)}
        for at, rate, lat, _, _ in _PROGRESS.findall(output)
    ]
    return {
        "tps": float(tps.group(1)),
        "transactions": int(processed.group(1)),
        "failed": int(failed.group(1)) if failed else 0,
        "clients": int(clients.group(1)) if clients else None,
        "latency_avg_ms": float(average.group(1)) if average else None,
        "latency_stddev_ms": float(stddev.group(1)) if stddev else None,
        "progress": progress,
    }


def parse_pgbench_log(text: str) -> list[float]:
    """Latencies (ms) of the committed transactions of a pgbench per-transaction log.

    A line is ``client_id transaction_no time script_no time_epoch time_us [...]`` with
    ``time`` in µs, or ``failed``/``skipped`` instead of a time for a transaction that
    did not commit: those are left out.
    """
    latencies = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            latencies.append(int(fields[2]) / 1000.0)
    return latencies


def run_pgbench(dbname: str, duration_s: float, work_dir: Path, label: str) -> dict[str, Any]:
    """One measured pgbench run on ``dbname`` (already initialised); bounded in time."""
    log_dir = work_dir / f"pgbench-{label}"
    log_dir.mkdir(parents=True, exist_ok=True)
    busy_before = machine_cpu_jiffies()
    done = subprocess.run(
        pgbench_run_command(dbname, duration_s, log_prefix=log_dir / "tx"),
        cwd=log_dir,
        capture_output=True,
        text=True,
        timeout=duration_s + LOAD_GRACE_S,
        check=False,
    )
    busy_after = machine_cpu_jiffies()
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr[-2000:]}")
    figures = parse_pgbench(done.stdout + "\n" + done.stderr)
    latencies = sorted(
        value for path in log_dir.glob("tx*") for value in parse_pgbench_log(path.read_text())
    )
    figures["latency_ms"] = {
        pct: round(percentile(latencies, float(pct)), 3) for pct in ("50", "90", "99")
    }
    figures["machine_cpu_busy_pct"] = busy_pct(busy_before, busy_after)
    shutil.rmtree(log_dir, ignore_errors=True)  # a few MB of log lines per run
    return figures


def pgbench_reference(runs: Sequence[dict[str, Any]]) -> float | None:
    """The tps the ratios are taken against: the mean of the runs around the scenarios."""
    rates = [run["tps"] for run in runs]
    return round(sum(rates) / len(rates), 1) if rates else None


# --- machine-wide CPU ---------------------------------------------------------------------


def parse_proc_stat_cpu(text: str) -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from ``/proc/stat``; idle and iowait are not busy."""
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            total = sum(values[:8])  # guest time is already counted in user/nice
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return total - idle, total
    raise ValueError("no aggregate cpu line in /proc/stat")


def machine_cpu_jiffies() -> tuple[int, int]:
    return parse_proc_stat_cpu(Path("/proc/stat").read_text())


def busy_pct(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Share of all CPUs' time spent busy between two readings: near 100 means CPU-bound."""
    total = after[1] - before[1]
    return round(100.0 * (after[0] - before[0]) / total, 1) if total > 0 else None


# --- wrk Lua scripts ------------------------------------------------------------------------


def lua_string(value: str) -> str:
    """A Lua double-quoted string literal of ``value``."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def lua_list(values: Sequence[str]) -> str:
    return "{" + ", ".join(lua_string(v) for v in values) + "}"


@dataclass(frozen=True)
class ScriptRun:
    """What makes one wrk run's requests unique and authorised."""

    token: str
    # 15 hex digits chosen per run: with the wrk thread and a per-thread counter they make
    # every transfer id of the bench distinct, so no request is an idempotent replay.
    run_tag: str
    seed: int
    scheme: str = "Bearer"  # or "DPoP" for a DPoP-bound token (RFC 9449 §7.1)
    # DPoP only: one file of proofs per wrk thread, one proof per line, read in order.
    proof_files: tuple[Path, ...] = ()

    @classmethod
    def fresh(
        cls, token: str, *, scheme: str = "Bearer", proof_files: tuple[Path, ...] = ()
    ) -> ScriptRun:
        return cls(
            token=token,
            run_tag=secrets.token_hex(8)[:15],
            seed=secrets.randbelow(2**31),
            scheme=scheme,
            proof_files=proof_files,
        )

    def discard(self) -> None:
        """Delete the proof files: up to a few hundred MB, and each proof is a credential."""
        for path in self.proof_files:
            path.unlink(missing_ok=True)


# Shared by every script: headers, the wallets, unique ids, status counting, the report.
# `response` sees every answer: non-2xx are counted per status (with one body sample each),
# and in a 2xx body `ITEM_ERROR` (a Lua pattern, or nil) counts failed items of a batch.
_LUA_PRELUDE = """\
-- generated by bench/ledger.py
local token = {token}
local scheme = {scheme}
local run_tag = {run_tag}
local seed = {seed}
local wallets = {wallets}
local n_wallets = #wallets
local ITEM_ERROR = {item_error}
local headers = {{
  ["Host"] = "localhost",
  ["Content-Type"] = "application/json",
  ["Authorization"] = scheme .. " " .. token,
}}

-- set per thread by setup(); globals so thread:get() can read them in done()
thread_tag = 0
statuses = {{}}
samples = {{}}
item_errors = 0
local counter = 0
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_tag", #threads)
end

function init(args)
  math.randomseed(seed + thread_tag * 7919)
  if thread_init ~= nil then thread_init() end
end

-- rrrrrrrr-rrrr-4ttt-8rrr-cccccccccccc: run tag, wrk thread, counter (lowercase hex)
local function next_id()
  counter = counter + 1
  return string.format("%s-%s-4%03x-8%s-%012x",
    string.sub(run_tag, 1, 8), string.sub(run_tag, 9, 12), thread_tag,
    string.sub(run_tag, 13, 15), counter)
end

-- two distinct wallets, uniformly
local function wallet_pair()
  local i = math.random(n_wallets)
  local j = math.random(n_wallets - 1)
  if j >= i then j = j + 1 end
  return wallets[i], wallets[j]
end

function response(status, hdrs, body)
  if status < 200 or status > 299 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if samples[key] == nil then samples[key] = string.sub(body or "", 1, 300) end
  elseif ITEM_ERROR ~= nil and body ~= nil then
    local _, n = string.gsub(body, ITEM_ERROR, "")
    item_errors = item_errors + n
  end
end

function done(summary, latency, requests)
  local total_statuses, total_samples, total_item_errors = {{}}, {{}}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total_statuses[k] = (total_statuses[k] or 0) + v end
    for k, v in pairs(t:get("samples")) do total_samples[k] = v end
    total_item_errors = total_item_errors + t:get("item_errors")
  end
  for k, v in pairs(total_statuses) do io.write(string.format("ledger-status %s %d\\n", k, v)) end
  io.write(string.format("ledger-item-errors %d\\n", total_item_errors))
  for k, v in pairs(total_samples) do
    io.write("ledger-sample " .. k .. " " .. (string.gsub(v, "[\\r\\n]", " ")) .. "\\n")
  end
end
"""

_LUA_SINGLE = """
function request()
  local debit, credit = wallet_pair()
  local body = string.format(
    '{{"id":"%s","debit_account_id":"%s","credit_account_id":"%s","amount":1,"currency":"{currency}"}}',
    next_id(), debit, credit)
  return wrk.format("POST", "/v1/transfers", headers, body)
end
"""

# A DPoP-bound token: each request carries the next proof of this thread's file (made by
# the bench just before the run; a proof is good for one request and ~60 s).
_LUA_SINGLE_DPOP = """
local proof_files = {proof_files}
local proofs = nil
function thread_init()
  proofs = assert(io.open(proof_files[thread_tag], "r"))
end
function request()
  local debit, credit = wallet_pair()
  local body = string.format(
    '{{"id":"%s","debit_account_id":"%s","credit_account_id":"%s","amount":1,"currency":"{currency}"}}',
    next_id(), debit, credit)
  headers["DPoP"] = proofs:read("*l") or "proofs-exhausted"
  return wrk.format("POST", "/v1/transfers", headers, body)
end
"""

_LUA_BATCH = """
local batch_size = {batch_size}
function request()
  local items = {{}}
  for n = 1, batch_size do
    local debit, credit = wallet_pair()
    items[n] = string.format(
      '{{"id":"%s","debit_account_id":"%s","credit_account_id":"%s","amount":1,"currency":"{currency}"}}',
      next_id(), debit, credit)
  end
  local body = '{{"atomic":false,"transfers":[' .. table.concat(items, ",") .. ']}}'
  return wrk.format("POST", "/v1/transfers/batch", headers, body)
end
"""

_LUA_HOT = """
local fees = {fees}
function request()
  local payer, payee = wallet_pair()
  local body = string.format(
    '{{"id":"%s","legs":['
    .. '{{"account_id":"%s","side":"debit","amount":2,"currency":"{currency}"}},'
    .. '{{"account_id":"%s","side":"credit","amount":1,"currency":"{currency}"}},'
    .. '{{"account_id":"%s","side":"credit","amount":1,"currency":"{currency}"}}]}}',
    next_id(), payer, payee, fees)
  return wrk.format("POST", "/v1/journal-entries", headers, body)
end
"""


def _prelude(run: ScriptRun, wallets: Sequence[str], item_error: str | None) -> str:
    if len(wallets) < 2:
        raise ValueError("a transfer needs two distinct wallets")
    return _LUA_PRELUDE.format(
        token=lua_string(run.token),
        scheme=lua_string(run.scheme),
        run_tag=lua_string(run.run_tag),
        seed=run.seed,
        wallets=lua_list(wallets),
        item_error=lua_string(item_error) if item_error else "nil",
    )


def single_transfer_script(run: ScriptRun, wallets: Sequence[str]) -> str:
    """``POST /v1/transfers`` of 1 minor unit between two random wallets, a fresh id each."""
    return _prelude(run, wallets, None) + _LUA_SINGLE.format(currency=CURRENCY)


def single_transfer_dpop_script(run: ScriptRun, wallets: Sequence[str]) -> str:
    """As ``single_transfer_script``, with a DPoP-bound token and a fresh proof each."""
    if run.scheme != "DPoP" or len(run.proof_files) < WRK_THREADS:
        raise ValueError(f"a DPoP run needs the DPoP scheme and {WRK_THREADS} proof files")
    files = lua_list([str(path) for path in run.proof_files])
    return _prelude(run, wallets, None) + _LUA_SINGLE_DPOP.format(
        proof_files=files, currency=CURRENCY
    )


def batch_transfer_script(
    run: ScriptRun, wallets: Sequence[str], batch_size: int, item_error: str
) -> str:
    """``POST /v1/transfers/batch`` of ``batch_size`` independent transfers like the above."""
    return _prelude(run, wallets, item_error) + _LUA_BATCH.format(
        batch_size=batch_size, currency=CURRENCY
    )


def hot_account_script(run: ScriptRun, wallets: Sequence[str], fees_account: str) -> str:
    """``POST /v1/journal-entries``: a wallet pays 2, another gets 1, ``fees`` gets 1."""
    return _prelude(run, wallets, None) + _LUA_HOT.format(
        fees=lua_string(fees_account), currency=CURRENCY
    )


@dataclass
class ScriptReport:
    """What the scripts' ``done()`` printed after wrk's own report."""

    statuses: dict[str, int]
    item_errors: int
    samples: dict[str, str]


def parse_script_report(output: str) -> ScriptReport:
    statuses = {
        code: int(count) for code, count in re.findall(r"^ledger-status (\d+) (\d+)$", output, re.M)
    }
    item_errors = re.search(r"^ledger-item-errors (\d+)$", output, re.MULTILINE)
    samples = dict(re.findall(r"^ledger-sample (\d+) (.*)$", output, re.MULTILINE))
    return ScriptReport(statuses, int(item_errors.group(1)) if item_errors else 0, samples)


def wrk_command(script_file: Path, url: str, connections: int, duration_s: float) -> list[str]:
    return [
        "wrk",
        f"-t{min(WRK_THREADS, connections)}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(2, round(HTTP_TIMEOUT_S))}s",
        "--latency",
        "-s",
        str(script_file),
        url,
    ]


@dataclass
class WrkRun:
    """A wrk process running in the background while the bench reads the books."""

    proc: subprocess.Popen[bytes]
    output: Path
    script_file: Path
    connections: int
    duration_s: float


def start_wrk(
    procs: Processes, url: str, script: str, connections: int, duration_s: float, work_dir: Path
) -> WrkRun:
    """Start wrk with a Lua script (stopped by PID with the bench's other processes)."""
    stamp = time.monotonic_ns()
    script_file = work_dir / f"wrk-{stamp}.lua"
    script_file.write_text(script)
    output = work_dir / f"wrk-{stamp}.out"
    with output.open("wb") as out:
        proc = procs.start(
            f"wrk-{stamp}",
            wrk_command(script_file, url, connections, duration_s),
            stdout=out.fileno(),
        )
    return WrkRun(proc, output, script_file, connections, duration_s)


def finish_wrk(procs: Processes, run: WrkRun) -> tuple[LoadResult, ScriptReport]:
    """Wait for wrk (bounded); its parsed report and the script's counts."""
    try:
        code = run.proc.wait(run.duration_s + LOAD_GRACE_S)
    except subprocess.TimeoutExpired:
        procs.stop(run.proc)
        raise RuntimeError(
            f"wrk did not finish within {run.duration_s + LOAD_GRACE_S:.0f} s"
        ) from None
    finally:
        run.script_file.unlink(missing_ok=True)  # it holds an access token
    text = run.output.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"wrk failed ({code}): {text[-2000:]}")
    return parse_wrk(text, run.connections), parse_script_report(text)


def run_wrk(
    procs: Processes, url: str, script: str, connections: int, duration_s: float, work_dir: Path
) -> tuple[LoadResult, ScriptReport]:
    return finish_wrk(procs, start_wrk(procs, url, script, connections, duration_s, work_dir))


# --- DPoP proofs made ahead (RFC 9449) ------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DpopSigner:
    """A client's Ed25519 DPoP key: signs proofs (§4.2) fast enough to make them ahead."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: PLC0415
        from cryptography.hazmat.primitives.serialization import (  # noqa: PLC0415
            Encoding,
            PublicFormat,
        )

        self._key = ed25519.Ed25519PrivateKey.generate()
        x = b64url(self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
        header = {
            "typ": "dpop+jwt",
            "alg": "Ed25519",
            "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x},
        }
        self._header_b64 = b64url(json.dumps(header, separators=(",", ":")).encode())

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        access_token: str | None = None,
        iat: int | None = None,
    ) -> str:
        claims: dict[str, Any] = {
            "jti": secrets.token_urlsafe(12),
            "htm": method,
            "htu": url,
            "iat": int(time.time()) if iat is None else iat,
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        signing_input = (
            f"{self._header_b64}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}"
        )
        return f"{signing_input}.{b64url(self._key.sign(signing_input.encode('ascii')))}"


def write_proofs(
    signer: DpopSigner,
    url: str,
    *,
    access_token: str,
    nonce: str,
    count: int,
    work_dir: Path,
) -> tuple[Path, ...]:
    """``count`` proofs for ``POST url``, split over one file per wrk thread."""
    per_thread = -(-count // WRK_THREADS)
    stamp = time.monotonic_ns()
    files = []
    for thread in range(1, WRK_THREADS + 1):
        path = work_dir / f"dpop-{stamp}-{thread}.txt"
        with path.open("w") as out:
            for _ in range(per_thread):
                out.write(signer.proof("POST", url, nonce=nonce, access_token=access_token))
                out.write("\n")
        files.append(path)
    return tuple(files)


def proofs_needed(rate_per_s: float, run_s: float) -> int:
    """Proofs for a run of ``run_s`` at up to ``rate_per_s`` requests/s, margin included."""
    wanted = rate_per_s * run_s * DPOP_PROOF_MARGIN + DPOP_PROOFS_MIN
    return int(min(DPOP_PROOFS_MAX, wanted))


# --- the ledger's books --------------------------------------------------------------------

_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def account_counters(account: dict[str, Any]) -> dict[str, int]:
    """The four counters of an account's JSON (at the top level or under ``balances``)."""
    source = account.get("balances") if isinstance(account.get("balances"), dict) else account
    assert isinstance(source, dict)
    return {name: int(source.get(name, 0)) for name in _COUNTERS}


def ledger_totals(accounts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per currency: the four counters summed over every account, and over the wallets."""
    per_currency: dict[str, dict[str, int]] = {}
    wallet_debits: dict[str, int] = {}
    for account in accounts:
        currency = str(account["currency"])
        counters = account_counters(account)
        sums = per_currency.setdefault(currency, dict.fromkeys(_COUNTERS, 0))
        for name, value in counters.items():
            sums[name] += value
        if account.get("kind") == "wallet":
            wallet_debits[currency] = wallet_debits.get(currency, 0) + counters["debits_posted"]
    return {"accounts": len(accounts), "currencies": per_currency, "wallet_debits": wallet_debits}


def is_balanced(totals: dict[str, Any]) -> bool:
    """Double entry: in every currency, Σ debits = Σ credits, posted and pending alike."""
    return all(
        sums["debits_posted"] == sums["credits_posted"]
        and sums["debits_pending"] == sums["credits_pending"]
        for sums in totals["currencies"].values()
    )


# --- scenarios ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """A scenario's phases: warm-up (its own wrk run), then one run of lead + measured
    window + lead, the books read at both ends of the window while the load runs."""

    duration_s: float
    warmup_s: float
    lead_s: float

    @classmethod
    def for_duration(cls, duration_s: float) -> Timing:
        # A few seconds to warm up and to let every connection reach a steady state
        # (a batch of 1,000 takes ~0.3-3 s), short enough for the quick runs.
        return cls(duration_s, warmup_s=min(3.0, max(1.0, duration_s / 3)), lead_s=2.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    connections: int
    items_per_request: int  # transfers (or journal entries) per request
    wallet_debit_per_item: int  # minor units the wallets pay per item: the durability check
    script: Callable[[ScriptRun], str]
    dpop: bool = False


@dataclass(frozen=True)
class Window:
    """The steady part of a run: between two readings of the books taken under load."""

    seconds: float
    wallet_debits_delta: int
    cpu: dict[str, float]
    machine_busy_pct: float | None


def scenario_figures(
    *,
    load: LoadResult,
    report: ScriptReport,
    items_per_request: int,
    wallet_debit_per_item: int,
    steady: Window,
    run_wallet_debits_delta: int,
) -> dict[str, Any]:
    """One scenario's figures from wrk, the script's counts, the books and the CPU clocks.

    The rate is what the books show committed per second during the steady window, so
    neither the ramp-up of wrk's connections nor the requests in flight when it stops
    (a batch of 1,000 takes seconds under load) bends it. wrk's own count of
    acknowledged items checks durability: all of them must be in the books.
    """
    ok_requests = load.requests - load.non_2xx_3xx
    acknowledged = ok_requests * items_per_request - report.item_errors
    committed = run_wallet_debits_delta // wallet_debit_per_item
    steady_items = steady.wallet_debits_delta / wallet_debit_per_item
    pod, edge = steady.cpu.get("pod", 0.0), steady.cpu.get("edge", 0.0)
    seconds = load.duration_s
    return {
        "transfers_per_s": round(steady_items / steady.seconds, 1) if steady.seconds else 0.0,
        "steady_window_s": round(steady.seconds, 3),
        "steady_transfers": round(steady_items),
        "requests": load.requests,
        "requests_per_s": round(load.requests / seconds, 2) if seconds else 0.0,
        "duration_s": seconds,
        "connections": load.connections,
        "items_per_request": items_per_request,
        "acknowledged": acknowledged,
        "acknowledged_per_s": round(acknowledged / seconds, 1) if seconds else 0.0,
        "latency_ms": load.latency_ms,
        "non_2xx": load.non_2xx_3xx,
        "socket_errors": sum(load.socket_errors.values()),
        "item_errors": report.item_errors,
        "statuses": report.statuses,
        "error_samples": report.samples,
        # Committed in the books from before wrk started until after it stopped: at least
        # the acknowledged items, or an acknowledged transfer was lost; the excess is
        # requests still in flight when wrk stopped.
        "committed_in_ledger": committed,
        "acknowledged_missing": max(0, acknowledged - committed),
        "committed_unacknowledged": max(0, committed - acknowledged),
        "pod_cpu_s": round(pod, 3),
        "edge_cpu_s": round(edge, 3),
        "pod_cpu_us_per_transfer": round(pod / steady_items * 1e6, 1) if steady_items else None,
        "edge_cpu_us_per_transfer": round(edge / steady_items * 1e6, 1) if steady_items else None,
        "machine_cpu_busy_pct": steady.machine_busy_pct,
    }


def add_ratios(backends: dict[str, dict[str, Any]], pgbench_tps: float | None) -> None:
    """Each scenario's ratio to pgbench tps, the issue's targets met or not (PostgreSQL's:
    the embedded profile is reported, not held to them), hot vs single."""
    for backend_name, backend in backends.items():
        scenarios = backend["scenarios"]
        for name, row in scenarios.items():
            ratio = row["transfers_per_s"] / pgbench_tps if pgbench_tps else None
            row["vs_pgbench"] = round(ratio, 3) if ratio is not None else None
            row["target"] = None
            row.pop("target_met", None)
            if backend_name != "postgres":
                continue
            if name in ("single", "single_dpop"):
                p99 = row["latency_ms"].get("99")
                row["target"] = (
                    f"≥ {TARGET_SINGLE_VS_PGBENCH}x pgbench, p99 ≤ {TARGET_SINGLE_P99_MS:.0f} ms"
                )
                row["target_met"] = (
                    None
                    if ratio is None
                    else (
                        ratio >= TARGET_SINGLE_VS_PGBENCH
                        and p99 is not None
                        and p99 <= TARGET_SINGLE_P99_MS
                    )
                )
            elif name == "batch":
                row["target"] = f"≥ {TARGET_BATCH_VS_PGBENCH:.0f}x pgbench"
                row["target_met"] = None if ratio is None else ratio >= TARGET_BATCH_VS_PGBENCH
        single = scenarios.get("single")
        for other in ("single_dpop", "hot"):
            row = scenarios.get(other)
            if single and row and single["transfers_per_s"]:
                row["vs_single"] = round(row["transfers_per_s"] / single["transfers_per_s"], 3)


def result_notes(document: dict[str, Any]) -> list[str]:
    """Everything a reader must not miss: errors, losses, imbalance, missed targets."""
    notes = []
    for backend_name, backend in document["backends"].items():
        for name, row in backend["scenarios"].items():
            where = f"{backend_name}/{name}"
            if row["non_2xx"] or row["socket_errors"] or row["item_errors"]:
                notes.append(
                    f"{where}: {row['non_2xx']} non-2xx responses {row['statuses']}, "
                    f"{row['socket_errors']} socket errors, {row['item_errors']} failed items"
                )
            if row["acknowledged_missing"]:
                notes.append(
                    f"{where}: {row['acknowledged_missing']} acknowledged transfers are NOT "
                    "in the ledger"
                )
            if not row["balanced_after"]:
                notes.append(f"{where}: the ledger does NOT balance after the run")
            if not row.get("quiet_after", True):
                notes.append(
                    f"{where}: the books still changed {QUIESCE_MAX_S:.0f} s after the load "
                    "stopped; the balance check may have read them mid-commit"
                )
            if row.get("target_met") is False:
                notes.append(
                    f"{where}: target {row['target']} not met ({row['vs_pgbench']}x pgbench, "
                    f"p99 {row['latency_ms'].get('99', 0):.1f} ms)"
                )
    return notes


# --- `strongroom up` and its API ------------------------------------------------------------


class LedgerPlatform:
    """`strongroom up` on loopback (2 pods, 1 edge worker) in ``data_dir``, on ``db_url``
    (PostgreSQL) or the embedded SQLite file; stopped by PID with the bench's processes."""

    def __init__(self, procs: Processes, data_dir: Path, db_url: str | None) -> None:
        from strongroom.edge.tls import client_context  # noqa: PLC0415

        self.procs = procs
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {"STRONGROOM_DATABASE__URL": db_url} if db_url else {}
        # Ports of the pods and the edge's admin listener: free ones, not the defaults.
        # No scope demands DPoP: wrk cannot sign a proof per request, so the scenarios use
        # bearer tokens; `single_dpop` measures the DPoP-bound path with proofs made ahead.
        start_env = {
            **self.env,
            "STRONGROOM_AUTH__DPOP_REQUIRED_SCOPES": "[]",
            "STRONGROOM_PODS__PORT_BASE": str(free_port()),
            "STRONGROOM_EDGE__ADMIN_PORT": str(free_port()),
            # wrk is one address and one OAuth client sending as fast as the ledger answers:
            # the per-address limits exempt it and the per-client budget is out of reach,
            # so the bench measures the ledger. Every rate-limit check and the WAF still run.
            "STRONGROOM_EDGE__RATE_LIMITS__EXEMPT_NETWORKS": '["127.0.0.0/8", "::1/128"]',
            "STRONGROOM_EDGE__RATE_LIMITS__POLICIES": json.dumps(
                [{"name": "client", "key": "client", "limit": 10_000_000, "burst": 10_000_000}]
            ),
            "STRONGROOM_EDGE__RATE_LIMITS__CONCURRENCY": json.dumps(
                [{"name": "client-inflight", "key": "client", "concurrent_max": 100_000}]
            ),
        }
        self.proc = procs.start(
            f"strongroom-up-{data_dir.name}",
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                "--pods",
                str(PLATFORM_PODS),
                "--edge-workers",
                str(PLATFORM_EDGE_WORKERS),
            ],
            env=start_env,
        )
        self.url = f"https://127.0.0.1:{self.port}"
        self.base_url = f"https://localhost:{self.port}"
        ca = data_dir / "tls" / "ca.pem"
        deadline = time.monotonic() + PLATFORM_READY_TIMEOUT_S
        while not ca.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"strongroom up made no CA (exit {self.proc.returncode}):\n{self.log_tail()}"
                )
            time.sleep(0.2)
        self.ssl_context = client_context(ca)
        wait_ready(
            f"{self.base_url}/healthz",
            proc=self.proc,
            ssl_context=self.ssl_context,
            timeout_s=max(1.0, deadline - time.monotonic()),
        )
        self._wait_all_healthy(deadline)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(
            self.procs.log_of(f"strongroom-up-{self.data_dir.name}").splitlines()[-lines:]
        )

    def _wait_all_healthy(self, deadline: float) -> None:
        from strongroom.runtime.state import read_state  # noqa: PLC0415 - pydantic models

        while time.monotonic() < deadline:
            state = read_state(self.data_dir / "run")
            healthy = state and all(p.health == "healthy" and p.pid for p in state.processes)
            if healthy and {"pod", "edge"} <= {p.role for p in state.processes}:
                return
            time.sleep(0.2)
        raise RuntimeError("the platform's processes did not all become healthy in time")

    def pids(self, role: str) -> list[int]:
        from strongroom.runtime.state import read_state  # noqa: PLC0415

        state = read_state(self.data_dir / "run")
        assert state is not None
        return [p.pid for p in state.processes if p.role == role and p.pid]

    def cpu(self) -> dict[str, float]:
        """CPU seconds used so far by the pods and by the edge workers."""
        return {role: sum(cpu_seconds(pid) for pid in self.pids(role)) for role in ("pod", "edge")}

    def cli(self, *args: str) -> dict[str, Any]:
        """A `strongroom` command on this platform's data dir and database (``--json``)."""
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "strongroom.cli.main",
                *args,
                "--data-dir",
                str(self.data_dir),
                "--json",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
            env={**os.environ, **self.env},
        )
        if done.returncode != 0:
            raise RuntimeError(f"strongroom {' '.join(args)} failed: {done.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def stop(self) -> None:
        self.procs.stop(self.proc)


class LedgerApi:
    """The tenant's side of the API over one TLS connection (httpx), with a fresh token."""

    def __init__(self, platform: LedgerPlatform, client_id: str, client_secret: str) -> None:
        import httpx  # noqa: PLC0415 - only the HTTP part needs it

        self.http = httpx.Client(
            base_url=platform.base_url, verify=platform.ssl_context, timeout=HTTP_TIMEOUT_S
        )
        self.client = (client_id, client_secret)
        self.token = ""

    def close(self) -> None:
        self.http.close()

    def refresh_token(self) -> str:
        r = self.http.post(
            "/oauth2/token", data={"grant_type": "client_credentials"}, auth=self.client
        )
        if r.status_code != 200:
            raise RuntimeError(f"token request: {r.status_code} {r.text[:500]}")
        self.token = str(r.json()["access_token"])
        return self.token

    def dpop_token(self, signer: DpopSigner, token_url: str) -> tuple[str, str]:
        """A DPoP-bound access token (§5) and the server's current nonce (§8).

        The first proof has no nonce: the server answers ``use_dpop_nonce`` with one.
        """
        nonce: str | None = None
        for _ in range(2):
            r = self.http.post(
                "/oauth2/token",
                data={"grant_type": "client_credentials"},
                auth=self.client,
                headers={"DPoP": signer.proof("POST", token_url, nonce=nonce)},
            )
            nonce = r.headers.get("DPoP-Nonce", nonce)
            if r.status_code == 200 and nonce is not None:
                return str(r.json()["access_token"]), nonce
        raise RuntimeError(f"DPoP token request: {r.status_code} {r.text[:500]}")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(
            method, path, headers={"Authorization": f"Bearer {self.token}"}, **kwargs
        )
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:500]}")
        return r.json()

    def create_wallet(self) -> str:
        account = self._call("POST", "/v1/accounts", json={"kind": "wallet", "currency": CURRENCY})
        return str(account["id"])

    def accounts(self, **params: str) -> list[dict[str, Any]]:
        """Every account of the tenant matching ``params``, following the ``after`` cursor."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(ACCOUNT_PAGES_MAX):
            query = {**params, "limit": str(ACCOUNT_PAGE_LIMIT)}
            if cursor:
                query["after"] = cursor
            page = self._call("GET", "/v1/accounts", params=query)
            found.extend(page["accounts"])
            cursor = page.get("next_cursor")
            if not cursor:
                return found
        raise RuntimeError(f"GET /v1/accounts had more than {ACCOUNT_PAGES_MAX} pages")

    def system_account(self, code: str) -> str:
        for account in self.accounts(kind="system", currency=CURRENCY):
            if account.get("code") == code:
                return str(account["id"])
        raise RuntimeError(f"the tenant has no {code!r} system account in {CURRENCY}")

    def fund(self, clearing: str, wallets: Sequence[str], amount: int) -> None:
        """Money enters the ledger: debit the tenant's clearing account, credit each wallet."""
        transfers = [
            {
                "debit_account_id": clearing,
                "credit_account_id": wallet,
                "amount": amount,
                "currency": CURRENCY,
            }
            for wallet in wallets
        ]
        self._call("POST", "/v1/transfers/batch", json={"atomic": True, "transfers": transfers})

    def totals(self) -> dict[str, Any]:
        return ledger_totals(self.accounts())

    def wallet_debits(self) -> int:
        """What the wallets have paid so far: the bench's count of committed transfers."""
        wallets = self.accounts(kind="wallet", currency=CURRENCY)
        return sum(account_counters(account)["debits_posted"] for account in wallets)

    def quiet_totals(self) -> dict[str, Any]:
        """The books once nothing commits any more (bounded): a consistent read to check."""
        deadline = time.monotonic() + QUIESCE_MAX_S
        previous = self.totals()
        while True:
            time.sleep(SETTLE_S)
            current = self.totals()
            if current == previous or time.monotonic() > deadline:
                current["quiet"] = current == previous
                return current
            previous = current


@dataclass
class Books:
    """The tenant the bench moves money for, and the accounts it moves it between."""

    api: LedgerApi
    wallets: list[str]
    fees: str
    base_url: str
    signer: DpopSigner
    # Requests/s a DPoP run may reach: set from the bearer `single` run on this platform.
    dpop_rate_per_s: float = 5_000.0

    def script_run(self, scenario: Scenario, run_s: float, work_dir: Path) -> ScriptRun:
        """A fresh run for ``scenario``: a bearer token, or a DPoP-bound one and its proofs."""
        if not scenario.dpop:
            return ScriptRun.fresh(self.api.token)
        token, nonce = self.api.dpop_token(self.signer, f"{self.base_url}/oauth2/token")
        files = write_proofs(
            self.signer,
            f"{self.base_url}/v1/transfers",
            access_token=token,
            nonce=nonce,
            count=proofs_needed(self.dpop_rate_per_s, run_s),
            work_dir=work_dir,
        )
        return ScriptRun.fresh(token, scheme="DPoP", proof_files=files)


def open_books(platform: LedgerPlatform) -> Books:
    tenant = platform.cli("tenant", "create", "ledger-bench")["tenant_id"]
    client = platform.cli(
        "client", "create", "--tenant", tenant, "--scopes", SCOPES, "--name", "ledger-bench"
    )
    api = LedgerApi(platform, client["client_id"], client["client_secret"])
    api.refresh_token()
    wallets = [api.create_wallet() for _ in range(WALLETS)]
    api.fund(api.system_account("clearing"), wallets, WALLET_FUNDING)
    return Books(
        api=api,
        wallets=wallets,
        fees=api.system_account("fees"),
        base_url=platform.base_url,
        signer=DpopSigner(),
    )


# A failed item of a batch response (`{"index": n, "status": "error", "problem": ...}`,
# compact JSON), as a Lua pattern: `response` counts them in every 2xx body.
BATCH_ITEM_ERROR = '"status":"error"'


def scenarios_for(books: Books) -> list[Scenario]:
    wallets = books.wallets
    return [
        Scenario(
            "single",
            f"POST /v1/transfers, {SINGLE_CONNECTIONS} connections",
            SINGLE_CONNECTIONS,
            1,
            1,
            lambda run: single_transfer_script(run, wallets),
        ),
        Scenario(
            "single_dpop",
            f"POST /v1/transfers with DPoP, {SINGLE_CONNECTIONS} connections",
            SINGLE_CONNECTIONS,
            1,
            1,
            lambda run: single_transfer_dpop_script(run, wallets),
            dpop=True,
        ),
        Scenario(
            "batch",
            f"POST /v1/transfers/batch x {BATCH_SIZE:,}, {BATCH_CONNECTIONS} connections",
            BATCH_CONNECTIONS,
            BATCH_SIZE,
            1,
            lambda run: batch_transfer_script(run, wallets, BATCH_SIZE, BATCH_ITEM_ERROR),
        ),
        Scenario(
            "hot",
            f"POST /v1/journal-entries, 3 legs incl. fees, {HOT_CONNECTIONS} connections",
            HOT_CONNECTIONS,
            1,
            2,
            lambda run: hot_account_script(run, wallets, books.fees),
        ),
    ]


@dataclass(frozen=True)
class Reading:
    at_s: float  # time.monotonic() halfway through the read of the books
    wallet_debits: int
    cpu: dict[str, float]
    machine: tuple[int, int]


def read_under_load(platform: LedgerPlatform, books: Books) -> Reading:
    cpu, machine = platform.cpu(), machine_cpu_jiffies()
    started = time.monotonic()
    debits = books.api.wallet_debits()
    return Reading((started + time.monotonic()) / 2, debits, cpu, machine)


def window(first: Reading, second: Reading) -> Window:
    return Window(
        seconds=second.at_s - first.at_s,
        wallet_debits_delta=second.wallet_debits - first.wallet_debits,
        cpu={role: second.cpu[role] - first.cpu[role] for role in first.cpu},
        machine_busy_pct=busy_pct(first.machine, second.machine),
    )


def sleep_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))


def measure(
    procs: Processes,
    platform: LedgerPlatform,
    books: Books,
    scenario: Scenario,
    timing: Timing,
    work_dir: Path,
) -> dict[str, Any]:
    """Warm-up; then one wrk run, the books read at its steady start and end, and again
    once it has stopped and settled (balance and durability checks)."""
    books.api.refresh_token()
    url, connections = platform.url, scenario.connections
    warm = books.script_run(scenario, timing.warmup_s, work_dir)
    run_wrk(procs, url, scenario.script(warm), connections, timing.warmup_s, work_dir)
    warm.discard()
    before = books.api.quiet_totals()
    total_s = timing.lead_s + timing.duration_s + timing.lead_s
    measured = books.script_run(scenario, total_s, work_dir)
    running = start_wrk(procs, url, scenario.script(measured), connections, total_s, work_dir)
    started = time.monotonic()
    sleep_until(started + timing.lead_s)
    first = read_under_load(platform, books)
    sleep_until(started + timing.lead_s + timing.duration_s)
    second = read_under_load(platform, books)
    load, report = finish_wrk(procs, running)
    measured.discard()
    books.api.refresh_token()
    after = books.api.quiet_totals()
    run_delta = after["wallet_debits"].get(CURRENCY, 0) - before["wallet_debits"].get(CURRENCY, 0)
    figures = scenario_figures(
        load=load,
        report=report,
        items_per_request=scenario.items_per_request,
        wallet_debit_per_item=scenario.wallet_debit_per_item,
        steady=window(first, second),
        run_wallet_debits_delta=run_delta,
    )
    figures.update(
        title=scenario.title,
        balanced_before=is_balanced(before),
        balanced_after=is_balanced(after),
        # False: the books still changed QUIESCE_MAX_S after wrk stopped (then the balance
        # check above may have read pages mid-commit).
        quiet_after=after["quiet"],
        totals_after=after["currencies"],
    )
    return figures


def bench_backend(
    procs: Processes,
    label: str,
    db_url: str | None,
    timing: Timing,
    work_dir: Path,
    only: frozenset[str] | None = None,
) -> dict[str, Any]:
    """Every scenario (or those in ``only``) on one platform, stopped before returning."""
    console.print(f"[bold]{label}[/]: starting strongroom up (2 pods, 1 edge worker) ...")
    platform = LedgerPlatform(procs, work_dir / f"data-{label}", db_url)
    try:
        books = open_books(platform)
        try:
            scenarios: dict[str, Any] = {}
            notes: list[str] = []
            for scenario in scenarios_for(books):
                if only is not None and scenario.name not in only:
                    continue
                if scenario.dpop and timing.lead_s * 2 + timing.duration_s > DPOP_RUN_MAX_S:
                    notes.append(
                        f"{label}/{scenario.name} skipped: a run longer than "
                        f"{DPOP_RUN_MAX_S:.0f} s outlives the DPoP proofs made before it"
                    )
                    continue
                console.print(f"{label}: {scenario.name} ({timing.duration_s:.0f} s) ...")
                row = measure(procs, platform, books, scenario, timing, work_dir)
                scenarios[scenario.name] = row
                if scenario.name == "single":
                    # DPoP adds work: the bearer rate bounds how many proofs a run can use.
                    books.dpop_rate_per_s = max(row["acknowledged_per_s"], row["transfers_per_s"])
        finally:
            books.api.close()
    finally:
        platform.stop()
    return {
        "database": "PostgreSQL (local server)" if db_url else "embedded SQLite (WAL)",
        "scenarios": scenarios,
        "notes": notes,
    }


# --- output ---------------------------------------------------------------------------------


def print_tables(document: dict[str, Any]) -> None:
    pgbench = document["pgbench"]
    if pgbench["runs"]:
        table = Table(title="Reference: pgbench TPC-B-like on the same PostgreSQL")
        for column in ("run", "tps", "avg ms", "p50 ms", "p99 ms", "failed", "machine CPU %"):
            table.add_column(column, justify="left" if column == "run" else "right")
        for label, run in pgbench["runs"].items():
            table.add_row(
                label,
                f"{run['tps']:,.0f}",
                f"{run['latency_avg_ms'] or 0:.2f}",
                f"{run['latency_ms']['50']:.2f}",
                f"{run['latency_ms']['99']:.2f}",
                str(run["failed"]),
                f"{run['machine_cpu_busy_pct'] or 0:.0f}",
            )
        console.print(table)
    reference = pgbench["reference_tps"]
    table = Table(
        title="Strongroom ledger through the TLS edge (2 pods, loopback)"
        + (f" — pgbench reference {reference:,.0f} tps" if reference else ""),
        caption="transfers/s: committed in the books per second under steady load (journal "
        "entries for hot); p50/p99 per request; pod/edge µs of CPU per transfer; CPU %: both "
        "cores busy; failed: batch items refused; missing: acknowledged but not in the books",
    )
    columns = (
        "backend",
        "scenario",
        "transfers/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "x pgbench",
        "target",
        "x single",
        "pod µs/tr",
        "edge µs/tr",
        "CPU %",
        "non-2xx",
        "failed",
        "balanced",
        "missing",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in {"backend", "scenario"} else "right")
    for backend_name, backend in document["backends"].items():
        for name, row in backend["scenarios"].items():
            latency = row["latency_ms"]
            met = row.get("target_met")
            target = "—" if met is None else ("[green]met[/]" if met else "[red]missed[/]")
            vs_single = row.get("vs_single")
            table.add_row(
                backend_name,
                name,
                f"{row['transfers_per_s']:,.0f}",
                f"{row['requests_per_s']:,.0f}"
                if row["requests_per_s"] >= 100
                else f"{row['requests_per_s']:.1f}",
                f"{latency.get('50', 0):.1f}",
                f"{latency.get('99', 0):.1f}",
                f"{row['vs_pgbench']:.2f}" if row["vs_pgbench"] is not None else "—",
                target,
                f"{vs_single:.2f}" if vs_single is not None else "—",
                f"{row['pod_cpu_us_per_transfer'] or 0:,.0f}",
                f"{row['edge_cpu_us_per_transfer'] or 0:,.0f}",
                f"{row['machine_cpu_busy_pct'] or 0:.0f}",
                str(row["non_2xx"] + row["socket_errors"]),
                str(row["item_errors"]),
                "yes" if row["balanced_after"] else "[red]NO[/]",
                str(row["acknowledged_missing"]),
            )
    Console(width=TABLE_WIDTH).print(table)


BACKEND_COLOURS = {"postgres": "#1f77b4", "sqlite": "#ff7f0e"}
SCENARIO_LABELS = {
    "single": "single\n(bearer)",
    "single_dpop": "single\n(DPoP)",
    "batch": f"batch\n({BATCH_SIZE:,})",
    "hot": "hot\n(3 legs)",
}


def draw_chart(document: dict[str, Any]) -> Callable[[Any], None]:
    backends: dict[str, Any] = document["backends"]
    reference: float | None = document["pgbench"]["reference_tps"]
    names = [n for n in SCENARIO_LABELS if any(n in b["scenarios"] for b in backends.values())]

    def draw(figure: Any) -> None:
        from matplotlib.ticker import FuncFormatter  # noqa: PLC0415 - only when drawing

        plain = FuncFormatter(lambda value, _: f"{value:,.0f}")
        rate_ax, p99_ax = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        for ax in (rate_ax, p99_ax):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(plain)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        width = 0.8 / max(1, len(backends))
        for i, (backend_name, backend) in enumerate(backends.items()):
            rows = backend["scenarios"]
            xs = [n + (i - (len(backends) - 1) / 2) * width for n in range(len(names))]
            rates = [rows[n]["transfers_per_s"] if n in rows else 0 for n in names]
            p99s = [rows[n]["latency_ms"].get("99", 0) if n in rows else 0 for n in names]
            colour = BACKEND_COLOURS.get(backend_name, "#888888")
            rate_ax.bar(xs, rates, width, label=backend_name, color=colour)
            p99_ax.bar(xs, p99s, width, label=backend_name, color=colour)
            for x, value in zip(xs, rates, strict=True):
                rate_ax.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=7)
            for x, value in zip(xs, p99s, strict=True):
                p99_ax.text(x, value, f"{value:.0f}", ha="center", va="bottom", fontsize=7)
        if reference:
            lines = [
                (reference, "black", "--", f"pgbench {reference:,.0f} tps"),
                (
                    reference * TARGET_SINGLE_VS_PGBENCH,
                    "red",
                    ":",
                    f"target single ({TARGET_SINGLE_VS_PGBENCH}x)",
                ),
                (
                    reference * TARGET_BATCH_VS_PGBENCH,
                    "purple",
                    ":",
                    f"target batch ({TARGET_BATCH_VS_PGBENCH:.0f}x)",
                ),
            ]
            for value, colour, style, label in lines:
                rate_ax.axhline(value, color=colour, linestyle=style, linewidth=1, label=label)
        rate_ax.set_xticks(range(len(names)), [SCENARIO_LABELS[n] for n in names])
        rate_ax.set_ylabel("durable transfers per second (log)")
        rate_ax.set_title("Ledger throughput through the TLS edge (higher is better)")
        rate_ax.legend(fontsize=7, loc="upper left")
        p99_ax.axhline(TARGET_SINGLE_P99_MS, color="red", linestyle=":", linewidth=1)
        p99_ax.text(
            -0.45, TARGET_SINGLE_P99_MS * 1.05, "target p99 (single)", color="red", fontsize=7
        )
        p99_ax.set_xticks(range(len(names)), [SCENARIO_LABELS[n] for n in names])
        p99_ax.set_ylabel("p99 ms per request (log)")
        p99_ax.set_title("p99 latency (lower is better)")
        p99_ax.legend(fontsize=7)

    return draw


# --- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="5 s runs (a smoke test)")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per measured run (default 15)"
    )
    parser.add_argument("--no-postgres", action="store_true", help="skip pgbench and PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the embedded profile")
    parser.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of {','.join(SCENARIO_LABELS)} (default: all)",
    )
    parser.add_argument("--no-pgbench", action="store_true", help="skip the pgbench reference")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ledger.json")
    parser.add_argument("--chart", type=Path, default=RESULTS_DIR / "ledger.png")
    args = parser.parse_args(argv)
    duration_s = args.duration or (5.0 if args.quick else 15.0)
    if not 1 <= duration_s <= DURATION_MAX_S:
        parser.error(f"--duration must be within 1..{DURATION_MAX_S:.0f} s (one token per run)")
    timing = Timing.for_duration(duration_s)
    only = None if args.scenarios is None else frozenset(args.scenarios.split(","))
    if only is not None and not only <= SCENARIO_LABELS.keys():
        parser.error(f"--scenarios: unknown {sorted(only - SCENARIO_LABELS.keys())}")
    for tool in ("wrk",) + (() if args.no_postgres else ("pgbench",)):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed (apt-get install wrk postgresql-client)")
    started = datetime.now(UTC)
    notes: list[str] = []
    busy = busy_machine_note()
    if busy:
        notes.append(busy)
    pgbench_runs: dict[str, dict[str, Any]] = {}
    backends: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="strongroom-bench-ledger-") as tmp,
        Processes(Path(tmp) / "logs") as procs,
    ):
        work = Path(tmp)
        reason = None if args.no_postgres else postgres_unavailable()
        if args.no_postgres:
            notes.append("PostgreSQL and pgbench skipped (--no-postgres)")
        elif reason:
            notes.append(f"PostgreSQL and pgbench skipped: {reason}")
        else:
            with throwaway_database("pgbench") as pgbench_db:
                console.print(f"pgbench -i -s {PGBENCH_SCALE} ...")
                subprocess.run(
                    pgbench_init_command(pgbench_db),
                    capture_output=True,
                    check=True,
                    timeout=PGBENCH_INIT_TIMEOUT_S,
                )
                if not args.no_pgbench:
                    console.print(f"pgbench, {PGBENCH_CLIENTS} clients ({duration_s:.0f} s) ...")
                    pgbench_runs["before"] = run_pgbench(pgbench_db, duration_s, work, "before")
                with throwaway_database("ledger") as ledger_db:
                    backends["postgres"] = bench_backend(
                        procs, "postgres", database_url(ledger_db), timing, work, only
                    )
                if not args.no_pgbench:
                    console.print("pgbench again ...")
                    pgbench_runs["after"] = run_pgbench(pgbench_db, duration_s, work, "after")
        if args.no_sqlite:
            notes.append("embedded SQLite profile skipped (--no-sqlite)")
        else:
            backends["sqlite"] = bench_backend(procs, "sqlite", None, timing, work, only)
    for backend in backends.values():
        notes.extend(backend.pop("notes"))
    reference = pgbench_reference(list(pgbench_runs.values()))
    add_ratios(backends, reference)
    document: dict[str, Any] = {
        "bench": "ledger",
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "config": {
            "pods": PLATFORM_PODS,
            "edge_workers": PLATFORM_EDGE_WORKERS,
            "duration_s": duration_s,
            "warmup_s": timing.warmup_s,
            "lead_s": timing.lead_s,
            "wallets": WALLETS,
            "currency": CURRENCY,
            "wrk_threads": WRK_THREADS,
            "single_connections": SINGLE_CONNECTIONS,
            "batch_connections": BATCH_CONNECTIONS,
            "batch_size": BATCH_SIZE,
            "hot_connections": HOT_CONNECTIONS,
            "pgbench": {
                "scale": PGBENCH_SCALE,
                "clients": PGBENCH_CLIENTS,
                "threads": PGBENCH_THREADS,
            },
        },
        "targets": {
            "single_vs_pgbench": TARGET_SINGLE_VS_PGBENCH,
            "single_p99_ms": TARGET_SINGLE_P99_MS,
            "batch_vs_pgbench": TARGET_BATCH_VS_PGBENCH,
        },
        "pgbench": {"runs": pgbench_runs, "reference_tps": reference},
        "backends": backends,
        "notes": notes,
    }
    notes.extend(result_notes(document))
    print_tables(document)
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    write_json(args.out, document)
    if backends:
        write_chart(args.chart, draw_chart(document), size=(13, 5))
    console.print(f"wrote {args.out}" + (f" and {args.chart}" if backends else ""))
    return 0


if __name__ == "__main__":
    started_at = time.monotonic()
    code = main()
    console.print(f"bench took {time.monotonic() - started_at:.0f} s")
    sys.exit(code)
