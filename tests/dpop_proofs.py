"""Client side of DPoP (RFC 9449 §4.2) for tests: keys and proofs made with joserfc.

Independent of the server's own code (``strongroom.auth.rfc9449_dpop``) on purpose: the
proofs come from another JOSE implementation, so the tests check interoperability, not
one module against itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Generator
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwk, jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class DpopKey:
    """A client's DPoP key pair (``ES256`` on P-256 or ``Ed25519``)."""

    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        self.key: jwk.ECKey | jwk.OKPKey = (
            jwk.ECKey.generate_key("P-256")
            if alg == "ES256"
            else jwk.OKPKey.generate_key("Ed25519")
        )

    @property
    def public_jwk(self) -> dict[str, Any]:
        return dict(self.key.as_dict(private=False))

    @property
    def jkt(self) -> str:
        """RFC 7638 thumbprint, as joserfc computes it."""
        return str(self.key.thumbprint())

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        access_token: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
    ) -> str:
        """A proof for ``method url``; ``header``/``claims`` override or add members,
        ``drop`` removes claims. Proofs with a changed header are signed with
        ``cryptography`` directly, since joserfc refuses to write malformed headers."""
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.public_jwk}
        head.update(header or {})
        body: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
        }
        if nonce is not None:
            body["nonce"] = nonce
        if access_token is not None:
            body["ath"] = b64url(hashlib.sha256(access_token.encode("ascii")).digest())
        body.update(claims or {})
        for name in drop:
            body.pop(name, None)
        if header:
            return self.sign_raw(head, body)
        return jwt.encode(head, body, self.key, algorithms=[self.alg])

    def sign_raw(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        """Sign any header and claims with this key, whatever they say."""
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        private = self.key.private_key
        if isinstance(private, ed25519.Ed25519PrivateKey):
            signature = private.sign(signing_input.encode())
        else:
            assert isinstance(private, ec.EllipticCurvePrivateKey)
            r, s = decode_dss_signature(
                private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
            )
            signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{b64url(signature)}"


class Dpop(httpx.Auth):
    """A DPoP proof (RFC 9449 §7) on every request, following the server's nonces."""

    requires_response_body = True

    def __init__(self, issuer: str, key: DpopKey, token: str, nonce: str | None = None) -> None:
        self.issuer, self.key, self.token, self.nonce = issuer, key, token, nonce

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        for _ in range(2):
            request.headers["Authorization"] = f"DPoP {self.token}"
            request.headers["DPoP"] = self.key.proof(
                request.method,
                self.issuer + request.url.path,
                nonce=self.nonce,
                access_token=self.token,
            )
            response = yield request
            self.nonce = response.headers.get("dpop-nonce") or self.nonce
            if not (response.status_code == 401 and "use-dpop-nonce" in response.text):
                return
