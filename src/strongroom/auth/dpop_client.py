"""The client side of DPoP (RFC 9449): a key pair, and a fresh proof for one request.

What ``rfc9449_dpop.verify_proof`` checks, this module makes: a JWS (RFC 7515 compact
serialization) with header ``typ: dpop+jwt``, ``alg`` (``ES256`` on P-256 or ``Ed25519``)
and the public ``jwk``, over the claims ``jti`` (new for every proof), ``htm``, ``htu``,
``iat``, and, when asked, ``nonce`` (§8, §9) and ``ath`` (§4.2, for a resource request
carrying an access token). Plain ``cryptography`` and base64url, as on the server side, so
the CLI needs no other JOSE library; pure apart from reading the clock and the random
source when ``now``/``jti`` are not given.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from strongroom.auth.keys import PrivateKey, b64url_encode, jwk_thumbprint, load_private_key
from strongroom.auth.rfc9449_dpop import (
    DPOP_TYP,
    HTU_CHARS_MAX,
    NONCE_CHARS_MAX,
    access_token_hash,
    normalize_htu,
)

DPOP_KEY_ALGS: tuple[str, ...] = ("ES256", "Ed25519")
# 128 random bits: a jti the server's replay cache never confuses with another (§11.1).
JTI_BYTES = 16
_P256_COORD_BYTES = 32
# HTTP methods are tokens (RFC 9110 §9.1) and compare case-sensitively on the server.
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}")


def generate_key(alg: str = "ES256") -> PrivateKey:
    """A new DPoP key pair for ``alg`` (``ES256``: EC P-256; ``Ed25519``)."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "Ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported DPoP alg {alg!r}; expected one of {list(DPOP_KEY_ALGS)}")


def key_pem(key: PrivateKey) -> bytes:
    """``key`` as unencrypted PKCS#8 PEM: the file holds it, its 0600 mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_key(pem: bytes) -> PrivateKey:
    """The key in ``pem``; ``ValueError`` for anything but an Ed25519 or P-256 private key."""
    try:
        return load_private_key(pem)
    # TypeError: an encrypted PEM and no password; UnsupportedAlgorithm: e.g. a DSA key.
    except (TypeError, ValueError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted Ed25519 or P-256 private key in PEM") from None


def key_alg(key: PrivateKey) -> str:
    """The proof ``alg`` the key signs with (RFC 7518 §3.4; RFC 9864 for Ed25519)."""
    return "Ed25519" if isinstance(key, ed25519.Ed25519PrivateKey) else "ES256"


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public JWK of the proof header: required members only (RFC 7638 §3.2), so no
    private member can ever slip in (§4.3 step 7 would refuse it)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(raw)}
    numbers = public.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url_encode(numbers.x.to_bytes(_P256_COORD_BYTES, "big")),
        "y": b64url_encode(numbers.y.to_bytes(_P256_COORD_BYTES, "big")),
    }


def thumbprint(key: PrivateKey) -> str:
    """RFC 7638 thumbprint of the key: the ``cnf.jkt`` a DPoP-bound token will carry."""
    return jwk_thumbprint(public_jwk(key))


def target_uri(url: str) -> str:
    """§4.2 ``htu``: the request URI without query and fragment.

    Raises ``ValueError`` unless ``url`` is an absolute http(s) URI the server can compare.
    """
    if len(url) > HTU_CHARS_MAX:
        raise ValueError(f"the URL is longer than {HTU_CHARS_MAX} characters")
    normalize_htu(url)  # the server's own rules: absolute http(s), no user info, valid port
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", "", ""))


def _sign(key: PrivateKey, signing_input: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(signing_input)
    # RFC 7518 §3.4: ES256 signatures are R || S, 32 bytes each, not DER.
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(_P256_COORD_BYTES, "big") + s.to_bytes(_P256_COORD_BYTES, "big")


def _segment(value: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def make_proof(
    key: PrivateKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
    jti: str | None = None,
) -> str:
    """A DPoP proof (§4.2) for one ``method url`` request, signed by ``key``.

    ``access_token``: on a resource request, binds the proof to it (``ath``). ``nonce``:
    the server's latest ``DPoP-Nonce`` (§8, §9). Each call makes a new ``jti`` unless one
    is given: the server accepts every proof once only. Raises ``ValueError`` for a method
    that is not an HTTP token, a URL the server could not match, or an empty nonce.
    """
    if _METHOD.fullmatch(method) is None:
        raise ValueError(f"not an HTTP method: {method!r}")
    if nonce is not None and not 0 < len(nonce) <= NONCE_CHARS_MAX:
        raise ValueError(f"a nonce has 1 to {NONCE_CHARS_MAX} characters")
    header = {"typ": DPOP_TYP, "alg": key_alg(key), "jwk": public_jwk(key)}
    claims: dict[str, Any] = {
        "jti": jti if jti is not None else secrets.token_urlsafe(JTI_BYTES),
        "htm": method,
        "htu": target_uri(url),
        "iat": int(time.time() if now is None else now),
    }
    if nonce is not None:
        claims["nonce"] = nonce
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    signature = _sign(key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"
