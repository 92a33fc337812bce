"""Pay notifications: encrypted, signed over the raw body, retried, duplicated, cancelled."""

from __future__ import annotations

import json
import time

import pytest
from pay_helpers import Merchant, decrypt

from wechat_emulator.paynotify import RETRY_SCHEDULE
from wechat_emulator.testing import EmulatorControl, EmulatorControlError, Receiver, notify_receiver

FAST = 0.001  # 15 s retries become 15 ms


def _check(merchant: Merchant, receiver: Receiver, index: int = 0) -> dict[str, object]:
    """The index-th notification verifies and decrypts; returns its envelope with the plaintext."""
    received = receiver.received[index]
    assert merchant.verifies(received.headers, received.body)
    assert received.headers["Wechatpay-Serial"] == merchant.keys.public_key_id
    assert received.headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    envelope = json.loads(received.body)
    envelope["plaintext"] = decrypt(merchant.keys.apiv3_key, envelope["resource"])
    return envelope


def test_a_payment_notifies_notify_url_with_the_query_shape(
    merchant: Merchant, control: EmulatorControl
) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url, total=990)
        paid = control.pay_succeed("order-0001", payer_total=900)
        receiver.wait_for(1)
        envelope = _check(merchant, receiver)
    assert envelope["id"] == paid["notification_id"]
    assert envelope["event_type"] == "TRANSACTION.SUCCESS"
    assert envelope["resource_type"] == "encrypt-resource"
    assert envelope["summary"] == "支付成功"
    resource = envelope["resource"]
    assert isinstance(resource, dict)
    assert resource["original_type"] == "transaction"
    assert resource["algorithm"] == "AEAD_AES_256_GCM"
    assert len(resource["nonce"]) == 12
    assert envelope["plaintext"] == merchant.query("order-0001").json() == paid["transaction"]
    assert receiver.received[0].headers["Content-Type"] == "application/json"
    calls = control.calls("pay_notify")
    assert [(c["attempt"], c["status"], c["error"]) for c in calls] == [(1, 204, None)]
    assert calls[0]["url"] == receiver.url


def test_a_failing_notify_url_is_retried_until_it_answers_2xx(
    merchant: Merchant, control: EmulatorControl
) -> None:
    control.pay_settings(retry_scale=FAST)
    with notify_receiver(statuses=[500, 404, 500]) as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001")
        received = receiver.wait_for(4)
        time.sleep(0.3)  # would be several more retries at this scale
        assert len(receiver.received) == 4
    assert len({r.body for r in received}) == 1  # the same bytes each time
    assert len({r.headers["Wechatpay-Nonce"] for r in received}) == 4  # signed afresh
    calls = control.calls("pay_notify")
    assert [(c["attempt"], c["status"]) for c in calls] == [(1, 500), (2, 404), (3, 500), (4, 204)]


def test_retries_follow_wechats_schedule_and_give_up_after_15(
    merchant: Merchant, control: EmulatorControl
) -> None:
    assert (
        sum(RETRY_SCHEDULE)
        == 15 + 15 + 30 + 180 + 600 + 1200 + 3 * 1800 + 3600 + 3 * 10800 + 2 * 21600
    )
    control.pay_settings(retry_scale=0.00001)
    with notify_receiver(default=500) as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001")
        receiver.wait_for(16)
        time.sleep(0.5)
        assert len(receiver.received) == 16


def test_an_unreachable_notify_url_is_recorded_with_its_error(
    merchant: Merchant, control: EmulatorControl
) -> None:
    control.pay_settings(retry_scale=FAST)
    merchant.create("order-0001", "http://127.0.0.1:9/notify")
    control.pay_succeed("order-0001")
    deadline = time.monotonic() + 10
    while len(control.calls("pay_notify")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    first = control.calls("pay_notify")[0]
    assert first["status"] is None and "Connection refused" in first["error"]


def test_duplicates_arrive_concurrently_with_the_same_id(
    merchant: Merchant, control: EmulatorControl
) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001", duplicates=3)
        receiver.wait_for(4)
        envelopes = [_check(merchant, receiver, index) for index in range(4)]
    assert len({e["id"] for e in envelopes}) == 1
    assert sorted(c["copy"] for c in control.calls("pay_notify")) == [0, 1, 2, 3]


def test_a_corrupt_signature_does_not_verify(merchant: Merchant, control: EmulatorControl) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001", corrupt_signature=True)
        (received,) = receiver.wait_for(1)
    assert not merchant.verifies(received.headers, received.body)
    assert decrypt(merchant.keys.apiv3_key, json.loads(received.body)["resource"])


def test_amount_override_changes_only_the_notification(
    merchant: Merchant, control: EmulatorControl
) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url, total=500)
        control.pay_succeed("order-0001", amount_override=1)
        receiver.wait_for(1)
        envelope = _check(merchant, receiver)
    plaintext = envelope["plaintext"]
    assert isinstance(plaintext, dict)
    assert plaintext["amount"]["total"] == plaintext["amount"]["payer_total"] == 1
    assert merchant.query("order-0001").json()["amount"]["total"] == 500


def test_delay_seconds_holds_the_notification_back(
    merchant: Merchant, control: EmulatorControl
) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001", delay_seconds=0.5)
        time.sleep(0.25)
        assert receiver.received == []
        receiver.wait_for(1)


def test_reset_cancels_pending_deliveries(merchant: Merchant, control: EmulatorControl) -> None:
    with notify_receiver() as receiver:
        merchant.create("order-0001", receiver.url)
        control.pay_succeed("order-0001", delay_seconds=0.3)
        merchant.create("order-0002", receiver.url)
        control.pay_settings(retry_scale=0.02)  # first retry after 0.3 s
        receiver.statuses = [500]
        control.pay_succeed("order-0002")
        receiver.wait_for(1)
        control.reset()
        time.sleep(0.8)
        assert len(receiver.received) == 1
    assert control.calls("pay_notify") == []


@pytest.mark.parametrize(
    "body",
    [
        {"duplicates": 51},
        {"delay_seconds": -1},
        {"corrupt_signature": "yes"},
        {"amount_override": 0},
        {"payer_total": 101},
        {"unknown": 1},
    ],
)
def test_succeed_validates_its_options(
    merchant: Merchant, control: EmulatorControl, body: dict[str, object]
) -> None:
    merchant.create("order-0001", "http://127.0.0.1:9/notify", total=100)
    with pytest.raises(EmulatorControlError) as error:
        control._call("POST", "pay/order-0001/succeed", body)
    assert error.value.status == 400
    assert merchant.query("order-0001").json()["trade_state"] == "NOTPAY"


def test_succeed_and_fail_need_a_payable_order(
    merchant: Merchant, control: EmulatorControl
) -> None:
    with pytest.raises(EmulatorControlError) as unknown:
        control.pay_succeed("order-9999")
    assert unknown.value.status == 404
    merchant.create("order-0001", "http://127.0.0.1:9/notify")
    control.pay_succeed("order-0001")
    for action in (control.pay_succeed, control.pay_fail):
        with pytest.raises(EmulatorControlError) as paid:
            action("order-0001")
        assert paid.value.status == 409
