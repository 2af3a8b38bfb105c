"""Client authentication with a signed JWT: ``private_key_jwt`` (RFC 7523 §2.2, §3;
RFC 7521 §4.2; OpenID Connect Core 1.0 §9).

The client proves possession of a private key whose public half it registered (a JWK
set, stored on its ``ClientRecord``) by sending, instead of a secret::

    client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
    client_assertion=<compact JWS>

``verify_client_assertion`` is RFC 7523 §3's checklist, using ``cryptography`` directly
(as ``rfc9449_dpop`` does):

- only the asymmetric algorithms ``ES256`` and ``Ed25519`` (never ``none`` or HMAC: a
  shared key would turn the client's *public* JWK set into its secret);
- the key comes from the registered set only (``kid`` must match when the header has one;
  embedded ``jwk``/``jku``/``x5u`` headers are never used), and must fit the ``alg``;
- ``iss`` and ``sub`` both equal the ``client_id`` (§3 items 1-2);
- ``aud`` names this server: its issuer or its token endpoint URL (§3 item 3);
- ``exp`` is required, not passed, and at most ``lifetime_max_s`` ahead (§3 item 4: the
  replay cache must hold every ``jti`` until its ``exp``, so ``exp`` must be bounded);
  ``nbf`` and ``iat``, when present, not in the future (items 5-6), all with leeway;
- ``jti`` is required and single-use (item 7), recorded last through the same
  ``JtiReplayCache`` port DPoP uses, so an assertion that fails any other check burns
  nothing, and a replay is refused by every pod.

Errors are values: ``InvalidClientAssertion``, whose OAuth error code is always
``invalid_client`` (RFC 7521 §4.2.1) and whose ``reason`` names the failed check for logs
and security events (never for the client: RFC 6819 §5.1.4.2.2). Reasons:
``too_large``, ``malformed``, ``typ``, ``alg_not_allowed``, ``crit``, ``no_jwks``,
``unknown_kid``, ``no_key``, ``signature``, ``missing_claim``, ``invalid_claim``,
``iss_sub_mismatch``, ``client_mismatch``, ``aud``, ``expired``, ``exp_too_far``,
``not_yet_valid``, ``iat_in_future``, ``replayed``.

``parse_client_jwks`` validates a client's JWK set (RFC 7517 §5) at registration and at
use: public ``EC``/P-256 or ``OKP``/Ed25519 signing keys only; a set carrying private key
material is refused outright (``InvalidClientJwks``), because its owner has leaked it.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from strongroom.auth.keys import b64url_decode, b64url_encode
from strongroom.auth.rfc9449_dpop import JtiReplayCache

# RFC 7523 §2.2: the value of client_assertion_type for a JWT.
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RFC 8414 / OIDC Core §9 name of the method.
PRIVATE_KEY_JWT = "private_key_jwt"
# Asymmetric only. Names per RFC 7518 §3.4 and RFC 9864 (Ed25519, not the deprecated EdDSA).
ASSERTION_ALGS: tuple[str, ...] = ("Ed25519", "ES256")
INVALID_CLIENT = "invalid_client"

# An assertion is a header, six or seven short claims and a 64-byte signature (~500 bytes);
# 8 KiB is far above any honest one and bounds the work of a junk one.
ASSERTION_BYTES_MAX = 8192
# A JWK set is a few keys of ~200 bytes: bounds what registration stores and parses.
JWKS_BYTES_MAX = 16 * 1024
# Keys per client: enough for a rotation overlap (old, current, next) with room to spare;
# it also bounds the signature checks an assertion without ``kid`` can cost.
JWKS_KEYS_MAX = 8
# Memoised parsed key sets (one per registered client; ~1 KiB each), LRU-bounded.
JWKS_MEMO_MAX = 4096
JTI_CHARS_MAX = 256
# ``client_id`` is a 64-character column; ``aud`` a URL (or a short list of them).
CLIENT_ID_CHARS_MAX = 64
AUD_VALUES_MAX = 8
AUD_CHARS_MAX = 2048
KID_CHARS_MAX = 256
# Replay-cache keys are namespaced apart from DPoP's, and hashed to a fixed width (the
# shared ``dpop_jti`` column holds 64 characters) whatever the client sends.
REPLAY_KEY_PREFIX = "pkjwt:"

_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
# RFC 7515 §4.1.9: typ is a media type, case-insensitive, "application/" optional.
# Explicit typing (RFC 8725 §3.11) is optional for assertions; when present it must not
# name another kind of JWT (an access token or DPoP proof replayed as an assertion).
_ACCEPTED_TYP = frozenset({"jwt", "client-authentication+jwt"})
_P256_COORD_BYTES = 32
_ED25519_KEY_BYTES = 32
_ES256_SIGNATURE_BYTES = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# JWK members only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey


class InvalidClientAssertion(Exception):
    """The assertion does not authenticate the client (RFC 7521 §4.2.1: ``invalid_client``)."""

    error = INVALID_CLIENT

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidClientJwks(ValueError):
    """A JWK set that cannot be registered (or, stored, used); the message says why."""


@dataclass(frozen=True, slots=True)
class ClientPublicKey:
    """One registered verification key: its ``kid`` (if any), the one alg it fits, the key."""

    kid: str | None
    alg: str
    key: PublicKey


@dataclass(frozen=True, slots=True)
class VerifiedClientAssertion:
    """An accepted assertion: who it authenticated, its ``jti`` and ``exp``, the key used."""

    client_id: str
    jti: str
    exp: float
    kid: str | None


# --- JWK sets ------------------------------------------------------------------------------


def _public_key(jwk: Mapping[str, Any]) -> ClientPublicKey:
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise InvalidClientJwks("the key set holds private key material: register public keys only")
    kty, crv = jwk.get("kty"), jwk.get("crv")
    kid = jwk.get("kid")
    if kid is not None and not (isinstance(kid, str) and 0 < len(kid) <= KID_CHARS_MAX):
        raise InvalidClientJwks("a kid must be a non-empty string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise InvalidClientJwks('a key\'s "use", when given, must be "sig"')
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise InvalidClientJwks('a key\'s "key_ops", when given, must include "verify"')
    key: PublicKey
    if kty == "OKP" and crv == "Ed25519":
        alg = "Ed25519"
        key = ed25519.Ed25519PublicKey.from_public_bytes(
            _coordinate(jwk.get("x"), _ED25519_KEY_BYTES)
        )
    elif kty == "EC" and crv == "P-256":
        alg = "ES256"
        x = _coordinate(jwk.get("x"), _P256_COORD_BYTES)
        y = _coordinate(jwk.get("y"), _P256_COORD_BYTES)
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), ec.SECP256R1()
        )
        try:
            key = numbers.public_key()
        except ValueError:
            raise InvalidClientJwks("an EC key's point is not on the P-256 curve") from None
    else:
        raise InvalidClientJwks("only EC P-256 (ES256) and OKP Ed25519 keys are supported")
    declared = jwk.get("alg")
    if declared is not None and declared != alg:
        raise InvalidClientJwks(f"a {kty} {crv} key can only be used with {alg}, not {declared!r}")
    return ClientPublicKey(kid=kid, alg=alg, key=key)


def _coordinate(value: object, size: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidClientJwks("a key lacks its public coordinates")
    try:
        raw = b64url_decode(value)
    except (ValueError, binascii.Error):
        raise InvalidClientJwks("a key's coordinates are not base64url") from None
    if len(raw) != size or b64url_encode(raw) != value:
        raise InvalidClientJwks("a key's coordinates have the wrong length or encoding")
    return raw


@lru_cache(maxsize=JWKS_MEMO_MAX)
def parse_client_jwks(text: str) -> tuple[ClientPublicKey, ...]:
    """The verification keys of a client's JWK set (RFC 7517 §5); raises ``InvalidClientJwks``.

    Memoised by the exact text: the stored set changes only on re-registration, and
    parsing a P-256 key (an on-curve check) costs about as much as a signature check.
    """
    if len(text.encode("utf-8")) > JWKS_BYTES_MAX:
        raise InvalidClientJwks(f"the key set is larger than {JWKS_BYTES_MAX} bytes")
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidClientJwks("the key set is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidClientJwks('a JWK set is an object with a non-empty "keys" array')
    if len(keys) > JWKS_KEYS_MAX:
        raise InvalidClientJwks(f"at most {JWKS_KEYS_MAX} keys per client")
    if not all(isinstance(jwk, dict) for jwk in keys):
        raise InvalidClientJwks("every key must be a JSON object")
    parsed = tuple(_public_key(jwk) for jwk in keys)
    kids = [key.kid for key in parsed if key.kid is not None]
    if len(kids) != len(set(kids)):
        raise InvalidClientJwks("two keys share a kid")
    return parsed


def canonical_jwks(text: str) -> str:
    """The set to store: validated, compact, members sorted; raises ``InvalidClientJwks``."""
    parse_client_jwks(text)
    document = json.loads(text)
    return json.dumps({"keys": document["keys"]}, sort_keys=True, separators=(",", ":"))


# --- assertions ----------------------------------------------------------------------------


def _split(assertion: str) -> tuple[str, str, str]:
    if len(assertion) > ASSERTION_BYTES_MAX:
        raise InvalidClientAssertion("too_large")
    if _COMPACT_JWS.fullmatch(assertion) is None:
        raise InvalidClientAssertion("malformed")  # RFC 7515 §7.1; a JWE has five parts
    header_b64, payload_b64, signature_b64 = assertion.split(".")
    return header_b64, payload_b64, signature_b64


def _decode_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidClientAssertion("malformed") from None
    if not isinstance(value, dict):
        raise InvalidClientAssertion("malformed")
    return value


def _bounded_str(value: object, chars_max: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= chars_max


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def unverified_client_id(assertion: str) -> str:
    """The client an assertion claims to come from, to look its keys up (RFC 7523 §3).

    Nothing here is trusted yet: ``verify_client_assertion`` checks the same claims
    again under the signature. ``iss`` and ``sub`` must both be the client id (§3 items 1-2).
    """
    _, payload_b64, _ = _split(assertion)
    claims = _decode_object(payload_b64)
    iss, sub = claims.get("iss"), claims.get("sub")
    if iss is None or sub is None:
        raise InvalidClientAssertion("missing_claim")
    if not isinstance(sub, str) or not isinstance(iss, str):
        raise InvalidClientAssertion("invalid_claim")
    if not 0 < len(sub) <= CLIENT_ID_CHARS_MAX:
        raise InvalidClientAssertion("invalid_claim")
    if iss != sub:
        raise InvalidClientAssertion("iss_sub_mismatch")
    return sub


def replay_key(client_id: str, jti: str) -> str:
    """The replay-cache key of an assertion: namespaced apart from DPoP proofs, scoped by
    client (one client cannot spend another's ``jti``), and of fixed width (49 chars)."""
    digest = hashlib.sha256(f"{client_id}\x00{jti}".encode()).digest()
    return REPLAY_KEY_PREFIX + b64url_encode(digest)


def _check_header(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASSERTION_ALGS:
        raise InvalidClientAssertion("alg_not_allowed")  # "none", HS256, RS256, ...
    typ = header.get("typ")
    if typ is not None:
        if not isinstance(typ, str):
            raise InvalidClientAssertion("typ")
        media = typ.lower().removeprefix("application/")
        if media not in _ACCEPTED_TYP:
            raise InvalidClientAssertion("typ")
    if "crit" in header:
        raise InvalidClientAssertion("crit")  # RFC 7515 §4.1.11: we understand no extension
    return alg


def _candidate_keys(
    keys: tuple[ClientPublicKey, ...], alg: str, kid: object
) -> list[ClientPublicKey]:
    if kid is not None:
        if not _bounded_str(kid, KID_CHARS_MAX):
            raise InvalidClientAssertion("malformed")
        named = [key for key in keys if key.kid == kid]
        if not named:
            raise InvalidClientAssertion("unknown_kid")
        candidates = [key for key in named if key.alg == alg]
    else:
        candidates = [key for key in keys if key.alg == alg]
    if not candidates:
        raise InvalidClientAssertion("no_key")  # the kid's key is of another type than alg
    return candidates


def _signature_valid(key: PublicKey, signing_input: bytes, signature: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            # RFC 7518 §3.4: R || S, 32 bytes each; anything else is not an ES256 signature.
            if len(signature) != _ES256_SIGNATURE_BYTES:
                return False
            r = int.from_bytes(signature[:_P256_COORD_BYTES], "big")
            s = int.from_bytes(signature[_P256_COORD_BYTES:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def _check_audience(aud: object, audiences: Collection[str]) -> None:
    values: list[object] = aud if isinstance(aud, list) else [aud]
    if not values or len(values) > AUD_VALUES_MAX:
        raise InvalidClientAssertion("invalid_claim")
    if not all(_bounded_str(value, AUD_CHARS_MAX) for value in values):
        raise InvalidClientAssertion("invalid_claim")
    if not any(value in audiences for value in values):
        raise InvalidClientAssertion("aud")


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str,
    jwks: str | None,
    audiences: Collection[str],
    now: float,
    leeway_s: float,
    lifetime_max_s: float,
    replay_cache: JtiReplayCache,
) -> VerifiedClientAssertion:
    """Authenticate ``client_id`` by ``assertion`` as RFC 7523 §3 says, or raise
    ``InvalidClientAssertion``.

    ``jwks`` is the client's registered JWK set (``ClientRecord.jwks``; ``None`` means the
    client cannot use this method). ``audiences``: the values ``aud`` may hold — this
    server's issuer identifier and token endpoint URL (§3 item 3; OIDC Core §9). ``exp``
    may be at most ``lifetime_max_s`` (+ ``leeway_s``) after ``now``. Last, the ``jti`` is
    recorded in ``replay_cache`` until ``exp`` + ``leeway_s``; a second use is ``replayed``.
    Does I/O only through ``replay_cache``: call it from a worker thread.
    """
    header_b64, payload_b64, signature_b64 = _split(assertion)
    if jwks is None:
        raise InvalidClientAssertion("no_jwks")
    header = _decode_object(header_b64)
    alg = _check_header(header)
    try:
        keys = parse_client_jwks(jwks)
    except InvalidClientJwks:
        raise InvalidClientAssertion("no_jwks") from None
    candidates = _candidate_keys(keys, alg, header.get("kid"))
    try:
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        raise InvalidClientAssertion("malformed") from None
    if b64url_encode(signature) != signature_b64:
        # Non-zero padding bits decode to the same bytes: one signature, many spellings.
        raise InvalidClientAssertion("malformed")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    used = next(
        (key for key in candidates if _signature_valid(key.key, signing_input, signature)), None
    )
    if used is None:
        raise InvalidClientAssertion("signature")
    claims = _decode_object(payload_b64)
    # §3 items 1-2: issued by the client, about the client.
    for name in ("iss", "sub", "aud", "exp", "jti"):
        if name not in claims:
            raise InvalidClientAssertion("missing_claim")
    iss, sub, jti, exp = claims["iss"], claims["sub"], claims["jti"], claims["exp"]
    if not (isinstance(iss, str) and isinstance(sub, str)):
        raise InvalidClientAssertion("invalid_claim")
    if iss != sub:
        raise InvalidClientAssertion("iss_sub_mismatch")
    if sub != client_id:
        raise InvalidClientAssertion("client_mismatch")
    # §3 item 3: meant for this server.
    _check_audience(claims["aud"], audiences)
    # §3 item 4: unexpired, and not valid for longer than the replay cache remembers.
    if not _is_number(exp):
        raise InvalidClientAssertion("invalid_claim")
    if exp + leeway_s <= now:
        raise InvalidClientAssertion("expired")
    if exp > now + lifetime_max_s + leeway_s:
        raise InvalidClientAssertion("exp_too_far")
    # §3 items 5-6: not before its time.
    for name, reason in (("nbf", "not_yet_valid"), ("iat", "iat_in_future")):
        value = claims.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise InvalidClientAssertion("invalid_claim")
        if value > now + leeway_s:
            raise InvalidClientAssertion(reason)
    # §3 item 7: one use per assertion, on every pod; recorded only for a valid one.
    if not _bounded_str(jti, JTI_CHARS_MAX):
        raise InvalidClientAssertion("invalid_claim")
    if not replay_cache.first_use(replay_key(client_id, jti), float(exp) + leeway_s):
        raise InvalidClientAssertion("replayed")
    return VerifiedClientAssertion(client_id=client_id, jti=jti, exp=float(exp), kid=used.kid)


__all__ = [
    "ASSERTION_ALGS",
    "ASSERTION_BYTES_MAX",
    "CLIENT_ASSERTION_TYPE",
    "JWKS_KEYS_MAX",
    "PRIVATE_KEY_JWT",
    "ClientPublicKey",
    "InvalidClientAssertion",
    "InvalidClientJwks",
    "VerifiedClientAssertion",
    "canonical_jwks",
    "parse_client_jwks",
    "replay_key",
    "unverified_client_id",
    "verify_client_assertion",
]
