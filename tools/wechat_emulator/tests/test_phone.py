"""POST /wxa/business/getuserphonenumber: phone codes are single-use and expire."""

from __future__ import annotations

import time
from typing import Any

import pytest
from emulator_helpers import APPID, NOT_ISSUED, WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl

PATH = "/wxa/business/getuserphonenumber"


def phone_number(wx: WeChatApi, code: Any, token: str | None = None) -> Any:
    return wx.post(PATH, {"code": code}, access_token=token or wx.stable_token())


def test_a_phone_code_gives_the_phone_number(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_phone_code("13800138000")
    answer = phone_number(wx, code)
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    info = answer["phone_info"]
    watermark = info.pop("watermark")
    assert info == {
        "phoneNumber": "13800138000",
        "purePhoneNumber": "13800138000",
        "countryCode": "86",
    }
    assert watermark["appid"] == APPID
    assert abs(watermark["timestamp"] - time.time()) < 60


def test_a_foreign_number_carries_its_country_code(wx: WeChatApi, control: EmulatorControl) -> None:
    info = phone_number(wx, control.new_phone_code("2025550123", country_code="1"))["phone_info"]
    assert info["phoneNumber"] == "+12025550123"
    assert info["purePhoneNumber"] == "2025550123"
    assert info["countryCode"] == "1"


def test_country_code_can_come_as_a_number(wx: WeChatApi, control: EmulatorControl) -> None:
    control.configure(phone_country_code_type="number")
    info = phone_number(wx, control.new_phone_code("13800138000"))["phone_info"]
    assert info["countryCode"] == 86


def test_a_phone_code_works_once(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_phone_code("13800138000")
    assert phone_number(wx, code)["errcode"] == 0
    assert_error(phone_number(wx, code), 40029)


def test_a_phone_code_expires_after_five_minutes(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_phone_code("13800138000")
    token = wx.stable_token()
    control.advance_clock(300)
    assert_error(phone_number(wx, code, token), 40029)


@pytest.mark.parametrize("code", ["unknown-code", "", None, 12345])
def test_bad_codes(wx: WeChatApi, code: Any) -> None:
    assert_error(phone_number(wx, code), 40029)


def test_the_token_is_checked_first(wx: WeChatApi, control: EmulatorControl) -> None:
    code = control.new_phone_code("13800138000")
    assert_error(wx.post(PATH, {"code": code}), 41001)
    assert_error(wx.post(PATH, {"code": code}, access_token=NOT_ISSUED), 40001)
    assert phone_number(wx, code)["errcode"] == 0  # still unused


def test_get_is_refused(wx: WeChatApi) -> None:
    assert_error(wx.get(PATH, access_token=wx.token()), 43002)
