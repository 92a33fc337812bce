"""Refunds: requested by the back office (or automatically for a payment that arrived for an
order no longer payable), sent to WeChat Pay, and their outcome applied exactly once.

The order is `refunding` while a refund is in flight, one at a time; when WeChat says how the
refund ended (notification, answer or reconciliation's query) `apply_refund_result` moves it to
`refunded` or back where it came from. Every change is a conditional UPDATE.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain.order_state import transition
from minishop.domain.orders import (
    order_by_no,
    return_stock,
)
from minishop.domain.payment_context import PaymentContext, RefusedNotificationError
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields
from minishop.wechat.pay import (
    RefundResult,
    WeChatPayError,
    WeChatPayUnavailableError,
)

log = logging.getLogger(__name__)

REFUND_STATUSES = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "ABNORMAL": RefundStatus.ABNORMAL,
    "CLOSED": RefundStatus.CLOSED,
}


REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.SHIPPED})


def refund_fingerprint(amount_fen: int, reason: str) -> str:
    return hashlib.sha256(json.dumps([amount_fen, reason]).encode()).hexdigest()


def _record_refund_result(
    session: Session, refund: Refund, result: RefundResult
) -> tuple[bool, list[int]]:
    """The refund's end, and the order's: back where it was, or refunded (stock returned when
    the whole order is refunded before it shipped). Returns (changed, products restocked)."""
    status = REFUND_STATUSES[result.status]
    ended = session.execute(
        update(Refund)
        .where(Refund.id == refund.id, Refund.status == RefundStatus.PROCESSING)
        .values(
            status=status,
            refund_id=result.refund_id or Refund.refund_id,
            succeeded_at=(result.success_time or utcnow())
            if status == RefundStatus.SUCCEEDED
            else None,
        )
        .execution_options(synchronize_session=False)
    )
    if ended.rowcount != 1:  # type: ignore[attr-defined]
        return False, []
    order = session.get(Order, refund.order_id, with_for_update=True, populate_existing=True)
    assert order is not None  # a foreign key guarantees it
    if order.status != OrderStatus.REFUNDING:
        return True, []  # a paid-after-cancel refund: the order stays cancelled
    came_from = OrderStatus(order.status_before_refund or OrderStatus.PAID)
    if status != RefundStatus.SUCCEEDED:
        transition(session, order, came_from, status_before_refund=None)
        return True, []
    refunded = order.refunded_fen + refund.amount_fen
    if refunded < order.total_fen:
        transition(session, order, came_from, refunded_fen=refunded, status_before_refund=None)
        return True, []
    transition(session, order, OrderStatus.REFUNDED, refunded_fen=refunded)
    if came_from == OrderStatus.PAID:
        return True, return_stock(session, [order])
    return True, []


def apply_refund_result(session: Session, ctx: PaymentContext, result: RefundResult) -> bool:
    """Apply a refund's outcome from a notification, an answer or a query; True if it changed
    anything (a duplicate, or a refund still processing, changes nothing)."""
    refund: Refund | None = session.scalar(
        select(Refund).where(Refund.out_refund_no == result.out_refund_no)
    )
    if refund is None:
        message = f"no refund {result.out_refund_no}"
        raise RefusedNotificationError("unknown", message, http_status=404)
    bind_log_fields(out_refund_no=refund.out_refund_no, refund_status=result.status)
    if result.status not in REFUND_STATUSES:
        if result.refund_id and refund.refund_id is None:
            refund.refund_id = result.refund_id
            session.commit()
        return False
    changed, restocked = in_transaction(
        session, lambda: _record_refund_result(session, refund, result)
    )
    if not changed:
        return False
    ctx.catalog.forget_products(restocked)
    metrics.REFUNDS.labels(REFUND_STATUSES[result.status]).inc()
    if result.status == "SUCCESS":
        log.info("refund succeeded")
    else:
        log.error("refund ended %s; the order is back where it was", result.status)
    return True


def _refused_outright(exc: WeChatPayError) -> bool:
    """A 4xx is WeChat's decision; a 429, a 5xx or an answer we could not trust leaves the
    outcome unknown: the same out_refund_no is sent again later, never a new refund."""
    return 400 <= exc.http_status < 500 and exc.http_status != 429


def submit_refund(session: Session, ctx: PaymentContext, refund: Refund) -> Refund:
    """Ask WeChat for the refund. Without an answer it stays `processing` and reconciliation
    asks again with the same out_refund_no (WeChat treats that as the same refund)."""
    payment = session.get(Payment, refund.payment_id)
    assert payment is not None  # a foreign key guarantees it
    bind_log_fields(out_refund_no=refund.out_refund_no)
    try:
        result = ctx.pay.refund(
            out_trade_no=payment.out_trade_no,
            out_refund_no=refund.out_refund_no,
            refund_fen=refund.amount_fen,
            total_fen=payment.amount_fen,
            reason=refund.reason,
            notify_url=ctx.notify_url,
        )
    except WeChatPayUnavailableError:
        log.warning("refund request unanswered; reconciliation will ask again")
        return refund
    except WeChatPayError as exc:
        if not _refused_outright(exc):
            log.warning("refund outcome unknown (%s); reconciliation will ask again", exc.pay_code)
            return refund
        log.error("WeChat refused the refund: %s %s", exc.pay_code, exc.pay_message)
        apply_refund_result(
            session,
            ctx,
            RefundResult(
                out_refund_no=refund.out_refund_no,
                refund_id=None,
                out_trade_no=payment.out_trade_no,
                transaction_id=payment.transaction_id,
                status="CLOSED",
                refund_fen=refund.amount_fen,
                total_fen=payment.amount_fen,
                success_time=None,
            ),
        )
        raise
    metrics.REFUNDS.labels("requested").inc()
    apply_refund_result(session, ctx, result)
    session.refresh(refund)
    return refund


@dataclass(frozen=True)
class RequestedRefund:
    refund: Refund
    order: Order
    created: bool  # False: the same Idempotency-Key was seen before and this is its refund


def _refund_by_key(session: Session, order_id: int, idempotency_key: str) -> Refund | None:
    refund: Refund | None = session.scalar(
        select(Refund).where(Refund.order_id == order_id, Refund.idempotency_key == idempotency_key)
    )
    return refund


def _replay_refund(refund: Refund, fingerprint: str) -> Refund:
    if refund.request_hash != fingerprint:
        raise AppError(ErrorCode.CONFLICT, "this Idempotency-Key was used for a different refund")
    return refund


def _open_refund(
    session: Session, order_no: str, amount_fen: int, reason: str, key: str, fingerprint: str
) -> tuple[Refund, bool]:
    order = order_by_no(session, order_no, for_update=True)
    existing = _refund_by_key(session, order.id, key)
    if existing is not None:
        return _replay_refund(existing, fingerprint), False
    if order.status not in REFUNDABLE:
        raise AppError(
            ErrorCode.INVALID_STATE, f"an order that is {order.status} cannot be refunded now"
        )
    left = order.total_fen - order.refunded_fen
    if amount_fen > left:
        message = f"at most {left} fen is left to refund"
        raise AppError(
            ErrorCode.INVALID_PARAMS, data={"errors": [{"field": "amount_fen", "message": message}]}
        )
    payment = session.scalar(
        select(Payment).where(
            Payment.order_id == order.id, Payment.status == PaymentStatus.SUCCEEDED
        )
    )
    if payment is None:
        raise AppError(ErrorCode.INVALID_STATE, "the order has no successful payment")
    earlier = session.scalar(select(func.count()).where(Refund.order_id == order.id)) or 0
    refund = Refund(
        order_id=order.id,
        payment_id=payment.id,
        out_refund_no=f"{order.order_no}R{earlier + 1}",
        idempotency_key=key,
        request_hash=fingerprint,
        amount_fen=amount_fen,
        reason=reason,
        status=RefundStatus.PROCESSING,
    )
    session.add(refund)
    session.flush()
    transition(session, order, OrderStatus.REFUNDING, status_before_refund=order.status)
    return refund, True


def request_refund(
    session: Session,
    ctx: PaymentContext,
    order_no: str,
    *,
    amount_fen: int,
    reason: str,
    idempotency_key: str,
) -> RequestedRefund:
    """Back office: refund part or all of a paid or shipped order, one refund at a time.

    The order is `refunding` until WeChat says how it ended. A retry with the same
    `idempotency_key` is the same refund (the same out_refund_no at WeChat).
    """
    fingerprint = refund_fingerprint(amount_fen, reason)
    try:
        refund, created = in_transaction(
            session,
            lambda: _open_refund(
                session, order_no, amount_fen, reason, idempotency_key, fingerprint
            ),
        )
    except IntegrityError:
        order = order_by_no(session, order_no)
        existing = _refund_by_key(session, order.id, idempotency_key)
        if existing is None:
            raise
        refund, created = _replay_refund(existing, fingerprint), False
    bind_log_fields(order_no=order_no, out_refund_no=refund.out_refund_no)
    if created:
        log.info("refund requested")
    if refund.status == RefundStatus.PROCESSING and refund.refund_id is None:
        refund = submit_refund(session, ctx, refund)
    order = order_by_no(session, order_no)
    session.refresh(order)
    return RequestedRefund(refund, order, created)
