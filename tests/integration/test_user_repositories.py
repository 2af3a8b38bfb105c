"""Users, app clients, single-use codes and refresh-token families on SQLite and PostgreSQL.

PostgreSQL tests use a throwaway database per module; without a reachable server they
skip, except under CI (``CI=true``), where they fail.
"""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy.engine import Engine

from strongroom.adapters.db.auth_repositories import SqlClientRepository, SqlTenantRepository
from strongroom.adapters.db.user_repositories import (
    AuthorizationCodeRecord,
    CodeRedeemed,
    CodeReused,
    Conflict,
    UserStores,
    new_family_id,
)
from strongroom.auth.ports import ClientRecord
from strongroom.auth.refresh_tokens import (
    IssuedAccess,
    RefreshFamily,
    RefreshTokenRecord,
    Refused,
    Replayed,
    ReuseDetected,
    Rotated,
    credential_hash,
    new_authorization_code,
    new_refresh_token,
)
from strongroom.auth.users import UserRecord

T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stores(engine: Engine, clock: Clock) -> UserStores:
    return UserStores.for_engine(engine, clock=clock)


@pytest.fixture
def world(engine: Engine, stores: UserStores) -> dict[str, str]:
    tenant = str(uuid.uuid4())
    SqlTenantRepository(engine).create(tenant, "wallets")
    client = ClientRecord(
        client_id="sr_app",
        tenant_id=tenant,
        name="app",
        secret_hash=None,
        scopes=frozenset({"accounts:read"}),
        status="active",
        dpop_required=False,
        is_operator=False,
        created_at=T0,
    )
    stores.app_clients.create(client, "public", ("https://app.example/cb",))
    user = UserRecord(str(uuid.uuid4()), tenant, "alice", "$argon2id$x", False, "active", T0)
    stores.users.create(user)
    return {"tenant": tenant, "client": client.client_id, "user": user.user_id}


def access(jti: str, now: float = T0) -> IssuedAccess:
    return IssuedAccess(
        jti=jti, iat=int(now), exp=int(now) + 300, scope=frozenset({"accounts:read"})
    )


def family(world: dict[str, str]) -> RefreshFamily:
    return RefreshFamily(
        family_id=new_family_id(),
        tenant_id=world["tenant"],
        client_id=world["client"],
        user_id=world["user"],
        scope=frozenset({"accounts:read"}),
        auth_time=T0,
        created_at=T0,
        expires_at=T0 + 86_400,
    )


def token(fam: RefreshFamily, value: str, jti: str, now: float = T0) -> RefreshTokenRecord:
    return RefreshTokenRecord(
        credential_hash(value), fam.family_id, now, now + 3600, access(jti, now)
    )


def code(
    world: dict[str, str], value: str, *, expires_at: float = T0 + 60
) -> AuthorizationCodeRecord:
    return AuthorizationCodeRecord(
        code_hash=credential_hash(value),
        tenant_id=world["tenant"],
        client_id=world["client"],
        user_id=world["user"],
        redirect_uri="https://app.example/cb",
        scope=frozenset({"accounts:read"}),
        code_challenge="c" * 43,
        auth_time=T0,
        created_at=T0,
        expires_at=expires_at,
    )


# --- users and app clients ---------------------------------------------------------------


def test_users_are_found_only_within_their_tenant(engine, stores, world) -> None:
    other = str(uuid.uuid4())
    SqlTenantRepository(engine).create(other, "other")
    assert stores.users.find(world["tenant"], "alice") is not None
    assert stores.users.find(other, "alice") is None
    assert stores.users.get(other, world["user"]) is None


def test_a_username_is_unique_within_a_tenant(stores, world) -> None:
    twin = UserRecord(
        str(uuid.uuid4()), world["tenant"], "alice", "$argon2id$y", False, "active", T0
    )
    with pytest.raises(Conflict):
        stores.users.create(twin)


def test_the_same_username_may_exist_in_another_tenant(engine, stores, world) -> None:
    other = str(uuid.uuid4())
    SqlTenantRepository(engine).create(other, "other")
    stores.users.create(
        UserRecord(str(uuid.uuid4()), other, "alice", "$argon2id$z", False, "active", T0)
    )
    assert stores.users.find(other, "alice") is not None


def test_app_clients_keep_their_type_and_exact_redirect_uris(engine, stores, world) -> None:
    app = stores.app_clients.get(world["client"])
    assert app is not None and app.is_public
    assert app.redirect_uris == ("https://app.example/cb",)
    # The existing repository still reads the client, and its clients default to confidential.
    assert SqlClientRepository(engine).get(world["client"]) is not None


def test_clients_made_by_the_client_credentials_path_are_confidential(
    engine, stores, world
) -> None:
    record = ClientRecord(
        "sr_m2m",
        world["tenant"],
        "m2m",
        "$argon2id$s",
        frozenset({"accounts:read"}),
        "active",
        False,
        False,
        T0,
    )
    SqlClientRepository(engine).create(record)
    app = stores.app_clients.get("sr_m2m")
    assert app is not None and app.client_type == "confidential" and app.redirect_uris == ()


# --- authorization codes ---------------------------------------------------------------------


def test_a_code_is_redeemed_once(stores, world) -> None:
    value = new_authorization_code()
    stores.codes.create(code(world, value))
    first = stores.codes.consume(credential_hash(value))
    second = stores.codes.consume(credential_hash(value))
    assert isinstance(first, CodeRedeemed) and first.grant.user_id == world["user"]
    assert isinstance(second, CodeReused)


def test_unknown_and_expired_codes_are_refused_without_reuse(stores, world, clock) -> None:
    value = new_authorization_code()
    stores.codes.create(code(world, value, expires_at=T0 + 60))
    clock.now = T0 + 61
    assert stores.codes.consume(credential_hash(value)) is None
    assert stores.codes.consume(credential_hash(new_authorization_code())) is None


def test_reusing_a_code_revokes_the_family_and_returns_its_live_access_tokens(
    stores, world
) -> None:
    value = new_authorization_code()
    stores.codes.create(code(world, value))
    assert isinstance(stores.codes.consume(credential_hash(value)), CodeRedeemed)
    fam = family(world)
    assert stores.codes.attach_tokens(
        credential_hash(value), fam, token(fam, new_refresh_token(), "jti-1")
    )
    reused = stores.codes.consume(credential_hash(value))
    assert isinstance(reused, CodeReused)
    assert [a.jti for a in reused.revoked] == ["jti-1"]
    stored = stores.refresh_tokens.family(fam.family_id)
    assert stored is not None and stored.revoked_at is not None


def test_tokens_attached_after_a_reuse_are_revoked_at_once(stores, world) -> None:
    value = new_authorization_code()
    stores.codes.create(code(world, value))
    stores.codes.consume(credential_hash(value))
    reused = stores.codes.consume(credential_hash(value))  # before the first one recorded tokens
    assert isinstance(reused, CodeReused) and reused.revoked == ()
    fam = family(world)
    attached = stores.codes.attach_tokens(
        credential_hash(value), fam, token(fam, new_refresh_token(), "jti-2")
    )
    stored = stores.refresh_tokens.family(fam.family_id)
    assert attached is False and stored is not None and stored.revoked_at is not None


def test_concurrent_redemptions_of_one_code_have_exactly_one_winner(stores, world) -> None:
    value = new_authorization_code()
    stores.codes.create(code(world, value))
    results: list[object] = []
    barrier = threading.Barrier(8)

    def redeem() -> None:
        barrier.wait()
        results.append(stores.codes.consume(credential_hash(value)))

    threads = [threading.Thread(target=redeem) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(isinstance(r, CodeRedeemed) for r in results) == 1
    assert sum(isinstance(r, CodeReused) for r in results) == 7


# --- refresh-token rotation ---------------------------------------------------------------


def started(stores: UserStores, world: dict[str, str]) -> tuple[RefreshFamily, str]:
    fam = family(world)
    value = new_refresh_token()
    stores.refresh_tokens.start_family(fam, token(fam, value, "jti-0"))
    return fam, value


def test_rotation_makes_the_successor_the_head(stores, world, clock) -> None:
    fam, value = started(stores, world)
    nxt = new_refresh_token()
    clock.now = T0 + 10
    out = stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, nxt, "jti-1", clock.now),
        grace_s=2.0,
    )
    assert isinstance(out, Rotated) and out.successor.token_hash == credential_hash(nxt)
    again = stores.refresh_tokens.rotate(
        credential_hash(nxt),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-2", clock.now),
        grace_s=2.0,
    )
    assert isinstance(again, Rotated)


def test_retry_within_grace_replays_the_same_successor(stores, world, clock) -> None:
    fam, value = started(stores, world)
    nxt = new_refresh_token()
    stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, nxt, "jti-1"),
        grace_s=2.0,
    )
    clock.now = T0 + 1.5
    out = stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-x"),
        grace_s=2.0,
    )
    assert isinstance(out, Replayed)
    assert out.successor.token_hash == credential_hash(nxt) and out.successor.access.jti == "jti-1"


def test_reuse_after_grace_revokes_the_family_and_every_live_access_token(
    stores, world, clock
) -> None:
    fam, value = started(stores, world)
    nxt = new_refresh_token()
    stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, nxt, "jti-1"),
        grace_s=2.0,
    )
    clock.now = T0 + 3
    out = stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-x"),
        grace_s=2.0,
    )
    assert isinstance(out, ReuseDetected)
    assert {a.jti for a in out.revoked} == {"jti-0", "jti-1"}
    head = stores.refresh_tokens.rotate(
        credential_hash(nxt),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-y"),
        grace_s=2.0,
    )
    assert head == Refused("revoked")


def test_reuse_after_the_successor_was_used_revokes_even_within_grace(stores, world, clock) -> None:
    fam, value = started(stores, world)
    nxt = new_refresh_token()
    stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, nxt, "jti-1"),
        grace_s=2.0,
    )
    stores.refresh_tokens.rotate(
        credential_hash(nxt),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-2"),
        grace_s=2.0,
    )
    out = stores.refresh_tokens.rotate(
        credential_hash(value),
        client_id=world["client"],
        successor=token(fam, new_refresh_token(), "jti-x"),
        grace_s=2.0,
    )
    assert isinstance(out, ReuseDetected)


def test_unknown_expired_and_foreign_tokens_are_refused(stores, world, clock) -> None:
    fam, value = started(stores, world)
    succ = token(fam, new_refresh_token(), "jti-1")
    assert stores.refresh_tokens.rotate(
        credential_hash(new_refresh_token()), client_id=world["client"], successor=succ, grace_s=2.0
    ) == Refused("unknown")
    assert stores.refresh_tokens.rotate(
        credential_hash(value), client_id="sr_other", successor=succ, grace_s=2.0
    ) == Refused("wrong_client")
    clock.now = T0 + 3601
    assert stores.refresh_tokens.rotate(
        credential_hash(value), client_id=world["client"], successor=succ, grace_s=2.0
    ) == Refused("expired")


def test_concurrent_rotations_of_one_token_rotate_it_once(stores, world) -> None:
    fam, value = started(stores, world)
    results: list[object] = []
    barrier = threading.Barrier(6)

    def rotate(i: int) -> None:
        barrier.wait()
        results.append(
            stores.refresh_tokens.rotate(
                credential_hash(value),
                client_id=world["client"],
                successor=token(fam, f"srt_successor_{i}", f"jti-{i}"),
                grace_s=0.0,
            )
        )

    threads = [threading.Thread(target=rotate, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(isinstance(r, Rotated) for r in results) == 1
    assert all(isinstance(r, (Rotated, ReuseDetected, Refused)) for r in results)
    stored = stores.refresh_tokens.family(fam.family_id)
    assert stored is not None and stored.revoked_at is not None
