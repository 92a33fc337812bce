"""WeChat Pay on the embedded default (SQLite, no Redis) under gunicorn with 4 workers.

SQLite has one writer at a time. A transaction whose first statement writes waits up to the
busy timeout for the write lock; one that read first cannot wait (in WAL mode it gets
SQLITE_BUSY at once). pysqlite begins a transaction only at the first INSERT/UPDATE/DELETE, so
the notification's conditional UPDATEs take the lock first and read inside it. Were transactions
begun at the first read (SQLAlchemy's BEGIN recipe, `autocommit=False`), copies arriving
together would be answered 503 "database is locked": the tests below then fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from sqlalchemy import select

from minishop import config, create_app
from minishop.extensions import db
from minishop.models import Category, Order, OrderStatus, Payment, PaymentStatus, Product
from tests.api.test_payments import Buyer, answered, wait_until
from tests.conftest import embedded_settings, gunicorn_server
from tests.observability.test_metrics import Samples, samples, value
from wechat_emulator.testing import EmulatorControl


@dataclass(frozen=True)
class EmbeddedShop:
    url: str
    app: Any  # the same SQLite database, for reading what the server wrote

    def metrics(self) -> Samples:
        return samples(requests.get(f"{self.url}/metrics", timeout=10).text)

    def order(self, order_no: str) -> tuple[str, int]:
        """The order's status and version (one more for every change)."""
        with self.app.app_context():
            order = db.session.scalar(select(Order).where(Order.order_no == order_no))
            assert order is not None
            return order.status, order.version

    def payments(self, order_no: str) -> list[tuple[str, str | None]]:
        with self.app.app_context():
            rows = db.session.execute(
                select(Payment.status, Payment.transaction_id)
                .join(Order, Order.id == Payment.order_id)
                .where(Order.order_no == order_no)
            )
            return [(status, transaction_id) for status, transaction_id in rows]


@pytest.fixture(scope="module")
def shop(
    settings: config.TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmbeddedShop]:
    folder = tmp_path_factory.mktemp("pay-embedded")
    embedded = embedded_settings(settings, folder)
    assert embedded.REDIS_URL is None and embedded.database_url().startswith("sqlite")
    app = create_app(embedded)
    with gunicorn_server(embedded, folder, WEB_CONCURRENCY="4") as url:
        yield EmbeddedShop(url, app)
    with app.app_context():
        db.engine.dispose()


@pytest.fixture(scope="module")
def product(shop: EmbeddedShop) -> Product:
    """One product with stock for every order of the module (the database lives as long)."""
    with shop.app.app_context():
        category = Category(name="Tea", sort=0)
        db.session.add(category)
        db.session.flush()
        product = Product(category_id=category.id, title="Oolong", price_fen=2500, stock=1000)
        db.session.add(product)
        db.session.commit()
        return Product(id=product.id)


def prepaid(buyer: Buyer, product: Product) -> str:
    order_no = buyer.order(product)
    assert buyer.pay(order_no).status_code == 200
    return order_no


def test_the_journey_pays_an_order(
    shop: EmbeddedShop, product: Product, emulator: EmulatorControl
) -> None:
    buyer = Buyer(shop.url, emulator)
    order_no = buyer.order(product, 2)
    answer = buyer.pay(order_no)
    assert answer.status_code == 200, answer.text
    assert emulator.request_payment(answer.json()["data"])["out_trade_no"] == order_no

    paid = emulator.pay_succeed(order_no)

    assert answered(emulator, paid["notification_id"], 1) == [204]
    assert buyer.status(order_no) == "paid"
    transaction_id = paid["transaction"]["transaction_id"]
    assert shop.payments(order_no) == [(PaymentStatus.SUCCEEDED, transaction_id)]


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_five_concurrent_copies_of_a_notification_change_the_order_once(
    shop: EmbeddedShop, product: Product, emulator: EmulatorControl
) -> None:
    buyer = Buyer(shop.url, emulator)
    order_no = prepaid(buyer, product)
    status, version = shop.order(order_no)
    assert status == OrderStatus.PENDING_PAYMENT
    before = shop.metrics()

    paid = emulator.pay_succeed(order_no, duplicates=4)

    assert answered(emulator, paid["notification_id"], 5) == [204] * 5
    assert shop.order(order_no) == (OrderStatus.PAID, version + 1)
    transaction_id = paid["transaction"]["transaction_id"]
    assert shop.payments(order_no) == [(PaymentStatus.SUCCEEDED, transaction_id)]
    after = shop.metrics()
    assert grew(before, after, "minishop_payments_total", result="paid") == 1
    assert grew(before, after, "minishop_payments_total", result="duplicate") == 4
    assert grew(before, after, "minishop_orders_paid_total") == 1


def test_a_burst_of_notifications_for_many_orders_is_applied_at_the_first_attempt(
    shop: EmbeddedShop, product: Product, emulator: EmulatorControl
) -> None:
    """Four orders, five copies each, all at once: twenty writers queue for SQLite's one write
    lock, and none of them gets "database is locked" (a 503 WeChat would have to retry)."""
    buyer = Buyer(shop.url, emulator)
    orders = [prepaid(buyer, product) for _ in range(4)]

    notifications = [emulator.pay_succeed(no, duplicates=4)["notification_id"] for no in orders]

    for notification_id in notifications:
        assert answered(emulator, notification_id, 5) == [204] * 5
    for order_no in orders:
        wait_until(lambda order_no=order_no: shop.order(order_no)[0] == OrderStatus.PAID)
        assert [status for status, _ in shop.payments(order_no)] == [PaymentStatus.SUCCEEDED]
