"""Every forged or stale access token is refused, through the real endpoint."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from minishop import config, create_app
from minishop.errors import AppError, ErrorCode
from minishop.models.types import utcnow
from minishop.security.tokens import AccessClaims, TokenSigner, key_id
from tests.test_errors import assert_envelope

LogIn = Callable[..., dict[str, Any]]
SECRET = config.DEV_SECRETS["JWT_SECRET"]
NONE_HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def me(client: FlaskClient, token: str) -> Any:
    return client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resign(claims: dict[str, Any], secret: str = SECRET, **header: Any) -> str:
    return jwt.encode(claims, secret, "HS256", headers={"kid": key_id(secret), **header})


def test_a_genuine_token_is_accepted(client: FlaskClient, log_in: LogIn) -> None:
    token = log_in()["access_token"]
    assert set(claims_of(token)) == {"sub", "role", "sid", "jti", "iat", "nbf", "exp", "iss", "aud"}
    assert jwt.get_unverified_header(token)["kid"] == key_id(SECRET)
    assert_envelope(me(client, token), 200, 0)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda t, c: f"{NONE_HEADER}.{t.split('.')[1]}.", id="alg-none"),
        pytest.param(
            lambda t, c: resign(c, "another-secret-of-at-least-32-bytes!!"), id="wrong-key"
        ),
        pytest.param(
            lambda t, c: jwt.encode(c, "k" * 40, "HS256", headers={"kid": key_id(SECRET)}),
            id="right-kid-wrong-key",
        ),
        pytest.param(lambda t, c: resign(c | {"aud": "someone-else"}), id="wrong-audience"),
        pytest.param(lambda t, c: resign(c | {"iss": "evil"}), id="wrong-issuer"),
        pytest.param(lambda t, c: resign({k: v for k, v in c.items() if k != "exp"}), id="no-exp"),
        pytest.param(lambda t, c: resign({k: v for k, v in c.items() if k != "aud"}), id="no-aud"),
        pytest.param(
            lambda t, c: ".".join(
                [
                    t.split(".")[0],
                    b64url(json.dumps(c | {"role": "admin"}).encode()),
                    t.split(".")[2],
                ]
            ),
            id="tampered-payload",
        ),
        pytest.param(lambda t, c: resign(c | {"sid": "0" * 32}), id="unknown-session"),
        pytest.param(lambda t, c: resign(c, kid="unknown-kid"), id="unknown-kid"),
        pytest.param(lambda t, c: "not-a-jwt", id="garbage"),
        pytest.param(lambda t, c: resign(c | {"sub": "abc"}), id="non-numeric-sub"),
    ],
)
def test_forged_tokens_are_40100(
    client: FlaskClient, log_in: LogIn, forge: Callable[[str, dict[str, Any]], str]
) -> None:
    token = log_in()["access_token"]
    body = assert_envelope(me(client, forge(token, claims_of(token))), 401, 40100)
    assert "Traceback" not in body["message"]


def test_an_expired_token_is_40101(client: FlaskClient, log_in: LogIn) -> None:
    claims = claims_of(log_in()["access_token"])
    past = utcnow() - timedelta(hours=1)
    expired = resign(claims | {"iat": past, "nbf": past, "exp": past + timedelta(minutes=15)})
    assert_envelope(me(client, expired), 401, 40101)


def test_a_token_verified_before_still_expires_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The signer keeps tokens it verified; a kept one is refused once its `exp` has passed."""
    signer = TokenSigner(SECRET, [], "minishop", "miniprogram", timedelta(minutes=15))
    claims = AccessClaims(user_id=7, role="user", session_id="s" * 32)
    token = signer.issue(claims, utcnow())
    assert signer.verify(token) == claims
    assert signer.verify(token) == claims  # the kept verification
    expires = claims_of(token)["exp"]
    monkeypatch.setattr(time, "time", lambda: expires - 0.5)
    assert signer.verify(token) == claims
    monkeypatch.setattr(time, "time", lambda: float(expires))
    with pytest.raises(AppError) as refused:
        signer.verify(token)
    assert refused.value.code == ErrorCode.TOKEN_EXPIRED


def test_a_token_from_the_future_is_refused(client: FlaskClient, log_in: LogIn) -> None:
    claims = claims_of(log_in()["access_token"])
    later = utcnow() + timedelta(hours=1)
    assert_envelope(me(client, resign(claims | {"nbf": later})), 401, 40100)


@pytest.mark.parametrize(
    "header",
    ["", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["none", "bare", "empty", "basic", "other-scheme"],
)
def test_missing_or_malformed_authorization_is_40100(client: FlaskClient, header: str) -> None:
    headers = {"Authorization": header} if header else {}
    assert_envelope(client.get("/api/v1/users/me", headers=headers), 401, 40100)


def test_key_rotation_keeps_old_tokens_valid_only_while_listed(
    settings: config.TestingSettings, log_in: LogIn
) -> None:
    old_token = log_in()["access_token"]
    new_secret = "rotated-jwt-secret-of-more-than-32-bytes"
    rotated = create_app(
        settings.model_copy(update={"JWT_SECRET": new_secret, "JWT_PREVIOUS_SECRETS": SECRET})
    )
    assert_envelope(me(rotated.test_client(), old_token), 200, 0)
    forgotten = create_app(settings.model_copy(update={"JWT_SECRET": new_secret}))
    assert_envelope(me(forgotten.test_client(), old_token), 401, 40100)
