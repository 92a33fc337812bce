"""Login, refresh-token rotation with reuse detection, logout — against the WeChat emulator."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from minishop import config, create_app, extensions
from minishop.domain.auth import SESSION_KEY_PURPOSE
from minishop.extensions import db
from minishop.models import AuthSession, RefreshToken, User
from minishop.security.tokens import hash_refresh_token
from tests.conftest import bearer
from tests.signing import send_signed
from tests.test_errors import assert_envelope
from wechat_emulator.testing import EmulatorControl

LogIn = Callable[..., dict[str, Any]]


def login(client: FlaskClient, code: str) -> Any:
    return client.post("/api/v1/auth/login", json={"code": code})


def test_login_returns_tokens_sign_key_and_user(
    client: FlaskClient, emulator: EmulatorControl
) -> None:
    login_code = emulator.new_login_code()
    body = assert_envelope(login(client, login_code.code), 200, 0)
    data = body["data"]
    assert set(data) == {"access_token", "refresh_token", "expires_in", "sign_key", "user"}
    assert data["expires_in"] == 900
    assert len(base64.b64decode(data["sign_key"], validate=True)) == 32
    assert data["user"]["role"] == "user"
    assert data["user"]["phone"] is None

    user = db.session.get_one(User, data["user"]["id"])
    assert user.openid == login_code.openid
    session = db.session.query(AuthSession).filter_by(user_id=user.id).one()
    session_key = emulator.user(login_code.openid)["session_key"]
    assert session_key not in session.session_key_encrypted
    assert (
        extensions.field_cipher.get().decrypt(session.session_key_encrypted, SESSION_KEY_PURPOSE)
        == session_key
    )
    assert session_key not in str(body)


def test_a_second_login_reuses_the_user(log_in: LogIn) -> None:
    first = log_in()
    second = log_in(openid=first["openid"])
    assert first["user"]["id"] == second["user"]["id"]
    assert first["sign_key"] != second["sign_key"]


@pytest.mark.parametrize("reuse", [True, False], ids=["reused-40163", "unknown-40029"])
def test_an_invalid_login_code_is_a_400(
    client: FlaskClient, emulator: EmulatorControl, reuse: bool
) -> None:
    code = emulator.new_login_code().code
    if reuse:
        assert_envelope(login(client, code), 200, 0)
    else:
        code = "never-issued-code"
    body = assert_envelope(login(client, code), 400, 40000)
    assert body["message"] == "invalid login code"


def test_an_expired_login_code_is_a_400(client: FlaskClient, emulator: EmulatorControl) -> None:
    code = emulator.new_login_code().code
    emulator.advance_clock(301)
    assert_envelope(login(client, code), 400, 40000)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"errcode": 45011}, 429, 42900),
        ({"errcode": 40226}, 502, 50200),
        ({"errcode": -1, "times": 2}, 502, 50200),
        ({"http_status": 500}, 502, 50200),
    ],
    ids=["quota-45011", "blocked-40226", "busy-twice", "http-500"],
)
def test_wechat_errors_map_to_the_envelope(
    client: FlaskClient, emulator: EmulatorControl, fault: dict[str, Any], status: int, code: int
) -> None:
    login_code = emulator.new_login_code()
    emulator.faults("jscode2session", **fault)
    response = login(client, login_code.code)
    assert_envelope(response, status, code)
    if status == 429:
        assert response.headers["Retry-After"] == "60"


def test_system_busy_once_is_retried(client: FlaskClient, emulator: EmulatorControl) -> None:
    login_code = emulator.new_login_code()
    emulator.faults("jscode2session", errcode=-1)
    assert_envelope(login(client, login_code.code), 200, 0)
    assert len(emulator.calls("jscode2session")) == 2


def test_a_slow_wechat_is_a_504_within_the_timeout(
    settings: config.TestingSettings, emulator: EmulatorControl
) -> None:
    app = create_app(settings.model_copy(update={"WECHAT_TIMEOUT_SECONDS": 1.0}))
    login_code = emulator.new_login_code()
    emulator.faults("jscode2session", delay_ms=3000)
    started = time.monotonic()
    response = app.test_client().post("/api/v1/auth/login", json={"code": login_code.code})
    elapsed = time.monotonic() - started
    assert_envelope(response, 504, 50400)
    assert elapsed < 1.0 + 0.5
    # A login code is single-use: a timed-out exchange is never sent a second time. The
    # emulator records the delayed call when it answers, ~3 s in; a retry would show up sooner.
    deadline = time.monotonic() + 5
    while not emulator.calls("jscode2session") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(emulator.calls("jscode2session")) == 1


def test_refresh_rotates_the_pair(client: FlaskClient, log_in: LogIn) -> None:
    first = log_in()
    body = assert_envelope(
        client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}),
        200,
        0,
    )
    pair = body["data"]
    assert set(pair) == {"access_token", "refresh_token", "expires_in"}
    assert pair["refresh_token"] != first["refresh_token"]
    assert_envelope(client.get("/api/v1/users/me", headers=bearer(pair)), 200, 0)


def refresh(client: FlaskClient, refresh_token: str) -> Any:
    return client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


def age_rotation(refresh_token: str, seconds: float) -> None:
    """Pretend `refresh_token` was rotated away `seconds` ago."""
    row = db.session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(refresh_token))
    ).one()
    assert row.used_at is not None
    row.used_at -= timedelta(seconds=seconds)
    db.session.commit()


def test_reusing_a_rotated_refresh_token_after_the_grace_period_revokes_the_whole_family(
    settings: config.TestingSettings, client: FlaskClient, log_in: LogIn
) -> None:
    stolen = log_in()
    rotated = refresh(client, stolen["refresh_token"]).get_json()["data"]
    age_rotation(stolen["refresh_token"], settings.REFRESH_TOKEN_REUSE_GRACE_SECONDS + 1)

    assert_envelope(refresh(client, stolen["refresh_token"]), 401, 40100)

    # every token of that login is now dead: the newest refresh token and both access tokens
    assert_envelope(refresh(client, rotated["refresh_token"]), 401, 40100)
    for tokens in (stolen, rotated):
        assert_envelope(client.get("/api/v1/users/me", headers=bearer(tokens)), 401, 40100)


def test_a_refresh_retried_within_the_grace_period_gets_the_same_pair(
    settings: config.TestingSettings, client: FlaskClient, log_in: LogIn
) -> None:
    """A mini-program whose refresh timed out retries it: it must not log itself out."""
    first = log_in()
    rotated = assert_envelope(refresh(client, first["refresh_token"]), 200, 0)["data"]
    age_rotation(first["refresh_token"], settings.REFRESH_TOKEN_REUSE_GRACE_SECONDS - 2)

    retried = assert_envelope(refresh(client, first["refresh_token"]), 200, 0)["data"]
    assert retried["access_token"] == rotated["access_token"]
    assert retried["refresh_token"] == rotated["refresh_token"]
    assert 0 < retried["expires_in"] <= rotated["expires_in"]
    assert_envelope(client.get("/api/v1/users/me", headers=bearer(retried)), 200, 0)

    # the session lives on: the new refresh token rotates normally, and only the latest
    # rotation keeps a readable successor
    newest = assert_envelope(refresh(client, rotated["refresh_token"]), 200, 0)["data"]
    assert_envelope(client.get("/api/v1/users/me", headers=bearer(newest)), 200, 0)
    kept = db.session.scalars(
        select(RefreshToken.token_hash).where(RefreshToken.successor_encrypted.is_not(None))
    ).all()
    assert kept == [hash_refresh_token(rotated["refresh_token"])]


def test_a_successor_is_stored_encrypted(client: FlaskClient, log_in: LogIn) -> None:
    first = log_in()
    rotated = assert_envelope(refresh(client, first["refresh_token"]), 200, 0)["data"]
    stored = db.session.scalar(
        select(RefreshToken.successor_encrypted).where(
            RefreshToken.token_hash == hash_refresh_token(first["refresh_token"])
        )
    )
    assert stored is not None
    assert rotated["refresh_token"] not in stored
    assert rotated["access_token"] not in stored


def test_refresh_rejects_unknown_and_expired_tokens(
    settings: config.TestingSettings, client: FlaskClient, emulator: EmulatorControl
) -> None:
    unknown = client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert_envelope(unknown, 401, 40100)

    short_lived = create_app(settings.model_copy(update={"REFRESH_TOKEN_TTL_SECONDS": 0}))
    data = login(short_lived.test_client(), emulator.new_login_code().code).get_json()["data"]
    expired = client.post("/api/v1/auth/refresh", json={"refresh_token": data["refresh_token"]})
    body = assert_envelope(expired, 401, 40100)
    assert body["message"] == "refresh token expired"


def test_logout_ends_the_session(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    assert_envelope(send_signed(client, data, "POST", "/api/v1/auth/logout"), 200, 0)
    assert_envelope(client.get("/api/v1/users/me", headers=bearer(data)), 401, 40100)
    refresh = client.post("/api/v1/auth/refresh", json={"refresh_token": data["refresh_token"]})
    assert_envelope(refresh, 401, 40100)


def test_authentication_is_checked_before_the_body(client: FlaskClient) -> None:
    response = client.patch("/api/v1/users/me", data="not json", content_type="text/plain")
    assert_envelope(response, 401, 40100)


def test_login_body_is_validated(client: FlaskClient) -> None:
    for payload in [{}, {"code": ""}, {"code": 123}, {"code": "x" * 129}, {"code": "a", "x": 1}]:
        assert_envelope(client.post("/api/v1/auth/login", json=payload), 400, 40000)
    assert_envelope(
        client.post("/api/v1/auth/login", data="{", content_type="application/json"), 400, 40001
    )
