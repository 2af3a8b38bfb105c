"""JWT access tokens (RFC 9068): issuing them, and verifying them fast at every pod.

Issued tokens are JWS Compact Serialization (RFC 7515 §7.1) with the header
``{"alg", "kid", "typ": "at+jwt"}`` (RFC 9068 §2.1) and the claims of RFC 9068 §2.2
(``iss sub aud exp iat jti client_id scope``) plus ``tenant`` and, for DPoP-bound
tokens, ``cnf.jkt`` (RFC 9449 §6.1).

``AccessTokenVerifier`` does the checks of RFC 9068 §4 with ``cryptography`` directly
instead of a generic JOSE library: an allowlist of algorithms fixed per key (never
``none`` or HMAC, and the header's ``alg`` must equal the key's), ``typ``, ``crit``
refused, the key found by ``kid`` in a cached set of parsed public keys, the signature,
then ``iss``/``aud``/``exp``/``nbf``/``iat`` and the required claims. A parsed header is
memoised per distinct header segment (every token of one key shares it), so a verify
costs one signature check, one base64 and one JSON decode of the payload.

Signature checks dominate (Ed25519 ~140 µs, P-256 ~100 µs on the reference machine), and a
client reuses one token for its whole lifetime, so successful verifications are
remembered by exact token string (``cache_size`` entries, FIFO). A hit re-checks expiry
and that the very key object which verified the token is still in the key set, so it
accepts exactly the tokens a full verify would; it costs a dict probe.

Unknown ``kid``: the key set is refetched through the ``jwks`` callable at most once per
``refetch_cooldown_s``; a failing or empty fetch keeps the last good set. The callable
may do I/O (it is the caller's), so a refetch blocks that one verify.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from strongroom.auth.keys import SigningKey, b64url_decode, b64url_encode, load_private_key
from strongroom.auth.scopes import format_scope

ACCESS_TOKEN_TYP = "at+jwt"  # noqa: S105 - a media type, not a secret
# RFC 9068 §4: "at+jwt" or "application/at+jwt"; media types compare case-insensitively.
_ACCEPTED_TYPS = frozenset({"at+jwt", "application/at+jwt"})
ALLOWED_ALGS: frozenset[str] = frozenset({"Ed25519", "ES256"})

# Our tokens are ~600 bytes; an 8 KiB header line (EdgeLimits) bounds them anyway.
TOKEN_BYTES_MAX = 8192
# Three base64url segments; the signature may not be empty (that would be alg "none").
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_ES256_SIGNATURE_BYTES = 64
_P256_COORD_BYTES = 32
_ED25519_KEY_BYTES = 32
_JTI_BYTES = 16  # 128 bits: unguessable and collision-free for any realistic volume
# Distinct header segments remembered (one per key and typ spelling in practice); when
# full the memo is cleared, so junk headers cannot grow it.
_HEADER_MEMO_MAX = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# Tokens remembered after a full verify: ~1 KiB each, so 10,000 is ~10 MiB per pod, and
# covers 10,000 clients each reusing a token (AuthSettings.verified_token_cache_size).
DEFAULT_TOKEN_CACHE_SIZE = 10_000

# RFC 9068 §2.2 required claims, plus our tenant and scope.
REQUIRED_CLAIMS: tuple[str, ...] = (
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "jti",
    "client_id",
    "tenant",
    "scope",
)


class InvalidToken(Exception):
    """The token is not acceptable; ``reason`` (also ``str(exc)``) says which check failed.

    Reasons: ``malformed``, ``alg_not_allowed``, ``typ``, ``crit``, ``unknown_kid``,
    ``signature``, ``missing_claim``, ``invalid_claim``, ``iss``, ``aud``, ``expired``,
    ``not_yet_valid``, ``iat_in_future``. They go to logs and security events, never to
    the client (RFC 6750 §3.1 ``invalid_token`` is all it gets).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AccessTokenClaims:
    iss: str
    sub: str
    aud: str | tuple[str, ...]
    exp: int
    iat: int
    jti: str
    client_id: str
    scope: frozenset[str]
    tenant: str
    cnf_jkt: str | None
    auth_time: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JWT claims set (RFC 7519 §4) these values come from / go into."""
        claims: dict[str, Any] = {
            "iss": self.iss,
            "sub": self.sub,
            "aud": self.aud if isinstance(self.aud, str) else list(self.aud),
            "exp": self.exp,
            "iat": self.iat,
            "jti": self.jti,
            "client_id": self.client_id,
            "scope": format_scope(self.scope),
            "tenant": self.tenant,
        }
        if self.cnf_jkt is not None:
            claims["cnf"] = {"jkt": self.cnf_jkt}
        if self.auth_time is not None:
            claims["auth_time"] = self.auth_time
        return claims


def _json_segment(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _sign(key: SigningKey, signing_input: bytes) -> bytes:
    private = load_private_key(key.private_pem)
    if key.alg == "Ed25519" and isinstance(private, ed25519.Ed25519PrivateKey):
        return private.sign(signing_input)
    if key.alg == "ES256" and isinstance(private, ec.EllipticCurvePrivateKey):
        # RFC 7518 §3.4: the JWS signature is R || S, each 32 bytes big-endian, not DER.
        r, s = decode_dss_signature(private.sign(signing_input, _ECDSA_SHA256))
        return r.to_bytes(_P256_COORD_BYTES, "big") + s.to_bytes(_P256_COORD_BYTES, "big")
    raise ValueError(f"key {key.kid} holds no {key.alg} private key")


def issue_access_token(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str,
    client_id: str,
    tenant: str,
    scope: Iterable[str],
    lifetime_s: int,
    now: float,
    jti: str | None = None,
    cnf_jkt: str | None = None,
) -> tuple[str, AccessTokenClaims]:
    """A signed RFC 9068 access token and its claims; ``iat`` is ``now`` floored."""
    if key.alg not in ALLOWED_ALGS:
        raise ValueError(f"unsupported signing alg {key.alg!r}")
    if key.state == "retired":
        raise ValueError(f"key {key.kid} is retired and must not sign")
    if lifetime_s <= 0:
        raise ValueError("lifetime_s must be positive")
    iat = int(now)
    claims = AccessTokenClaims(
        iss=issuer,
        sub=subject,
        aud=audience,
        exp=iat + int(lifetime_s),
        iat=iat,
        jti=jti if jti is not None else secrets.token_urlsafe(_JTI_BYTES),
        client_id=client_id,
        scope=frozenset(scope),
        tenant=tenant,
        cnf_jkt=cnf_jkt,
    )
    header = {"alg": key.alg, "kid": key.kid, "typ": ACCESS_TOKEN_TYP}
    signing_input = f"{_json_segment(header)}.{_json_segment(claims.as_dict())}"
    signature = _sign(key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}", claims


# --- verification ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _PublicKey:
    kid: str
    alg: str
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


def _parse_public_jwk(jwk: Mapping[str, Any]) -> tuple[str, _PublicKey] | None:
    """``(kid, key)`` of one JWK we can use for verification, else ``None`` (skipped).

    The JWK must name its ``alg`` (one of ``ALLOWED_ALGS``) and match it: OKP/Ed25519
    (RFC 8037 §2) for ``Ed25519``, EC/P-256 (RFC 7518 §6.2.1) for ``ES256``.
    """
    kid, alg, kty = jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    if not isinstance(kid, str) or not kid or alg not in ALLOWED_ALGS:
        return None
    if jwk.get("use", "sig") != "sig":
        return None
    try:
        if alg == "Ed25519" and kty == "OKP" and jwk.get("crv") == "Ed25519":
            raw = b64url_decode(str(jwk["x"]))
            if len(raw) != _ED25519_KEY_BYTES:
                return None
            return kid, _PublicKey(kid, "Ed25519", ed25519.Ed25519PublicKey.from_public_bytes(raw))
        if alg == "ES256" and kty == "EC" and jwk.get("crv") == "P-256":
            x, y = b64url_decode(str(jwk["x"])), b64url_decode(str(jwk["y"]))
            if len(x) != _P256_COORD_BYTES or len(y) != _P256_COORD_BYTES:
                return None
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
            )
            return kid, _PublicKey(kid, "ES256", numbers.public_key())  # checks the point
    except (KeyError, ValueError, binascii.Error):
        return None
    return None


def parse_jwks(jwks: Mapping[str, Any]) -> dict[str, _PublicKey]:
    """Usable verification keys of a JWK Set (RFC 7517 §5) by kid; others are skipped."""
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return {}
    parsed: dict[str, _PublicKey] = {}
    for jwk in keys:
        if isinstance(jwk, Mapping):
            entry = _parse_public_jwk(jwk)
            if entry is not None:
                parsed.setdefault(entry[0], entry[1])  # a duplicate kid cannot replace a key
    return parsed


def _decode_json_segment(segment: str) -> Any:
    try:
        return json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidToken("malformed") from None


@lru_cache(maxsize=1024)
def _scope_set(value: str) -> frozenset[str]:
    return frozenset(value.split())


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class AccessTokenVerifier:
    """Verifies access tokens against the published key set; thread-safe."""

    __slots__ = (
        "_audience",
        "_cache_lock",
        "_cache_size",
        "_clock",
        "_fetch_lock",
        "_headers",
        "_issuer",
        "_jwks",
        "_keys",
        "_last_fetch",
        "_leeway_s",
        "_refetch_cooldown_s",
        "_verified",
    )

    def __init__(
        self,
        issuer: str,
        audience: str,
        leeway_s: float,
        jwks: Callable[[], Mapping[str, Any]],
        refetch_cooldown_s: float,
        *,
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_TOKEN_CACHE_SIZE,
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._jwks = jwks
        self._refetch_cooldown_s = refetch_cooldown_s
        self._clock = clock
        self._keys: dict[str, _PublicKey] = {}
        self._last_fetch: float | None = None
        self._fetch_lock = threading.Lock()
        # header segment -> (kid, alg) of a header that passed every header check
        self._headers: dict[str, tuple[str, str]] = {}
        # token -> (claims, the key that verified it); 0 disables
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()
        self._verified: dict[str, tuple[AccessTokenClaims, _PublicKey]] = {}

    # key set ------------------------------------------------------------------------
    @property
    def kids(self) -> frozenset[str]:
        """The key ids currently trusted."""
        return frozenset(self._keys)

    def refresh(self) -> bool:
        """Fetch the key set now (ignoring the cooldown); ``True`` if it was usable.

        A fetch that raises or yields no usable key keeps the last good set.
        """
        with self._fetch_lock:
            return self._fetch_locked()

    def _fetch_locked(self) -> bool:
        self._last_fetch = self._clock()
        try:
            parsed = parse_jwks(self._jwks())
        except Exception:  # the callable is the caller's I/O: any failure keeps the old set
            return False
        if not parsed:
            return False
        self._keys = parsed
        return True

    def _key_for(self, kid: str) -> _PublicKey:
        key = self._keys.get(kid)
        if key is not None:
            return key
        with self._fetch_lock:
            key = self._keys.get(kid)  # another thread may just have fetched it
            if key is None:
                last = self._last_fetch
                if last is None or self._clock() - last >= self._refetch_cooldown_s:
                    self._fetch_locked()
                    key = self._keys.get(kid)
        if key is None:
            raise InvalidToken("unknown_kid")
        return key

    # verification -------------------------------------------------------------------
    def _header(self, segment: str) -> tuple[str, str]:
        memo = self._headers.get(segment)
        if memo is not None:
            return memo
        header = _decode_json_segment(segment)
        if not isinstance(header, dict):
            raise InvalidToken("malformed")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
            raise InvalidToken("alg_not_allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPS:
            raise InvalidToken("typ")
        if "crit" in header:
            # RFC 7515 §4.1.11: we understand no extension, so any crit is refused.
            raise InvalidToken("crit")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("unknown_kid")
        if len(self._headers) >= _HEADER_MEMO_MAX:
            self._headers.clear()
        self._headers[segment] = (kid, alg)
        return kid, alg

    def verify(self, token: str) -> AccessTokenClaims:
        """The claims of a valid token; raises ``InvalidToken`` otherwise."""
        hit = self._verified.get(token)
        if hit is not None:
            claims, key = hit
            if self._keys.get(key.kid) is key:
                if self._clock() >= claims.exp + self._leeway_s:
                    self._verified.pop(token, None)
                    raise InvalidToken("expired")
                return claims
            self._verified.pop(token, None)  # its key left the set: verify afresh
        claims, key = self._verify_fully(token)
        if self._cache_size > 0:
            self._remember(token, claims, key)
        return claims

    def _remember(self, token: str, claims: AccessTokenClaims, key: _PublicKey) -> None:
        with self._cache_lock:
            verified = self._verified
            while len(verified) >= self._cache_size:
                del verified[next(iter(verified))]  # oldest first (insertion order)
            verified[token] = (claims, key)

    def clear_cache(self) -> None:
        """Forget remembered verifications (tests and benchmarks; never needed for safety)."""
        with self._cache_lock:
            self._verified.clear()

    def _verify_fully(self, token: str) -> tuple[AccessTokenClaims, _PublicKey]:
        if len(token) > TOKEN_BYTES_MAX or _COMPACT_JWS.fullmatch(token) is None:
            raise InvalidToken("malformed")
        signing_input, _, signature_segment = token.rpartition(".")
        header_segment, _, payload_segment = signing_input.partition(".")
        kid, alg = self._header(header_segment)
        key = self._key_for(kid)
        if key.alg != alg:
            # The key decides the algorithm, never the token (RFC 8725 §3.1).
            raise InvalidToken("alg_not_allowed")
        try:
            signature = b64url_decode(signature_segment)
        except (ValueError, binascii.Error):
            raise InvalidToken("malformed") from None
        data = signing_input.encode("ascii")
        try:
            if isinstance(key.key, ed25519.Ed25519PublicKey):
                key.key.verify(signature, data)
            else:
                if len(signature) != _ES256_SIGNATURE_BYTES:
                    raise InvalidToken("signature")
                der = encode_dss_signature(
                    int.from_bytes(signature[:_P256_COORD_BYTES], "big"),
                    int.from_bytes(signature[_P256_COORD_BYTES:], "big"),
                )
                key.key.verify(der, data, _ECDSA_SHA256)
        except InvalidSignature:
            raise InvalidToken("signature") from None
        payload = _decode_json_segment(payload_segment)
        if not isinstance(payload, dict):
            raise InvalidToken("malformed")
        return self._claims(payload), key

    def _claims(self, payload: dict[str, Any]) -> AccessTokenClaims:
        for name in REQUIRED_CLAIMS:
            if name not in payload:
                raise InvalidToken("missing_claim")
        iss, sub, aud = payload["iss"], payload["sub"], payload["aud"]
        exp, iat, nbf = payload["exp"], payload["iat"], payload.get("nbf")
        jti, client_id = payload["jti"], payload["client_id"]
        tenant, scope = payload["tenant"], payload["scope"]
        if not (
            isinstance(iss, str)
            and isinstance(sub, str)
            and isinstance(jti, str)
            and jti
            and isinstance(client_id, str)
            and isinstance(tenant, str)
            and isinstance(scope, str)
            and _is_number(exp)
            and _is_number(iat)
            and (nbf is None or _is_number(nbf))
        ):
            raise InvalidToken("invalid_claim")
        if iss != self._issuer:
            raise InvalidToken("iss")
        if isinstance(aud, str):
            if aud != self._audience:
                raise InvalidToken("aud")
            audience: str | tuple[str, ...] = aud
        elif isinstance(aud, list) and all(isinstance(a, str) for a in aud):
            if self._audience not in aud:
                raise InvalidToken("aud")
            audience = tuple(aud)
        else:
            raise InvalidToken("invalid_claim")
        now = self._clock()
        leeway = self._leeway_s
        if now >= exp + leeway:  # RFC 7519 §4.1.4: now must be before exp
            raise InvalidToken("expired")
        if nbf is not None and now < nbf - leeway:  # RFC 7519 §4.1.5
            raise InvalidToken("not_yet_valid")
        if iat > now + leeway:  # issued in the future: a forged or skewed issuer
            raise InvalidToken("iat_in_future")
        cnf = payload.get("cnf")
        cnf_jkt: str | None = None
        if cnf is not None:
            jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
            if not isinstance(jkt, str) or not jkt:
                raise InvalidToken("invalid_claim")
            cnf_jkt = jkt
        auth_time = payload.get("auth_time")
        if auth_time is not None and not _is_number(auth_time):
            raise InvalidToken("invalid_claim")
        return AccessTokenClaims(
            iss=iss,
            sub=sub,
            aud=audience,
            exp=int(exp),
            iat=int(iat),
            jti=jti,
            client_id=client_id,
            scope=_scope_set(scope),
            tenant=tenant,
            cnf_jkt=cnf_jkt,
            auth_time=None if auth_time is None else int(auth_time),
        )
