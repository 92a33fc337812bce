from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import Result
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select

from minishop import config, create_app
from minishop.extensions import db
from minishop.models import Order, OrderStatus, PaymentStatus, Product, User
from minishop.models.types import utcnow
from tests.api.test_orders import place
from tests.api.test_payments import backdate, order_row, payments_of
from tests.shipping import mark_paid, ship
from tests.signing import send_signed
from wechat_emulator.testing import EmulatorControl, EmulatorControlError

LogIn = Callable[..., dict[str, Any]]
Catalog = dict[str, Any]


def test_grant_admin_creates_or_promotes_the_user(app: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert result.exit_code == 0, result.output
    assert "is now admin" in result.output
    user = db.session.scalars(select(User).where(User.openid == "o-operator-openid")).one()
    assert user.role == "admin"

    again = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert again.exit_code == 0
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 1


def test_complete_shipped_completes_orders_shipped_more_than_n_days_ago(
    app: Any, client: FlaskClient, log_in: Callable[..., dict[str, Any]], catalog: dict[str, Any]
) -> None:
    buyer = log_in()
    line = {"items": [{"product_id": catalog["jerky"].id, "quantity": 1}]}
    old, recent, paid, pending = (
        place(client, buyer, line, key=f"complete-cli-{n}").get_json()["data"]["order_no"]
        for n in range(4)
    )
    ship(old, shipped_at=utcnow() - timedelta(days=8))
    ship(recent, shipped_at=utcnow() - timedelta(days=2))
    mark_paid(paid)

    runner = app.test_cli_runner()
    result = runner.invoke(args=["orders", "complete-shipped", "--after-days", "7"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "orders complete-shipped: 1 orders completed"
    db.session.rollback()
    found = dict(db.session.execute(select(Order.order_no, Order.status)).all())
    assert found == {old: "completed", recent: "shipped", paid: "paid", pending: "pending_payment"}
    again = runner.invoke(args=["orders", "complete-shipped", "--after-days", "7"])
    assert again.output.splitlines()[-1] == "orders complete-shipped: 0 orders completed"


@pytest.mark.parametrize("args", [["--after-days", "0"], ["--after-days", "-3"], []])
def test_complete_shipped_needs_at_least_one_day(app: Any, args: list[str]) -> None:
    result = app.test_cli_runner().invoke(args=["orders", "complete-shipped", *args])
    assert result.exit_code == 2
    assert "--after-days" in result.output


def order_and_prepay(client: FlaskClient, buyer: dict[str, Any], product: Product) -> str:
    """An order placed and its WeChat Pay prepay created, as the mini-program does."""
    placed = send_signed(
        client,
        buyer,
        "POST",
        "/api/v1/orders",
        {"items": [{"product_id": product.id, "quantity": 1}]},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert placed.status_code == 201, placed.get_json()
    order_no: str = placed.get_json()["data"]["order_no"]
    paying = send_signed(client, buyer, "POST", f"/api/v1/orders/{order_no}/pay")
    assert paying.status_code == 200, paying.get_json()
    return order_no


def repairs() -> float:
    return (
        REGISTRY.get_sample_value(
            "minishop_payment_reconciliation_repairs_total", {"kind": "payment"}
        )
        or 0.0
    )


def test_payments_reconcile_repairs_a_payment_whose_notification_was_held_back(
    app: Any, client: FlaskClient, log_in: LogIn, emulator: EmulatorControl, catalog: Catalog
) -> None:
    buyer = log_in()
    held_back = order_and_prepay(client, buyer, catalog["jerky"])
    emulator.pay_succeed(held_back, delay_seconds=600)  # paid; WeChat has not told us yet
    recent = order_and_prepay(client, buyer, catalog["jerky"])  # younger than the cut-off
    backdate(held_back, 10)
    before = repairs()

    result = app.test_cli_runner().invoke(
        args=["payments", "reconcile", "--older-than-minutes", "1"]
    )

    assert result.exit_code == 0, result.output
    assert "payments reconcile: 1 of 1 payments and 0 of 0 refunds repaired" in result.output
    assert order_row(held_back).status == OrderStatus.PAID
    assert [p.status for p in payments_of(held_back)] == [PaymentStatus.SUCCEEDED]
    assert order_row(recent).status == OrderStatus.PENDING_PAYMENT
    assert repairs() - before == 1
    again = app.test_cli_runner().invoke(
        args=["payments", "reconcile", "--older-than-minutes", "1"]
    )
    assert "0 of 0 payments" in again.output


def test_payments_reconcile_refuses_a_zero_minute_cut_off(app: Any) -> None:
    result = app.test_cli_runner().invoke(
        args=["payments", "reconcile", "--older-than-minutes", "0"]
    )
    assert result.exit_code == 2
    assert "Invalid value for '--older-than-minutes'" in result.output


def test_orders_expire_closes_the_prepay_at_wechat_before_cancelling(
    app: Any, client: FlaskClient, log_in: LogIn, emulator: EmulatorControl, catalog: Catalog
) -> None:
    order_no = order_and_prepay(client, log_in(), catalog["jerky"])
    backdate(order_no, 1)

    result = app.test_cli_runner().invoke(args=["orders", "expire"])

    assert result.exit_code == 0, result.output
    assert "orders expire: 1 orders expired" in result.output
    closes = emulator.calls("pay_close")
    assert [(c["path"], c["status"]) for c in closes] == [
        (f"/v3/pay/transactions/out-trade-no/{order_no}/close", 204)
    ]
    assert order_row(order_no).status == OrderStatus.CANCELLED
    assert [p.status for p in payments_of(order_no)] == [PaymentStatus.CLOSED]
    with pytest.raises(EmulatorControlError):  # closed at WeChat: nobody can pay it any more
        emulator.pay_succeed(order_no)


@pytest.fixture()
def unpaid_app(settings: config.TestingSettings, app: Any) -> Iterator[Any]:
    """The app of a deployment that takes no payments (no WeChat Pay merchant key)."""
    unpaid = create_app(settings.model_copy(update={"WECHATPAY_PRIVATE_KEY_FILE": None}))
    yield unpaid
    with unpaid.app_context():
        db.engine.dispose()


def invoke_in(app: Any, *args: str) -> Result:
    """Run a command of `app` in its own app context, as `flask` does; the runner alone would
    run it in the context already pushed (the `app` fixture's, with WeChat Pay configured)."""
    with app.app_context():
        result: Result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_orders_expire_without_wechat_pay_still_expires_orders(
    unpaid_app: Any, client: FlaskClient, log_in: LogIn, emulator: EmulatorControl, catalog: Catalog
) -> None:
    placed = send_signed(
        client,
        log_in(),
        "POST",
        "/api/v1/orders",
        {"items": [{"product_id": catalog["jerky"].id, "quantity": 2}]},
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    order_no = placed.get_json()["data"]["order_no"]
    backdate(order_no, 1)

    result = invoke_in(unpaid_app, "orders", "expire")

    assert result.exit_code == 0, result.output
    assert "orders expire: 1 orders expired" in result.output
    assert order_row(order_no).status == OrderStatus.CANCELLED
    jerky = db.session.get(Product, catalog["jerky"].id, populate_existing=True)
    assert jerky is not None and jerky.stock == 100
    assert emulator.calls("pay_close") == []


def test_payments_reconcile_without_wechat_pay_says_so(unpaid_app: Any) -> None:
    result = invoke_in(unpaid_app, "payments", "reconcile")
    assert result.exit_code != 0
    assert "WeChat Pay is not configured" in result.output
