"""POST /wxa/msg_sec_check: content security 1.0 and 2.0 against the configured content rules.

2.0 (`version: 2`, what MiniShop sends) answers a verdict per user and scene. 1.0 (no `version`,
what wechatpy's check_text_security still sends) answers errcode 0 or 87014.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests
from emulator_helpers import NOT_ISSUED, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl

PATH = "/wxa/msg_sec_check"
WECHAT_SAMPLE = "特3456书yuuo莞6543李zxcz蒜7782法fgnv级"


@pytest.fixture()
def openid(control: EmulatorControl) -> str:
    return control.new_login_code().openid


def check(wx: WeChatApi, openid: str, content: str, /, **overrides: Any) -> Any:
    body = {"content": content, "version": 2, "scene": 2, "openid": openid, **overrides}
    return wx.post(PATH, body, access_token=wx.stable_token())


def test_ordinary_content_passes(wx: WeChatApi, openid: str) -> None:
    answer = check(wx, openid, "Lovely tea, fast delivery")
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert answer["result"] == {"suggest": "pass", "label": 100}
    assert answer["detail"] == [
        {"strategy": "content_model", "errcode": 0, "suggest": "pass", "label": 100, "prob": 90}
    ]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}", answer["trace_id"])


def test_wechats_sample_is_risky(wx: WeChatApi, openid: str) -> None:
    answer = check(wx, openid, f"nickname {WECHAT_SAMPLE}")
    assert answer["result"] == {"suggest": "risky", "label": 20002}
    keyword = answer["detail"][1]
    assert keyword["strategy"] == "keyword"
    assert keyword["keyword"] == WECHAT_SAMPLE


@pytest.mark.parametrize(
    ("content", "suggest", "label"),
    [
        ("this is EMULATOR-RISKY stuff", "risky", 20006),
        ("emulator-review me", "review", 10001),
        ("加微信 领红包", "review", 10001),
        ("兼职刷单", "risky", 20008),
        ("emulator-review and emulator-risky", "risky", 20006),
    ],
)
def test_built_in_words(wx: WeChatApi, openid: str, content: str, suggest: str, label: int) -> None:
    assert check(wx, openid, content)["result"] == {"suggest": suggest, "label": label}


def test_escaped_unicode_is_not_decoded(wx: WeChatApi, openid: str, http: requests.Session) -> None:
    """json.dumps' default \\u escapes hide Chinese words from WeChat: everything passes."""
    body = {"content": "兼职刷单", "version": 2, "scene": 2, "openid": openid}
    response = http.post(
        f"{wx.base_url}{PATH}",
        params={"access_token": wx.stable_token()},
        data=json.dumps(body),  # ensure_ascii=True: the bug the backend must not have
        timeout=5,
    )
    assert response.json()["result"] == {"suggest": "pass", "label": 100}


def test_rules_are_configurable(wx: WeChatApi, openid: str, control: EmulatorControl) -> None:
    settings = control.configure(
        content_rules=[{"keyword": "durian", "suggest": "review", "label": 20012}]
    )
    assert settings["content_rules"] == [{"keyword": "durian", "suggest": "review", "label": 20012}]
    assert check(wx, openid, "Durian cake")["result"] == {"suggest": "review", "label": 20012}
    assert check(wx, openid, "emulator-risky")["result"]["suggest"] == "pass"


@pytest.mark.parametrize(
    "overrides",
    [
        {"version": 1},
        {"version": "2"},
        {"scene": 0},
        {"scene": 5},
        {"scene": True},
        {"content": None},
        {"openid": None},
    ],
)
def test_parameter_errors_are_47001(wx: WeChatApi, openid: str, overrides: Any) -> None:
    assert_error(check(wx, openid, "hello", **overrides), 47001)


def test_an_unknown_openid_is_40003(wx: WeChatApi) -> None:
    assert_error(check(wx, "oNobodyKnowsThisUser", "hello"), 40003)


def test_the_user_must_have_visited_in_the_last_two_hours(
    wx: WeChatApi, openid: str, control: EmulatorControl
) -> None:
    control.advance_clock(7195)
    assert check(wx, openid, "hello")["errcode"] == 0
    control.advance_clock(5)
    assert_error(check(wx, openid, "hello"), 61010)
    control.new_login_code(openid=openid)  # the user opens the mini-program again
    assert check(wx, openid, "hello")["errcode"] == 0


def test_the_visit_window_can_be_switched_off(
    wx: WeChatApi, openid: str, control: EmulatorControl
) -> None:
    control.configure(visit_window_seconds=0)
    control.advance_clock(86_400)
    assert check(wx, openid, "hello")["errcode"] == 0


def test_needs_a_valid_token(wx: WeChatApi, openid: str) -> None:
    body = {"content": "x", "version": 2, "scene": 1, "openid": openid}
    assert_error(wx.post(PATH, body), 41001)
    assert_error(wx.post(PATH, body, access_token=NOT_ISSUED), 40001)


def check_v1(wx: WeChatApi, content: Any) -> Any:
    """The call wechatpy's check_text_security makes."""
    return wx.post(PATH, {"content": content}, access_token=wx.stable_token())


def test_v1_ordinary_content_is_ok(wx: WeChatApi) -> None:
    assert check_v1(wx, "Lovely tea, fast delivery") == {"errcode": 0, "errmsg": "ok"}


@pytest.mark.parametrize(
    "content", [f"nickname {WECHAT_SAMPLE}", "this is EMULATOR-RISKY stuff", "兼职刷单"]
)
def test_v1_risky_content_is_87014(wx: WeChatApi, content: str) -> None:
    answer = check_v1(wx, content)
    assert_error(answer, 87014)
    assert answer["errmsg"].startswith("risky content")
    assert "result" not in answer


@pytest.mark.parametrize("content", ["emulator-review me", "加微信 领红包"])
def test_v1_has_no_review_so_review_words_are_ok(wx: WeChatApi, content: str) -> None:
    assert check_v1(wx, content) == {"errcode": 0, "errmsg": "ok"}


def test_v1_needs_no_user(wx: WeChatApi, control: EmulatorControl) -> None:
    """1.0 checks the text alone: no openid, so no recent visit either."""
    control.advance_clock(86_400)
    assert check_v1(wx, "hello")["errcode"] == 0


def test_v1_uses_the_configured_rules(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(content_rules=[{"keyword": "durian", "suggest": "risky", "label": 20012}])
    assert_error(check_v1(wx, "Durian cake"), 87014)
    assert check_v1(wx, "emulator-risky")["errcode"] == 0


def test_v1_escaped_unicode_is_not_decoded(wx: WeChatApi, http: requests.Session) -> None:
    response = http.post(
        f"{wx.base_url}{PATH}",
        params={"access_token": wx.stable_token()},
        data=json.dumps({"content": "兼职刷单"}),
        timeout=5,
    )
    assert response.json() == {"errcode": 0, "errmsg": "ok"}


@pytest.mark.parametrize("body", [{}, {"content": None}, {"content": 5}, {"content": ["x"]}])
def test_v1_without_text_content_is_47001(wx: WeChatApi, body: Any) -> None:
    assert_error(wx.post(PATH, body, access_token=wx.stable_token()), 47001)


def test_v1_needs_a_valid_token(wx: WeChatApi) -> None:
    assert_error(wx.post(PATH, {"content": "x"}), 41001)
    assert_error(wx.post(PATH, {"content": "x"}, access_token=NOT_ISSUED), 40001)
