"""WeChat Pay as operations see it, on gunicorn (4 workers, multiprocess metrics): the payment
counters move as documented, a subscribe message that cannot be sent never fails a payment, and
hostile bodies at the notify endpoint get a 4xx with a JSON body and change nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import select

from minishop import config
from minishop.extensions import db
from minishop.models import Payment
from tests.api.test_payments import NOTIFY, Buyer, answered, payments_of, wait_until
from tests.conftest import gunicorn_server
from tests.observability.test_metrics import Samples, samples, value
from wechat_emulator.testing import EmulatorControl

PAID_TEMPLATE = "tmpl-order-paid"
PAID_KEYWORDS = ["character_string1", "amount2", "thing3"]


@dataclass(frozen=True)
class Shop:
    url: str
    log: Path

    def metrics(self) -> Samples:
        answer = requests.get(f"{self.url}/metrics", timeout=10)
        assert answer.status_code == 200
        return samples(answer.text)

    def log_lines(self, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log lines carrying every one of `fields`."""
        lines = [json.loads(line) for line in self.log.read_text().splitlines() if line[:1] == "{"]
        return [line for line in lines if all(line.get(k) == v for k, v in fields.items())]


@pytest.fixture(scope="module")
def shop(
    settings: config.TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Shop]:
    """The shop under gunicorn, sending a subscribe message when an order is paid."""
    folder = tmp_path_factory.mktemp("pay-operations")
    with gunicorn_server(settings, folder, WECHAT_PAID_TEMPLATE_ID=PAID_TEMPLATE) as url:
        yield Shop(url, folder / "gunicorn.log")


@pytest.fixture()
def buyer(shop: Shop, emulator: EmulatorControl, app: Any) -> Buyer:
    return Buyer(shop.url, emulator)


@pytest.fixture()
def product(catalog: dict[str, Any]) -> Any:
    return catalog["jerky"]


def prepaid(buyer: Buyer, product: Any) -> str:
    order_no = buyer.order(product)
    assert buyer.pay(order_no).status_code == 200
    return order_no


def growth(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_a_paid_order_counts_one_payment_and_one_paid_order(
    shop: Shop, buyer: Buyer, emulator: EmulatorControl, product: Any
) -> None:
    order_no = prepaid(buyer, product)
    before = shop.metrics()

    paid = emulator.pay_succeed(order_no)

    assert answered(emulator, paid["notification_id"], 1) == [204]
    after = shop.metrics()
    assert growth(before, after, "minishop_payments_total", result="paid") == 1
    assert growth(before, after, "minishop_orders_paid_total") == 1
    assert growth(before, after, "minishop_orders_paid_amount_fen_total") == 3900
    notified = {"event_type": "TRANSACTION.SUCCESS", "result": "ok"}
    assert growth(before, after, "minishop_payment_notifications_total", **notified) == 1


@pytest.mark.parametrize(
    ("tampering", "reason"),
    [({"corrupt_signature": True}, "signature"), ({"amount_override": 1}, "mismatch")],
)
def test_a_refused_notification_counts_its_reason(
    shop: Shop,
    buyer: Buyer,
    emulator: EmulatorControl,
    product: Any,
    tampering: dict[str, Any],
    reason: str,
) -> None:
    order_no = prepaid(buyer, product)
    before = shop.metrics()

    paid = emulator.pay_succeed(order_no, **tampering)

    (status,) = answered(emulator, paid["notification_id"], 1)
    assert status in (400, 401)
    after = shop.metrics()
    failures = "minishop_payment_notify_verification_failures_total"
    assert growth(before, after, failures, reason=reason) == 1
    assert sum(growth(before, after, failures, reason=r) for r in ("signature", "mismatch")) == 1
    assert growth(before, after, "minishop_payments_total", result="paid") == 0
    assert growth(before, after, "minishop_orders_paid_total") == 0


def test_a_payment_after_cancel_counts_its_automatic_refund(
    shop: Shop, buyer: Buyer, emulator: EmulatorControl, product: Any
) -> None:
    order_no = prepaid(buyer, product)
    assert buyer.post(f"/api/v1/orders/{order_no}/cancel").status_code == 200
    before = shop.metrics()

    paid = emulator.pay_succeed(order_no)

    assert answered(emulator, paid["notification_id"], 1) == [204]
    after = shop.metrics()
    assert growth(before, after, "minishop_paid_after_cancel_refunds_total") == 1
    assert growth(before, after, "minishop_payments_total", result="paid_after_cancel") == 1
    assert growth(before, after, "minishop_orders_paid_total") == 0
    assert growth(before, after, "minishop_refunds_total", result="requested") == 1


def test_a_buyer_without_a_subscription_is_a_normal_outcome(
    shop: Shop, buyer: Buyer, emulator: EmulatorControl, product: Any
) -> None:
    emulator.register_template(PAID_TEMPLATE, PAID_KEYWORDS)  # and the buyer allowed none
    order_no = prepaid(buyer, product)

    paid = emulator.pay_succeed(order_no)

    assert answered(emulator, paid["notification_id"], 1) == [204]
    assert buyer.status(order_no) == "paid"
    assert [call["errcode"] for call in emulator.calls("subscribe_send")] == [43101]
    assert emulator.messages("subscribe") == []
    no_subscription = "payment message not sent: the buyer has no subscription left"
    (line,) = wait_until(lambda: shop.log_lines(order_no=order_no, message=no_subscription))
    assert line["level"] == "INFO"
    assert [line for line in shop.log_lines(order_no=order_no) if line["level"] == "ERROR"] == []


@pytest.mark.parametrize(
    "fault",
    [{"http_status": 500}, {"errcode": -1, "times": 2}, {"errcode": 40003}],
    ids=["HTTP 500", "system busy twice", "errcode 40003"],
)
def test_a_subscribe_message_wechat_fails_to_send_does_not_fail_the_payment(
    shop: Shop, buyer: Buyer, emulator: EmulatorControl, product: Any, fault: dict[str, Any]
) -> None:
    emulator.register_template(PAID_TEMPLATE, PAID_KEYWORDS)
    emulator.grant_subscription(buyer.openid, PAID_TEMPLATE)
    order_no = prepaid(buyer, product)
    emulator.faults("subscribe_send", **fault)

    paid = emulator.pay_succeed(order_no)

    assert answered(emulator, paid["notification_id"], 1) == [204]
    assert buyer.status(order_no) == "paid"
    assert emulator.messages("subscribe") == []
    assert all(call["fault"] for call in emulator.calls("subscribe_send"))
    (line,) = wait_until(
        lambda: [
            line
            for line in shop.log_lines(order_no=order_no)
            if line["message"].startswith("payment message not sent")
        ]
    )
    assert line["level"] == "WARNING"


def garbage_headers(**changes: str) -> dict[str, str]:
    """All five Wechatpay-* headers, plausible in form, none of them WeChat's."""
    headers = {
        "Wechatpay-Timestamp": str(int(time.time())),
        "Wechatpay-Nonce": "n" * 32,
        "Wechatpay-Signature": "c2lnbmF0dXJl",
        "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000000000000000000000",
        "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048",
    }
    return headers | changes


NOTIFICATION_SHAPE = json.dumps(
    {
        "id": "EV-2018022511223320873",
        "create_time": "2015-05-20T13:29:35+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": "AAAA",
            "associated_data": "transaction",
            "nonce": "abcdefghijkl",
        },
    }
).encode()

HOSTILE: dict[str, tuple[bytes, dict[str, str]]] = {
    "empty body": (b"", {}),
    "empty body, garbage headers": (b"", garbage_headers()),
    "not JSON": (b"\x00\xffnot json at all", garbage_headers()),
    "a JSON array": (b"[1, 2, 3]", garbage_headers()),
    "2 MB": (b'{"id": "' + b"x" * (2 * 1024 * 1024) + b'"}', garbage_headers()),
    "no Wechatpay headers": (NOTIFICATION_SHAPE, {}),
    "one header missing": (NOTIFICATION_SHAPE, garbage_headers(**{"Wechatpay-Serial": ""})),
    "garbage in every header": (
        NOTIFICATION_SHAPE,
        {name: "garbage" for name in garbage_headers()},
    ),
    "signature not base64": (
        NOTIFICATION_SHAPE,
        garbage_headers(**{"Wechatpay-Signature": "%%% not base64 %%%"}),
    ),
    "timestamp far away": (NOTIFICATION_SHAPE, garbage_headers(**{"Wechatpay-Timestamp": "1"})),
    "timestamp negative": (NOTIFICATION_SHAPE, garbage_headers(**{"Wechatpay-Timestamp": "-5"})),
    # str.isdigit() accepts these, int() does not: a superscript digit, and more digits than
    # Python converts (4300).
    "timestamp a superscript digit": (
        NOTIFICATION_SHAPE,
        garbage_headers(**{"Wechatpay-Timestamp": "\u00b2"}),
    ),
    "timestamp of 5000 digits": (
        NOTIFICATION_SHAPE,
        garbage_headers(**{"Wechatpay-Timestamp": "9" * 5000}),
    ),
    "another signature type": (
        NOTIFICATION_SHAPE,
        garbage_headers(**{"Wechatpay-Signature-Type": "HMAC-SHA256"}),
    ),
}


def payments_table() -> list[tuple[Any, ...]]:
    db.session.rollback()
    rows = db.session.execute(
        select(
            Payment.id,
            Payment.status,
            Payment.transaction_id,
            Payment.paid_at,
            Payment.prepay_id,
        ).order_by(Payment.id)
    )
    return [tuple(row) for row in rows]


@pytest.mark.parametrize(("body", "headers"), list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_notification_bodies_get_a_4xx_with_json_and_change_nothing(
    shop: Shop,
    buyer: Buyer,
    product: Any,
    body: bytes,
    headers: dict[str, str],
) -> None:
    order_no = prepaid(buyer, product)
    before = payments_table()
    assert len(payments_of(order_no)) == 1

    answer = requests.post(
        f"{shop.url}{NOTIFY}",
        data=body,
        headers={"Content-Type": "application/json"} | headers,
        timeout=30,
    )

    assert answer.status_code in (400, 401, 413), answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert isinstance(answer.json(), dict)
    assert payments_table() == before
    assert buyer.status(order_no) == "pending_payment"
