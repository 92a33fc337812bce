"""The database stops while WeChat Pay notifies: we answer 5xx, WeChat retries, and the retry
after the database is back pays the order. A MariaDB of its own, so stopping it harms no one."""

from __future__ import annotations

from pathlib import Path

from pytest_mysql.executor import MySQLExecutor
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from minishop import config
from minishop.models import Category, Order, OrderStatus, Product
from tests.api.test_payments import Buyer, answered, wait_until
from tests.conftest import (
    create_database,
    gunicorn_server,
    migrate_database,
)
from wechat_emulator.testing import EmulatorControl


def test_a_notification_during_a_database_outage_is_retried_until_applied(
    settings: config.TestingSettings,
    doomed_mariadb: MySQLExecutor,
    emulator: EmulatorControl,
    tmp_path: Path,
) -> None:
    url = migrate_database(create_database(doomed_mariadb, "minishop_outage"))
    engine = create_engine(url, pool_pre_ping=True)  # its connections outlive the restart
    with Session(engine) as session:
        category = Category(name="Tea", sort=1)
        session.add(category)
        session.flush()
        product = Product(category_id=category.id, title="Oolong", price_fen=5000, stock=5)
        session.add(product)
        session.commit()
        product_id = product.id
    own = settings.model_copy(update={"DATABASE_URL": url})
    emulator.pay_settings(retry_scale=0.05)  # WeChat's 15 s, 15 s, 30 s, 3 min... times 0.05

    with gunicorn_server(own, tmp_path) as shop:
        buyer = Buyer(shop, emulator)
        order_no = buyer.order(Product(id=product_id))
        assert buyer.pay(order_no).status_code == 200

        doomed_mariadb.stop()
        try:
            paid = emulator.pay_succeed(order_no)
            (first,) = answered(emulator, paid["notification_id"], 1)
            assert first is not None and first >= 500
        finally:
            doomed_mariadb.start()

        answers = wait_until(
            lambda: (found := answered(emulator, paid["notification_id"], 1))[-1] == 204 and found,
            timeout=60,
        )
    assert all(status is None or status >= 500 for status in answers[:-1])
    with Session(engine) as session:
        order = session.scalar(select(Order).where(Order.order_no == order_no))
        assert order is not None and order.status == OrderStatus.PAID
    engine.dispose()
