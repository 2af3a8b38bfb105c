"""Proof Key for Code Exchange (RFC 7636), S256 only and required for every client.

RFC 7636 lets a server accept ``plain`` and treats a missing ``code_challenge_method`` as
``plain`` (§4.3); OAuth 2.1 and RFC 9700 §2.1.1 recommend S256. Strongroom accepts only
S256 and demands it from confidential clients too: a code stolen from a redirect is
useless without the verifier, whoever the client is.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from strongroom.auth.keys import b64url_encode
from strongroom.auth.rfc6749_errors import OAuthError, invalid_grant, invalid_request

CODE_CHALLENGE_METHOD = "S256"
# RFC 8414 ``code_challenge_methods_supported``.
CODE_CHALLENGE_METHODS_SUPPORTED: tuple[str, ...] = (CODE_CHALLENGE_METHOD,)

# §4.1: code-verifier = 43*128unreserved; unreserved = ALPHA / DIGIT / "-" / "." / "_" / "~"
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
# §4.2: BASE64URL(SHA256(verifier)) without padding is always exactly 43 characters.
_S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")


def s256_challenge(verifier: str) -> str:
    """``BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))`` (RFC 7636 §4.2)."""
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def check_challenge(challenge: str | None, method: str | None) -> str:
    """The ``code_challenge`` of an authorization request, or ``invalid_request``.

    RFC 7636 §4.4.1: a server that requires PKCE answers a missing challenge, and a
    transformation it does not support, with ``invalid_request``. A missing method would
    mean ``plain`` (§4.3), which is refused like an explicit ``plain``.
    """
    if not challenge:
        raise invalid_request("code challenge required")
    if method != CODE_CHALLENGE_METHOD:
        raise invalid_request(
            "transform algorithm not supported: code_challenge_method must be S256"
        )
    if _S256_CHALLENGE.fullmatch(challenge) is None:
        raise invalid_request("code_challenge is not a base64url SHA-256 digest")
    return challenge


def check_verifier_syntax(verifier: str | None) -> str:
    """The ``code_verifier`` of a token request, or ``invalid_request`` (RFC 7636 §4.1)."""
    if not verifier:
        raise invalid_request("code_verifier is required")
    if _VERIFIER.fullmatch(verifier) is None:
        raise invalid_request("code_verifier must be 43-128 unreserved characters")
    return verifier


def verifier_matches(verifier: str, challenge: str) -> bool:
    """Whether ``verifier`` transforms to ``challenge`` (RFC 7636 §4.6), in constant time."""
    if _VERIFIER.fullmatch(verifier) is None:
        return False
    return hmac.compare_digest(s256_challenge(verifier), challenge)


def require_verifier(verifier: str, challenge: str) -> None:
    """RFC 7636 §4.6: a mismatch is ``invalid_grant``."""
    if not verifier_matches(verifier, challenge):
        raise invalid_grant("code_verifier does not match the code challenge")


__all__ = [
    "CODE_CHALLENGE_METHOD",
    "CODE_CHALLENGE_METHODS_SUPPORTED",
    "OAuthError",
    "check_challenge",
    "check_verifier_syntax",
    "require_verifier",
    "s256_challenge",
    "verifier_matches",
]
