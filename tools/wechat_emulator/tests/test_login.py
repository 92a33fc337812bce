"""GET /sns/jscode2session: wx.login codes are single-use, expire, and rotate the session_key."""

from __future__ import annotations

import base64
import re
from concurrent.futures import ThreadPoolExecutor

from emulator_helpers import WRONG, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl

RID = re.compile(r", rid: [0-9a-f]{8}-[0-9a-f]{8}-[0-9a-f]{8}$")


def test_a_login_code_gives_the_openid_and_a_session_key(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    login = control.new_login_code()
    answer = wx.code2session(login.code)
    assert set(answer) == {"openid", "session_key"}
    assert answer["openid"] == login.openid
    assert re.fullmatch(r"o[A-Za-z0-9_-]{27}", login.openid)
    assert len(base64.b64decode(answer["session_key"], validate=True)) == 16
    assert control.user(login.openid)["session_key"] == answer["session_key"]


def test_unionid_only_for_users_that_have_one(wx: WeChatApi, control: EmulatorControl) -> None:
    login = control.new_login_code(openid="oChosenOpenid", unionid="oUnionOfChosen")
    assert wx.code2session(login.code) == {
        "openid": "oChosenOpenid",
        "session_key": control.user("oChosenOpenid")["session_key"],
        "unionid": "oUnionOfChosen",
    }


def test_every_login_rotates_the_session_key(wx: WeChatApi, control: EmulatorControl) -> None:
    keys = {
        wx.code2session(control.new_login_code(openid="oSameUser").code)["session_key"]
        for _ in range(5)
    }
    assert len(keys) == 5


def test_a_code_works_once(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_login_code().code
    assert "openid" in wx.code2session(code)
    assert_error(wx.code2session(code), 40163)


def test_a_code_expires_after_five_minutes(wx: WeChatApi, control: EmulatorControl) -> None:
    fresh, stale = control.new_login_code().code, control.new_login_code().code
    control.advance_clock(295)
    assert "openid" in wx.code2session(fresh)
    control.advance_clock(5)
    assert_error(wx.code2session(stale), 40029)


def test_an_unknown_code_is_invalid(wx: WeChatApi) -> None:
    answer = wx.code2session("0a1b2c3d4e5f")
    assert_error(answer, 40029)
    assert RID.search(answer["errmsg"]), answer["errmsg"]
    assert answer["errmsg"].startswith("invalid code")


def test_app_credentials_are_checked(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_login_code().code
    assert_error(wx.code2session(code, appid="wx1111111111111111"), 40013)
    assert_error(wx.code2session(code, secret=WRONG), 40125)
    assert_error(wx.code2session(code, appid=None), 41002)
    assert_error(wx.code2session(code, secret=None), 41004)
    assert_error(wx.code2session(None), 41008)
    # None of those used the code up.
    assert "openid" in wx.code2session(code)


def test_grant_type_must_be_authorization_code(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_login_code().code
    assert_error(wx.code2session(code, grant_type=None), 40002)
    assert_error(wx.code2session(code, grant_type="client_credential"), 40002)


def test_unknown_query_parameters_are_ignored(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_login_code().code
    assert "openid" in wx.code2session(code, connect_redirect="1", lang="zh_CN")


def test_per_user_minute_quota(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(login_quota_per_minute=2)
    codes = [control.new_login_code(openid="oBusyUser").code for _ in range(4)]
    assert "openid" in wx.code2session(codes[0])
    assert "openid" in wx.code2session(codes[1])
    assert_error(wx.code2session(codes[2]), 45011)
    # Another user has a quota of their own.
    assert "openid" in wx.code2session(control.new_login_code(openid="oCalmUser").code)
    # A minute later the refused code still works: the quota check did not use it up.
    control.advance_clock(60)
    assert "openid" in wx.code2session(codes[2])
    assert "openid" in wx.code2session(codes[3])


def test_default_quota_is_100_a_minute(wx: WeChatApi, control: EmulatorControl) -> None:
    assert control.configure()["login_quota_per_minute"] == 100


def test_concurrent_redemptions_of_one_code_succeed_exactly_once(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    code = control.new_login_code().code
    with ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(lambda _: wx.code2session(code), range(50)))
    successes = [a for a in answers if "openid" in a]
    assert len(successes) == 1
    assert sorted(a.get("errcode") for a in answers if a not in successes) == [40163] * 49


def test_concurrent_logins_of_many_users(wx: WeChatApi, control: EmulatorControl) -> None:
    logins = [control.new_login_code() for _ in range(100)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        answers = list(pool.map(lambda login: wx.code2session(login.code), logins))
    assert [a["openid"] for a in answers] == [login.openid for login in logins]
    assert len({a["session_key"] for a in answers}) == 100
