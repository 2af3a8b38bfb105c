"""Money under fire: 32 clients, 100 wallets, two pods on PostgreSQL, a pod killed -9.

Clients retry every unanswered or failed request with the same transfer id and the same
Idempotency-Key, as a real client must. Afterwards the ledger must balance, every
acknowledged transfer must exist exactly once (two posted entries, one audit entry) and
every account's counters must equal the sums of its entries.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.e2e.platform_harness import Platform, running_platform

pytestmark = pytest.mark.slow

WALLETS = 100
CLIENTS = 32
DURATION_S = 30.0
FUNDING = 10_000
SCOPES = "accounts:read accounts:write transfers:write transfers:read"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[Platform]:
    env = {
        "STRONGROOM_DATABASE__URL": postgres_url,
        # A killed pod's Idempotency-Keys are taken over after 2 s instead of 30 s.
        "STRONGROOM_LEDGER__IDEMPOTENCY_LEASE_S": "2",
        # Bearer tokens for this load (DPoP-bound money movement is covered by
        # tests/e2e/test_ledger_api.py); the default requires DPoP for transfers:write.
        "STRONGROOM_AUTH__DPOP_REQUIRED_SCOPES": "[]",
        # One OAuth client drives all 32 connections as fast as the ledger answers: its
        # per-client budget is raised so the test measures the ledger, not the limiter.
        "STRONGROOM_EDGE__RATE_LIMITS__POLICIES": json.dumps(
            [{"name": "client", "key": "client", "limit": 100_000, "burst": 100_000}]
        ),
        "STRONGROOM_EDGE__RATE_LIMITS__CONCURRENCY": "[]",
    }
    with running_platform(tmp_path_factory.mktemp("ledger-pg"), pods=2, extra_env=env) as p:
        yield p


def bearer(platform: Platform) -> dict[str, str]:
    tenant = platform.cli("tenant", "create", "ledger-load")["tenant_id"]
    client = platform.cli(
        "client", "create", "--tenant", tenant, "--scopes", SCOPES, "--name", "load"
    )
    with platform.client() as c:
        r = c.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(client["client_id"], client["client_secret"]),
        )
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}", "X-Tenant": tenant}


@dataclass
class Ledger:
    acknowledged: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    refused: int = 0
    retries: int = 0
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def send_until_answered(
    c: httpx.Client, headers: dict[str, str], body: dict[str, Any], deadline: float
) -> httpx.Response | None:
    """POST with the same id and key until a definitive answer (2xx or a 4xx that is not
    an in-flight conflict); None if the deadline passes first."""
    key = str(uuid.uuid4())
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            r = c.post("/v1/transfers", json=body, headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError:
            time.sleep(min(0.05 * attempt, 0.5))
            continue
        in_flight = r.status_code == 409 and "progress" in r.text
        if r.status_code < 500 and not in_flight:
            return r
        time.sleep(min(0.05 * attempt, 0.5))
    return None


def run_client(
    platform: Platform,
    headers: dict[str, str],
    wallets: list[str],
    ledger: Ledger,
    stop: threading.Event,
    seed: int,
) -> None:
    rng = random.Random(seed)
    with platform.client() as c:
        while not stop.is_set():
            debit, credit = rng.sample(wallets, 2)
            body = {
                "id": str(uuid.uuid4()),
                "debit_account_id": debit,
                "credit_account_id": credit,
                "amount": rng.randint(1, 500),
                "currency": "EUR",
            }
            r = send_until_answered(c, headers, body, time.monotonic() + 40)
            with ledger.lock:
                if r is None:
                    ledger.failures.append(f"no answer for {body['id']}")
                elif r.status_code in (200, 201):
                    ledger.acknowledged[body["id"]] = (debit, credit, body["amount"])
                elif r.status_code == 422 and "insufficient-funds" in r.text:
                    ledger.refused += 1
                else:
                    ledger.failures.append(f"{r.status_code} {r.text[:200]}")


def test_concurrent_transfers_survive_a_pod_kill_with_every_invariant(platform: Platform) -> None:
    headers = bearer(platform)
    tenant = headers.pop("X-Tenant")
    with platform.client() as c:
        wallets = []
        for _ in range(WALLETS):
            r = c.post("/v1/accounts", json={"kind": "wallet", "currency": "EUR"}, headers=headers)
            assert r.status_code == 201, r.text
            wallets.append(r.json()["id"])
        system = c.get("/v1/accounts", params={"kind": "system"}, headers=headers).json()
        clearing = next(a["id"] for a in system["accounts"] if a["code"] == "clearing")
        funding = [
            {
                "debit_account_id": clearing,
                "credit_account_id": w,
                "amount": FUNDING,
                "currency": "EUR",
            }
            for w in wallets
        ]
        r = c.post(
            "/v1/transfers/batch", json={"atomic": True, "transfers": funding}, headers=headers
        )
        assert r.status_code == 200, r.text

    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=run_client, args=(platform, headers, wallets, ledger, stop, n), daemon=True
        )
        for n in range(CLIENTS)
    ]
    for t in threads:
        t.start()
    time.sleep(DURATION_S / 3)
    pods = [p for p in platform.processes().values() if p["role"] == "pod"]
    victim = pods[0]
    os.kill(victim["pid"], signal.SIGKILL)
    before_kill = len(ledger.acknowledged)
    time.sleep(DURATION_S * 2 / 3)
    stop.set()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert not ledger.failures, ledger.failures[:5]
    assert len(ledger.acknowledged) > before_kill > 0

    engine = sa.create_engine(platform.env["STRONGROOM_DATABASE__URL"])
    try:
        with engine.connect() as db:
            params = {"t": tenant}
            sums = db.execute(
                sa.text(
                    "SELECT sum(debits_posted) AS d, sum(credits_posted) AS c,"
                    " sum(debits_pending) AS dp, sum(credits_pending) AS cp"
                    " FROM ledger_balances WHERE tenant_id = :t"
                ),
                params,
            ).one()
            assert sums.d == sums.c and sums.dp == sums.cp == 0
            mismatched = db.execute(
                sa.text(
                    "SELECT b.account_id FROM (SELECT account_id, sum(debits_posted) d,"
                    " sum(credits_posted) c FROM ledger_balances WHERE tenant_id = :t"
                    " GROUP BY account_id) b LEFT JOIN (SELECT account_id,"
                    " sum(CASE WHEN counter = 'debits_posted' THEN delta ELSE 0 END) d,"
                    " sum(CASE WHEN counter = 'credits_posted' THEN delta ELSE 0 END) c"
                    " FROM ledger_entries WHERE tenant_id = :t GROUP BY account_id) e"
                    " ON e.account_id = b.account_id"
                    " WHERE b.d <> coalesce(e.d, 0) OR b.c <> coalesce(e.c, 0)"
                ),
                params,
            ).all()
            assert mismatched == []
            overdrawn = db.execute(
                sa.text(
                    "SELECT a.id FROM ledger_accounts a JOIN ledger_balances b"
                    " ON b.tenant_id = a.tenant_id AND b.account_id = a.id"
                    " WHERE a.tenant_id = :t AND a.kind = 'wallet'"
                    " GROUP BY a.id HAVING sum(b.credits_posted) - sum(b.debits_posted) < 0"
                ),
                params,
            ).all()
            assert overdrawn == []
            stored = {
                r.id: (r.debit_account_id, r.credit_account_id, r.amount)
                for r in db.execute(
                    sa.text(
                        "SELECT id, debit_account_id, credit_account_id, amount"
                        " FROM ledger_transfers WHERE tenant_id = :t AND debit_account_id <> :c"
                    ),
                    {**params, "c": clearing},
                )
            }
            # Every acknowledged transfer is there as acknowledged; nothing else was applied
            # except requests whose answer was lost in the kill (committed, then retried:
            # those are in `acknowledged` too, through the replay).
            assert {k: stored.get(k) for k in ledger.acknowledged} == ledger.acknowledged
            assert set(stored) == set(ledger.acknowledged)
            entries_per_transfer = db.execute(
                sa.text(
                    "SELECT transfer_id, count(*) AS n FROM ledger_entries WHERE tenant_id = :t"
                    " GROUP BY transfer_id HAVING count(*) <> 2"
                ),
                params,
            ).all()
            assert entries_per_transfer == []
            audits = db.execute(
                sa.text(
                    "SELECT subject_ids FROM audit_entries"
                    " WHERE tenant_id = :t AND event_type = 'transfer.created'"
                ),
                params,
            ).all()
            audited = [r.subject_ids.split('"')[1] for r in audits]
            assert len(audited) == len(set(audited)) == len(stored) + WALLETS
            assert set(stored) <= set(audited)
    finally:
        engine.dispose()
