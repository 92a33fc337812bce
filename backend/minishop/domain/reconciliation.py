"""The jobs that keep orders and WeChat Pay in agreement when a notification never comes:
expiry closes each transaction at WeChat before cancelling its order, and reconciliation asks
WeChat about transactions and refunds left open and applies the answers through the same code
as the notifications."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from minishop.domain.orders import expire_orders
from minishop.domain.payment_context import PaymentContext, RefusedNotificationError
from minishop.domain.payments import PaymentOutcome, apply_transaction, record_unpaid_end
from minishop.domain.refunds import apply_refund_result, submit_refund
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError
from minishop.models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields
from minishop.wechat.pay import (
    WeChatPayError,
    WeChatPayUnavailableError,
)

log = logging.getLogger(__name__)

RECONCILE_BATCH = 500


def close_expired_prepays(session: Session, ctx: PaymentContext, now: datetime) -> set[int]:
    """Before unpaid orders are expired, close their transactions at WeChat so nobody can pay
    them afterwards. A close that finds the order paid applies the payment instead.

    Returns the ids of orders that must not be cancelled in this run (paid, or not closed).
    """
    open_payments = list(
        session.scalars(
            select(Payment)
            .join(Order, Order.id == Payment.order_id)
            .where(
                Order.status == OrderStatus.PENDING_PAYMENT,
                Order.expires_at <= now,
                Payment.status == PaymentStatus.CREATED,
            )
            .order_by(Payment.id)
        )
    )
    session.commit()  # end the read: the loop below waits on the network
    keep: set[int] = set()
    for payment in open_payments:
        if not _attempt(partial(_close_at_wechat, session, ctx, payment)):
            keep.add(payment.order_id)
    return keep


def _close_at_wechat(session: Session, ctx: PaymentContext, payment: Payment) -> bool:
    """True when the transaction is closed (or never reached WeChat) and its order may go."""
    bind_log_fields(out_trade_no=payment.out_trade_no)
    try:
        ctx.pay.close(payment.out_trade_no)
    except WeChatPayError as exc:
        if exc.pay_code == "ORDERPAID":
            apply_transaction(session, ctx, ctx.pay.query(payment.out_trade_no))
            log.warning("an expiring order turned out paid; it was not cancelled")
            return False
        if exc.pay_code != "ORDER_NOT_EXIST":
            log.warning("closing an expired payment failed: %s", exc.pay_code)
            return False
    except WeChatPayUnavailableError:
        log.warning("closing an expired payment got no answer; its order waits for the next run")
        return False
    in_transaction(session, lambda: record_unpaid_end(session, payment, PaymentStatus.CLOSED))
    return True


def expire_unpaid_orders(session: Session, ctx: PaymentContext, now: datetime | None = None) -> int:
    """The expiry job: close at WeChat first, then cancel what is still unpaid."""
    cutoff = now or utcnow()
    keep = close_expired_prepays(session, ctx, cutoff)
    return expire_orders(session, ctx.catalog, cutoff, keep=keep)


@dataclass
class ReconcileReport:
    payments_checked: int = 0
    payments_repaired: int = 0
    refunds_checked: int = 0
    refunds_repaired: int = 0


REPAIRED = frozenset(
    {
        PaymentOutcome.PAID,
        PaymentOutcome.PAID_AFTER_CANCEL,
        PaymentOutcome.CLOSED,
        PaymentOutcome.FAILED,
    }
)


def _reconcile_payment(session: Session, ctx: PaymentContext, payment: Payment) -> bool:
    try:
        tx = ctx.pay.query(payment.out_trade_no)
    except WeChatPayError as exc:
        if exc.pay_code != "ORDER_NOT_EXIST":
            raise
        # The prepay never reached WeChat: nothing can be paid on it.
        outcome = in_transaction(
            session, lambda: record_unpaid_end(session, payment, PaymentStatus.CLOSED)
        )
        return outcome is PaymentOutcome.CLOSED
    outcome = apply_transaction(session, ctx, tx)
    order = session.get(Order, payment.order_id, populate_existing=True)
    if outcome is PaymentOutcome.UNPAID and order and order.status != OrderStatus.PENDING_PAYMENT:
        return _close_at_wechat(session, ctx, payment)  # cancelled by its buyer: close it too
    return outcome in REPAIRED


def _reconcile_refund(session: Session, ctx: PaymentContext, refund: Refund) -> bool:
    """A refund WeChat never acknowledged is sent again (repaired once WeChat has it: its
    outcome follows by notification or the next run); an acknowledged one is asked about."""
    if refund.refund_id is None:
        return submit_refund(session, ctx, refund).refund_id is not None
    return apply_refund_result(session, ctx, ctx.pay.query_refund(refund.out_refund_no))


def reconcile(session: Session, ctx: PaymentContext, *, older_than: timedelta) -> ReconcileReport:
    """Ask WeChat about transactions and refunds older than `older_than` whose outcome never
    arrived, and apply the answers through the notification's own code path."""
    cutoff = utcnow() - older_than
    report = ReconcileReport()
    payments = list(
        session.scalars(
            select(Payment)
            .where(Payment.status == PaymentStatus.CREATED, Payment.created_at <= cutoff)
            .order_by(Payment.id)
            .limit(RECONCILE_BATCH)
        )
    )
    refunds = list(
        session.scalars(
            select(Refund)
            .where(Refund.status == RefundStatus.PROCESSING, Refund.created_at <= cutoff)
            .order_by(Refund.id)
            .limit(RECONCILE_BATCH)
        )
    )
    session.commit()
    for payment in payments:
        report.payments_checked += 1
        if _attempt(partial(_reconcile_payment, session, ctx, payment)):
            report.payments_repaired += 1
            metrics.RECONCILIATION_REPAIRS.labels("payment").inc()
    for refund in refunds:
        report.refunds_checked += 1
        if _attempt(partial(_reconcile_refund, session, ctx, refund)):
            report.refunds_repaired += 1
            metrics.RECONCILIATION_REPAIRS.labels("refund").inc()
    log.info(
        "reconciliation: %d/%d payments and %d/%d refunds repaired",
        report.payments_repaired,
        report.payments_checked,
        report.refunds_repaired,
        report.refunds_checked,
    )
    return report


def _attempt(repair: Callable[[], bool]) -> bool:
    """One item's failure (WeChat down, a refused refund) must not stop the others; the next
    run tries it again."""
    try:
        return repair()
    except (AppError, RefusedNotificationError) as exc:
        log.warning("skipped until the next run: %s", exc)
        return False
