"""The order state machine. Every transition is one conditional UPDATE on (id, status, version),
so of two concurrent transitions exactly one wins; the loser sees 40902 (or 40900)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderStatus

S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_PAYMENT: frozenset({S.PAID, S.CANCELLED}),
    S.PAID: frozenset({S.SHIPPED, S.REFUNDING}),
    S.SHIPPED: frozenset({S.COMPLETED, S.REFUNDING}),
    # Back to where it came from (`status_before_refund`) after a partial or failed refund.
    S.REFUNDING: frozenset({S.REFUNDED, S.PAID, S.SHIPPED}),
    S.COMPLETED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset(),
}


def can_transition(current: str, target: OrderStatus) -> bool:
    return target in TRANSITIONS[OrderStatus(current)]


def _refuse_unless_allowed(order: Order, target: OrderStatus) -> None:
    if not can_transition(order.status, target):
        raise AppError(
            ErrorCode.INVALID_STATE, f"an order that is {order.status} cannot become {target}"
        )


def transition(session: Session, order: Order, target: OrderStatus, **changes: Any) -> None:
    """Move `order` (as read, with its version) to `target`, or raise without writing anything."""
    _refuse_unless_allowed(order, target)
    result = session.execute(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status, Order.version == order.version)
        .values(status=target, version=Order.version + 1, **changes)
        .execution_options(synchronize_session=False)
    )
    # A locking read: it sees the latest committed row, not this transaction's older snapshot.
    session.refresh(order, with_for_update=True)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        _refuse_unless_allowed(order, target)
        raise AppError(ErrorCode.CONFLICT, "the order changed meanwhile; read it again")
