"""WeChat Pay end to end: gunicorn (4 workers) on MariaDB + Redis, the emulator as WeChat Pay,
its notifications posted to the server for real."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, update

from minishop import config, extensions
from minishop.domain import reconciliation
from minishop.domain.payment_context import PaymentContext
from minishop.extensions import db
from minishop.models import (
    Order,
    OrderStatus,
    Payment,
    PaymentStatus,
    Product,
    Refund,
    RefundStatus,
    Role,
    User,
)
from tests.conftest import gunicorn_server
from tests.signing import json_bytes, send_signed, signed_headers
from wechat_emulator.testing import EmulatorControl

PAID_TEMPLATE = "tmpl-order-paid"
NOTIFY = "/api/v1/payments/wechat/notify"


@pytest.fixture(scope="module")
def shop(
    settings: config.TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The shop under gunicorn, sending a subscribe message when an order is paid."""
    with gunicorn_server(
        settings, tmp_path_factory.mktemp("pay-gunicorn"), WECHAT_PAID_TEMPLATE_ID=PAID_TEMPLATE
    ) as base_url:
        yield base_url


def wait_until(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


class Buyer:
    """A logged-in user of the shop, speaking signed HTTP to the real server."""

    def __init__(self, shop: str, emulator: EmulatorControl) -> None:
        self.shop = shop
        code = emulator.new_login_code()
        self.openid = code.openid
        answer = requests.post(f"{shop}/api/v1/auth/login", json={"code": code.code}, timeout=30)
        assert answer.status_code == 200, answer.text
        self.session: dict[str, Any] = answer.json()["data"]

    def post(self, path: str, payload: Any = None, **headers: str) -> requests.Response:
        body = b"" if payload is None else json_bytes(payload)
        return requests.post(
            f"{self.shop}{path}",
            data=body,
            headers=signed_headers(self.session, "POST", path, body)
            | {"Content-Type": "application/json"}
            | headers,
            timeout=30,
        )

    def order(self, product: Product, quantity: int = 1) -> str:
        answer = self.post(
            "/api/v1/orders",
            {"items": [{"product_id": product.id, "quantity": quantity}]},
            **{"Idempotency-Key": uuid.uuid4().hex},
        )
        assert answer.status_code == 201, answer.text
        order_no: str = answer.json()["data"]["order_no"]
        return order_no

    def pay(self, order_no: str) -> requests.Response:
        return self.post(f"/api/v1/orders/{order_no}/pay")

    def status(self, order_no: str) -> str:
        answer = requests.get(
            f"{self.shop}/api/v1/orders/{order_no}",
            headers={"Authorization": f"Bearer {self.session['access_token']}"},
            timeout=30,
        )
        status: str = answer.json()["data"]["status"]
        return status


@pytest.fixture()
def buyer(shop: str, emulator: EmulatorControl, app: Any) -> Buyer:
    return Buyer(shop, emulator)


def order_row(order_no: str) -> Order:
    db.session.rollback()
    order = db.session.scalar(select(Order).where(Order.order_no == order_no))
    assert order is not None
    return order


def payments_of(order_no: str) -> list[Payment]:
    order = order_row(order_no)
    return list(db.session.scalars(select(Payment).where(Payment.order_id == order.id)))


def notify_answers(emulator: EmulatorControl, notification_id: str) -> list[int | None]:
    """What our server answered to each delivery attempt of one notification, oldest first."""
    return [
        call["status"]
        for call in emulator.calls("pay_notify")
        if call["notification_id"] == notification_id
    ]


def answered(emulator: EmulatorControl, notification_id: str, count: int) -> list[int | None]:
    def enough() -> list[int | None] | None:
        found = notify_answers(emulator, notification_id)
        return found if len(found) >= count else None

    found: list[int | None] = wait_until(enough)
    return found


def test_the_journey_login_order_pay_notify_paid(
    buyer: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    emulator.register_template(PAID_TEMPLATE, ["character_string1", "amount2", "thing3"])
    emulator.grant_subscription(buyer.openid, PAID_TEMPLATE)
    order_no = buyer.order(catalog["puer"], 2)

    answer = buyer.pay(order_no)
    assert answer.status_code == 200, answer.text
    params = answer.json()["data"]
    assert set(params) == {"timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["signType"] == "RSA" and params["package"].startswith("prepay_id=")
    assert emulator.request_payment(params)["out_trade_no"] == order_no  # what the phone checks
    assert buyer.pay(order_no).json()["data"]["package"] == params["package"]  # the same prepay

    paid = emulator.pay_succeed(order_no)
    transaction = paid["transaction"]
    wait_until(lambda: buyer.status(order_no) == "paid")

    (payment,) = payments_of(order_no)
    assert payment.status == PaymentStatus.SUCCEEDED
    assert payment.transaction_id == transaction["transaction_id"]
    assert payment.amount_fen == 2 * 22800
    assert order_row(order_no).paid_at is not None
    sent = wait_until(lambda: emulator.messages("subscribe"))
    assert sent[0]["touser"] == buyer.openid
    assert sent[0]["data"]["character_string1"]["value"] == order_no
    assert answered(emulator, paid["notification_id"], 1) == [204]


def test_five_concurrent_copies_of_a_notification_change_the_order_once(
    buyer: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200

    paid = emulator.pay_succeed(order_no, duplicates=4)

    assert answered(emulator, paid["notification_id"], 5) == [204] * 5
    assert buyer.status(order_no) == "paid"
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.SUCCEEDED]
    db.session.rollback()
    paid = db.session.scalar(
        select(func.count()).select_from(Order).where(Order.status == OrderStatus.PAID)
    )
    assert paid == 1


def test_pay_refuses_what_cannot_be_paid(
    buyer: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    stranger = Buyer(shop, emulator)
    answer = stranger.pay(order_no)
    assert (answer.status_code, answer.json()["code"]) == (404, 40400)

    unsigned = requests.post(
        f"{shop}/api/v1/orders/{order_no}/pay",
        headers={"Authorization": f"Bearer {buyer.session['access_token']}"},
        timeout=30,
    )
    assert unsigned.json()["code"] == 40102

    assert buyer.post(f"/api/v1/orders/{order_no}/cancel").status_code == 200
    answer = buyer.pay(order_no)
    assert (answer.status_code, answer.json()["code"]) == (409, 40902)
    assert emulator.calls("pay_jsapi") == []


def test_without_wechat_pay_configured_pay_answers_50300(
    client_with: Any, log_in: Any, catalog: dict[str, Any]
) -> None:
    client = client_with(WECHATPAY_PRIVATE_KEY_FILE=None)
    user = log_in()
    placed = send_signed(
        client,
        user,
        "POST",
        "/api/v1/orders",
        {"items": [{"product_id": catalog["jerky"].id, "quantity": 1}]},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    order_no = placed.get_json()["data"]["order_no"]
    answer = send_signed(client, user, "POST", f"/api/v1/orders/{order_no}/pay")
    assert (answer.status_code, answer.get_json()["code"]) == (503, 50300)
    assert client.post(NOTIFY, data=b"{}").status_code == 503


@pytest.mark.parametrize(
    "tampering",
    [{"corrupt_signature": True}, {"amount_override": 1}],
    ids=["bad signature", "wrong amount"],
)
def test_a_forged_or_mismatched_notification_changes_nothing(
    buyer: Buyer, emulator: EmulatorControl, catalog: dict[str, Any], tampering: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200

    paid = emulator.pay_succeed(order_no, **tampering)

    (answer,) = answered(emulator, paid["notification_id"], 1)
    assert answer is not None and 400 <= answer < 500
    assert buyer.status(order_no) == "pending_payment"
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.CREATED]


def test_a_notification_for_an_unknown_order_is_refused(
    app: Any, shop: str, emulator: EmulatorControl
) -> None:
    pay = extensions.payment_context().pay
    out_trade_no = "999" + uuid.uuid4().hex[:20]
    pay.create_jsapi(
        out_trade_no=out_trade_no,
        description="not ours",
        total_fen=100,
        openid="o-someone",
        time_expire=datetime.now(UTC) + timedelta(minutes=10),
        notify_url=f"{shop}{NOTIFY}",
    )
    paid = emulator.pay_succeed(out_trade_no)
    assert answered(emulator, paid["notification_id"], 1) == [404]
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def shop_context(shop: str) -> PaymentContext:
    """The in-process app's payment rules, with WeChat notifying the gunicorn shop."""
    return dataclasses.replace(extensions.payment_context(), notify_url=f"{shop}{NOTIFY}")


def backdate(order_no: str, minutes: int) -> None:
    order = order_row(order_no)
    earlier = datetime.now(UTC) - timedelta(minutes=minutes)
    db.session.execute(
        update(Payment).where(Payment.order_id == order.id).values(created_at=earlier)
    )
    db.session.execute(update(Order).where(Order.id == order.id).values(expires_at=earlier))
    db.session.commit()


def test_reconciliation_repairs_an_order_whose_notification_never_came(
    buyer: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200
    emulator.pay_succeed(order_no, delay_seconds=600)  # the notification is lost for now
    other_no = buyer.order(catalog["jerky"])
    assert buyer.pay(other_no).status_code == 200  # not paid: left alone
    backdate(order_no, 10)
    backdate(other_no, 10)

    report = reconciliation.reconcile(
        db.session, shop_context(shop), older_than=timedelta(minutes=5)
    )

    assert (report.payments_checked, report.payments_repaired) == (2, 1)
    assert order_row(order_no).status == OrderStatus.PAID
    assert order_row(other_no).status == OrderStatus.PENDING_PAYMENT
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.SUCCEEDED]


def test_expiry_racing_a_late_success_never_cancels_a_paid_order(
    buyer: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    paid_no = buyer.order(catalog["jerky"], 3)
    unpaid_no = buyer.order(catalog["jerky"], 2)
    for order_no in (paid_no, unpaid_no):
        assert buyer.pay(order_no).status_code == 200
    emulator.pay_succeed(paid_no, delay_seconds=600)  # paid at the last second, not notified yet
    backdate(paid_no, 1)
    backdate(unpaid_no, 1)

    expired = reconciliation.expire_unpaid_orders(db.session, shop_context(shop))

    assert expired == 1
    assert order_row(paid_no).status == OrderStatus.PAID
    assert order_row(unpaid_no).status == OrderStatus.CANCELLED
    assert [p.status for p in payments_of(unpaid_no)] == [PaymentStatus.CLOSED]
    db.session.rollback()
    jerky = db.session.get(Product, catalog["jerky"].id, populate_existing=True)
    assert jerky is not None and jerky.stock == 100 - 3  # the unpaid order's 2 came back
    closed = [c for c in emulator.calls("pay_close") if c["status"] in (204, 400)]
    assert len(closed) == 2


def test_a_payment_for_a_cancelled_order_is_refunded_in_full(
    buyer: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200
    assert buyer.post(f"/api/v1/orders/{order_no}/cancel").status_code == 200

    emulator.pay_succeed(order_no)  # the buyer paid from a sheet still open on the phone

    def refunded() -> list[Refund]:
        db.session.rollback()
        return list(
            db.session.scalars(select(Refund).where(Refund.status == RefundStatus.SUCCEEDED))
        )

    (refund,) = wait_until(refunded)
    assert refund.amount_fen == 3900
    assert buyer.status(order_no) == "cancelled"
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.SUCCEEDED]
    assert [c["status"] for c in emulator.calls("pay_refund")] == [200]


@pytest.fixture()
def back_office(buyer: Buyer, shop: str, emulator: EmulatorControl) -> Buyer:
    """An admin of the shop (signed requests, as the whole back office requires)."""
    admin = Buyer(shop, emulator)
    db.session.execute(
        update(User).where(User.id == admin.session["user"]["id"]).values(role=Role.ADMIN)
    )
    db.session.commit()
    return admin


def paid_order(buyer: Buyer, emulator: EmulatorControl, product: Product, quantity: int) -> str:
    order_no = buyer.order(product, quantity)
    assert buyer.pay(order_no).status_code == 200
    emulator.pay_succeed(order_no)
    wait_until(lambda: buyer.status(order_no) == "paid")
    return order_no


def refund(admin: Buyer, order_no: str, amount_fen: int, key: str) -> requests.Response:
    return admin.post(
        f"/api/v1/admin/orders/{order_no}/refunds",
        {"amount_fen": amount_fen, "reason": "damaged box"},
        **{"Idempotency-Key": key},
    )


def stock_of(product: Product) -> int:
    db.session.rollback()
    found = db.session.get(Product, product.id, populate_existing=True)
    assert found is not None
    return found.stock


def test_a_partial_then_a_full_refund_with_idempotent_keys(
    buyer: Buyer, back_office: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    jerky = catalog["jerky"]
    order_no = paid_order(buyer, emulator, jerky, 2)  # 7,800 fen
    assert stock_of(jerky) == 98

    first = refund(back_office, order_no, 3000, "refund-key-1")
    assert first.status_code == 201, first.text
    assert first.json()["data"]["refund"]["out_refund_no"] == f"{order_no}R1"
    wait_until(lambda: order_row(order_no).refunded_fen == 3000)
    assert order_row(order_no).status == OrderStatus.PAID  # a partial refund goes back

    again = refund(back_office, order_no, 3000, "refund-key-1")
    assert again.status_code == 200
    assert again.json()["data"]["refund"]["out_refund_no"] == f"{order_no}R1"
    assert len(emulator.calls("pay_refund")) == 1  # the retry did not refund twice
    assert refund(back_office, order_no, 3100, "refund-key-1").json()["code"] == 40900
    too_much = refund(back_office, order_no, 4801, "refund-key-2")
    assert (too_much.status_code, too_much.json()["code"]) == (400, 40000)

    rest = refund(back_office, order_no, 4800, "refund-key-3")
    assert rest.status_code == 201, rest.text
    wait_until(lambda: order_row(order_no).status == OrderStatus.REFUNDED)
    order = order_row(order_no)
    assert order.refunded_fen == 7800
    assert stock_of(jerky) == 100  # refunded in full before shipping: back in stock
    db.session.rollback()
    statuses = db.session.scalars(select(Refund.status).order_by(Refund.id)).all()
    assert statuses == [RefundStatus.SUCCEEDED, RefundStatus.SUCCEEDED]
    assert refund(back_office, order_no, 1, "refund-key-4").json()["code"] == 40902


def test_a_shipped_order_refunded_in_full_keeps_its_stock_out(
    buyer: Buyer, back_office: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    jerky = catalog["jerky"]
    order_no = paid_order(buyer, emulator, jerky, 1)
    assert back_office.post(f"/api/v1/admin/orders/{order_no}/ship").status_code == 200

    assert refund(back_office, order_no, 3900, "refund-shipped").status_code == 201

    wait_until(lambda: order_row(order_no).status == OrderStatus.REFUNDED)
    assert stock_of(jerky) == 99


def test_an_abnormal_refund_puts_the_order_back(
    buyer: Buyer, back_office: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = paid_order(buyer, emulator, catalog["jerky"], 1)
    emulator.set_refund_outcome("ABNORMAL")

    assert refund(back_office, order_no, 3900, "refund-abnormal").status_code == 201

    def ended() -> bool:
        db.session.rollback()
        return db.session.scalar(select(Refund.status)) == RefundStatus.ABNORMAL

    wait_until(ended)
    order = order_row(order_no)
    assert (order.status, order.refunded_fen) == (OrderStatus.PAID, 0)


def test_a_refund_notification_before_the_payment_notification(
    buyer: Buyer, back_office: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200
    late = emulator.pay_succeed(order_no, delay_seconds=5)  # the payment's notification is late
    db.session.rollback()  # a fresh transaction, as the CLI command has
    reconciliation.reconcile(db.session, shop_context(shop), older_than=timedelta(0))
    assert order_row(order_no).status == OrderStatus.PAID

    assert refund(back_office, order_no, 3900, "refund-early").status_code == 201
    wait_until(lambda: order_row(order_no).status == OrderStatus.REFUNDED)

    assert answered(emulator, late["notification_id"], 1) == [204]  # a duplicate by then
    assert order_row(order_no).status == OrderStatus.REFUNDED
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.SUCCEEDED]


def test_a_refund_wechat_refuses_puts_the_order_back(
    buyer: Buyer, back_office: Buyer, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = paid_order(buyer, emulator, catalog["jerky"], 1)
    emulator.faults("pay_refund", errcode=403)  # NO_AUTH: WeChat's decision, not a hiccup

    answer = refund(back_office, order_no, 3900, "refund-refused")

    assert (answer.status_code, answer.json()["code"]) == (502, 50200)
    order = order_row(order_no)
    assert (order.status, order.refunded_fen) == (OrderStatus.PAID, 0)
    assert db.session.scalar(select(Refund.status)) == RefundStatus.CLOSED


def test_a_refund_whose_outcome_is_unknown_is_sent_again_by_reconciliation(
    buyer: Buyer, back_office: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = paid_order(buyer, emulator, catalog["jerky"], 1)
    emulator.faults("pay_refund", errcode=500, times=2)  # SYSTEM_ERROR, and again on the retry

    answer = refund(back_office, order_no, 3900, "refund-unknown")

    assert answer.status_code == 201, answer.text
    assert answer.json()["data"]["refund"]["status"] == "processing"
    assert order_row(order_no).status == OrderStatus.REFUNDING
    db.session.rollback()
    report = reconciliation.reconcile(db.session, shop_context(shop), older_than=timedelta(0))
    assert (report.refunds_checked, report.refunds_repaired) == (1, 1)
    wait_until(lambda: order_row(order_no).status == OrderStatus.REFUNDED)
    sent = [call["json"]["out_refund_no"] for call in emulator.calls("pay_refund")]
    assert sent == [f"{order_no}R1"] * 3  # the same refund each time, never a second one


def test_expiry_keeps_an_order_whose_payment_wechat_cannot_confirm(
    buyer: Buyer, shop: str, emulator: EmulatorControl, catalog: dict[str, Any]
) -> None:
    order_no = buyer.order(catalog["jerky"])
    assert buyer.pay(order_no).status_code == 200
    emulator.pay_succeed(order_no, delay_seconds=600)
    backdate(order_no, 1)
    emulator.faults("pay_query", errcode=500, times=2)  # the close says ORDERPAID, the query fails

    assert reconciliation.expire_unpaid_orders(db.session, shop_context(shop)) == 0

    assert order_row(order_no).status == OrderStatus.PENDING_PAYMENT  # the next run decides
    assert reconciliation.expire_unpaid_orders(db.session, shop_context(shop)) == 0
    assert order_row(order_no).status == OrderStatus.PAID
