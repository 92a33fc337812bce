"""complete_shipped_orders: which orders the completion job takes, in batches, on MariaDB."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from minishop.domain import auth
from minishop.domain.completion import COMPLETION_BATCH, complete_shipped_orders
from minishop.extensions import db
from minishop.models import Order, OrderStatus, User
from minishop.models.types import utcnow
from tests.shipping import insert_order


def statuses() -> dict[str, tuple[str, datetime | None]]:
    db.session.rollback()
    rows = db.session.execute(select(Order.order_no, Order.status, Order.completed_at))
    return {no: (status, completed_at) for no, status, completed_at in rows}


def completed_automatically() -> float:
    return REGISTRY.get_sample_value("minishop_orders_completed_total", {"by": "auto"}) or 0.0


@pytest.fixture()
def user(app: Any) -> User:
    return auth.find_or_create_user(db.session(), "o-completion-job", None)


def test_only_orders_shipped_before_the_cutoff_are_completed(
    user: User, caplog: pytest.LogCaptureFixture
) -> None:
    now = utcnow()
    old = insert_order(user.id, "shipped-8-days", OrderStatus.SHIPPED, now - timedelta(days=8))
    recent = insert_order(user.id, "shipped-2-days", OrderStatus.SHIPPED, now - timedelta(days=2))
    pending = insert_order(user.id, "pending", OrderStatus.PENDING_PAYMENT, None)
    paid = insert_order(user.id, "paid", OrderStatus.PAID, None)
    refunding = insert_order(user.id, "refunding", OrderStatus.REFUNDING, now - timedelta(days=9))
    before = completed_automatically()

    with caplog.at_level(logging.INFO, logger="minishop.domain.completion"):
        cutoff = now - timedelta(days=7)
        assert complete_shipped_orders(db.session(), shipped_before=cutoff) == 1
    found = statuses()
    status, completed_at = found.pop(old)
    assert status == OrderStatus.COMPLETED
    assert completed_at is not None and now <= completed_at <= utcnow()
    assert found == {
        recent: (OrderStatus.SHIPPED, None),
        pending: (OrderStatus.PENDING_PAYMENT, None),
        paid: (OrderStatus.PAID, None),
        refunding: (OrderStatus.REFUNDING, None),
    }
    assert completed_automatically() == before + 1
    logged = [r.getMessage() for r in caplog.records if r.name == "minishop.domain.completion"]
    assert logged == ["1 shipped orders completed automatically"]

    assert complete_shipped_orders(db.session(), shipped_before=cutoff) == 0
    assert completed_automatically() == before + 1


def test_more_orders_than_a_batch_are_all_completed(user: User) -> None:
    shipped_at = utcnow() - timedelta(days=10)
    for n in range(COMPLETION_BATCH + 5):
        insert_order(user.id, f"batch-{n:04d}", OrderStatus.SHIPPED, shipped_at)
    before = completed_automatically()
    assert complete_shipped_orders(db.session(), shipped_before=utcnow()) == COMPLETION_BATCH + 5
    assert {status for status, _ in statuses().values()} == {OrderStatus.COMPLETED}
    assert completed_automatically() == before + COMPLETION_BATCH + 5
