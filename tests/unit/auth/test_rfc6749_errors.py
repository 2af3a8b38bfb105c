"""RFC 6749 §5.2 error responses."""

from __future__ import annotations

import pytest

from strongroom.auth import rfc6749_errors as errors


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (errors.invalid_request, "invalid_request"),
        (errors.invalid_grant, "invalid_grant"),
        (errors.unauthorized_client, "unauthorized_client"),
        (errors.unsupported_grant_type, "unsupported_grant_type"),
        (errors.invalid_scope, "invalid_scope"),
    ],
)
def test_400_errors(make: object, code: str) -> None:
    exc = make()  # type: ignore[operator]
    assert isinstance(exc, errors.OAuthError)
    assert (exc.error, exc.status, exc.www_authenticate) == (code, 400, None)
    assert exc.as_dict()["error"] == code
    assert exc.headers()["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in exc.headers()


@pytest.mark.parametrize("basic", [True, False])
def test_invalid_client_is_401_with_a_basic_challenge(basic: bool) -> None:
    exc = errors.invalid_client(basic=basic)
    assert exc.status == 401
    assert exc.error == "invalid_client"
    assert exc.www_authenticate is not None
    assert exc.www_authenticate.startswith("Basic realm=")
    assert exc.headers()["WWW-Authenticate"] == exc.www_authenticate


def test_description_is_restricted_to_the_allowed_characters() -> None:
    exc = errors.invalid_request('bad "value" \\ é\n')
    assert exc.description == "bad ?value? ? ??"
    assert exc.as_dict() == {"error": "invalid_request", "error_description": exc.description}


def test_empty_description_is_omitted() -> None:
    assert errors.OAuthError("invalid_grant").as_dict() == {"error": "invalid_grant"}


def test_is_an_exception_with_a_readable_message() -> None:
    with pytest.raises(errors.OAuthError, match="invalid_grant: expired"):
        raise errors.invalid_grant("expired")
