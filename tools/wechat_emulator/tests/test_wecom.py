"""WeCom: GET /cgi-bin/gettoken and POST /cgi-bin/message/send, as Alertmanager calls them."""

from __future__ import annotations

import re
from typing import Any

import pytest
import requests
from emulator_helpers import CORPID, CORPSECRET, NOT_ISSUED, WRONG, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl

SEND = "/cgi-bin/message/send"


def alertmanager_message(content: str = "[FIRING:1] MiniShopDown") -> dict[str, Any]:
    """The body Alertmanager's wechat_configs receiver posts (agentid as a string, both
    content objects present because Go's omitempty does not drop structs)."""
    return {
        "text": {"content": content},
        "touser": "@all",
        "agentid": "1000002",
        "safe": "0",
        "msgtype": "text",
        "markdown": {"content": ""},
    }


def test_gettoken_answers_errcode_0_and_the_same_token_while_valid(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    first = wx.get("/cgi-bin/gettoken", corpid=CORPID, corpsecret=CORPSECRET)
    assert set(first) == {"errcode", "errmsg", "access_token", "expires_in"}
    assert (first["errcode"], first["errmsg"], first["expires_in"]) == (0, "ok", 7200)
    assert wx.wecom_token() == first["access_token"]
    control.advance_clock(7200)
    assert wx.wecom_token() != first["access_token"]


@pytest.mark.parametrize(
    ("params", "errcode"),
    [
        ({"corpid": "ww1111111111111111", "corpsecret": CORPSECRET}, 40013),
        ({"corpid": CORPID, "corpsecret": WRONG}, 40001),
        ({"corpsecret": CORPSECRET}, 41002),
        ({"corpid": CORPID}, 41004),
    ],
)
def test_gettoken_credential_errors(wx: WeChatApi, params: Any, errcode: int) -> None:
    answer = wx.get("/cgi-bin/gettoken", **params)
    assert_error(answer, errcode)
    assert re.search(
        rf", hint: \[\d+_\d+_[0-9a-f]{{32}}\], from ip: 127\.0\.0\.1, more info at "
        rf"https://open\.work\.weixin\.qq\.com/devtool/query\?e={errcode}$",
        answer["errmsg"],
    ), answer["errmsg"]


def test_an_alertmanager_message_is_accepted_and_recorded(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    answer = wx.post(SEND, alertmanager_message(), access_token=wx.wecom_token())
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert (answer["invaliduser"], answer["invalidparty"], answer["invalidtag"]) == ("", "", "")
    [message] = control.messages(kind="wecom")
    assert message["msgid"] == answer["msgid"]
    assert message["content"] == "[FIRING:1] MiniShopDown"
    assert (message["msgtype"], message["agentid"], message["touser"]) == ("text", 1000002, "@all")
    assert control.messages(kind="subscribe") == []


def test_markdown_and_numeric_agentid(wx: WeChatApi, control: EmulatorControl) -> None:
    body = {
        "toparty": "2",
        "msgtype": "markdown",
        "agentid": 1000002,
        "markdown": {"content": "**down**"},
    }
    assert wx.post(SEND, body, access_token=wx.wecom_token())["errcode"] == 0
    assert control.messages()[0]["content"] == "**down**"


def test_send_needs_a_wecom_token(wx: WeChatApi, control: EmulatorControl) -> None:
    body = alertmanager_message()
    assert_error(wx.post(SEND, body), 41001)
    assert_error(wx.post(SEND, body, access_token=NOT_ISSUED), 40014)
    assert_error(wx.post(SEND, body, access_token=wx.token()), 40014)  # a mini-program token
    token = wx.wecom_token()
    control.advance_clock(7200)
    assert_error(wx.post(SEND, body, access_token=token), 42001)
    # Alertmanager's recovery: on 42001 it fetches a new token and retries.
    assert wx.post(SEND, body, access_token=wx.wecom_token())["errcode"] == 0
    assert len(control.messages()) == 1


@pytest.mark.parametrize(
    ("changes", "errcode"),
    [
        ({"agentid": "1000003"}, 40056),
        ({"agentid": ""}, 41011),
        ({"msgtype": "voice"}, 40008),
        ({"text": {"content": ""}}, 44004),
        ({"text": "plain"}, 44004),
        ({"touser": ""}, 81013),
        ({"touser": 1}, 40058),
    ],
)
def test_send_errors(wx: WeChatApi, control: EmulatorControl, changes: Any, errcode: int) -> None:
    body = alertmanager_message() | changes
    assert_error(wx.post(SEND, body, access_token=wx.wecom_token()), errcode)
    assert control.messages() == []


def test_a_body_that_is_not_json_is_40058(wx: WeChatApi, http: requests.Session) -> None:
    response = http.post(
        f"{wx.base_url}{SEND}", params={"access_token": wx.wecom_token()}, data=b"<xml/>", timeout=5
    )
    assert_error(response.json(), 40058)
