"""DPoP proofs (RFC 9449): validating them, binding tokens to their key, server nonces.

A DPoP proof is a JWS (RFC 7515 compact serialization) the client signs for one HTTP
request with a key it holds; the public key travels in the proof's ``jwk`` header. The
authorization server binds the access token to that key's RFC 7638 thumbprint
(``cnf.jkt``, §6.1) and the resource server accepts the token only with a fresh proof
signed by the same key (§7).

``verify_proof`` is the checklist of §4.3, in the order the RFC gives it, using
``cryptography`` directly (the same approach as ``rfc9068_access_token``): only the
asymmetric algorithms ``ES256`` and ``Ed25519`` (never ``none`` or HMAC: a shared key
proves no possession), the header's ``alg`` must fit the ``jwk``'s key type, and the
``jwk`` must hold a public key only. The proof's ``jti`` is recorded last, through the
``JtiReplayCache`` port, so a proof that fails any other check burns nothing.

Nonces (§8, §9) are stateless: ``DpopNonces`` derives each from an HMAC of the current
time step under a key every pod derives from the same secret, so any pod accepts a
nonce any other pod issued, with no shared state. The current and previous step are
accepted.

Errors are values: ``InvalidDpopProof`` (error code ``invalid_dpop_proof``) and
``UseDpopNonce`` (``use_dpop_nonce``: retry with the nonce the server sends in the
``DPoP-Nonce`` header). Their ``reason`` names the failed check for logs and security
events; clients see only the code and a fixed description.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from strongroom.auth.keys import b64url_decode, b64url_encode, jwk_thumbprint

DPOP_TYP = "dpop+jwt"
# §4.2: asymmetric algorithms only. Names per RFC 7518 §3.4 and RFC 9864 (Ed25519).
DPOP_ALGS: frozenset[str] = frozenset({"ES256", "Ed25519"})
INVALID_DPOP_PROOF = "invalid_dpop_proof"
USE_DPOP_NONCE = "use_dpop_nonce"

# A proof is a few hundred bytes (header with a P-256 jwk, six short claims, a 64-byte
# signature); 4 KiB is far above any honest proof and bounds the work of a junk one.
PROOF_BYTES_MAX = 4096
# jti/nonce are short random strings; bounding them bounds what we hash and compare.
JTI_CHARS_MAX = 256
NONCE_CHARS_MAX = 256
HTU_CHARS_MAX = 2048
# Distinct proof headers (one per client key) whose parsed key is remembered: ~1 KiB
# each, and LRU, so a flood of junk keys only evicts, never grows the memo.
HEADER_MEMO_MAX = 4096
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
_P256_COORD_BYTES = 32
_ED25519_KEY_BYTES = 32
_ES256_SIGNATURE_BYTES = 64
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())
# JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4;
# RFC 8037 §2): their presence means the client leaked its key, or sent the wrong one.
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# HTTP methods are tokens (RFC 9110 §9.1); they compare case-sensitively.
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
# Nonces: HKDF info (RFC 5869) separating this use of the secret from every other, and
# the truncated HMAC length (128 bits: unguessable, and short on the wire).
_NONCE_HKDF_INFO = b"strongroom/dpop-nonce/v1"
_NONCE_MAC_BYTES = 16


class DpopError(Exception):
    """Base class: the proof is not acceptable; ``reason`` names the failed check."""

    error = INVALID_DPOP_PROOF

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidDpopProof(DpopError):
    """§4.3 failed (``invalid_dpop_proof``).

    Reasons: ``malformed``, ``too_large``, ``typ``, ``alg_not_allowed``, ``jwk``,
    ``jwk_private``, ``crit``, ``signature``, ``missing_claim``, ``invalid_claim``,
    ``htm``, ``htu``, ``iat_too_old``, ``iat_in_future``, ``ath``, ``key_mismatch``,
    ``replayed``.
    """


class UseDpopNonce(DpopError):
    """§8/§9: the proof lacks a nonce or carries one no longer accepted (``use_dpop_nonce``).

    Reasons: ``nonce_missing``, ``nonce_stale``.
    """

    error = USE_DPOP_NONCE


class JtiReplayCache(Protocol):
    """Remembers proof identifiers already seen, shared by every pod (§11.1)."""

    def first_use(self, jti: str, expires_at: float) -> bool:
        """``True`` the first time ``jti`` is presented; ``False`` for every later time.

        ``expires_at`` (epoch seconds) is when the entry may be forgotten: the proof is
        outside the acceptance window by then, so no replay of it can succeed anyway.
        Implementations must be atomic across pods (one winner per ``jti``).
        """
        ...


@dataclass(frozen=True, slots=True)
class DpopProof:
    """A verified proof: the key's thumbprint (``jkt``, §6.1) and the claims it signed."""

    jkt: str
    jti: str
    htm: str
    htu: str
    iat: int
    nonce: str | None
    ath: str | None


# --- helpers ----------------------------------------------------------------------------


def access_token_hash(access_token: str) -> str:
    """§4.2 ``ath``: base64url of the SHA-256 of the access token's ASCII bytes."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii")).digest())


def replay_key(jkt: str, jti: str) -> str:
    """The replay-cache key of a proof: fixed width, and scoped by the signing key so
    one client can never spend another's ``jti`` (§11.1)."""
    return b64url_encode(hashlib.sha256(f"{jkt}.{jti}".encode()).digest())


def _normalize_path(path: str) -> str:
    """RFC 3986 §6.2.2: upper-case percent-encodings, decode unreserved ones, drop dot
    segments (§5.2.4); an empty path is "/" (§6.2.3)."""

    def fix(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else f"%{match.group(1).upper()}"

    path = _PCT.sub(fix, path)
    output: list[str] = []
    for segment in path.split("/")[1:] if path.startswith("/") else path.split("/"):
        if segment == ".":
            continue
        if segment == "..":
            if output:
                output.pop()
            continue
        output.append(segment)
    normalized = "/" + "/".join(output)
    if path.endswith(("/.", "/..")):
        normalized += "/" if not normalized.endswith("/") else ""
    return normalized


def normalize_htu(url: str) -> str:
    """The form in which ``htu`` values compare (§4.3 step 9; RFC 3986 §6.2.2 and §6.2.3).

    Scheme and host lower-cased, the scheme's default port dropped, the path normalised,
    query and fragment ignored. Raises ``ValueError`` for anything but an absolute
    http(s) URI without user information.
    """
    if len(url) > HTU_CHARS_MAX or any(c.isspace() or ord(c) < 0x21 for c in url):
        raise ValueError("not a URI")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc or "@" in parts.netloc:
        raise ValueError("htu must be an absolute http(s) URI without user information")
    host = parts.hostname
    if not host:
        raise ValueError("htu has no host")
    port = parts.port  # raises ValueError for a non-numeric or out-of-range port
    if ":" in host:
        host = f"[{host}]"
    authority = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    return f"{scheme}://{authority}{_normalize_path(parts.path)}"


def _public_key(
    jwk: Mapping[str, Any], alg: str
) -> tuple[ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey, str]:
    """The public key of a proof's ``jwk`` header and its RFC 7638 thumbprint.

    The key type must be the one ``alg`` needs: EC P-256 for ``ES256`` (RFC 7518 §6.2.1),
    OKP Ed25519 for ``Ed25519`` (RFC 8037 §2).
    """
    if _PRIVATE_JWK_MEMBERS & jwk.keys():
        raise InvalidDpopProof("jwk_private")  # §4.3 step 7
    kty, crv = jwk.get("kty"), jwk.get("crv")
    try:
        if alg == "Ed25519" and kty == "OKP" and crv == "Ed25519":
            x = jwk.get("x")
            if not isinstance(x, str):
                raise InvalidDpopProof("jwk")
            raw = b64url_decode(x)
            if len(raw) != _ED25519_KEY_BYTES:
                raise InvalidDpopProof("jwk")
            key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey = (
                ed25519.Ed25519PublicKey.from_public_bytes(raw)
            )
            return key, jwk_thumbprint({"crv": crv, "kty": kty, "x": x})
        if alg == "ES256" and kty == "EC" and crv == "P-256":
            x, y = jwk.get("x"), jwk.get("y")
            if not isinstance(x, str) or not isinstance(y, str):
                raise InvalidDpopProof("jwk")
            xb, yb = b64url_decode(x), b64url_decode(y)
            if len(xb) != _P256_COORD_BYTES or len(yb) != _P256_COORD_BYTES:
                raise InvalidDpopProof("jwk")
            numbers = ec.EllipticCurvePublicNumbers(
                int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()
            )
            key = numbers.public_key()  # refuses a point not on the curve
            return key, jwk_thumbprint({"crv": crv, "kty": kty, "x": x, "y": y})
    except (ValueError, binascii.Error):
        raise InvalidDpopProof("jwk") from None
    raise InvalidDpopProof("jwk")


def _check_signature(
    key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey,
    signing_input: bytes,
    signature: bytes,
) -> None:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
            return
        # RFC 7518 §3.4: R || S, 32 bytes each; anything else is not an ES256 signature.
        if len(signature) != _ES256_SIGNATURE_BYTES:
            raise InvalidDpopProof("signature")
        r = int.from_bytes(signature[:_P256_COORD_BYTES], "big")
        s = int.from_bytes(signature[_P256_COORD_BYTES:], "big")
        key.verify(encode_dss_signature(r, s), signing_input, _ECDSA_SHA256)
    except InvalidSignature:
        raise InvalidDpopProof("signature") from None


@lru_cache(maxsize=HEADER_MEMO_MAX)
def _checked_header(
    header_b64: str,
) -> tuple[ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey, str]:
    """The key and thumbprint of a proof header that passes §4.3 steps 3-7.

    Memoised by the exact header segment: a client signs every proof with one key, so
    its header never changes, and parsing the key (an on-curve check for P-256) and
    hashing the thumbprint cost about as much as the signature check itself. Refused
    headers raise and are not remembered.
    """
    header = _decode_segment(header_b64)
    if not isinstance(header, dict):
        raise InvalidDpopProof("malformed")
    if header.get("typ") != DPOP_TYP:
        raise InvalidDpopProof("typ")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in DPOP_ALGS:
        raise InvalidDpopProof("alg_not_allowed")
    if "crit" in header:
        raise InvalidDpopProof("crit")  # RFC 7515 §4.1.11: we understand no extension
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise InvalidDpopProof("jwk")
    return _public_key(jwk, alg)


def _decode_segment(segment: str) -> Any:
    try:
        return json.loads(b64url_decode(segment))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidDpopProof("malformed") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _bounded_str(value: object, chars_max: int) -> bool:
    return isinstance(value, str) and 0 < len(value) <= chars_max


# --- nonces ------------------------------------------------------------------------------


def derive_nonce_key(secret: str) -> bytes:
    """The HMAC key of ``DpopNonces``, derived (HKDF-SHA256, RFC 5869) from a secret every
    pod shares, so every pod issues and accepts the same nonces."""
    if not secret:
        raise ValueError("an empty secret cannot key DPoP nonces")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_NONCE_HKDF_INFO)
    return hkdf.derive(secret.encode("utf-8"))


class DpopNonces:
    """Stateless server nonces (§8 for the authorization server, §9 for resource servers).

    A nonce is base64url(HMAC-SHA256(key, step)[:16]) where ``step = floor(now / step_s)``;
    nonces of the current and previous step are accepted, so one lives between ``step_s``
    and ``2 * step_s``. Unpredictable without the key, so a client cannot make proofs for
    the future (§11.2).
    """

    __slots__ = ("_key", "_step_s")

    def __init__(self, key: bytes, step_s: float) -> None:
        if len(key) < 16:
            raise ValueError("the nonce key must have at least 128 bits")
        if step_s <= 0:
            raise ValueError("step_s must be positive")
        self._key = key
        self._step_s = step_s

    def _for_step(self, step: int) -> str:
        mac = hmac.new(self._key, b"dpop-nonce:%d" % step, hashlib.sha256).digest()
        return b64url_encode(mac[:_NONCE_MAC_BYTES])

    def _step(self, now: float) -> int:
        return math.floor(now / self._step_s)

    def current(self, now: float) -> str:
        """The nonce to hand out now (the ``DPoP-Nonce`` header value)."""
        return self._for_step(self._step(now))

    def is_valid(self, nonce: str, now: float) -> bool:
        """Whether ``nonce`` is the current or the previous step's nonce (constant time)."""
        step = self._step(now)
        presented = nonce.encode("ascii", "replace")
        current = hmac.compare_digest(presented, self._for_step(step).encode("ascii"))
        previous = hmac.compare_digest(presented, self._for_step(step - 1).encode("ascii"))
        return current | previous


# --- verification -------------------------------------------------------------------------


def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    now: float,
    window_s: float,
    leeway_s: float,
    replay_cache: JtiReplayCache,
    nonces: DpopNonces | None = None,
    access_token: str | None = None,
    expected_jkt: str | None = None,
) -> DpopProof:
    """Check a DPoP proof for the request ``method url`` as RFC 9449 §4.3 says.

    ``nonces``: when given, the proof must carry a nonce it accepts (§8, §9), else
    ``UseDpopNonce``. ``access_token``: on a resource request, the proof must carry its
    ``ath`` (§4.3 step 12). ``expected_jkt``: the token's ``cnf.jkt``; the proof must be
    signed by that key (§4.3 step 13). ``iat`` must lie within
    ``[now - window_s, now + leeway_s]`` (step 11). Last, the ``jti`` is recorded in
    ``replay_cache`` until the proof's window closes; a second use is ``replayed``.
    """
    # Step 2: a well-formed JWS in compact serialization.
    if len(proof) > PROOF_BYTES_MAX:
        raise InvalidDpopProof("too_large")
    if _COMPACT_JWS.fullmatch(proof) is None:
        raise InvalidDpopProof("malformed")
    header_b64, payload_b64, signature_b64 = proof.split(".")
    # Steps 3-7: typ, an allowed asymmetric alg, a public-only jwk that fits it.
    key, jkt = _checked_header(header_b64)
    try:
        signature = b64url_decode(signature_b64)
    except (ValueError, binascii.Error):
        raise InvalidDpopProof("malformed") from None
    if b64url_encode(signature) != signature_b64:
        # Non-zero padding bits decode to the same bytes: one signature, many spellings.
        raise InvalidDpopProof("malformed")
    _check_signature(key, f"{header_b64}.{payload_b64}".encode("ascii"), signature)
    claims = _decode_segment(payload_b64)
    if not isinstance(claims, dict):
        raise InvalidDpopProof("malformed")
    # Step 3 (claims): jti, htm, htu, iat present and well-typed.
    for name in ("jti", "htm", "htu", "iat"):
        if name not in claims:
            raise InvalidDpopProof("missing_claim")
    jti, htm, htu, iat = claims["jti"], claims["htm"], claims["htu"], claims["iat"]
    if not (
        _bounded_str(jti, JTI_CHARS_MAX)
        and _bounded_str(htm, 32)
        and _bounded_str(htu, HTU_CHARS_MAX)
        and _is_number(iat)
    ):
        raise InvalidDpopProof("invalid_claim")
    # Step 8: htm matches the method (case-sensitive, RFC 9110 §9.1).
    if htm != method or _METHOD.fullmatch(htm) is None:
        raise InvalidDpopProof("htm")
    # Step 9: htu matches the request URI, ignoring query and fragment.
    try:
        if normalize_htu(htu) != normalize_htu(url):
            raise InvalidDpopProof("htu")
    except ValueError:
        raise InvalidDpopProof("htu") from None
    # Step 11: created recently.
    if iat < now - window_s:
        raise InvalidDpopProof("iat_too_old")
    if iat > now + leeway_s:
        raise InvalidDpopProof("iat_in_future")
    # Step 10: the server's nonce, when it demands one.
    nonce = claims.get("nonce")
    if nonce is not None and not _bounded_str(nonce, NONCE_CHARS_MAX):
        raise InvalidDpopProof("invalid_claim")
    if nonces is not None:
        if nonce is None:
            raise UseDpopNonce("nonce_missing")
        if not nonces.is_valid(nonce, now):
            raise UseDpopNonce("nonce_stale")
    # Step 12: bound to the presented access token.
    ath = claims.get("ath")
    if ath is not None and not _bounded_str(ath, 128):
        raise InvalidDpopProof("invalid_claim")
    if access_token is not None:
        if ath is None:
            raise InvalidDpopProof("missing_claim")
        if not hmac.compare_digest(ath.encode("ascii", "replace"), _ath_bytes(access_token)):
            raise InvalidDpopProof("ath")
    # Step 13: signed by the key the token is bound to.
    if expected_jkt is not None and not hmac.compare_digest(
        jkt.encode("ascii"), expected_jkt.encode("utf-8")
    ):
        raise InvalidDpopProof("key_mismatch")
    # §11.1: one use per proof, across every pod; recorded only for an otherwise valid proof.
    if not replay_cache.first_use(replay_key(jkt, jti), float(iat) + window_s + leeway_s):
        raise InvalidDpopProof("replayed")
    return DpopProof(jkt=jkt, jti=jti, htm=htm, htu=htu, iat=int(iat), nonce=nonce, ath=ath)


def _ath_bytes(access_token: str) -> bytes:
    try:
        return access_token_hash(access_token).encode("ascii")
    except UnicodeEncodeError:
        raise InvalidDpopProof("ath") from None
