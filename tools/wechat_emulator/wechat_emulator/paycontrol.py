"""The Pay part of the control API (/__emulator/pay/): keys, the payer's phone, run-time knobs.

It plays what WeChat Pay cannot be asked for: the user paying (or failing to pay) in the
cashier, the refund outcome the bank reaches, and the key material a test merchant needs.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from flask import Blueprint
from flask.typing import ResponseReturnValue

from . import paynotify
from .control import Body, ControlError
from .pay import refresh_trade_state, rfc3339, transaction_json
from .paycrypto import private_pem, verify
from .state import current_state

bp = Blueprint("pay_control", __name__, url_prefix="/__emulator/pay")

MAX_DUPLICATES = 50
MAX_DELAY_SECONDS = 3600.0
SERIAL_MODES = ("public_key", "certificate")
REFUND_OUTCOMES = ("SUCCESS", "ABNORMAL", "CLOSED", "PROCESSING")
_TIMESTAMP = re.compile(r"[0-9]{10}")
_NONCE_STR = re.compile(r"[0-9A-Za-z]{1,32}")
_PACKAGE = re.compile(r"prepay_id=[0-9A-Za-z]{1,64}")


@bp.errorhandler(ControlError)
def _render_error(error: ControlError) -> ResponseReturnValue:
    return {"error": error.message}, error.status


@bp.get("/keys")
def keys() -> ResponseReturnValue:
    """What a merchant configures: ids, the platform's public key and certificate, the APIv3
    key; plus the merchant private key when the emulator generated it (test-only convenience)."""
    state = current_state()
    config, material = state.config.pay, state.pay_keys
    answer: dict[str, Any] = {
        "mchid": config.mchid,
        "appid": state.config.appid,
        "merchant_serial": config.merchant_serial,
        "apiv3_key": config.apiv3_key,
        "public_key_id": config.public_key_id,
        "platform_public_key": material.platform_public_pem,
        "platform_serial": config.platform_serial,
        "platform_certificate": material.certificate_pem,
        "merchant_private_key": None,
    }
    if material.merchant_private_key is not None:
        answer["merchant_private_key"] = private_pem(material.merchant_private_key)
    return answer


def _settings_json() -> dict[str, Any]:
    pay = current_state().pay
    return {
        "retry_scale": pay.retry_scale,
        "serial_mode": pay.serial_mode,
        "refund_outcome": pay.refund_outcome,
        "signtest_answers": pay.signtest_answers,
    }


@bp.get("/settings")
def get_settings() -> ResponseReturnValue:
    state = current_state()
    with state.lock:
        return _settings_json()


@bp.post("/settings")
def update_settings() -> ResponseReturnValue:
    """`retry_scale` (multiplies the notification retry schedule), `serial_mode` (what
    Wechatpay-Serial names: the public key id, or the platform certificate's serial) and
    `signtest_answers` (how many next 2xx answers carry a WECHATPAY/SIGNTEST/ probe)."""
    body = Body({"retry_scale", "serial_mode", "signtest_answers"})
    signtest_answers = body.integer("signtest_answers", 0, 1_000_000)
    retry_scale = body.number("retry_scale", 0, 1000) if "retry_scale" in body.data else None
    serial_mode = body.text("serial_mode")
    if serial_mode is not None and serial_mode not in SERIAL_MODES:
        raise ControlError(f"serial_mode must be one of {', '.join(SERIAL_MODES)}")
    state = current_state()
    with state.lock:
        if retry_scale is not None:
            state.pay.retry_scale = retry_scale
        if serial_mode is not None:
            state.pay.serial_mode = serial_mode
        if signtest_answers is not None:
            state.pay.signtest_answers = signtest_answers
        return _settings_json()


@bp.post("/refund-outcome")
def set_refund_outcome() -> ResponseReturnValue:
    """The status the next refunds reach (PROCESSING: they stay processing)."""
    body = Body({"status"})
    status = body.required_text("status")
    if status not in REFUND_OUTCOMES:
        raise ControlError(f"status must be one of {', '.join(REFUND_OUTCOMES)}")
    state = current_state()
    with state.lock:
        state.pay.refund_outcome = status
        return _settings_json()


@bp.post("/request-payment")
def request_payment() -> ResponseReturnValue:
    """What wx.requestPayment checks on the phone: the mini-program's payment parameters.

    paySign must be the merchant key's SHA256withRSA over `appId\ntimeStamp\nnonceStr\npackage\n`
    and package must name the order's current prepay_id. Answers the order; paying it is a
    separate `/succeed` (or `/fail`).
    """
    body = Body({"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"})
    state = current_state()
    app_id = body.text("appId") or state.config.appid
    time_stamp = body.required_text("timeStamp", _TIMESTAMP)
    nonce_str = body.required_text("nonceStr", _NONCE_STR)
    package = body.required_text("package", _PACKAGE)
    if body.required_text("signType") != "RSA":
        raise ControlError('signType must be "RSA"')
    pay_sign = body.required_text("paySign")
    if app_id != state.config.appid:
        raise ControlError(f"appId {app_id} is not the emulator's mini-program")
    message = f"{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n".encode()
    if not verify(state.pay_keys.merchant_public_key, message, pay_sign):
        raise ControlError("paySign does not verify with the merchant key")
    prepay_id = package.removeprefix("prepay_id=")
    with state.lock:
        now = state.clock.now()
        order = next((o for o in state.pay.orders.values() if o.prepay_id == prepay_id), None)
        if order is None or now >= order.prepay_expires_at:
            raise ControlError(f"prepay_id {prepay_id} is unknown or expired", 404)
        refresh_trade_state(order, now)
        if order.trade_state not in ("NOTPAY", "PAYERROR"):
            raise ControlError(f"the order is {order.trade_state}, not payable", 409)
        return {"out_trade_no": order.out_trade_no, "transaction": transaction_json(order)}


def _new_transaction_id() -> str:
    return "4200" + "".join(secrets.choice("0123456789") for _ in range(24))


@bp.post("/<out_trade_no>/succeed")
def succeed(out_trade_no: str) -> ResponseReturnValue:
    """The user pays: the order becomes SUCCESS and TRANSACTION.SUCCESS goes to notify_url."""
    body = Body(
        {"payer_total", "duplicates", "delay_seconds", "corrupt_signature", "amount_override"}
    )
    duplicates = body.integer("duplicates", 0, MAX_DUPLICATES) or 0
    delay_seconds = (
        body.number("delay_seconds", 0, MAX_DELAY_SECONDS) if "delay_seconds" in body.data else 0.0
    )
    corrupt = body.data.get("corrupt_signature", False)
    if not isinstance(corrupt, bool):
        raise ControlError("corrupt_signature must be true or false")
    amount_override = body.integer("amount_override", 1, 2**31 - 1)
    state = current_state()
    with state.lock:
        order = state.pay.orders.get(out_trade_no)
        if order is None:
            raise ControlError(f"unknown out_trade_no {out_trade_no}", 404)
        now = state.clock.now()
        refresh_trade_state(order, now)
        if order.trade_state not in ("NOTPAY", "PAYERROR"):
            raise ControlError(f"the order is {order.trade_state}, not payable", 409)
        payer_total = body.integer("payer_total", 0, order.total)
        order.trade_state = "SUCCESS"
        order.transaction_id = _new_transaction_id()
        order.success_time = rfc3339(now)
        order.payer_total = order.total if payer_total is None else payer_total
        plaintext = transaction_json(order)
        if amount_override is not None:
            plaintext["amount"] = plaintext["amount"] | {
                "total": amount_override,
                "payer_total": amount_override,
            }
        notification = paynotify.build(
            state,
            order.notify_url,
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            plaintext,
            rfc3339(now),
        )
    paynotify.send(
        state,
        notification,
        copies=1 + duplicates,
        delay_seconds=delay_seconds,
        corrupt_signature=corrupt,
    )
    return {"transaction": plaintext, "notification_id": notification.id}


@bp.post("/<out_trade_no>/fail")
def fail(out_trade_no: str) -> ResponseReturnValue:
    """The payment fails (PAYERROR); WeChat sends no notification for it."""
    Body(set())
    state = current_state()
    with state.lock:
        order = state.pay.orders.get(out_trade_no)
        if order is None:
            raise ControlError(f"unknown out_trade_no {out_trade_no}", 404)
        refresh_trade_state(order, state.clock.now())
        if order.trade_state not in ("NOTPAY", "PAYERROR"):
            raise ControlError(f"the order is {order.trade_state}, not payable", 409)
        order.trade_state = "PAYERROR"
        return {"transaction": transaction_json(order)}
