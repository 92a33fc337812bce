from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from minishop.extensions import db
from minishop.models import User
from tests.conftest import bearer
from tests.signing import send_signed
from tests.test_errors import assert_envelope
from wechat_emulator.testing import EmulatorControl

LogIn = Callable[..., dict[str, Any]]


def test_me_returns_the_callers_profile(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    body = assert_envelope(client.get("/api/v1/users/me", headers=bearer(data)), 200, 0)
    assert body["data"] == data["user"]
    assert "openid" not in body["data"]


def test_nickname_that_passes_is_saved(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    response = send_signed(
        client,
        data,
        "PATCH",
        "/api/v1/users/me",
        {"nickname": "茶客 🍵", "avatar_url": "https://cdn.example.com/a.png"},
    )
    body = assert_envelope(response, 200, 0)
    assert body["data"]["nickname"] == "茶客 🍵"
    assert body["data"]["avatar_url"] == "https://cdn.example.com/a.png"
    assert db.session.get_one(User, data["user"]["id"]).nickname_flagged is False


def test_content_security_sees_the_raw_utf8_nickname(
    client: FlaskClient, log_in: LogIn, emulator: EmulatorControl
) -> None:
    data = log_in()
    response = send_signed(client, data, "PATCH", "/api/v1/users/me", {"nickname": "刷单达人"})
    body = assert_envelope(response, 422, 42200)
    assert body["data"] == {"label": 20008}
    (call,) = emulator.calls("msg_sec_check")
    assert call["json"]["content"] == "刷单达人"
    assert call["json"]["version"] == 2
    assert call["json"]["openid"] == data["openid"]


def test_risky_nickname_is_rejected_and_nothing_changes(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    response = send_signed(
        client,
        data,
        "PATCH",
        "/api/v1/users/me",
        {"nickname": "emulator-risky", "avatar_url": "https://cdn.example.com/b.png"},
    )
    assert_envelope(response, 422, 42200)
    user = db.session.get_one(User, data["user"]["id"])
    assert (user.nickname, user.avatar_url) == ("", "")


def test_nickname_under_review_is_kept_but_flagged(client: FlaskClient, log_in: LogIn) -> None:
    data = log_in()
    response = send_signed(
        client, data, "PATCH", "/api/v1/users/me", {"nickname": "emulator-review"}
    )
    assert assert_envelope(response, 200, 0)["data"]["nickname"] == "emulator-review"
    assert db.session.get_one(User, data["user"]["id"]).nickname_flagged is True


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"nickname": ""},
        {"nickname": "x" * 33},
        {"avatar_url": "http://insecure.example.com/a.png"},
        {"avatar_url": "javascript:alert(1)"},
        {"nickname": "ok", "role": "admin"},
        {"nickname": 7},
    ],
    ids=["empty", "blank", "too-long", "http", "javascript", "unknown-field", "wrong-type"],
)
def test_profile_patch_is_validated(
    client: FlaskClient, log_in: LogIn, payload: dict[str, Any]
) -> None:
    data = log_in()
    response = send_signed(client, data, "PATCH", "/api/v1/users/me", payload)
    assert_envelope(response, 400, 40000)
    assert db.session.get_one(User, data["user"]["id"]).role == "user"


def test_phone_is_bound_encrypted_and_shown_masked(
    client: FlaskClient, log_in: LogIn, emulator: EmulatorControl
) -> None:
    data = log_in()
    code = emulator.new_phone_code("13812341234")
    response = send_signed(client, data, "POST", "/api/v1/users/me/phone", {"code": code})
    assert assert_envelope(response, 200, 0)["data"]["phone"] == "138****1234"
    stored = db.session.get_one(User, data["user"]["id"]).phone_encrypted
    assert stored is not None and "13812341234" not in stored
    me = client.get("/api/v1/users/me", headers=bearer(data)).get_json()["data"]
    assert me["phone"] == "138****1234"

    reused = send_signed(client, data, "POST", "/api/v1/users/me/phone", {"code": code})
    assert assert_envelope(reused, 400, 40000)["message"] == "invalid phone code"


def test_phone_binding_survives_a_rejected_access_token(
    client: FlaskClient, log_in: LogIn, emulator: EmulatorControl
) -> None:
    """WeChat says 40001 once: the token is refreshed and the call retried, exactly once."""
    data = log_in()
    emulator.faults("getuserphonenumber", errcode=40001)
    code = emulator.new_phone_code("13900001111")
    response = send_signed(client, data, "POST", "/api/v1/users/me/phone", {"code": code})
    assert assert_envelope(response, 200, 0)["data"]["phone"] == "139****1111"
    assert len(emulator.calls("getuserphonenumber")) == 2


def test_a_token_wechat_keeps_refusing_is_not_retried_in_a_loop(
    client: FlaskClient, log_in: LogIn, emulator: EmulatorControl
) -> None:
    data = log_in()
    emulator.faults("msg_sec_check", errcode=42001, times=5)
    response = send_signed(client, data, "PATCH", "/api/v1/users/me", {"nickname": "abc"})
    assert_envelope(response, 502, 50200)
    assert len(emulator.calls("msg_sec_check")) == 2
