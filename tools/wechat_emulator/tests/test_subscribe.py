"""POST /cgi-bin/message/subscribe/send: templates, granted subscriptions, data validation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from emulator_helpers import WeChatApi, assert_error

from wechat_emulator.testing import EmulatorControl, EmulatorControlError

PATH = "/cgi-bin/message/subscribe/send"
TEMPLATE = "tpl-order-shipped"
DATA = {
    "character_string1": {"value": "MS20240101000001"},
    "thing2": {"value": "Longjing 100% spring"},
    "amount3": {"value": "168.00元"},
    "time4": {"value": "2024-01-01 12:00:00"},
}


@pytest.fixture()
def openid(control: EmulatorControl) -> str:
    control.register_template(TEMPLATE, keywords=list(DATA))
    openid = control.new_login_code().openid
    control.grant_subscription(openid, TEMPLATE)
    return openid


def send(wx: WeChatApi, openid: str | None, **overrides: Any) -> Any:
    body = {
        "touser": openid,
        "template_id": TEMPLATE,
        "page": "pages/orders/detail?no=MS20240101000001",
        "data": DATA,
        "miniprogram_state": "trial",
        "lang": "zh_CN",
        **overrides,
    }
    return wx.post(PATH, body, access_token=wx.stable_token())


def test_a_granted_subscription_sends_one_message(
    wx: WeChatApi, openid: str, control: EmulatorControl
) -> None:
    answer = send(wx, openid)
    assert answer["errcode"] == 0
    assert answer["errmsg"] == "ok"
    assert isinstance(answer["msgid"], int)
    [message] = control.messages()
    assert message["kind"] == "subscribe"
    assert message["msgid"] == answer["msgid"]
    assert message["touser"] == openid
    assert message["template_id"] == TEMPLATE
    assert message["data"] == DATA
    assert message["page"] == "pages/orders/detail?no=MS20240101000001"
    assert message["miniprogram_state"] == "trial"
    assert message["lang"] == "zh_CN"
    assert_error(send(wx, openid), 43101)  # the one subscription is used up
    assert control.user(openid)["subscriptions"] == {TEMPLATE: 0}


def test_each_grant_allows_one_send(wx: WeChatApi, openid: str, control: EmulatorControl) -> None:
    assert control.grant_subscription(openid, TEMPLATE, count=2) == 3
    assert [send(wx, openid)["errcode"] for _ in range(4)] == [0, 0, 0, 43101]
    assert len(control.messages(kind="subscribe")) == 3


def test_optional_fields_have_defaults(
    wx: WeChatApi, openid: str, control: EmulatorControl
) -> None:
    body = {"touser": openid, "template_id": TEMPLATE, "data": DATA}
    assert wx.post(PATH, body, access_token=wx.stable_token())["errcode"] == 0
    [message] = control.messages()
    assert (message["page"], message["miniprogram_state"], message["lang"]) == (
        "",
        "formal",
        "zh_CN",
    )


def test_without_a_grant_it_is_43101(wx: WeChatApi, control: EmulatorControl) -> None:
    control.register_template(TEMPLATE)
    assert_error(send(wx, control.new_login_code().openid), 43101)
    assert control.messages() == []


def test_an_unknown_openid_is_40003(wx: WeChatApi, openid: str) -> None:
    assert_error(send(wx, "oSomebodyElse"), 40003)
    assert_error(send(wx, None), 40003)


def test_an_unregistered_template_is_40037(wx: WeChatApi, openid: str) -> None:
    assert_error(send(wx, openid, template_id="tpl-never-registered"), 40037)


@pytest.mark.parametrize(
    ("data", "errmsg"),
    [
        ({**DATA, "thing2": "Longjing"}, "argument invalid! data.thing2.value invalid"),
        ({**DATA, "thing2": {"value": 3}}, "argument invalid! data.thing2.value invalid"),
        ({**DATA, "thing2": {"text": "x"}}, "argument invalid! data.thing2.value invalid"),
        (
            {k: v for k, v in DATA.items() if k != "time4"},
            "argument invalid! data.time4.value is empty",
        ),
        ({**DATA, "thing2": {"value": " "}}, "argument invalid! data.thing2.value is empty"),
        ({**DATA, "thing2": {"value": "x" * 21}}, "argument invalid! data.thing2.value invalid"),
        (
            {**DATA, "character_string1": {"value": "订单1"}},
            "argument invalid! data.character_string1.value invalid",
        ),
        ({**DATA, "amount3": {"value": "lots"}}, "argument invalid! data.amount3.value invalid"),
        (["not", "an", "object"], "argument invalid! data invalid"),
    ],
)
def test_invalid_data_is_47003_naming_the_field(
    wx: WeChatApi, openid: str, control: EmulatorControl, data: Any, errmsg: str
) -> None:
    answer = send(wx, openid, data=data)
    assert_error(answer, 47003)
    assert answer["errmsg"].startswith(errmsg + ", rid: ")
    assert control.user(openid)["subscriptions"] == {TEMPLATE: 1}  # nothing used up


def test_a_template_without_keywords_accepts_any_well_formed_data(
    wx: WeChatApi, control: EmulatorControl
) -> None:
    control.register_template("tpl-free")
    openid = control.new_login_code().openid
    control.grant_subscription(openid, "tpl-free")
    data = {"anything": {"value": "x" * 100}}
    answer = wx.post(
        PATH,
        {"touser": openid, "template_id": "tpl-free", "data": data},
        access_token=wx.stable_token(),
    )
    assert answer["errcode"] == 0


@pytest.mark.parametrize(
    "overrides", [{"miniprogram_state": "production"}, {"lang": "fr_FR"}, {"page": 7}]
)
def test_other_parameter_errors_are_47001(wx: WeChatApi, openid: str, overrides: Any) -> None:
    assert_error(send(wx, openid, **overrides), 47001)


def test_concurrent_sends_use_each_grant_once(
    wx: WeChatApi, openid: str, control: EmulatorControl
) -> None:
    control.grant_subscription(openid, TEMPLATE, count=9)
    token = wx.stable_token()
    body = {"touser": openid, "template_id": TEMPLATE, "data": DATA}
    with ThreadPoolExecutor(max_workers=30) as pool:
        answers = list(pool.map(lambda _: wx.post(PATH, body, access_token=token), range(30)))
    codes = sorted(answer["errcode"] for answer in answers)
    assert codes == [0] * 10 + [43101] * 20
    assert len(control.messages(kind="subscribe")) == 10


def test_grants_need_a_known_user_and_template(control: EmulatorControl) -> None:
    control.register_template(TEMPLATE)
    with pytest.raises(EmulatorControlError, match="unknown openid"):
        control.grant_subscription("oNobody", TEMPLATE)
    openid = control.new_login_code().openid
    with pytest.raises(EmulatorControlError, match="unknown template_id"):
        control.grant_subscription(openid, "tpl-nope")
