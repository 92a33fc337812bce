"""Completing shipped orders: the buyer confirms receipt, or a job does it some days later.

Both go through the conditional state transition, so a buyer's confirm racing another confirm or
the job completes the order exactly once; the loser sees 40902 (or 40900).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from minishop.domain.order_state import transition
from minishop.domain.orders import get_user_order
from minishop.domain.transactions import in_transaction
from minishop.models import Order, OrderStatus, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields

COMPLETION_BATCH = 100
log = logging.getLogger(__name__)


def confirm_receipt(session: Session, user: User, order_no: str) -> Order:
    """The buyer has the goods: their shipped order becomes completed (someone else's: 40400)."""

    def work() -> Order:
        order = get_user_order(session, user, order_no)
        transition(session, order, OrderStatus.COMPLETED, completed_at=utcnow())
        return order

    order = in_transaction(session, work)
    metrics.ORDERS_COMPLETED.labels(by="buyer").inc()
    bind_log_fields(order_no=order.order_no, order_status=order.status)
    log.info("order completed by its buyer")
    return order


def complete_shipped_orders(session: Session, *, shipped_before: datetime) -> int:
    """Complete the orders shipped before `shipped_before` that their buyer never confirmed.

    As with expiry, `FOR UPDATE SKIP LOCKED` lets two copies of the job share the work, and an
    order a buyer is confirming at that moment is either skipped or completed by one side only.
    Returns how many orders this run completed.
    """

    def complete_batch() -> int:
        batch = list(
            session.scalars(
                select(Order)
                .where(Order.status == OrderStatus.SHIPPED, Order.shipped_at < shipped_before)
                .order_by(Order.shipped_at, Order.id)
                .limit(COMPLETION_BATCH)
                .with_for_update(skip_locked=True)
                # The locked rows as they are now, not as this session may remember them.
                .execution_options(populate_existing=True)
            )
        )
        now = utcnow()
        for order in batch:
            transition(session, order, OrderStatus.COMPLETED, completed_at=now)
        return len(batch)

    completed = 0
    while True:
        count = in_transaction(session, complete_batch)
        metrics.ORDERS_COMPLETED.labels(by="auto").inc(count)
        if count:
            bind_log_fields(order_no=None, order_status=None)  # a line about many orders
            log.info("%d shipped orders completed automatically", count)
        completed += count
        if count < COMPLETION_BATCH:
            return completed
