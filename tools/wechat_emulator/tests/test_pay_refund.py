"""Pay refunds: create (idempotent), query, outcomes, notifications, the REFUND trade state."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from pay_helpers import Merchant, decrypt
from test_pay import assert_pay_error

from wechat_emulator.testing import EmulatorControl, EmulatorControlError, notify_receiver

REFUNDS = "/v3/refund/domestic/refunds"
UNREACHABLE = "http://127.0.0.1:9/notify"


@pytest.fixture()
def paid(merchant: Merchant, control: EmulatorControl) -> dict[str, Any]:
    """A paid order of 1000 fen (no payment notification target)."""
    merchant.create("order-0001", UNREACHABLE, total=1000)
    return dict(control.pay_succeed("order-0001")["transaction"])


def refund(merchant: Merchant, number: str, fen: int, **extra: Any) -> requests.Response:
    body = {
        "out_trade_no": "order-0001",
        "out_refund_no": number,
        "amount": {"refund": fen, "total": 1000, "currency": "CNY"},
    } | extra
    return merchant.call("POST", REFUNDS, body)


def test_a_refund_is_processing_then_success_and_the_same_no_answers_it_again(
    merchant: Merchant, paid: dict[str, Any]
) -> None:
    answer = refund(merchant, "refund-1", 300, reason="缺货")
    assert answer.status_code == 200, answer.text
    assert merchant.verifies(answer.headers, answer.content)
    created = answer.json()
    assert created["status"] == "PROCESSING"
    assert (created["out_refund_no"], created["out_trade_no"]) == ("refund-1", "order-0001")
    assert created["transaction_id"] == paid["transaction_id"]
    assert created["amount"]["refund"] == 300 and created["amount"]["total"] == 1000
    queried = merchant.call("GET", f"{REFUNDS}/refund-1").json()
    assert queried["status"] == "SUCCESS" and queried["success_time"].endswith("+08:00")
    assert queried["refund_id"] == created["refund_id"]
    again = refund(merchant, "refund-1", 300, reason="缺货").json()
    assert again["refund_id"] == created["refund_id"]
    assert merchant.query("order-0001").json()["trade_state"] == "SUCCESS"  # partly refunded


def test_refunds_cannot_exceed_the_order_and_full_refund_is_trade_state_refund(
    merchant: Merchant, paid: dict[str, Any]
) -> None:
    assert refund(merchant, "refund-1", 600).status_code == 200
    assert_pay_error(refund(merchant, "refund-2", 401), 400, "PARAM_ERROR")
    by_transaction = merchant.call(
        "POST",
        REFUNDS,
        {
            "transaction_id": paid["transaction_id"],
            "out_refund_no": "refund-2",
            "amount": {"refund": 400, "total": 1000, "currency": "CNY"},
        },
    )
    assert by_transaction.status_code == 200, by_transaction.text
    order = merchant.query("order-0001").json()
    assert (order["trade_state"], order["trade_state_desc"]) == ("REFUND", "转入退款")
    assert_pay_error(refund(merchant, "refund-3", 1), 400, "PARAM_ERROR")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"out_trade_no": "order-9999"}, 404, "ORDER_NOT_EXIST"),
        ({"amount": {"refund": 100, "total": 999, "currency": "CNY"}}, 400, "PARAM_ERROR"),
        ({"amount": {"refund": 0, "total": 1000, "currency": "CNY"}}, 400, "PARAM_ERROR"),
        ({"amount": {"refund": 100, "total": 1000, "currency": "USD"}}, 400, "PARAM_ERROR"),
        ({"out_refund_no": ""}, 400, "PARAM_ERROR"),
        ({"notify_url": "not a url"}, 400, "PARAM_ERROR"),
    ],
)
def test_refund_validation(
    merchant: Merchant, paid: dict[str, Any], change: dict[str, Any], status: int, code: str
) -> None:
    assert_pay_error(refund(merchant, "refund-1", 100, **change), status, code)


def test_an_out_refund_no_reused_with_another_body_is_refused(
    merchant: Merchant, paid: dict[str, Any]
) -> None:
    refund(merchant, "refund-1", 100)
    assert_pay_error(refund(merchant, "refund-1", 200), 400, "PARAM_ERROR")


def test_an_unpaid_order_cannot_be_refunded(merchant: Merchant) -> None:
    merchant.create("order-0001", UNREACHABLE, total=1000)
    assert_pay_error(refund(merchant, "refund-1", 100), 400, "PARAM_ERROR")
    assert_pay_error(merchant.call("GET", f"{REFUNDS}/refund-1"), 404, "ORDER_NOT_EXIST")


@pytest.mark.parametrize(
    ("outcome", "summary"),
    [("SUCCESS", "退款成功"), ("ABNORMAL", "退款异常"), ("CLOSED", "退款关闭")],
)
def test_the_refund_outcome_is_notified(
    merchant: Merchant,
    control: EmulatorControl,
    paid: dict[str, Any],
    outcome: str,
    summary: str,
) -> None:
    control.set_refund_outcome(outcome)
    with notify_receiver() as receiver:
        created = refund(merchant, "refund-1", 1000, notify_url=receiver.url).json()
        (received,) = receiver.wait_for(1)
    assert merchant.verifies(received.headers, received.body)
    envelope = json.loads(received.body)
    assert (envelope["event_type"], envelope["summary"]) == (f"REFUND.{outcome}", summary)
    assert envelope["resource"]["original_type"] == "refund"
    plaintext = decrypt(merchant.keys.apiv3_key, envelope["resource"])
    assert plaintext["refund_status"] == outcome
    assert plaintext["refund_id"] == created["refund_id"]
    assert plaintext["amount"] == {
        "total": 1000,
        "refund": 1000,
        "payer_total": 1000,
        "payer_refund": 1000,
    }
    trade_state = merchant.query("order-0001").json()["trade_state"]
    assert trade_state == ("REFUND" if outcome == "SUCCESS" else "SUCCESS")
    # A closed refund frees its amount; an abnormal one keeps it.
    again = refund(merchant, "refund-2", 1000)
    if outcome == "CLOSED":
        assert again.status_code == 200
    else:
        assert_pay_error(again, 400, "PARAM_ERROR")


def test_a_processing_outcome_stays_processing(
    merchant: Merchant, control: EmulatorControl, paid: dict[str, Any]
) -> None:
    control.set_refund_outcome("PROCESSING")
    refund(merchant, "refund-1", 100)
    assert merchant.call("GET", f"{REFUNDS}/refund-1").json()["status"] == "PROCESSING"
    with pytest.raises(EmulatorControlError) as bad:
        control.set_refund_outcome("DONE")
    assert bad.value.status == 400
