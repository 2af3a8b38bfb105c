"""One typed settings tree for every Strongroom process.

Precedence (lowest first): built-in defaults, a TOML file, ``STRONGROOM_*``
environment variables (nested with ``__``, e.g. ``STRONGROOM_EDGE__PORT``), then
explicit keyword overrides (the CLI's flags). The supervisor serialises the
effective tree to ``<data_dir>/run/settings.json`` so every child process runs
with exactly the configuration its parent resolved.

Every limit, timeout and retry count is a named setting with the reason for
its default beside it.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from strongroom import __version__

CONFIG_ENV_VAR = "STRONGROOM_CONFIG"
SETTINGS_FILE_ENV_VAR = "STRONGROOM_SETTINGS_FILE"
DEFAULT_EDGE_SECRET = "strongroom-embedded-edge-secret-change-me"  # noqa: S105 - the known default production refuses
DEFAULT_KEY_ENCRYPTION_KEY = "strongroom-embedded-key-encryption-key-change-me"


class EdgeLimits(BaseModel):
    """Hard limits at the edge; every one fails closed with a problem+json error."""

    # 8 KiB per header line and 32 KiB in all match nginx's large_client_header_buffers
    # order of magnitude while leaving room for long bearer/DPoP tokens.
    header_line_bytes_max: int = 8192
    header_bytes_max: int = 32768
    header_count_max: int = 100
    url_bytes_max: int = 8192
    # A batch of 8,190 transfers is ~2 MiB of JSON; 4 MiB leaves headroom, no more.
    body_bytes_max: int = 4 * 1024 * 1024
    # Slowloris: the whole header block must arrive within this time.
    header_read_timeout_s: float = 10.0
    # A body that stalls for this long between reads is abandoned.
    body_read_timeout_s: float = 15.0
    # Idle keep-alive clients are cheap (~30 KiB each) but not free.
    idle_timeout_s: float = 75.0
    # Per edge worker; 20,000 is this machine's fd limit, keep headroom for upstreams.
    connections_max: int = 16384
    # Requests served on one client connection before we ask it to reconnect.
    requests_per_connection_max: int = 10_000


class BalancerSettings(BaseModel):
    """L7 load balancing, health checking, outlier ejection, retries, circuit breaking."""

    algorithm: Literal["p2c", "round_robin"] = "p2c"
    # Active health checks: one probe per pod per interval.
    health_path: str = "/readyz"
    health_interval_s: float = 1.0
    health_timeout_s: float = 1.0
    health_rise: int = 2
    health_fall: int = 2
    # Passive outlier ejection: this many consecutive 5xx/connect failures eject a pod.
    outlier_consecutive_failures: int = 5
    ejection_base_s: float = 2.0
    ejection_max_s: float = 60.0
    # Never eject more than this share of pods passively (active checks still can).
    ejection_max_percent: int = 50
    # The ejection backoff level halves after each quiet period this long: as long as the
    # longest ejection, so a pod must stay good longer than it was ever out to be forgiven.
    ejection_decay_s: float = 60.0
    # Retries: total attempts per request including the first one.
    attempts_max: int = 3
    # Retry budget: retries may add at most this share of requests, plus a floor per second.
    retry_budget_ratio: float = 0.2
    retry_budget_min_per_s: float = 10.0
    # Window over which requests earn retries (Finagle's default TTL): long enough to
    # smooth bursts, short enough that a past quiet spell cannot fund a retry storm.
    retry_budget_window_s: float = 10.0
    # Circuit breaking: more outstanding requests than this on a pod → it is skipped;
    # all pods full → fast 503.
    pending_per_pod_max: int = 512
    # Upstream keep-alive pool per pod.
    pool_idle_per_pod_max: int = 128
    pool_idle_timeout_s: float = 30.0
    connect_timeout_s: float = 1.0
    # Time to the first response byte from a pod.
    response_timeout_s: float = 30.0
    # Seconds suggested to clients in Retry-After when we shed or have no pod.
    retry_after_s: int = 1


class CacheSettings(BaseModel):
    """The edge's RFC 9111 shared cache and response compression."""

    enabled: bool = True
    # Per edge worker, counting bodies, headers and memoised compressed variants: cacheable
    # API responses (JWKS, metadata, public docs) are few and small, 64 MiB is ample.
    bytes_max: int = 64 * 1024 * 1024
    # Larger objects are passed through: one of them would evict hundreds of small ones.
    object_bytes_max: int = 1024 * 1024
    # Stored variants per URL (one per distinct value of the Vary'd request headers): a
    # client rotating e.g. Accept-Language must not turn one URL into an unbounded list
    # that every lookup scans.
    variants_per_key_max: int = 8
    # How long past expiry a stored response may still answer when every pod fails
    # (RFC 9111 §4.2.4 "disconnected"; a response's own stale-if-error, RFC 5861, wins).
    # Short, so an outage does not serve old data for long; never for must-revalidate.
    stale_if_error_s: float = 30.0
    # Concurrent misses on one URL wait for a single upstream fetch; beyond this many
    # waiters the next caller is refused (503) rather than queued without bound.
    coalesce_waiters_max: int = 1024
    # "Hit-for-pass" (Varnish's idea): a URI whose response was not storable skips the
    # cache and request coalescing for this long, so uncacheable API calls never queue
    # behind each other and pay nothing for the cache.
    pass_ttl_s: float = 30.0
    pass_keys_max: int = 100_000
    compression: bool = True
    # Below ~512 B the gzip/brotli framing eats most of the saving.
    compression_bytes_min: int = 512
    # Buffered compression only: bigger responses stream through untouched.
    compression_bytes_max: int = 4 * 1024 * 1024
    # gzip 5 / brotli 4 are the usual on-the-fly sweet spots: most of the ratio of the top
    # levels at a fraction of the CPU (compressed variants are memoised for cache hits).
    gzip_level: int = 5
    brotli_quality: int = 4


class BlocklistSettings(BaseModel):
    """IP/CIDR and OAuth-client block and allow entries at the edge, and per-IP caps."""

    # Off only for benchmarks of the bare proxy: no store polling, no checks.
    enabled: bool = True
    # Each edge worker polls the store this often; a block must apply everywhere within
    # 1 s, and a poll is one indexed query (microseconds on SQLite, a round trip on PG).
    poll_s: float = Field(default=0.25, gt=0, le=1.0)
    # Entries in force; an add beyond is refused (blocklist-full). 100k entries take
    # ~25 MB and a ~1 s load per edge worker; a runaway SIEM rule must not take more.
    entries_max: int = Field(default=100_000, ge=1)
    # Open connections per client address per edge worker. Browsers open ≤ 6 per host and
    # API clients pool a few dozen; 256 leaves room for a NAT gateway of many users while
    # one address can no longer hold the worker's connections_max (16,384).
    connections_per_ip_max: int = Field(default=256, ge=1)
    # IPv6 clients are counted per network of this prefix: one host is usually given a
    # whole /64 and could otherwise open the cap once per address.
    ipv6_prefix_len: int = Field(default=64, ge=1, le=128)


class RateLimitPolicy(BaseModel):
    """One rate limit: ``limit`` requests per ``window_s`` per key, bursts up to ``burst``."""

    # The RateLimit-Policy identifier clients see; also part of the limiter's keys.
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    # ip: per client address (IPv6 per network); client/tenant: per OAuth client or tenant
    # the edge has learnt for the bearer token (anonymous requests skip these); route:
    # one budget for every caller of the matched routes.
    key: Literal["ip", "client", "tenant", "route"]
    limit: int = Field(ge=1)
    window_s: int = Field(default=1, ge=1, le=86_400)
    # Requests admitted back to back after a quiet period (GCRA's tolerance + 1).
    burst: int = Field(ge=1)
    # Upper-case methods; empty matches every method.
    methods: list[str] = Field(default_factory=list)
    # A path prefix on segment boundaries ("/" is everything), or a glob when it holds
    # * (one segment), ** (any depth), ? or [..].
    path: str = Field(default="/", pattern=r"^/")


class ConcurrencyPolicy(BaseModel):
    """At most ``concurrent_max`` requests of one key in flight at once (per edge host)."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    key: Literal["ip", "client", "tenant", "route"]
    concurrent_max: int = Field(ge=1)
    methods: list[str] = Field(default_factory=list)
    path: str = Field(default="/", pattern=r"^/")


def _default_rate_policies() -> list[RateLimitPolicy]:
    return [
        # One address: an API integration rarely needs 100 r/s, and 2 s of burst absorbs
        # a batch job's start; behind a shared NAT the client/tenant limits are the fair ones.
        RateLimitPolicy(name="ip", key="ip", limit=100, window_s=1, burst=200),
        # One OAuth client may use two addresses' worth (several hosts, one credential).
        RateLimitPolicy(name="client", key="client", limit=200, window_s=1, burst=400),
        # A tenant's clients together: the platform's fair-share unit.
        RateLimitPolicy(name="tenant", key="tenant", limit=1000, window_s=1, burst=2000),
        # Client authentication is where secrets are guessed: a token lives 5 minutes, so
        # 300 per minute per address serves any honest fleet behind one NAT and still
        # turns a brute force into a crawl.
        RateLimitPolicy(
            name="token-ip", key="ip", limit=300, window_s=60, burst=30,
            methods=["POST"], path="/oauth2/token",
        ),
        # Password guessing at the login form: a person types a handful per minute.
        RateLimitPolicy(
            name="login-ip", key="ip", limit=30, window_s=60, burst=10,
            methods=["POST"], path="/oauth2/authorize",
        ),
    ]  # fmt: skip


class RateLimitSettings(BaseModel):
    """GCRA rate limits and concurrency caps at the edge, exact across edge workers."""

    # Off only for benchmarks of the bare proxy.
    enabled: bool = True
    # auto: Redis in the production profile (limits hold across hosts), a shared-memory
    # table in the embedded one (exact across this host's edge workers, no server).
    store: Literal["auto", "shared_memory", "redis"] = "auto"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # A check is on every request's path: a Redis slower than this is treated as down.
    # Ten times a LAN round trip, far below any client's patience.
    redis_timeout_s: float = Field(default=0.05, gt=0, le=5.0)
    # Connections per edge worker = script calls in flight at once; checks arriving
    # meanwhile share the next call, so 4 carry tens of thousands of checks per second.
    redis_connections_max: int = Field(default=4, ge=1, le=64)
    # After a failure Redis is retried this often (one request probes); in between every
    # decision is taken locally, so a dead Redis costs no timeout per request.
    redis_retry_s: float = Field(default=1.0, gt=0, le=60.0)
    # Redis unreachable: "open" limits each worker locally with its share of every policy
    # (availability first: payments keep flowing); "closed" answers 503.
    fail_mode: Literal["open", "closed"] = "open"
    # Shared-memory table size in keys. A key lives while it holds
    # back-pressure (≤ burst/rate, 2 s by default), so 256k slots (4 MiB) track a
    # quarter of a million clients active at once before the least-limited is evicted.
    shared_slots: int = Field(default=262_144, ge=1024, le=1 << 26)
    # Keys with requests in flight, per host (each slot has a column per edge worker).
    concurrency_slots: int = Field(default=65_536, ge=1024, le=1 << 22)
    # IPv6 clients are limited per network of this prefix: a host usually owns a /64.
    ipv6_prefix_len: int = Field(default=64, ge=1, le=128)
    # Peers not limited per address (their clients and tenants still are): a load
    # balancer in front of the edge without the PROXY protocol, health checkers. Empty:
    # the edge faces clients directly and every address is limited.
    exempt_networks: list[str] = Field(default_factory=list)
    # Distinct (policy, key) pairs aggregated into events per second; beyond, refusals
    # share one event per policy, so a spread-out flood cannot flood the SIEM.
    event_keys_max: int = Field(default=10_000, ge=1)
    policies: list[RateLimitPolicy] = Field(default_factory=_default_rate_policies)
    # Slow clients hold pod capacity without sending many requests: 64 in flight is
    # several times what a well-behaved client's connection pool issues.
    concurrency: list[ConcurrencyPolicy] = Field(
        default_factory=lambda: [
            ConcurrencyPolicy(name="client-inflight", key="client", concurrent_max=64)
        ]
    )

    @field_validator("exempt_networks")
    @classmethod
    def _networks_parse(cls, networks: list[str]) -> list[str]:
        for network in networks:
            ipaddress.ip_network(network, strict=False)
        return networks


class WafSettings(BaseModel):
    """The edge's web application firewall (``edge/waf/``): scoring, limits, rule files."""

    # Off only for benchmarks of the bare proxy.
    enabled: bool = True
    # detect-only records what would have been blocked (security events) and forwards:
    # for trying new rules or paranoia levels on live traffic first.
    mode: Literal["block", "detect-only"] = "block"
    # OWASP CRS paranoia: 1 blocks only what real traffic never carries; 2-4 add rules
    # that catch more obfuscation at the price of false positives.
    paranoia: int = Field(default=1, ge=1, le=4)
    # Anomaly points that block (critical 5, error 4, warning 3, notice 2): CRS's default
    # of 5 blocks on one critical finding or on two lesser ones together.
    inbound_threshold: int = Field(default=5, ge=1)
    # Bodies up to the edge's own limit are inspected whole (a payload padded past an
    # inspection window must not pass); larger ones are refused, not waved through.
    inspect_body_bytes_max: int = Field(default=4 * 1024 * 1024, ge=1024)
    # JSON nested deeper than this is refused (json-too-deep): APIs use < 10 levels, and
    # deep nesting is a parser-exhaustion attack.
    json_depth_max: int = Field(default=32, ge=2, le=512)
    # Keys + values per JSON body: a batch of 8,190 transfers with metadata is ~115k, and
    # the 4 MiB body limit already bounds the count (≤ 2M); this only stops pathological
    # bodies of tiny values from costing seconds of inspection.
    json_values_max: int = Field(default=1_000_000, ge=100)
    # One JSON string or key longer than this is refused (json-too-large).
    json_string_chars_max: int = Field(default=1024 * 1024, ge=1024)
    # Methods the platform serves; anything else (TRACE, WebDAV, made-up verbs) is a
    # protocol violation the WAF blocks.
    allowed_methods: list[str] = Field(
        default_factory=lambda: ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    )
    # Operators' extra rule and exclusion files (*.toml, see edge/waf/rules/README.md),
    # loaded after the built-in ones; None: built-in rules only.
    rules_dir: Path | None = None
    # How often rule files are checked for changes (a stat per file).
    reload_poll_s: float = Field(default=1.0, gt=0)


class EdgeSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 1
    # Loopback admin listener per edge worker (admin_port + worker index): /healthz, /metrics.
    admin_host: str = "127.0.0.1"
    admin_port: int = 9440
    # Zones of edge workers, assigned round-robin by worker index; empty → pods' zones.
    zones: list[str] = Field(default_factory=list)
    hsts_max_age_s: int = 63_072_000  # two years, the HSTS preload list's minimum is one
    # One JSON log line per request; off by default because it costs ~10% throughput.
    access_log: bool = False
    # Paths answered 404 at the edge: operator endpoints are scraped on the private network.
    private_paths: list[str] = Field(default_factory=lambda: ["/metrics", "/readyz"])
    # Plain HTTP on the public port: only for benchmarks measuring TLS cost, never in production.
    plaintext: bool = False
    limits: EdgeLimits = Field(default_factory=EdgeLimits)
    balancer: BalancerSettings = Field(default_factory=BalancerSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    blocklist: BlocklistSettings = Field(default_factory=BlocklistSettings)
    rate_limits: RateLimitSettings = Field(default_factory=RateLimitSettings)
    waf: WafSettings = Field(default_factory=WafSettings)
    # How often edge workers look for changed upstream lists and certificates.
    reload_poll_s: float = 1.0
    # Young-generation GC threshold of an edge worker (see pods.gc_young_threshold): a WAF
    # inspection allocates hundreds of short-lived objects per request.
    gc_young_threshold: int = Field(default=20_000, ge=700)


class TlsSettings(BaseModel):
    """Certificates: configured files, or a local CA generated in the data dir."""

    cert_file: Path | None = None
    key_file: Path | None = None
    # Names the generated leaf certificate covers.
    hostnames: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "::1"])
    ca_validity_days: int = 3650
    # Short-lived leaves; the cert worker renews them well before expiry.
    leaf_validity_days: int = 30
    leaf_renew_before_days: int = 10
    # Issued certificates start this long in the past so a client whose clock runs a few
    # minutes slow still accepts a leaf renewed moments ago (common on laptops and VMs).
    not_before_backdate_s: int = 300


class PodSettings(BaseModel):
    count: int = 2
    host: str = "127.0.0.1"
    # Pod i listens on port_base + i.
    port_base: int = 8500
    zones: list[str] = Field(default_factory=lambda: ["a"])
    # After SIGTERM, /readyz turns 503 and the pod keeps serving for this long so every
    # edge worker sees it (health interval x fall + margin) before it stops accepting.
    drain_grace_s: float = 3.0
    # Then in-flight requests get this long to finish.
    shutdown_timeout_s: float = 10.0
    request_body_bytes_max: int = 4 * 1024 * 1024
    # Python's cyclic GC collects the young generation every 700 allocations; a batch of
    # 1,000 transfers allocates ~50k objects, so the default collects ~70 times a request
    # and rescans the older generations often. At 20,000 (objects are short-lived here,
    # cycles rare) the ledger batch bench gained ~20% throughput; start-up objects are
    # also frozen out of every collection (gc.freeze).
    gc_young_threshold: int = Field(default=20_000, ge=700)


class WorkerSettings(BaseModel):
    count: int = 1
    # Certificate renewal check period.
    cert_check_interval_s: float = 3600.0
    # After SIGTERM, running jobs get this long to finish their current step; below the
    # supervisor's stop_timeout_s so a clean exit normally beats the SIGKILL.
    shutdown_timeout_s: float = 10.0


class SupervisorSettings(BaseModel):
    restart_backoff_initial_s: float = 0.2
    restart_backoff_max_s: float = 30.0
    # Doubling reaches the 30 s cap after ~8 quick crashes: fast recovery from a one-off
    # crash, no busy loop for a process that cannot start.
    restart_backoff_factor: float = 2.0
    # A process that stayed up this long has its backoff reset.
    restart_backoff_reset_s: float = 30.0
    health_poll_s: float = 1.0
    # One probe may take at most this long; a loopback listener that needs more is not healthy.
    health_timeout_s: float = 1.0
    # Per role, how long to wait for a graceful exit before SIGKILL.
    stop_timeout_s: float = 20.0
    # `up` waits at most this long for every pod to be ready before it reports.
    startup_timeout_s: float = 60.0


class DatabaseSettings(BaseModel):
    # Empty → sqlite file in the data dir.
    url: str = ""
    pool_size: int = 10
    # SQLite: synchronous=FULL keeps a committed transfer across power loss.
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    busy_timeout_ms: int = 5000
    # PostgreSQL connect timeout: a dead server must fail a pod's readiness probe within
    # a few probe intervals, not hang until the kernel's TCP timeout (minutes).
    connect_timeout_s: float = 5.0


class ObserveSettings(BaseModel):
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_json: bool = True
    tracing: bool = False
    otlp_endpoint: str | None = None
    service_name: str = "strongroom"


class AuthSettings(BaseModel):
    """OAuth 2.0 authorization server and token verification at every pod."""

    # Empty → https://localhost:<edge.port>; must be the exact URL clients use (RFC 8414 §3.3).
    issuer: str = ""
    # The `aud` of every access token: the /v1 resource server.
    audience: str = "https://api.strongroom.dev/v1"
    # RFC 9068 tokens are bearer credentials: short-lived so revocation matters little.
    access_token_lifetime_s: int = 300
    # Clock skew tolerated between pods when checking exp/iat/nbf.
    leeway_s: int = 30
    signing_alg: Literal["Ed25519", "ES256"] = "Ed25519"
    # A new key is published this long before it signs, so every cached JWKS has it.
    key_publish_ahead_s: int = 600
    # Keys sign for this long before `strongroom keys rotate` is due (operators rotate).
    key_rotation_days: int = 30
    # Unknown `kid`: refetch the key set at most this often (NOTES: outages from pods
    # that never refetch, and from pods that refetch on every bad token).
    jwks_refetch_cooldown_s: float = 5.0
    # Revocations and client suspensions reach every pod within this poll period.
    deny_list_poll_s: float = 0.2
    # argon2id for client secrets and user passwords (OWASP: m=19 MiB, t=2, p=1 minimum).
    argon2_time_cost: int = 2
    argon2_memory_kib: int = 19_456
    argon2_parallelism: int = 1
    # A verified client secret is remembered (as a keyed hash) this long per pod, so a
    # client's repeated grants cost microseconds, not an argon2 run each.
    verified_secret_cache_s: float = 300.0
    # Access tokens remembered per pod after a full verify (exact token string → claims;
    # expiry and key still re-checked on a hit). A signature check costs ~100-140 µs on
    # the reference machine, a hit ~1 µs, and clients reuse a token for its lifetime;
    # ~1 KiB each, so 10,000 is ~10 MiB. 0 disables (AccessTokenVerifier cache_size).
    verified_token_cache_size: int = 10_000
    # Authorization codes (RFC 6749 §4.1.2: "maximum lifetime of 10 minutes is
    # RECOMMENDED"): a browser redirect and one token request take seconds, and a short
    # life shrinks the window for a stolen code.
    authorization_code_lifetime_s: int = 60
    # A refresh token unused this long expires (an abandoned device stops working) ...
    refresh_token_lifetime_s: int = 14 * 86_400
    # ... and a family ends this long after the login that started it, however often it
    # rotates: the user logs in again at least monthly.
    refresh_family_lifetime_s: int = 30 * 86_400
    # A rotated refresh token presented again within this many seconds, while its
    # successor is unused, gets the same new pair (a lost response) instead of revoking
    # the family. Short: it is the only window in which a thief's replay is not caught.
    refresh_reuse_grace_s: float = 2.0
    # The login + consent form (and its CSRF token) stays valid this long after the page
    # was served: time to type a password, not to leave a tab open for a day.
    login_form_lifetime_s: int = 900
    # DPoP (RFC 9449). Scopes that move money are only ever granted as DPoP-bound tokens, so
    # a stolen token is useless without the client's private key (§1; issue 3).
    dpop_required_scopes: list[str] = Field(
        default_factory=lambda: [
            "transfers:write",
            "payments:write",
            "payments:refund",
            "settlements:run",
        ]
    )
    # A proof is accepted this long after its iat (and auth.leeway_s before it): long
    # enough for a slow network, short enough that the shared jti cache stays small (§11.1).
    dpop_proof_window_s: int = 60
    # Server nonces (§8, §9) are stateless HMACs of a time step; the current and previous
    # step are accepted, so a nonce lives 60-120 s and every response hands out a fresh one.
    dpop_nonce_step_s: int = 60
    # Demand a server nonce in every proof: it bounds proofs made ahead of time (§11.2).
    dpop_nonce_required: bool = True
    # Where seen proof jtis live, shared by all pods: "auto" = Redis in the production
    # profile (one SET NX per proof, no database write), the database otherwise.
    dpop_replay_cache: Literal["auto", "database", "redis"] = "auto"
    dpop_redis_url: str = "redis://127.0.0.1:6379/0"
    # private_key_jwt (RFC 7523 §3): a client assertion's exp may lie at most this far ahead.
    # Every jti is remembered until its exp, so this bounds the replay cache; clients
    # make a fresh assertion per request, and 5 minutes covers any clock and retry.
    client_assertion_lifetime_max_s: int = 300


class LedgerSettings(BaseModel):
    # Stripe keeps Idempotency-Keys 24 h; a shorter window would let a late retry of an
    # acknowledged transfer apply it twice, so less than a day is refused.
    idempotency_key_ttl_s: float = Field(default=86_400.0, ge=86_400.0)
    # A key's holder that has not answered within this long is presumed dead (the pod was
    # killed): a retry may take the key over. Its unit can no longer commit (token check).
    idempotency_lease_s: float = Field(default=30.0, gt=0)
    # Group commit (ledger/group_commit.py): units per database transaction and
    # transactions in flight per pod (SQLite has one writer: 1 is used there). One group
    # in flight gathers twice the units of two: a group's fixed cost (round trips, locks,
    # commit) is then shared by more transfers, and two groups of one pod mostly wait on
    # each other's balance rows anyway (bench/ledger.py single: 1,166 → 1,414 /s, p99
    # 56.8 → 43.5 ms).
    group_commit_max_units: int = Field(default=256, ge=1)
    group_commit_concurrency: int = Field(default=1, ge=1)
    # Before taking a group, wait at most this long for as many requests as the last group
    # had (a lone client never waits): fewer, larger groups under load (bench/ledger.py
    # single: 2,140 → 2,319 transfers/s at 4 ms, p50 13.9 → 12.7 ms).
    group_commit_linger_s: float = Field(default=0.004, ge=0, le=0.05)
    # The worker voids holds past their expires_at this often.
    hold_expiry_poll_s: float = Field(default=1.0, gt=0)
    # Balance rows of a system fees/settlement/clearing account: credits to it spread over
    # this many rows so the account every transfer touches does not serialize the ledger.
    hot_account_shards: int = Field(default=8, ge=1, le=64)


class AuditSettings(BaseModel):
    """The tamper-evident audit log's sequencer (issue 5; ``audit/sequencer.py``)."""

    # The checkpoint's origin line (C2SP tlog-checkpoint) and the signing key's name: the
    # log's identity for verifiers and witnesses, so choose it once (a schemaless URL prefix).
    origin: str = Field(default="strongroom.local/audit", min_length=1, pattern=r"^[^\s+]+$")
    # A growing log gets a signed checkpoint at least this often (issue 5: ≤ 1 s from
    # commit to checkpoint at p95; poll + interval + one batch must stay below it).
    checkpoint_interval_s: float = Field(default=0.5, gt=0, le=60)
    # Entries per append transaction (see audit.sequencer.BATCH_MAX_DEFAULT).
    batch_max: int = Field(default=4096, ge=1, le=50_000)
    # An idle sequencer looks for new entries this often.
    poll_interval_s: float = Field(default=0.1, gt=0, le=10)
    # A missing audit_entries seq (a transaction still in flight, or rolled back) is waited
    # for this long before the sequencer stops looking (audit/commit_horizon.py). It must
    # exceed the longest transaction the database lets live (PostgreSQL: set
    # idle_in_transaction_session_timeout / transaction_timeout below it).
    gap_grace_s: float = Field(default=120.0, gt=0)
    # The C2SP signer key (PRIVATE+KEY+...), created 0600 on first start;
    # unset → <data_dir>/audit/log.key.
    key_path: Path | None = None
    # Every published checkpoint is appended here (JSON lines): keep it off the database host.
    export_path: Path | None = None
    # Every published checkpoint's note is POSTed here (text/plain); failures are logged.
    export_url: str | None = None
    # A slow sink must not hold up checkpoints for long.
    export_timeout_s: float = Field(default=2.0, gt=0, le=30)


class SecretSettings(BaseModel):
    # Shared by edge and pods: pods trust Forwarded/X-Request-Id only with this proof.
    edge_secret: SecretStr = SecretStr(DEFAULT_EDGE_SECRET)
    # Encrypts signing keys at rest in the database (AES-256-GCM key derived from it).
    key_encryption_key: SecretStr = SecretStr(DEFAULT_KEY_ENCRYPTION_KEY)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STRONGROOM_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    profile: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path(".strongroom")
    version: str = __version__
    edge: EdgeSettings = Field(default_factory=EdgeSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    pods: PodSettings = Field(default_factory=PodSettings)
    workers: WorkerSettings = Field(default_factory=WorkerSettings)
    supervisor: SupervisorSettings = Field(default_factory=SupervisorSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    observe: ObserveSettings = Field(default_factory=ObserveSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ledger: LedgerSettings = Field(default_factory=LedgerSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    secrets: SecretSettings = Field(default_factory=SecretSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml_path = os.environ.get(CONFIG_ENV_VAR)
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if toml_path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(toml_path)))
        return tuple(sources)

    @model_validator(mode="after")
    def _production_needs_real_secrets(self) -> Settings:
        if self.profile == "production":
            problems = []
            if self.secrets.edge_secret.get_secret_value() == DEFAULT_EDGE_SECRET:
                problems.append("secrets.edge_secret is the built-in default")
            if self.secrets.key_encryption_key.get_secret_value() == DEFAULT_KEY_ENCRYPTION_KEY:
                problems.append("secrets.key_encryption_key is the built-in default")
            if self.edge.plaintext:
                problems.append("edge.plaintext serves without TLS")
            if not self.database.url.startswith("postgresql"):
                problems.append("database.url must be a PostgreSQL URL")
            if problems:
                raise ValueError("refusing the production profile: " + "; ".join(problems))
        if self.pods.count < 1 or self.edge.workers < 1:
            raise ValueError("at least one pod and one edge worker are needed")
        if not self.pods.zones:
            raise ValueError("pods.zones must name at least one zone")
        return self

    # Derived locations -------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'strongroom.db').resolve()}"

    @property
    def audit_key_path(self) -> Path:
        return self.audit.key_path or self.data_dir / "audit" / "log.key"

    @property
    def issuer(self) -> str:
        return self.auth.issuer or f"https://localhost:{self.edge.port}"

    def pod_zone(self, index: int) -> str:
        return self.pods.zones[index % len(self.pods.zones)]

    def edge_zone(self, index: int) -> str:
        zones = self.edge.zones or self.pods.zones
        return zones[index % len(zones)]


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Resolve defaults < TOML < environment < overrides.

    Child processes started by the supervisor load the frozen tree from
    ``STRONGROOM_SETTINGS_FILE`` instead, so they never re-resolve differently.
    """
    frozen = os.environ.get(SETTINGS_FILE_ENV_VAR)
    if frozen and config_file is None and not overrides:
        return Settings.model_validate_json(Path(frozen).read_text())
    if config_file is not None:
        os.environ[CONFIG_ENV_VAR] = str(config_file)
    return Settings(**overrides)


def dump_settings(settings: Settings) -> str:
    """Serialise including secrets: the file is written 0600 in the run dir."""
    data = settings.model_dump(mode="json")
    data["secrets"] = {
        name: secret.get_secret_value() for name, secret in settings.secrets if secret is not None
    }
    return json.dumps(data, indent=2, sort_keys=True)
