"""Orders in `paid` or `shipped` for tests, without going through payments: the order is marked
paid in the database, then shipped as the back office ships it (`domain.orders.ship_order`); or,
where many are needed, order rows written directly in the state the state machine leaves them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update

from minishop.domain import orders
from minishop.domain.orders import new_order_no
from minishop.extensions import db
from minishop.models import Order, OrderStatus
from minishop.models.types import utcnow


def mark_paid(order_no: str) -> None:
    db.session.execute(
        update(Order)
        .where(Order.order_no == order_no, Order.status == OrderStatus.PENDING_PAYMENT)
        .values(status=OrderStatus.PAID, paid_at=utcnow())
    )
    db.session.commit()


def ship(order_no: str, *, shipped_at: datetime | None = None) -> None:
    """Pay and ship the pending order `order_no`; `shipped_at` backdates the shipping."""
    mark_paid(order_no)
    orders.ship_order(db.session(), order_no)
    if shipped_at is not None:
        db.session.execute(
            update(Order).where(Order.order_no == order_no).values(shipped_at=shipped_at)
        )
        db.session.commit()


def insert_order(user_id: int, key: str, status: OrderStatus, shipped_at: datetime | None) -> str:
    """An order row of `user_id` in `status` (without items: nothing here needs them)."""
    now = utcnow()
    order = Order(
        order_no=new_order_no(now),
        user_id=user_id,
        status=status,
        total_fen=100,
        idempotency_key=key,
        request_hash="0" * 64,
        expires_at=now + timedelta(minutes=15),
        paid_at=None if status == OrderStatus.PENDING_PAYMENT else now - timedelta(days=30),
        shipped_at=shipped_at,
    )
    db.session.add(order)
    db.session.commit()
    return order.order_no
