"""Access tokens: /cgi-bin/token, /cgi-bin/stable_token, and how business calls check them."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from emulator_helpers import CORPID, CORPSECRET, WRONG, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl

CHECK = {"content": "hello", "version": 2, "scene": 1}


def check_with(wx: WeChatApi, control: EmulatorControl, token: str | None) -> Any:
    """A business call (msg_sec_check) authenticated with `token`."""
    openid = control.new_login_code(openid="oTokenUser").openid
    return wx.post("/wxa/msg_sec_check", {**CHECK, "openid": openid}, access_token=token)


def works(answer: Any) -> bool:
    return bool(answer.get("errcode") == 0)


def test_token_answers_a_new_token_on_every_call(wx: WeChatApi) -> None:
    first, second = wx.token_answer(), wx.token_answer()
    assert set(first) == {"access_token", "expires_in"}
    assert first["expires_in"] == 7200
    assert first["access_token"] != second["access_token"]


def test_the_previous_token_works_for_five_more_minutes(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    old = wx.token()
    control.advance_clock(100)
    new = wx.token()
    control.advance_clock(295)
    assert works(check_with(wx, control, old))
    control.advance_clock(5)
    assert_error(check_with(wx, control, old), 40001)
    assert works(check_with(wx, control, new))


def test_a_token_expires_after_its_ttl(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(token_ttl_seconds=60)
    answer = wx.token_answer()
    assert answer["expires_in"] == 60
    control.advance_clock(55)
    assert works(check_with(wx, control, answer["access_token"]))
    control.advance_clock(5)
    assert_error(check_with(wx, control, answer["access_token"]), 42001)


def test_an_expired_token_stays_expired_after_a_new_one(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    old = wx.token()
    control.advance_clock(7200)
    wx.token()
    assert_error(check_with(wx, control, old), 42001)


def test_missing_and_unknown_tokens(wx: WeChatApi, control: EmulatorControl) -> None:
    assert_error(check_with(wx, control, None), 41001)
    assert_error(check_with(wx, control, ""), 41001)
    assert_error(check_with(wx, control, "not-a-token"), 40001)


def test_token_credentials_and_grant_type(wx: WeChatApi) -> None:
    assert_error(wx.token_answer(appid="wx1111111111111111"), 40013)
    assert_error(wx.token_answer(secret=WRONG), 40125)
    assert_error(wx.token_answer(grant_type=None), 40002)
    assert_error(wx.token_answer(grant_type="authorization_code"), 40002)


def test_stable_token_answers_the_same_token_while_valid(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    first = wx.stable_token_answer()
    control.advance_clock(1000)
    second = wx.stable_token_answer()
    assert second["access_token"] == first["access_token"]
    assert abs(second["expires_in"] - (7200 - 1000)) <= 1
    assert works(check_with(wx, control, first["access_token"]))


def test_stable_token_is_replaced_once_expired(wx: WeChatApi, control: EmulatorControl) -> None:
    first = wx.stable_token()
    control.advance_clock(7200)
    assert_error(check_with(wx, control, first), 42001)
    second = wx.stable_token_answer()
    assert second["access_token"] != first
    assert second["expires_in"] == 7200


def test_force_refresh_gives_a_new_token_and_the_old_one_a_grace(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    old = wx.stable_token()
    new = wx.stable_token(force_refresh=True)
    assert new != old
    assert wx.stable_token() == new
    control.advance_clock(295)
    assert works(check_with(wx, control, old))
    control.advance_clock(5)
    assert_error(check_with(wx, control, old), 40001)
    assert works(check_with(wx, control, new))


def test_the_grace_period_is_configurable(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(token_grace_seconds=0)
    old = wx.stable_token()
    wx.stable_token(force_refresh=True)
    assert_error(check_with(wx, control, old), 40001)


def test_force_refresh_sooner_than_30s_keeps_the_token(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    first = wx.stable_token(force_refresh=True)
    control.advance_clock(25)
    assert wx.stable_token(force_refresh=True) == first
    control.advance_clock(5)
    assert wx.stable_token(force_refresh=True) != first


def test_force_refresh_is_limited_per_day(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(force_refresh_daily_limit=3, force_refresh_interval_seconds=0)
    tokens = {wx.stable_token(force_refresh=True) for _ in range(3)}
    assert len(tokens) == 3
    assert_error(wx.stable_token_answer(force_refresh=True), 45009)
    assert wx.stable_token() in tokens  # a normal call still answers the current token
    control.advance_clock(86_400)
    assert wx.stable_token(force_refresh=True) not in tokens


def test_stable_tokens_are_separate_from_token_tokens(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    stable = wx.stable_token()
    plain = wx.token()
    wx.token()  # a new /cgi-bin/token supersedes the plain one only
    assert wx.stable_token() == stable
    control.advance_clock(300)
    assert works(check_with(wx, control, stable))
    assert_error(check_with(wx, control, plain), 40001)


def test_stable_token_input_errors(wx: WeChatApi, http: Any) -> None:
    assert_error(wx.stable_token_answer(appid="wx1111111111111111"), 40013)
    assert_error(wx.stable_token_answer(secret=WRONG), 40125)
    assert_error(wx.stable_token_answer(secret=None), 41004)
    assert_error(wx.stable_token_answer(grant_type="password"), 40002)
    assert_error(wx.stable_token_answer(force_refresh="yes"), 47001)
    response = http.post(f"{wx.base_url}/cgi-bin/stable_token", data=b"{not json", timeout=5)
    assert_error(response.json(), 47001)
    assert_error(wx.get("/cgi-bin/stable_token"), 43002)


def test_concurrent_stable_token_calls_agree(wx: WeChatApi) -> None:
    with ThreadPoolExecutor(max_workers=20) as pool:
        tokens = set(pool.map(lambda _: wx.stable_token(), range(40)))
    assert len(tokens) == 1


def test_the_ttl_is_configurable_for_all_token_kinds(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    control.configure(token_ttl_seconds=5)
    assert wx.token_answer()["expires_in"] == 5
    assert wx.stable_token_answer()["expires_in"] == 5
    assert (
        wx.get(
            "/cgi-bin/gettoken",
            corpid=CORPID,
            corpsecret=CORPSECRET,
        )["expires_in"]
        == 5
    )


def test_a_wecom_token_is_not_a_mini_program_token(wx: WeChatApi, control: EmulatorControl) -> None:
    assert_error(check_with(wx, control, wx.wecom_token()), 40001)
