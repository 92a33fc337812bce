"""The emulator driven by wechatpayv3 (PyPI), the SDK Python shops use, unchanged.

wechatpayv3 always talks to https://api.mch.weixin.qq.com: it has no base-url option, and its
`proxy` option is a requests proxy, not a host. Its one gate-way is the attribute
`WeChatPay._core._gate_way`, set here to the emulator. Use public-key mode (public_key,
public_key_id): certificate mode fetches /v3/certificates from the real host while the client is
being constructed, unless cert_dir already holds the platform certificate (the last test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from wechat_emulator.testing import EmulatorControl, EmulatorProcess, PayKeys, notify_receiver


def _client(emulator: EmulatorProcess, keys: PayKeys, **mode: str) -> WeChatPay:
    assert keys.merchant_private_key is not None
    client = WeChatPay(
        wechatpay_type=WeChatPayType.JSAPI,
        mchid=keys.mchid,
        private_key=keys.merchant_private_key,
        cert_serial_no=keys.merchant_serial,
        appid=keys.appid,
        apiv3_key=keys.apiv3_key,
        notify_url="https://shop.example.com/api/v1/pay/notify",
        **mode,
    )
    client._core._gate_way = emulator.base_url
    return client


@pytest.fixture()
def keys(control: EmulatorControl) -> PayKeys:
    return control.pay_keys()


@pytest.fixture()
def wxpay(emulator: EmulatorProcess, keys: PayKeys) -> WeChatPay:
    return _client(
        emulator, keys, public_key=keys.platform_public_key, public_key_id=keys.public_key_id
    )


def test_create_query_close_and_refund_through_wechatpayv3(
    wxpay: WeChatPay, control: EmulatorControl
) -> None:
    code, message = wxpay.pay(
        description="MiniShop 订单 2026-0001",
        out_trade_no="order-0001",
        amount={"total": 1200},
        payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    )
    assert code == 200, message
    assert json.loads(message)["prepay_id"].startswith("wx")
    code, message = wxpay.query(out_trade_no="order-0001")
    assert (code, json.loads(message)["trade_state"]) == (200, "NOTPAY")
    code, _ = wxpay.close(out_trade_no="order-0001")
    assert code == 204
    code, message = wxpay.query(out_trade_no="order-0001")
    assert json.loads(message)["trade_state"] == "CLOSED"

    wxpay.pay(
        description="MiniShop 订单 2026-0002",
        out_trade_no="order-0002",
        amount={"total": 1200},
        payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        notify_url="http://127.0.0.1:9/notify",
    )
    control.pay_succeed("order-0002")
    code, message = wxpay.refund(
        out_refund_no="refund-0002",
        amount={"refund": 1200, "total": 1200, "currency": "CNY"},
        out_trade_no="order-0002",
    )
    assert (code, json.loads(message)["status"]) == (200, "PROCESSING")
    code, message = wxpay.query_refund(out_refund_no="refund-0002")
    assert (code, json.loads(message)["status"]) == (200, "SUCCESS")
    code, message = wxpay.query(out_trade_no="order-0002")
    assert json.loads(message)["trade_state"] == "REFUND"


@pytest.mark.parametrize("corrupt_signature", [False, True])
def test_wechatpayv3_parses_and_verifies_a_notification(
    wxpay: WeChatPay, control: EmulatorControl, corrupt_signature: bool
) -> None:
    with notify_receiver() as receiver:
        wxpay.pay(
            description="MiniShop 订单",
            out_trade_no="order-0001",
            amount={"total": 800},
            payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            notify_url=receiver.url,
        )
        control.pay_succeed("order-0001", corrupt_signature=corrupt_signature)
        (received,) = receiver.wait_for(1)
    parsed = wxpay.callback(received.headers, received.body)
    if corrupt_signature:
        assert parsed is None  # the SDK refuses a notification whose signature fails
        return
    assert parsed["event_type"] == "TRANSACTION.SUCCESS"
    assert parsed["resource"]["out_trade_no"] == "order-0001"
    assert parsed["resource"]["trade_state"] == "SUCCESS"
    assert parsed["resource"]["amount"]["total"] == 800


def test_certificate_mode_with_the_certificate_in_cert_dir(
    emulator: EmulatorProcess, control: EmulatorControl, keys: PayKeys, tmp_path: Path
) -> None:
    control.pay_settings(serial_mode="certificate")
    (tmp_path / "platform.pem").write_text(keys.platform_certificate)
    wxpay = _client(emulator, keys, cert_dir=str(tmp_path))
    code, message = wxpay.pay(
        description="MiniShop 订单",
        out_trade_no="order-0001",
        amount={"total": 100},
        payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    )
    assert code == 200, message
    code, message = wxpay._core.request("/v3/certificates")
    assert code == 200
    assert json.loads(message)["data"][0]["serial_no"] == keys.platform_serial
