"""WeChat Pay for orders: the prepay, and WeChat's outcomes applied exactly once.

One path applies a transaction's outcome, whoever learnt it: a notification, reconciliation's
query, or the expiry job's close that found the order already paid (`apply_transaction`). Every
change there is a conditional UPDATE, so the same outcome applied five times at once changes the
order once. Refunds are in `refunds.py`, the jobs in `reconciliation.py`.

No WeChat call runs inside a database transaction: a row lock is never held across the network.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain.order_state import transition
from minishop.domain.orders import get_user_order
from minishop.domain.payment_context import PaymentContext, RefusedNotificationError, describe_order
from minishop.domain.refunds import apply_refund_result, refund_fingerprint, submit_refund
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields
from minishop.wechat.pay import (
    PayNotificationError,
    Transaction,
)

log = logging.getLogger(__name__)

# trade_state values: REFUND means "paid, then refunded (partly or wholly)": it was paid.
PAID_TRADE_STATES = frozenset({"SUCCESS", "REFUND"})


FAILED_TRADE_STATES = {"CLOSED": PaymentStatus.CLOSED, "REVOKED": PaymentStatus.CLOSED}


PAYERROR = "PAYERROR"


class PaymentOutcome(StrEnum):
    PAID = "paid"
    DUPLICATE = "duplicate"
    PAID_AFTER_CANCEL = "paid_after_cancel"
    CLOSED = "closed"
    FAILED = "failed"
    UNPAID = "unpaid"  # NOTPAY or USERPAYING: nothing to apply yet


def _payable(order: Order, now: datetime) -> None:
    if order.status != OrderStatus.PENDING_PAYMENT:
        raise AppError(ErrorCode.INVALID_STATE, f"an order that is {order.status} cannot be paid")
    if order.expires_at <= now:
        raise AppError(ErrorCode.INVALID_STATE, "the order has expired")
    if order.total_fen <= 0:
        raise AppError(ErrorCode.INVALID_STATE, "the order has nothing to pay")


def _latest_payment(session: Session, order_id: int) -> Payment | None:
    payment: Payment | None = session.scalar(
        select(Payment)
        .where(Payment.order_id == order_id)
        .order_by(Payment.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return payment


def _open_payment(session: Session, order: Order) -> Payment:
    """The order's open WeChat transaction, or a new one.

    The first attempt's out_trade_no is the order number; one after a failed or closed attempt
    gets a suffix, since WeChat never reopens an out_trade_no.
    """
    latest = _latest_payment(session, order.id)
    if latest is not None and latest.status == PaymentStatus.CREATED:
        return latest
    if latest is not None and latest.status == PaymentStatus.SUCCEEDED:
        raise AppError(ErrorCode.INVALID_STATE, "the order is already paid")
    attempts = session.scalar(select(func.count()).where(Payment.order_id == order.id)) or 0
    out_trade_no = order.order_no if attempts == 0 else f"{order.order_no}_{attempts + 1}"
    payment = Payment(
        order_id=order.id,
        out_trade_no=out_trade_no,
        amount_fen=order.total_fen,
        status=PaymentStatus.CREATED,
    )
    session.add(payment)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()  # a concurrent request opened it a moment ago: use theirs
        existing = _latest_payment(session, order.id)
        if existing is None or existing.status != PaymentStatus.CREATED:
            raise
        return existing
    return payment


def start_payment(
    session: Session, ctx: PaymentContext, user: User, order_no: str
) -> dict[str, str]:
    """The `wx.requestPayment` parameters for the caller's unpaid order.

    WeChat answers the same prepay_id for the same parameters while it is valid, so every call
    asks it again rather than trusting a stored prepay_id that may have lapsed.
    """
    order = get_user_order(session, user, order_no)
    _payable(order, utcnow())
    payment = _open_payment(session, order)
    bind_log_fields(order_no=order.order_no, out_trade_no=payment.out_trade_no)
    prepay_id = ctx.pay.create_jsapi(
        out_trade_no=payment.out_trade_no,
        description=describe_order(order),
        total_fen=payment.amount_fen,
        openid=user.openid,
        time_expire=order.expires_at,
        notify_url=ctx.notify_url,
    )
    if payment.prepay_id != prepay_id:
        session.execute(
            update(Payment)
            .where(Payment.id == payment.id)
            .values(prepay_id=prepay_id)
            .execution_options(synchronize_session=False)
        )
        session.commit()
    log.info("prepay created")
    return ctx.pay.payment_params(prepay_id)


def _payment_for(session: Session, out_trade_no: str) -> Payment:
    payment: Payment | None = session.scalar(
        select(Payment).where(Payment.out_trade_no == out_trade_no)
    )
    if payment is None:
        raise RefusedNotificationError("unknown", f"no payment {out_trade_no}", http_status=404)
    return payment


def _check_matches(ctx: PaymentContext, payment: Payment, tx: Transaction) -> None:
    """The transaction must be ours and for the amount we asked, or nothing is applied."""
    credentials = ctx.pay.credentials
    problems = []
    if tx.appid != credentials.appid:
        problems.append("appid")
    if tx.mchid != credentials.mchid:
        problems.append("mchid")
    if tx.total_fen != payment.amount_fen or tx.currency != "CNY":
        problems.append("amount")
    if problems:
        log.error("payment refused: %s do not match %s", ", ".join(problems), payment.out_trade_no)
        raise RefusedNotificationError("mismatch", f"{', '.join(problems)} do not match the order")


def _paid_after_cancel_refund(order: Order, payment: Payment) -> Refund:
    reason = f"order was {order.status} before the payment arrived"
    return Refund(
        order_id=order.id,
        payment_id=payment.id,
        out_refund_no=f"{payment.out_trade_no}-auto",
        idempotency_key=f"paid-after-cancel-{payment.id}",
        request_hash=refund_fingerprint(payment.amount_fen, reason),
        amount_fen=payment.amount_fen,
        reason=reason,
        status=RefundStatus.PROCESSING,
    )


def _record_success(
    session: Session, payment: Payment, tx: Transaction
) -> tuple[PaymentOutcome, Order, Refund | None]:
    paid_at = tx.success_time or utcnow()
    won = session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status != PaymentStatus.SUCCEEDED)
        .values(status=PaymentStatus.SUCCEEDED, transaction_id=tx.transaction_id, paid_at=paid_at)
        .execution_options(synchronize_session=False)
    )
    order = session.get(Order, payment.order_id, with_for_update=True, populate_existing=True)
    assert order is not None  # a foreign key guarantees it
    if won.rowcount != 1:  # type: ignore[attr-defined]
        return PaymentOutcome.DUPLICATE, order, None
    if order.status == OrderStatus.PENDING_PAYMENT:
        transition(session, order, OrderStatus.PAID, paid_at=paid_at)
        return PaymentOutcome.PAID, order, None
    refund = _paid_after_cancel_refund(order, payment)
    session.add(refund)
    session.flush()
    return PaymentOutcome.PAID_AFTER_CANCEL, order, refund


def record_unpaid_end(session: Session, payment: Payment, status: PaymentStatus) -> PaymentOutcome:
    ended = session.execute(
        update(Payment)
        .where(Payment.id == payment.id, Payment.status == PaymentStatus.CREATED)
        .values(status=status)
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        return PaymentOutcome.DUPLICATE
    return PaymentOutcome.CLOSED if status == PaymentStatus.CLOSED else PaymentOutcome.FAILED


def apply_transaction(session: Session, ctx: PaymentContext, tx: Transaction) -> PaymentOutcome:
    """Apply what WeChat says about one transaction; safe to call any number of times at once.

    A success for an order that was cancelled (or expired) meanwhile is refunded in full.
    """
    payment = _payment_for(session, tx.out_trade_no)
    _check_matches(ctx, payment, tx)
    bind_log_fields(out_trade_no=tx.out_trade_no, payment_status=tx.trade_state)
    if tx.trade_state in PAID_TRADE_STATES:
        outcome, order, refund = in_transaction(
            session, lambda: _record_success(session, payment, tx)
        )
    elif tx.trade_state in FAILED_TRADE_STATES or tx.trade_state == PAYERROR:
        status = FAILED_TRADE_STATES.get(tx.trade_state, PaymentStatus.FAILED)
        outcome = in_transaction(session, lambda: record_unpaid_end(session, payment, status))
        order, refund = None, None
    else:
        return PaymentOutcome.UNPAID
    metrics.PAYMENTS.labels(outcome).inc()
    if order is not None:
        bind_log_fields(order_no=order.order_no, order_status=order.status)
    if outcome is PaymentOutcome.PAID and order is not None:
        metrics.record_order_paid(order.total_fen)
        log.info("order paid")
        buyer = session.get(User, order.user_id)
        if buyer is not None:
            ctx.messages.payment_succeeded(buyer.openid, order)
    elif outcome is PaymentOutcome.PAID_AFTER_CANCEL and refund is not None:
        metrics.PAID_AFTER_CANCEL_REFUNDS.inc()
        log.error("payment arrived for an order that is not payable; refunding it in full")
        submit_refund(session, ctx, refund)
    return outcome


def handle_notification(
    session: Session, ctx: PaymentContext, headers: Mapping[str, str], body: bytes
) -> str:
    """Verify, decrypt and apply one notification; returns "ok" or "duplicate".

    Raises RefusedNotificationError (answer 4xx, nothing changed); anything else is our failure
    (answer 5xx: WeChat sends it again later).
    """
    try:
        notification = ctx.pay.parse_notification(headers, body)
    except PayNotificationError as exc:
        reason = "signature" if exc.http_status == 401 else "malformed"
        refused = RefusedNotificationError(reason, exc.message, exc.http_status)
        _count_refusal(refused)
        raise refused from None
    bind_log_fields(notification_id=notification.id, event_type=notification.event_type)
    try:
        if isinstance(notification.resource, Transaction):
            changed = apply_transaction(session, ctx, notification.resource) not in (
                PaymentOutcome.DUPLICATE,
                PaymentOutcome.UNPAID,
            )
        else:
            changed = apply_refund_result(session, ctx, notification.resource)
    except RefusedNotificationError as refused:
        _count_refusal(refused)
        metrics.PAYMENT_NOTIFICATIONS.labels(notification.event_type, "rejected").inc()
        raise
    result = "ok" if changed else "duplicate"
    metrics.PAYMENT_NOTIFICATIONS.labels(notification.event_type, result).inc()
    return result


def _count_refusal(refused: RefusedNotificationError) -> None:
    metrics.PAYMENT_NOTIFY_VERIFICATION_FAILURES.labels(refused.reason).inc()
    log.warning("payment notification refused (%s): %s", refused.reason, refused.message)
