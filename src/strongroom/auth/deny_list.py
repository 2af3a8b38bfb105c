"""A pod's in-memory deny list: revoked tokens (RFC 7009) and suspended clients.

Fed by ``DenyListFeed`` entries (``adapters/deny_list_sync.py`` polls them); consulted on
every request after the access token verified. A token entry is kept until the token
could no longer be accepted anyway (its ``exp`` plus the verifier's leeway), then pruned.
Lookups are O(1) dict probes; pruning is amortised over ``apply`` calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from strongroom.auth.ports import DenyEntry

# AuthSettings.leeway_s's default: the verifier accepts a token until exp + leeway, so a
# revocation must outlive exp by as much.
_DEFAULT_LEEWAY_S = 30.0
# Full sweeps at most this often: revocations are rare, a sweep walks every entry.
_PRUNE_INTERVAL_S = 30.0


class DenyList:
    __slots__ = ("_clients", "_clock", "_leeway_s", "_next_prune", "_tokens")

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        leeway_s: float = _DEFAULT_LEEWAY_S,
    ) -> None:
        self._clock = clock  # epoch seconds: compared with tokens' exp
        self._leeway_s = leeway_s
        self._tokens: dict[str, float] = {}  # jti -> forget after
        self._clients: dict[str, float | None] = {}  # client_id -> forget after (None: never)
        self._next_prune = 0.0

    def apply(self, entries: Iterable[DenyEntry]) -> None:
        """Add entries (idempotent; a later entry for the same subject extends it)."""
        for entry in entries:
            until = None if entry.expires_at is None else entry.expires_at + self._leeway_s
            if entry.kind == "token":
                if until is None:
                    until = float("inf")
                self._tokens[entry.subject] = max(until, self._tokens.get(entry.subject, until))
            elif entry.kind == "client":
                current = self._clients.get(entry.subject, until)
                self._clients[entry.subject] = (
                    None if until is None or current is None else max(until, current)
                )
        self.prune()

    def token_revoked(self, jti: str) -> bool:
        until = self._tokens.get(jti)
        return until is not None and self._clock() <= until

    def client_suspended(self, client_id: str) -> bool:
        if client_id not in self._clients:
            return False
        until = self._clients[client_id]
        return until is None or self._clock() <= until

    def lift_client(self, client_id: str) -> None:
        """Forget a suspension (the feed has no "reinstated" event: callers that reinstate
        a client must reach every pod some other way, or restart them)."""
        self._clients.pop(client_id, None)

    def prune(self, *, force: bool = False) -> None:
        """Drop entries past their time; a full sweep at most every ``_PRUNE_INTERVAL_S``."""
        now = self._clock()
        if not force and now < self._next_prune:
            return
        self._next_prune = now + _PRUNE_INTERVAL_S
        self._tokens = {jti: until for jti, until in self._tokens.items() if now <= until}
        self._clients = {
            cid: until for cid, until in self._clients.items() if until is None or now <= until
        }

    @property
    def tokens(self) -> int:
        return len(self._tokens)

    @property
    def clients(self) -> int:
        return len(self._clients)

    def __len__(self) -> int:
        return len(self._tokens) + len(self._clients)
