"""The control API's own behaviour: validation (400, never 500), reset, clock, settings."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from emulator_helpers import WeChatApi

from wechat_emulator.testing import EmulatorControl, EmulatorProcess


@pytest.fixture()
def raw(emulator: EmulatorProcess, control: EmulatorControl, http: requests.Session) -> Any:
    """Send a raw control request; answers (status, JSON)."""

    def send(method: str, path: str, body: Any = None, data: bytes | None = None) -> Any:
        response = http.request(
            method, f"{emulator.base_url}/__emulator/{path}", json=body, data=data, timeout=5
        )
        return response.status_code, response.json()

    return send


def test_health(raw: Any) -> None:
    assert raw("GET", "health") == (200, {"status": "ok"})


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("codes", {"openid": "has space"}, "openid must be a string matching"),
        ("codes", {"openid": 5}, "openid must be a string"),
        ("codes", {"open_id": "oX"}, "unknown field(s): open_id"),
        ("codes", [1, 2], "the body must be a JSON object"),
        ("phone-codes", {}, "phone is required"),
        ("phone-codes", {"phone": "+86 138"}, "phone must be a string matching"),
        ("phone-codes", {"phone": "13800138000", "country_code": "086"}, "country_code"),
        ("faults", {"api": "token"}, "give at least one of errcode, http_status, delay_ms"),
        ("faults", {"api": "token", "errcode": 0}, "errcode 0 is success"),
        ("faults", {"api": "token", "errcode": -1, "http_status": 500}, "not both"),
        ("faults", {"api": "token", "http_status": 99}, "http_status must be an integer"),
        ("faults", {"api": "token", "delay_ms": -5}, "delay_ms must be an integer"),
        ("faults", {"api": "token", "errcode": -1, "times": 0}, "times must be an integer"),
        ("faults", {"api": "token", "errcode": "-1"}, "errcode must be an integer"),
        ("faults", {"api": "token", "errcode": True}, "errcode must be an integer"),
        ("faults", {"errcode": -1}, "api is required"),
        ("clock", {"advance_seconds": -1}, "advance_seconds must be a number"),
        ("clock", {}, "advance_seconds must be a number"),
        ("config", {"token_ttl_seconds": 0}, "token_ttl_seconds must be an integer"),
        ("config", {"login_quota_per_minute": 1.5}, "login_quota_per_minute must be"),
        ("config", {"phone_country_code_type": "int"}, "phone_country_code_type must be"),
        ("config", {"content_rules": "none"}, "content_rules must be a list"),
        (
            "config",
            {"content_rules": [{"keyword": "x", "suggest": "block", "label": 1}]},
            "each content rule",
        ),
        (
            "config",
            {"content_rules": [{"keyword": "", "suggest": "risky", "label": 1}]},
            "each content rule",
        ),
        ("config", {"tokenttl": 5}, "unknown field(s): tokenttl"),
        ("templates", {"template_id": "t", "keywords": "thing1"}, "keywords must be a list"),
        ("templates", {"template_id": "t", "keywords": ["Thing"]}, "keywords must be a list"),
        ("templates", {}, "template_id is required"),
        ("subscriptions", {"openid": "oX", "template_id": "t", "count": 0}, "count must be"),
    ],
)
def test_bad_control_input_is_a_400_with_a_message(
    raw: Any, path: str, body: Any, message: str
) -> None:
    status, answer = raw("POST", path, body)
    assert status == 400
    assert message in answer["error"]


def test_a_body_that_is_not_json_is_a_400(raw: Any) -> None:
    assert raw("POST", "codes", data=b"{oops") == (400, {"error": "the body must be a JSON object"})


def test_unknown_routes_and_methods_answer_json(raw: Any) -> None:
    status, answer = raw("GET", "nothing-here")
    assert status == 404
    assert "error" in answer
    status, answer = raw("PUT", "codes")
    assert status == 405
    assert "error" in answer


def test_an_unknown_user_is_a_404(raw: Any) -> None:
    assert raw("GET", "users/oNobody") == (404, {"error": "unknown openid oNobody"})


def test_a_chosen_openid_keeps_its_user(wx: WeChatApi, control: EmulatorControl) -> None:
    first = control.new_login_code(openid="oKeepMe", unionid="oUnionA")
    second = control.new_login_code(openid="oKeepMe")
    assert first.openid == second.openid == "oKeepMe"
    assert first.code != second.code
    assert control.user("oKeepMe")["unionid"] == "oUnionA"
    assert wx.code2session(second.code)["unionid"] == "oUnionA"


def test_reset_forgets_everything(wx: WeChatApi, control: EmulatorControl) -> None:
    login = control.new_login_code()
    token = wx.stable_token()
    control.register_template("tpl")
    control.faults("token", errcode=-1)
    control.configure(token_ttl_seconds=5)
    control.advance_clock(1000)
    control.reset()
    assert wx.code2session(login.code)["errcode"] == 40029
    assert wx.stable_token() != token
    assert "access_token" in wx.token_answer()
    assert control.pending_faults() == []
    assert control.configure()["token_ttl_seconds"] == 7200
    assert len(control.calls()) == 3  # only the calls made since the reset
    assert control.messages() == []
    assert wx.http.get(f"{wx.base_url}/__emulator/templates", timeout=5).json() == []
    assert wx.http.get(f"{wx.base_url}/__emulator/clock", timeout=5).json()["offset_seconds"] == 0


def test_the_clock_only_moves_forward(control: EmulatorControl, raw: Any) -> None:
    _, before = raw("GET", "clock")
    now = control.advance_clock(3600)
    assert now - before["now"] >= 3600
    assert raw("GET", "clock")[1]["offset_seconds"] == 3600


def test_config_changes_only_the_given_settings(control: EmulatorControl) -> None:
    defaults = control.configure()
    assert defaults["token_ttl_seconds"] == 7200
    assert defaults["token_grace_seconds"] == 300
    assert defaults["code_ttl_seconds"] == 300
    assert {rule["keyword"] for rule in defaults["content_rules"]} >= {
        "emulator-risky",
        "emulator-review",
    }
    changed = control.configure(code_ttl_seconds=60, login_quota_per_minute=0)
    assert changed == defaults | {"code_ttl_seconds": 60, "login_quota_per_minute": 0}


def test_code_ttl_is_configurable(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(code_ttl_seconds=10)
    code = control.new_login_code().code
    phone_code = control.new_phone_code("13800138000")
    control.advance_clock(10)
    assert wx.code2session(code)["errcode"] == 40029
    answer = wx.post(
        "/wxa/business/getuserphonenumber", {"code": phone_code}, access_token=wx.token()
    )
    assert answer["errcode"] == 40029


def test_templates_are_listed(control: EmulatorControl, raw: Any) -> None:
    control.register_template("tpl-a", ["thing1", "time2"])
    control.register_template("tpl-b")
    assert raw("GET", "templates") == (
        200,
        [
            {"template_id": "tpl-a", "keywords": ["thing1", "time2"]},
            {"template_id": "tpl-b", "keywords": None},
        ],
    )


def test_messages_kind_filter_is_validated(raw: Any) -> None:
    assert raw("GET", "messages?kind=sms")[0] == 400
