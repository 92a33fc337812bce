"""The shared layer: scripted faults on any API, and the record of every call."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from emulator_helpers import CORPID, CORPSECRET, NOT_ISSUED, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl, EmulatorControlError


def test_an_errcode_fault_answers_the_next_calls_then_stops(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    control.faults("jscode2session", errcode=-1, times=2)
    code = control.new_login_code().code
    first = wx.code2session(code)
    assert_error(first, -1)
    assert first["errmsg"].startswith("system error, rid: ")
    assert_error(wx.code2session(code), -1)
    assert "openid" in wx.code2session(code)  # the faulted calls did not use the code up
    assert control.pending_faults() == []


def test_a_fault_with_an_unlisted_errcode(wx: WeChatApi, control: EmulatorControl) -> None:
    control.faults("jscode2session", errcode=40226)
    assert wx.code2session("whatever")["errmsg"].startswith("high risk user, rid: ")
    control.faults("token", errcode=12345)
    assert wx.token_answer()["errmsg"].startswith("emulated error, rid: ")


def test_an_http_status_fault_answers_a_bare_status(
    wx: WeChatApi, control: EmulatorControl, http: requests.Session
) -> None:
    control.faults("stable_token", http_status=502)
    url = f"{wx.base_url}/cgi-bin/stable_token"
    response = http.post(url, json={}, timeout=5)
    assert response.status_code == 502
    assert response.content == b""
    assert "access_token" in wx.stable_token_answer()


def test_a_delay_fault_delays_then_answers_normally(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    control.faults("token", delay_ms=300)
    started = time.monotonic()
    assert "access_token" in wx.token_answer()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    wx.token_answer()
    assert time.monotonic() - started < 0.3


def test_a_delay_makes_a_client_time_out(
    wx: WeChatApi, control: EmulatorControl, http: requests.Session
) -> None:
    control.faults("getuserphonenumber", delay_ms=500, errcode=-1)
    with pytest.raises(requests.Timeout):
        http.post(f"{wx.base_url}/wxa/business/getuserphonenumber", json={}, timeout=0.1)
    # The server still answers (to nobody); wait for it so no later test sees this call.
    deadline = time.monotonic() + 5
    while not control.calls("getuserphonenumber") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert control.calls("getuserphonenumber")[0]["errcode"] == -1


def test_faults_queue_per_api_in_order(wx: WeChatApi, control: EmulatorControl) -> None:
    control.faults("token", errcode=-1)
    control.faults("token", errcode=45009, times=2)
    control.faults("stable_token", errcode=40164)
    assert [f["api"] for f in control.pending_faults()] == ["token", "token", "stable_token"]
    assert [wx.token_answer().get("errcode") for _ in range(4)] == [-1, 45009, 45009, None]
    assert_error(wx.stable_token_answer(), 40164)


def test_faults_can_be_cleared(wx: WeChatApi, control: EmulatorControl) -> None:
    control.faults("token", errcode=-1, times=100)
    control.clear_faults()
    assert "access_token" in wx.token_answer()


def test_wecom_faults_look_like_wecom(wx: WeChatApi, control: EmulatorControl) -> None:
    control.faults("wecom_gettoken", errcode=-1)
    control.faults("wecom_send", errcode=42001)
    answer = wx.get("/cgi-bin/gettoken", corpid=CORPID, corpsecret=CORPSECRET)
    assert answer["errmsg"].startswith("system busy, hint: [")
    assert_error(wx.post("/cgi-bin/message/send", {}, access_token=NOT_ISSUED), 42001)


@pytest.mark.parametrize(
    "api",
    [
        "jscode2session",
        "token",
        "stable_token",
        "getuserphonenumber",
        "msg_sec_check",
        "subscribe_send",
        "wecom_gettoken",
        "wecom_send",
    ],
)
def test_every_api_takes_faults(wx: WeChatApi, control: EmulatorControl, api: str) -> None:
    control.faults(api, http_status=503)
    paths = {
        "jscode2session": ("GET", "/sns/jscode2session"),
        "token": ("GET", "/cgi-bin/token"),
        "stable_token": ("POST", "/cgi-bin/stable_token"),
        "getuserphonenumber": ("POST", "/wxa/business/getuserphonenumber"),
        "msg_sec_check": ("POST", "/wxa/msg_sec_check"),
        "subscribe_send": ("POST", "/cgi-bin/message/subscribe/send"),
        "wecom_gettoken": ("GET", "/cgi-bin/gettoken"),
        "wecom_send": ("POST", "/cgi-bin/message/send"),
    }
    method, path = paths[api]
    assert wx.http.request(method, f"{wx.base_url}{path}", timeout=5).status_code == 503
    [call] = control.calls(api)
    assert (call["status"], call["fault"]["http_status"]) == (503, 503)


def test_calls_are_recorded_with_query_body_and_trace_headers(
    wx: WeChatApi, control: EmulatorControl, http: requests.Session
) -> None:
    openid = control.new_login_code().openid
    token = wx.stable_token()
    trace = {
        "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "tracestate": "minishop=1",
        "baggage": "user=alice",
        "sw8": "1-ZmFrZQ==-ZmFrZQ==-0-bWluaXNob3A=-aW5zdGFuY2U=-L2FwaQ==-ZW11bGF0b3I=",
    }
    body: dict[str, Any] = {"content": "茶", "version": 2, "scene": 1, "openid": openid}
    response = http.post(
        f"{wx.base_url}/wxa/msg_sec_check",
        params={"access_token": token},
        json=body,
        headers={**trace, "X-Other": "not recorded"},
        timeout=5,
    )
    assert response.json()["errcode"] == 0
    [call] = control.calls("msg_sec_check")
    assert call["method"] == "POST"
    assert call["path"] == "/wxa/msg_sec_check"
    assert call["query"] == {"access_token": token}
    assert call["json"] == body
    assert call["headers"] == trace
    assert (call["status"], call["errcode"], call["fault"]) == (200, 0, None)
    assert abs(call["timestamp"] - time.time()) < 60


def test_calls_record_errors_and_only_present_headers(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    wx.code2session("bad-code")
    [call] = control.calls("jscode2session")
    assert (call["errcode"], call["headers"], call["json"]) == (40029, {}, None)
    assert call["query"]["js_code"] == "bad-code"


def test_calls_keep_their_order_and_filter_by_api(wx: WeChatApi, control: EmulatorControl) -> None:
    wx.token()
    wx.stable_token()
    wx.token()
    assert [c["api"] for c in control.calls()] == ["token", "stable_token", "token"]
    assert len(control.calls("token")) == 2
    assert control.calls("wecom_send") == []


def test_control_calls_are_not_recorded(control: EmulatorControl) -> None:
    control.new_login_code()
    control.messages()
    assert control.calls() == []


def test_unknown_api_names_are_refused(control: EmulatorControl) -> None:
    with pytest.raises(EmulatorControlError, match="api must be one of"):
        control.calls("jscode2sesion")
    with pytest.raises(EmulatorControlError, match="api must be one of"):
        control.faults("pay", errcode=-1)
