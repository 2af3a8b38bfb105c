"""The ledger's HTTP API in-process, on SQLite and PostgreSQL: routes, problems, idempotency, tenant scoping.

Tokens are real: client_credentials grants, DPoP-bound as the default settings demand
for ``transfers:write`` (proofs from ``tests/dpop_proofs.py``). Every refused request is
checked to have changed nothing: the accounts' balances and entries are compared before
and after. Every success is held to the documented response model.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from tests.dpop_proofs import Dpop, DpopKey
from tests.unit.api.conftest import EDGE_SECRET, provision_clients

from strongroom.api.idempotency import request_hash
from strongroom.api.ledger_views import (
    AccountList,
    AccountView,
    BatchResult,
    EntryList,
    JournalEntryView,
    TransferView,
)
from strongroom.config import Settings
from strongroom.ledger.model import AMOUNT_MAX, BATCH_MAX

pytestmark = pytest.mark.anyio

LEDGER_SCOPES = ["accounts:read", "accounts:write", "transfers:read", "transfers:write"]
PROBLEM = "https://strongroom.dev/problems/"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The same suite on both backends; PostgreSQL is the throwaway database of
    tests/conftest.py (skipped where no server runs, failed under CI=true)."""
    database = (
        {"url": request.getfixturevalue("postgres_url")} if request.param == "postgresql" else {}
    )
    # The default body limit: over-long metadata and full batches must reach the app.
    return Settings(
        data_dir=tmp_path / "data", secrets={"edge_secret": EDGE_SECRET}, database=database
    )


async def dpop_auth(client: httpx.AsyncClient, app: FastAPI, who: dict[str, Any]) -> Dpop:
    issuer = app.state.auth.issuer
    key = DpopKey()
    nonce: str | None = None
    for _ in range(2):
        r = await client.post(
            "/oauth2/token",
            data={"grant_type": "client_credentials"},
            auth=(who["client_id"], who["secret"]),
            headers={"DPoP": key.proof("POST", issuer + "/oauth2/token", nonce=nonce)},
        )
        if r.status_code == 200:
            auth = Dpop(issuer, key, r.json()["access_token"])
            auth.nonce = r.headers.get("dpop-nonce")
            return auth
        nonce = r.headers["dpop-nonce"]
    raise AssertionError(r.text)


@pytest.fixture
def world(migrated_settings: Settings, app: FastAPI) -> dict[str, Any]:
    return provision_clients(
        migrated_settings,
        app,
        (
            ("alpha", LEDGER_SCOPES, False),
            ("beta", LEDGER_SCOPES, False),
            ("reader", ["accounts:read"], False),
        ),
    )


class Api:
    """One tenant's client: short calls for the tests, every success checked against its model."""

    def __init__(self, http: httpx.AsyncClient, auth: Dpop) -> None:
        self.http, self.auth = http, auth

    async def call(
        self, method: str, path: str, *, model: type[BaseModel] | None = None, **kwargs: Any
    ) -> httpx.Response:
        r = await self.http.request(method, path, auth=self.auth, **kwargs)
        if r.status_code < 400 and model is not None:
            model.model_validate(r.json(), strict=True)
        if r.status_code >= 400:
            assert r.headers["content-type"] == "application/problem+json", r.text
        return r

    async def account(self, kind: str = "wallet", currency: str = "EUR", **extra: Any) -> str:
        r = await self.call(
            "POST",
            "/v1/accounts",
            json={"kind": kind, "currency": currency, **extra},
            model=AccountView,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    async def system(self, code: str, currency: str = "EUR") -> str:
        r = await self.call(
            "GET",
            "/v1/accounts",
            params={"kind": "system", "currency": currency},
            model=AccountList,
        )
        (found,) = [a["id"] for a in r.json()["accounts"] if a["code"] == code]
        return str(found)

    async def transfer(
        self,
        debit: str,
        credit: str,
        amount: Any,
        *,
        headers: dict[str, Any] | None = None,
        **extra: Any,
    ) -> httpx.Response:
        body = {
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount": amount,
            "currency": "EUR",
            **extra,
        }
        return await self.call(
            "POST", "/v1/transfers", json=body, model=TransferView, headers=headers
        )

    async def fund(self, wallet: str, amount: int) -> dict[str, Any]:
        r = await self.transfer(await self.system("clearing"), wallet, amount)
        assert r.status_code == 201, r.text
        return dict(r.json())

    async def get(self, account_id: str, **params: str) -> dict[str, Any]:
        r = await self.call("GET", f"/v1/accounts/{account_id}", params=params, model=AccountView)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def entries(self, account_id: str, **params: Any) -> dict[str, Any]:
        r = await self.call(
            "GET", f"/v1/accounts/{account_id}/entries", params=params, model=EntryList
        )
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def state(self, *account_ids: str) -> list[Any]:
        """What a refused request must not change: balances and entries of the accounts."""
        return [(await self.get(a), await self.entries(a, limit=1000)) for a in account_ids]


@pytest.fixture
async def alpha(client: httpx.AsyncClient, app: FastAPI, world: dict[str, Any]) -> Api:
    return Api(client, await dpop_auth(client, app, world["alpha"]))


@pytest.fixture
async def beta(client: httpx.AsyncClient, app: FastAPI, world: dict[str, Any]) -> Api:
    return Api(client, await dpop_auth(client, app, world["beta"]))


@pytest.fixture
async def funded(alpha: Api) -> dict[str, str]:
    """A wallet holding 10,000 and an empty merchant, in EUR."""
    wallet, merchant = await alpha.account(), await alpha.account("merchant")
    await alpha.fund(wallet, 10_000)
    return {"wallet": wallet, "merchant": merchant}


def problem_type(r: httpx.Response) -> str:
    return str(r.json()["type"]).removeprefix(PROBLEM)


# --- accounts -----------------------------------------------------------------------------


async def test_created_account_has_zero_balances_and_the_currencys_system_accounts(
    alpha: Api,
) -> None:
    r = await alpha.call(
        "POST",
        "/v1/accounts",
        json={"kind": "wallet", "currency": "JPY", "metadata": {"owner": "u-1"}},
        model=AccountView,
    )
    assert r.status_code == 201
    body = r.json()
    uuid.UUID(body["id"])
    assert body["currency_exponent"] == 0 and body["normal_balance"] == "credit"
    assert body["balance"] == body["available"] == body["debits_posted"] == 0
    assert body["metadata"] == {"owner": "u-1"} and body["created_at"].endswith("Z")
    listed = await alpha.call("GET", "/v1/accounts", params={"kind": "system", "currency": "JPY"})
    system = {a["code"]: a for a in listed.json()["accounts"]}
    assert set(system) == {"clearing", "fees", "settlement"}
    assert system["clearing"]["normal_balance"] == "debit"


async def test_resubmitted_account_id_returns_the_original_and_other_values_conflict(
    alpha: Api,
) -> None:
    account_id = str(uuid.uuid4())
    body = {"id": account_id, "kind": "wallet", "currency": "EUR"}
    first = await alpha.call("POST", "/v1/accounts", json=body)
    again = await alpha.call("POST", "/v1/accounts", json=body)
    other = await alpha.call("POST", "/v1/accounts", json={**body, "kind": "merchant"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert other.status_code == 409 and problem_type(other) == "idempotency-conflict"


async def test_account_listing_pages_by_id_and_filters(alpha: Api) -> None:
    made = {await alpha.account() for _ in range(3)} | {await alpha.account("merchant")}
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", "kind": "wallet", **({"after": after} if after else {})}
        page = (await alpha.call("GET", "/v1/accounts", params=params, model=AccountList)).json()
        seen += [a["id"] for a in page["accounts"]]
        after = page["next_cursor"]
        if after is None:
            break
    assert seen == sorted(seen) and set(seen) < made and len(seen) == 3
    too_many = await alpha.call("GET", "/v1/accounts", params={"limit": "501"})
    assert too_many.status_code == 422 and problem_type(too_many) == "validation-failed"


async def test_frozen_account_moves_no_money_until_unfrozen(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    frozen = await alpha.call("POST", f"/v1/accounts/{wallet}/freeze", model=AccountView)
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    before = await alpha.state(wallet, merchant)
    refused = await alpha.transfer(wallet, merchant, 100)
    assert refused.status_code == 422 and problem_type(refused) == "account-frozen"
    assert await alpha.state(wallet, merchant) == before
    await alpha.call("POST", f"/v1/accounts/{wallet}/unfreeze")
    assert (await alpha.transfer(wallet, merchant, 100)).status_code == 201


async def test_only_an_empty_account_closes(alpha: Api, funded: dict[str, str]) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    refused = await alpha.call("POST", f"/v1/accounts/{wallet}/close")
    assert refused.status_code == 422 and problem_type(refused) == "account-not-empty"
    closed = await alpha.call("POST", f"/v1/accounts/{merchant}/close", model=AccountView)
    assert closed.json()["status"] == "closed"
    r = await alpha.transfer(wallet, merchant, 1)
    assert r.status_code == 422 and problem_type(r) == "account-closed"


async def test_overdraft_limit_lets_a_wallet_go_below_zero_and_cannot_be_cut_below_use(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    patched = await alpha.call(
        "PATCH", f"/v1/accounts/{wallet}", json={"overdraft_limit": 500}, model=AccountView
    )
    assert patched.json()["overdraft_limit"] == 500
    assert (await alpha.transfer(wallet, merchant, 10_400)).status_code == 201
    assert (await alpha.get(wallet))["balance"] == -400
    cut = await alpha.call("PATCH", f"/v1/accounts/{wallet}", json={"overdraft_limit": 100})
    assert cut.status_code == 422 and problem_type(cut) == "insufficient-funds"
    assert (await alpha.get(wallet))["overdraft_limit"] == 500


async def test_system_accounts_cannot_be_frozen(alpha: Api, funded: dict[str, str]) -> None:
    r = await alpha.call("POST", f"/v1/accounts/{await alpha.system('fees')}/freeze")
    assert r.status_code == 422 and problem_type(r) == "account-immutable"


# --- transfers ----------------------------------------------------------------------------


async def test_wallet_funded_from_clearing_pays_a_merchant(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    r = await alpha.transfer(wallet, merchant, 2_500, metadata={"order": "o-1"})
    assert r.status_code == 201
    paid = r.json()
    assert paid["status"] == "posted" and paid["pending"] is False
    assert paid["metadata"] == {"order": "o-1"} and paid["reverses"] is None
    w, m = await alpha.get(wallet), await alpha.get(merchant)
    assert (w["balance"], w["debits_posted"], w["credits_posted"]) == (7_500, 2_500, 10_000)
    assert (m["balance"], m["available"]) == (2_500, 2_500)
    clearing = await alpha.get(await alpha.system("clearing"))
    assert clearing["debits_posted"] == 10_000 and clearing["balance"] == 10_000
    got = await alpha.call("GET", f"/v1/transfers/{paid['id']}", model=TransferView)
    assert got.json() == paid


async def test_resubmitted_transfer_id_returns_the_original_and_another_body_conflicts(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    transfer_id = str(uuid.uuid4())
    first = await alpha.transfer(wallet, merchant, 100, id=transfer_id)
    again = await alpha.transfer(wallet, merchant, 100, id=transfer_id)
    other = await alpha.transfer(wallet, merchant, 101, id=transfer_id)
    assert (first.status_code, again.status_code, other.status_code) == (201, 200, 409)
    assert again.json() == first.json()
    assert problem_type(other) == "idempotency-conflict"
    assert (await alpha.get(wallet))["balance"] == 9_900


async def test_insufficient_funds_changes_nothing(alpha: Api, funded: dict[str, str]) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    r = await alpha.transfer(wallet, merchant, 10_001)
    assert r.status_code == 422 and problem_type(r) == "insufficient-funds"
    body = r.json()
    assert body["instance"] == "/v1/transfers" and body["request_id"]
    assert await alpha.state(wallet, merchant) == before


async def test_hold_reduces_available_then_posts_partially_and_releases_the_rest(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    hold = (await alpha.transfer(wallet, merchant, 3_000, pending=True)).json()
    assert hold["status"] == "pending"
    w = await alpha.get(wallet)
    assert (w["balance"], w["available"], w["debits_pending"]) == (10_000, 7_000, 3_000)
    posted = await alpha.call(
        "POST", f"/v1/transfers/{hold['id']}/post", json={"amount": 1_200}, model=TransferView
    )
    assert posted.status_code == 200
    assert posted.json()["status"] == "posted" and posted.json()["posted_amount"] == 1_200
    assert posted.json()["resolved_at"] is not None
    w, m = await alpha.get(wallet), await alpha.get(merchant)
    assert (w["balance"], w["available"], w["debits_pending"]) == (8_800, 8_800, 0)
    assert m["balance"] == 1_200
    twice = await alpha.call("POST", f"/v1/transfers/{hold['id']}/void")
    assert twice.status_code == 409 and problem_type(twice) == "transfer-not-pending"


async def test_voided_hold_releases_everything_and_cannot_be_posted(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    hold = (await alpha.transfer(wallet, merchant, 3_000, pending=True)).json()
    voided = await alpha.call("POST", f"/v1/transfers/{hold['id']}/void", model=TransferView)
    assert voided.json()["status"] == "voided" and voided.json()["posted_amount"] == 0
    assert (await alpha.get(wallet))["available"] == 10_000
    r = await alpha.call("POST", f"/v1/transfers/{hold['id']}/post")
    assert r.status_code == 409 and problem_type(r) == "transfer-not-pending"


async def test_posting_more_than_the_hold_is_refused(alpha: Api, funded: dict[str, str]) -> None:
    hold = (await alpha.transfer(funded["wallet"], funded["merchant"], 100, pending=True)).json()
    r = await alpha.call("POST", f"/v1/transfers/{hold['id']}/post", json={"amount": 101})
    assert r.status_code == 422 and problem_type(r) == "exceeds-hold"


async def test_expiry_must_be_in_the_future_and_only_on_holds(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    past = await alpha.transfer(
        wallet, merchant, 100, pending=True, expires_at="2001-01-01T00:00:00Z"
    )
    not_hold = await alpha.transfer(wallet, merchant, 100, expires_at="2999-01-01T00:00:00Z")
    zoneless = await alpha.transfer(
        wallet, merchant, 100, pending=True, expires_at="2999-01-01T00:00:00"
    )
    assert [problem_type(r) for r in (past, not_hold, zoneless)] == [
        "invalid-expiry",
        "invalid-expiry",
        "validation-failed",
    ]
    assert await alpha.state(wallet, merchant) == before
    later = await alpha.transfer(
        wallet, merchant, 100, pending=True, expires_at="2999-01-01T00:00:00.5+02:00"
    )
    assert later.json()["expires_at"] == "2998-12-31T22:00:00.500000Z"


async def test_reversal_is_a_new_compensating_transfer_up_to_what_is_left(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    paid = (await alpha.transfer(wallet, merchant, 1_000)).json()
    part = await alpha.call(
        "POST",
        f"/v1/transfers/{paid['id']}/reverse",
        json={"amount": 400, "metadata": {"reason": "refund"}},
        model=TransferView,
    )
    assert part.status_code == 201
    reversal = part.json()
    assert reversal["reverses"] == paid["id"] and reversal["amount"] == 400
    assert reversal["debit_account_id"] == merchant and reversal["credit_account_id"] == wallet
    original = (await alpha.call("GET", f"/v1/transfers/{paid['id']}")).json()
    assert original["reversed_amount"] == 400 and original["amount"] == 1_000
    too_much = await alpha.call("POST", f"/v1/transfers/{paid['id']}/reverse", json={"amount": 601})
    assert too_much.status_code == 422 and problem_type(too_much) == "exceeds-reversible"
    rest = await alpha.call("POST", f"/v1/transfers/{paid['id']}/reverse")
    assert rest.status_code == 201 and rest.json()["amount"] == 600
    assert (await alpha.get(wallet))["balance"] == 10_000


async def test_unknown_transfer_is_404(alpha: Api) -> None:
    for path in (f"/v1/transfers/{uuid.uuid4()}", "/v1/transfers/not-a-uuid"):
        r = await alpha.call("GET", path)
        assert r.status_code == 404 and problem_type(r) == "transfer-not-found"
    r = await alpha.call("POST", f"/v1/transfers/{uuid.uuid4()}/void")
    assert r.status_code == 404 and problem_type(r) == "transfer-not-found"


# --- bad input changes nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0, "invalid-amount"),
        (-5, "invalid-amount"),
        (AMOUNT_MAX + 1, "invalid-amount"),
        (10**30, "invalid-amount"),
        (1.5, "validation-failed"),
        (10.0, "validation-failed"),
        ("10", "validation-failed"),
        (True, "validation-failed"),
        (None, "validation-failed"),
    ],
)
async def test_bad_amount_is_refused_and_changes_nothing(
    alpha: Api, funded: dict[str, str], amount: Any, expected: str
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    r = await alpha.transfer(wallet, merchant, amount)
    assert r.status_code == 422 and problem_type(r) == expected, r.text
    assert await alpha.state(wallet, merchant) == before


async def test_validation_errors_name_the_field_without_echoing_the_input(
    alpha: Api, funded: dict[str, str]
) -> None:
    r = await alpha.transfer(funded["wallet"], funded["merchant"], "secret-ish-4111")
    body = r.json()
    assert body["errors"][0]["loc"] == ["body", "amount"]
    assert "secret-ish-4111" not in r.text


@pytest.mark.parametrize(
    ("currency", "expected"),
    [("USD", "currency-mismatch"), ("XXX", "unknown-currency"), ("eur", "unknown-currency")],
)
async def test_wrong_currency_is_refused_and_changes_nothing(
    alpha: Api, funded: dict[str, str], currency: str, expected: str
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    r = await alpha.transfer(wallet, merchant, 100, currency=currency)
    assert r.status_code == 422 and problem_type(r) == expected
    assert await alpha.state(wallet, merchant) == before


async def test_unknown_and_foreign_accounts_are_the_same_404_and_change_nothing(
    alpha: Api, beta: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    foreign = await beta.account()
    await beta.fund(foreign, 500)
    before_alpha, before_beta = await alpha.state(wallet, merchant), await beta.state(foreign)
    for other in (str(uuid.uuid4()), foreign):
        for r in (
            await alpha.transfer(wallet, other, 100),
            await alpha.transfer(other, merchant, 100),
            await alpha.call("GET", f"/v1/accounts/{other}"),
            await alpha.call("GET", f"/v1/accounts/{other}/entries"),
            await alpha.call("POST", f"/v1/accounts/{other}/freeze"),
            await alpha.call("PATCH", f"/v1/accounts/{other}", json={"overdraft_limit": 5}),
        ):
            assert r.status_code == 404 and problem_type(r) == "account-not-found", r.text
    assert await alpha.state(wallet, merchant) == before_alpha
    assert await beta.state(foreign) == before_beta


async def test_foreign_transfer_is_404(alpha: Api, beta: Api) -> None:
    wallet = await beta.account()
    theirs = await beta.fund(wallet, 500)
    for r in (
        await alpha.call("GET", f"/v1/transfers/{theirs['id']}"),
        await alpha.call("POST", f"/v1/transfers/{theirs['id']}/reverse"),
    ):
        assert r.status_code == 404 and problem_type(r) == "transfer-not-found"
    assert (await beta.get(wallet))["balance"] == 500


@pytest.mark.parametrize(
    "content",
    [
        b'{"debit_account_id": ',
        b"not json",
        b'{"amount": 1}{"amount": 2}',
        b"[]",
        b"\xff\xfe",
        b'{"amount": 1' + b"0" * 5000 + b"}",  # past Python's int-parsing digit limit
        b"[" * 100_000,  # past the parser's recursion limit
    ],
)
async def test_malformed_json_is_a_problem_and_changes_nothing(
    alpha: Api, funded: dict[str, str], content: bytes
) -> None:
    before = await alpha.state(funded["wallet"], funded["merchant"])
    r = await alpha.call(
        "POST", "/v1/transfers", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code in (400, 422)
    assert problem_type(r) in ("validation-failed", "bad-request")
    assert await alpha.state(funded["wallet"], funded["merchant"]) == before


@pytest.mark.parametrize(
    ("amount", "expected"),
    [(0, "invalid-amount"), (2**64, "invalid-amount"), (1.0, "validation-failed")],
)
async def test_bad_post_and_reversal_amounts_change_nothing(
    alpha: Api, funded: dict[str, str], amount: Any, expected: str
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    hold = (await alpha.transfer(wallet, merchant, 100, pending=True)).json()
    paid = (await alpha.transfer(wallet, merchant, 100)).json()
    before = await alpha.state(wallet, merchant)
    for path in (f"/v1/transfers/{hold['id']}/post", f"/v1/transfers/{paid['id']}/reverse"):
        r = await alpha.call("POST", path, json={"amount": amount})
        assert r.status_code == 422 and problem_type(r) == expected, r.text
    assert await alpha.state(wallet, merchant) == before


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"metadata": {"note": "x" * 4100}}, "validation-failed"),
        ({"metadata": "not an object"}, "validation-failed"),
        ({"metadata": {"n": float("nan")}}, "validation-failed"),
        ({"fee": 10}, "validation-failed"),
        ({"pending": "yes"}, "validation-failed"),
        ({"id": "NOT-A-UUID"}, "validation-failed"),
    ],
)
async def test_bad_members_are_refused_and_change_nothing(
    alpha: Api, funded: dict[str, str], extra: dict[str, Any], expected: str
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    body = {
        "debit_account_id": wallet,
        "credit_account_id": merchant,
        "amount": 1,
        "currency": "EUR",
    }
    # Encoded by hand: Python's json module writes NaN, as a careless client would.
    content = json.dumps({**body, **extra}).encode()
    r = await alpha.call(
        "POST", "/v1/transfers", content=content, headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and problem_type(r) == expected, r.text
    assert await alpha.state(wallet, merchant) == before


async def test_same_account_on_both_sides_is_refused(alpha: Api, funded: dict[str, str]) -> None:
    r = await alpha.transfer(funded["wallet"], funded["wallet"], 1)
    assert r.status_code == 422 and problem_type(r) == "same-account"


async def test_account_kind_system_cannot_be_created(alpha: Api) -> None:
    r = await alpha.call("POST", "/v1/accounts", json={"kind": "system", "currency": "EUR"})
    assert r.status_code == 422 and problem_type(r) == "validation-failed"
    r = await alpha.call("POST", "/v1/accounts", json={"kind": "wallet", "currency": "EURO"})
    assert r.status_code == 422 and problem_type(r) == "unknown-currency"
    r = await alpha.call(
        "POST", "/v1/accounts", json={"kind": "wallet", "currency": "EUR", "overdraft_limit": -1}
    )
    assert r.status_code == 422 and problem_type(r) == "validation-failed"


# --- entries and point-in-time balances ---------------------------------------------------


async def test_entries_page_by_seq_and_filter(alpha: Api, funded: dict[str, str]) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    paid = (await alpha.transfer(wallet, merchant, 100)).json()
    hold = (await alpha.transfer(wallet, merchant, 50, pending=True)).json()
    everything = (await alpha.entries(wallet))["entries"]
    assert [(e["counter"], e["delta"]) for e in everything] == [
        ("credits_posted", 10_000),
        ("debits_posted", 100),
        ("debits_pending", 50),
    ]
    assert everything[2]["side"] == "debit" and everything[2]["status"] == "pending"
    first = await alpha.entries(wallet, limit=2)
    assert len(first["entries"]) == 2 and first["next_cursor"] == everything[1]["seq"]
    rest = await alpha.entries(wallet, limit=2, after=first["next_cursor"])
    assert rest["entries"] == everything[2:] and rest["next_cursor"] is None
    debits = await alpha.entries(wallet, side="debit", status="posted")
    assert [e["transfer_id"] for e in debits["entries"]] == [paid["id"]]
    repeated = await alpha.entries(wallet, counter=["debits_pending", "credits_posted"])
    assert len(repeated["entries"]) == 2
    assert (await alpha.entries(wallet, transfer_id=hold["id"]))["entries"] == everything[2:]
    assert (await alpha.entries(wallet, counter="credits_posted", side="debit"))["entries"] == []
    window = await alpha.entries(wallet, **{"from": paid["created_at"], "to": hold["created_at"]})
    assert [e["transfer_id"] for e in window["entries"]] == [paid["id"]]
    bad = await alpha.call("GET", f"/v1/accounts/{wallet}/entries", params={"from": "yesterday"})
    assert bad.status_code == 422 and problem_type(bad) == "validation-failed"


async def test_as_of_gives_the_balance_at_a_past_instant(alpha: Api) -> None:
    wallet, merchant = await alpha.account(), await alpha.account("merchant")
    funding = await alpha.fund(wallet, 1_000)
    paid = (await alpha.transfer(wallet, merchant, 300)).json()
    assert paid["created_at"] > funding["created_at"]
    then = await alpha.get(wallet, as_of=funding["created_at"])
    assert (then["balance"], then["debits_posted"]) == (1_000, 0)
    assert (await alpha.get(wallet))["balance"] == 700
    before = await alpha.call(
        "GET", f"/v1/accounts/{wallet}", params={"as_of": "2001-01-01T00:00:00Z"}
    )
    assert before.status_code == 404
    bad = await alpha.call("GET", f"/v1/accounts/{wallet}", params={"as_of": "2025-01-01"})
    assert bad.status_code == 422 and problem_type(bad) == "validation-failed"


# --- batches and journal entries ----------------------------------------------------------


def item(debit: str, credit: str, amount: Any, **extra: Any) -> dict[str, Any]:
    return {
        "debit_account_id": debit,
        "credit_account_id": credit,
        "amount": amount,
        "currency": "EUR",
        **extra,
    }


async def test_atomic_batch_applies_all_or_nothing(alpha: Api, funded: dict[str, str]) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    ok = await alpha.call(
        "POST",
        "/v1/transfers/batch",
        json={"atomic": True, "transfers": [item(wallet, merchant, 100)] * 3},
        model=BatchResult,
    )
    assert ok.status_code == 200
    assert [(r["index"], r["status"]) for r in ok.json()["results"]] == [
        (0, "ok"),
        (1, "ok"),
        (2, "ok"),
    ]
    before = await alpha.state(wallet, merchant)
    failing = await alpha.call(
        "POST",
        "/v1/transfers/batch",
        json={
            "atomic": True,
            "transfers": [item(wallet, merchant, 100), item(wallet, merchant, 1_000_000)],
        },
    )
    assert failing.status_code == 422 and problem_type(failing) == "insufficient-funds"
    assert failing.json()["index"] == 1
    assert [e["index"] for e in failing.json()["errors"]] == [1]
    assert await alpha.state(wallet, merchant) == before


async def test_atomic_batch_with_an_invalid_item_lists_it_and_applies_nothing(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    before = await alpha.state(wallet, merchant)
    r = await alpha.call(
        "POST",
        "/v1/transfers/batch",
        json={
            "atomic": True,
            "transfers": [
                item(wallet, merchant, 1),
                item(wallet, merchant, 0),
                item(wallet, wallet, 1),
            ],
        },
    )
    assert r.status_code == 422 and problem_type(r) == "invalid-amount"
    assert [(e["index"], e["type"]) for e in r.json()["errors"]] == [
        (1, PROBLEM + "invalid-amount"),
        (2, PROBLEM + "same-account"),
    ]
    assert await alpha.state(wallet, merchant) == before


async def test_independent_batch_answers_each_item(alpha: Api, funded: dict[str, str]) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    r = await alpha.call(
        "POST",
        "/v1/transfers/batch",
        json={
            "atomic": False,
            "transfers": [
                item(wallet, merchant, 6_000),
                item(wallet, merchant, 6_000),
                item(wallet, merchant, -1),
                item(wallet, merchant, 4_000),
            ],
        },
        model=BatchResult,
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["ok", "error", "error", "ok"]
    assert results[1]["problem"]["type"] == PROBLEM + "insufficient-funds"
    assert results[2]["problem"]["type"] == PROBLEM + "invalid-amount"
    assert (await alpha.get(wallet))["balance"] == 0


async def test_batch_size_is_bounded(alpha: Api, funded: dict[str, str]) -> None:
    body = {
        "atomic": False,
        "transfers": [item(funded["wallet"], funded["merchant"], 1)] * (BATCH_MAX + 1),
    }
    r = await alpha.call("POST", "/v1/transfers/batch", json=body)
    assert r.status_code == 422 and problem_type(r) == "validation-failed"
    empty = await alpha.call("POST", "/v1/transfers/batch", json={"atomic": True, "transfers": []})
    assert empty.status_code == 422


async def test_journal_entry_posts_balanced_legs_at_once(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    fees = await alpha.system("fees")
    entry_id = str(uuid.uuid4())
    legs = [
        {"account_id": wallet, "side": "debit", "amount": 1_000, "currency": "EUR"},
        {"account_id": merchant, "side": "credit", "amount": 970, "currency": "EUR"},
        {"account_id": fees, "side": "credit", "amount": 30, "currency": "EUR"},
    ]
    r = await alpha.call(
        "POST", "/v1/journal-entries", json={"id": entry_id, "legs": legs}, model=JournalEntryView
    )
    assert r.status_code == 201 and r.json()["legs"] == legs
    again = await alpha.call("POST", "/v1/journal-entries", json={"id": entry_id, "legs": legs})
    assert again.status_code == 200 and again.json() == r.json()
    got = await alpha.call("GET", f"/v1/journal-entries/{entry_id}", model=JournalEntryView)
    assert got.json() == r.json()
    assert (await alpha.get(merchant))["balance"] == 970
    assert (await alpha.get(fees))["balance"] == 30
    before = await alpha.state(wallet, merchant, fees)
    unbalanced = await alpha.call("POST", "/v1/journal-entries", json={"legs": [legs[0], legs[1]]})
    assert unbalanced.status_code == 422 and problem_type(unbalanced) == "unbalanced-entry"
    assert await alpha.state(wallet, merchant, fees) == before


# --- Idempotency-Key ----------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_response_byte_for_byte(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    headers = {"Idempotency-Key": "order-42/payment"}
    body = item(wallet, merchant, 700)
    first = await alpha.call("POST", "/v1/transfers", json=body, headers=headers)
    # Same object, other key order and spacing: the same request.
    reordered = (
        b'{ "currency":"EUR", "amount":700, "credit_account_id":"%s", "debit_account_id":"%s" }'
    )
    again = await alpha.call(
        "POST",
        "/v1/transfers",
        content=reordered % (merchant.encode(), wallet.encode()),
        headers={**headers, "content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert (await alpha.get(wallet))["balance"] == 9_300


async def test_idempotency_key_with_a_different_body_is_409(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    headers = {"Idempotency-Key": "k-1"}
    await alpha.transfer(wallet, merchant, 700, headers=headers)
    before = await alpha.state(wallet, merchant)
    r = await alpha.transfer(wallet, merchant, 701, headers=headers)
    assert r.status_code == 409 and problem_type(r) == "idempotency-conflict"
    other_path = await alpha.call("POST", f"/v1/accounts/{wallet}/freeze", headers=headers)
    assert other_path.status_code == 409
    assert await alpha.state(wallet, merchant) == before


async def test_an_error_met_while_executing_is_replayed_too(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    headers = {"Idempotency-Key": "too-early"}
    first = await alpha.transfer(wallet, merchant, 20_000, headers=headers)
    assert first.status_code == 422
    await alpha.fund(wallet, 20_000)
    again = await alpha.transfer(wallet, merchant, 20_000, headers=headers)
    assert again.status_code == 422 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert (await alpha.get(merchant))["balance"] == 0


async def test_a_request_refused_before_execution_leaves_the_key_free(
    alpha: Api, funded: dict[str, str]
) -> None:
    wallet, merchant = funded["wallet"], funded["merchant"]
    headers = {"Idempotency-Key": "retry-me"}
    bad = await alpha.transfer(wallet, merchant, 0, headers=headers)
    assert bad.status_code == 422
    good = await alpha.transfer(wallet, merchant, 10, headers=headers)
    assert good.status_code == 201 and "idempotent-replayed" not in good.headers


async def test_key_held_by_a_running_request_is_409_with_retry_after(
    alpha: Api, app: FastAPI, world: dict[str, Any], funded: dict[str, str]
) -> None:
    store = app.state.ledger.store
    body = item(funded["wallet"], funded["merchant"], 5)
    fingerprint = request_hash("POST", "/v1/transfers", json.dumps(body).encode())
    held = store.claim_key(
        world["alpha"]["tenant"], "busy", fingerprint, 0, lease_us=10**18, ttl_us=10**18
    )
    assert held.state == "claimed"
    r = await alpha.call("POST", "/v1/transfers", json=body, headers={"Idempotency-Key": "busy"})
    assert r.status_code == 409 and problem_type(r) == "idempotency-conflict"
    assert r.headers["retry-after"] == "1" and "in progress" in r.json()["detail"]


async def test_keys_belong_to_a_tenant(alpha: Api, beta: Api, funded: dict[str, str]) -> None:
    headers = {"Idempotency-Key": "shared-name"}
    mine = await alpha.call(
        "POST", "/v1/accounts", json={"kind": "wallet", "currency": "EUR"}, headers=headers
    )
    theirs = await beta.call(
        "POST", "/v1/accounts", json={"kind": "wallet", "currency": "EUR"}, headers=headers
    )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]
    assert "idempotent-replayed" not in theirs.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
async def test_malformed_idempotency_key_is_400(
    alpha: Api, funded: dict[str, str], key: str
) -> None:
    before = await alpha.state(funded["wallet"], funded["merchant"])
    r = await alpha.transfer(
        funded["wallet"], funded["merchant"], 5, headers={"Idempotency-Key": key.encode("utf-8")}
    )
    assert r.status_code == 400 and problem_type(r) == "invalid-idempotency-key"
    assert await alpha.state(funded["wallet"], funded["merchant"]) == before


async def test_a_failed_commit_frees_the_key_for_the_retry(
    alpha: Api, app: FastAPI, funded: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = app.state.ledger.store
    real = store.execute
    calls = {"n": 0}

    def flaky(units: Any, now_us: int) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("database went away")
        return real(units, now_us)

    monkeypatch.setattr(store, "execute", flaky)
    headers = {"Idempotency-Key": "flaky"}
    failed = await alpha.transfer(funded["wallet"], funded["merchant"], 5, headers=headers)
    assert failed.status_code == 500 and problem_type(failed) == "internal-error"
    retry = await alpha.transfer(funded["wallet"], funded["merchant"], 5, headers=headers)
    assert retry.status_code == 201 and "idempotent-replayed" not in retry.headers
    assert (await alpha.get(funded["merchant"]))["balance"] == 5


# --- authorization ------------------------------------------------------------------------


async def test_every_ledger_response_carries_the_next_dpop_nonce(
    alpha: Api, funded: dict[str, str]
) -> None:
    r = await alpha.transfer(funded["wallet"], funded["merchant"], 1)
    assert r.headers.get("dpop-nonce")
    assert (await alpha.call("GET", f"/v1/accounts/{funded['wallet']}")).headers.get("dpop-nonce")


async def test_a_read_only_token_cannot_move_money(
    client: httpx.AsyncClient, world: dict[str, Any]
) -> None:
    r = await client.post(
        "/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(world["reader"]["client_id"], world["reader"]["secret"]),
    )
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    listed = await client.get("/v1/accounts", headers=headers)
    assert listed.status_code == 200 and listed.json()["accounts"] == []
    for method, path in (
        ("POST", "/v1/accounts"),
        ("POST", "/v1/transfers"),
        ("GET", f"/v1/transfers/{uuid.uuid4()}"),
        ("POST", "/v1/journal-entries"),
    ):
        denied = await client.request(method, path, json={}, headers=headers)
        assert denied.status_code == 403 and denied.json()["type"].endswith("/insufficient-scope")


# --- identity for the edge ----------------------------------------------------------------


async def test_the_pod_names_the_verified_client_and_tenant_to_the_edge_only(
    alpha: Api, world: dict[str, Any]
) -> None:
    wallet = await alpha.account()
    from_edge = await alpha.call(
        "GET", f"/v1/accounts/{wallet}", headers={"x-strongroom-edge": EDGE_SECRET}
    )
    assert from_edge.headers["x-strongroom-client"] == world["alpha"]["client_id"]
    assert from_edge.headers["x-strongroom-tenant"]
    direct = await alpha.call("GET", f"/v1/accounts/{wallet}")
    assert "x-strongroom-client" not in direct.headers
    anonymous = await alpha.http.get(
        f"/v1/accounts/{wallet}", headers={"x-strongroom-edge": EDGE_SECRET}
    )
    assert anonymous.status_code == 401
    assert "x-strongroom-client" not in anonymous.headers
