"""The ledger API through the TLS edge against a real `strongroom up` (two pods, SQLite).

A few whole flows as a client sees them, with DPoP-bound tokens as the default settings
demand for ``transfers:write``: funding a wallet from clearing and paying a merchant,
a hold posted in part and another voided, Idempotency-Key replays answered identically
by whichever pod the edge picks, a reused key with another body refused, and one
tenant's token finding nothing of another tenant's.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.dpop_proofs import Dpop
from tests.e2e.platform_harness import Platform, running_platform, tenant_auth

pytestmark = pytest.mark.slow

SCOPES = "accounts:read accounts:write transfers:read transfers:write"
PROBLEM = "https://strongroom.dev/problems/"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with running_platform(tmp_path_factory.mktemp("ledger"), pods=2) as p:
        yield p


@pytest.fixture(scope="module")
def http(platform: Platform) -> Iterator[httpx.Client]:
    with platform.client() as c:
        yield c


@pytest.fixture(scope="module")
def tenants(platform: Platform, http: httpx.Client) -> dict[str, Dpop]:
    return {name: tenant_auth(platform, http, name, SCOPES) for name in ("alpha", "beta")}


class Ledger:
    def __init__(self, http: httpx.Client, auth: Dpop) -> None:
        self.http, self.auth = http, auth

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, auth=self.auth, **kwargs)

    def account(self, kind: str = "wallet") -> str:
        r = self.call("POST", "/v1/accounts", json={"kind": kind, "currency": "EUR"})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def clearing(self) -> str:
        r = self.call("GET", "/v1/accounts", params={"kind": "system", "currency": "EUR"})
        (found,) = [a["id"] for a in r.json()["accounts"] if a["code"] == "clearing"]
        return str(found)

    def transfer(self, debit: str, credit: str, amount: int, **extra: Any) -> httpx.Response:
        headers = extra.pop("headers", None)
        body = {
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": amount,
            "currency": "EUR",
            **extra,
        }
        return self.call("POST", "/v1/transfers", json=body, headers=headers)

    def balance(self, account_id: str) -> tuple[int, int]:
        r = self.call("GET", f"/v1/accounts/{account_id}")
        assert r.status_code == 200, r.text
        return int(r.json()["balance"]), int(r.json()["available"])


@pytest.fixture(scope="module")
def alpha(http: httpx.Client, tenants: dict[str, Dpop]) -> Ledger:
    return Ledger(http, tenants["alpha"])


@pytest.fixture(scope="module")
def beta(http: httpx.Client, tenants: dict[str, Dpop]) -> Ledger:
    return Ledger(http, tenants["beta"])


def test_wallet_funded_from_clearing_pays_a_merchant(alpha: Ledger) -> None:
    wallet, merchant = alpha.account(), alpha.account("merchant")
    funded = alpha.transfer(alpha.clearing(), wallet, 10_000)
    assert funded.status_code == 201, funded.text
    paid = alpha.transfer(wallet, merchant, 2_500, metadata={"order": "o-1"})
    assert paid.status_code == 201 and paid.json()["status"] == "posted"
    assert alpha.balance(wallet) == (7_500, 7_500)
    assert alpha.balance(merchant) == (2_500, 2_500)
    refused = alpha.transfer(wallet, merchant, 7_501)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == PROBLEM + "insufficient-funds"
    assert alpha.balance(wallet) == (7_500, 7_500)
    entries = alpha.call("GET", f"/v1/accounts/{wallet}/entries").json()["entries"]
    assert [(e["counter"], e["delta"]) for e in entries] == [
        ("credits_posted", 10_000),
        ("debits_posted", 2_500),
    ]


def test_holds_are_posted_in_part_or_voided(alpha: Ledger) -> None:
    wallet, merchant = alpha.account(), alpha.account("merchant")
    alpha.transfer(alpha.clearing(), wallet, 5_000)
    first = alpha.transfer(wallet, merchant, 3_000, pending=True).json()
    second = alpha.transfer(wallet, merchant, 1_000, pending=True).json()
    assert alpha.balance(wallet) == (5_000, 1_000)
    posted = alpha.call("POST", f"/v1/transfers/{first['id']}/post", json={"amount": 2_000})
    assert posted.status_code == 200 and posted.json()["posted_amount"] == 2_000
    voided = alpha.call("POST", f"/v1/transfers/{second['id']}/void")
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert alpha.balance(wallet) == (3_000, 3_000)
    assert alpha.balance(merchant) == (2_000, 2_000)
    again = alpha.call("POST", f"/v1/transfers/{second['id']}/post")
    assert again.status_code == 409 and again.json()["type"] == PROBLEM + "transfer-not-pending"


def test_idempotency_key_replays_on_every_pod_and_refuses_another_body(alpha: Ledger) -> None:
    wallet, merchant = alpha.account(), alpha.account("merchant")
    alpha.transfer(alpha.clearing(), wallet, 1_000)
    headers = {"Idempotency-Key": f"pay-{uuid.uuid4()}"}
    first = alpha.transfer(wallet, merchant, 300, headers=headers)
    assert first.status_code == 201
    # The edge spreads these over both pods: each answers from the stored response.
    replays = [alpha.transfer(wallet, merchant, 300, headers=headers) for _ in range(4)]
    for replay in replays:
        assert replay.status_code == 201 and replay.content == first.content
        assert replay.headers["idempotent-replayed"] == "true"
    other = alpha.transfer(wallet, merchant, 301, headers=headers)
    assert other.status_code == 409 and other.json()["type"] == PROBLEM + "idempotency-conflict"
    assert alpha.balance(wallet) == (700, 700)
    assert alpha.balance(merchant) == (300, 300)


def test_a_tenants_token_finds_nothing_of_another_tenant(alpha: Ledger, beta: Ledger) -> None:
    theirs = beta.account()
    funding = beta.transfer(beta.clearing(), theirs, 900).json()
    mine = alpha.account()
    for r in (
        alpha.call("GET", f"/v1/accounts/{theirs}"),
        alpha.call("GET", f"/v1/accounts/{theirs}/entries"),
        alpha.transfer(theirs, mine, 100),
        alpha.call("POST", f"/v1/accounts/{theirs}/freeze"),
    ):
        assert r.status_code == 404 and r.json()["type"] == PROBLEM + "account-not-found"
    missing = alpha.call("GET", f"/v1/transfers/{funding['id']}")
    assert missing.status_code == 404 and missing.json()["type"] == PROBLEM + "transfer-not-found"
    listed = alpha.call("GET", "/v1/accounts").json()["accounts"]
    assert theirs not in {a["id"] for a in listed}
    assert beta.balance(theirs) == (900, 900)
