"""WeChat Pay for orders: prepay, WeChat's outcomes applied exactly once, refunds, reconciliation.

One path applies a transaction's outcome, whoever learnt it: a notification, reconciliation's
query, or the expiry job's close that found the order already paid (`apply_transaction`); one
path applies a refund's outcome (`apply_refund_result`). Every change there is a conditional
UPDATE, so the same outcome applied five times at once changes the order once.

No WeChat call runs inside a database transaction: a row lock is never held across the network.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import partial

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain.catalog import CatalogCache
from minishop.domain.order_state import transition
from minishop.domain.orders import (
    expire_orders,
    get_user_order,
    order_by_no,
    return_stock,
)
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderStatus, Payment, PaymentStatus, Refund, RefundStatus, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields
from minishop.wechat.miniprogram import MiniProgramClient, SubscribeOutcome
from minishop.wechat.pay import (
    PayNotificationError,
    RefundResult,
    Transaction,
    WeChatPayClient,
    WeChatPayError,
    WeChatPayUnavailableError,
)

log = logging.getLogger(__name__)

# trade_state values: REFUND means "paid, then refunded (partly or wholly)": it was paid.
PAID_TRADE_STATES = frozenset({"SUCCESS", "REFUND"})
FAILED_TRADE_STATES = {"CLOSED": PaymentStatus.CLOSED, "REVOKED": PaymentStatus.CLOSED}
PAYERROR = "PAYERROR"
REFUND_STATUSES = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "ABNORMAL": RefundStatus.ABNORMAL,
    "CLOSED": RefundStatus.CLOSED,
}
REFUNDABLE = frozenset({OrderStatus.PAID, OrderStatus.SHIPPED})
DESCRIPTION_MAX_CHARS = 127  # WeChat's limit on `description`
RECONCILE_BATCH = 500


class PaymentOutcome(StrEnum):
    PAID = "paid"
    DUPLICATE = "duplicate"
    PAID_AFTER_CANCEL = "paid_after_cancel"
    CLOSED = "closed"
    FAILED = "failed"
    UNPAID = "unpaid"  # NOTPAY or USERPAYING: nothing to apply yet


class RefusedNotificationError(Exception):
    """A notification we must answer with 4xx and without changing anything."""

    def __init__(self, reason: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.reason = reason  # signature, malformed, mismatch, unknown (the metric's label)
        self.message = message
        self.http_status = http_status


@dataclass(frozen=True)
class BuyerMessages:
    """The subscribe message a buyer gets when their payment succeeds ("" template: none)."""

    wechat: MiniProgramClient
    paid_template_id: str

    def payment_succeeded(self, openid: str, order: Order) -> None:
        if not self.paid_template_id:
            return
        data = {
            "character_string1": order.order_no,
            "amount2": f"{order.total_fen / 100:.2f}",
            "thing3": _description(order)[:20],
        }
        try:
            outcome = self.wechat.send_subscribe_message(
                openid, self.paid_template_id, data, page=f"pages/orders/detail?no={order.order_no}"
            )
        except AppError as exc:
            log.warning("payment message not sent: %s", exc.message)
            return
        if outcome is SubscribeOutcome.NO_SUBSCRIPTION:
            log.info("payment message not sent: the buyer has no subscription left")


@dataclass(frozen=True)
class PaymentContext:
    """What the payment rules need from outside: WeChat Pay, the catalog cache, messages."""

    pay: WeChatPayClient
    catalog: CatalogCache
    notify_url: str
    messages: BuyerMessages


def _description(order: Order) -> str:
    first = order.items[0].title if order.items else order.order_no
    more = f" 等{len(order.items)}件" if len(order.items) > 1 else ""
    return (first[: DESCRIPTION_MAX_CHARS - len(more)] + more).strip()


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
        description=_description(order),
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
        request_hash=_refund_fingerprint(payment.amount_fen, reason),
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


def _record_unpaid_end(session: Session, payment: Payment, status: PaymentStatus) -> PaymentOutcome:
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
        outcome = in_transaction(session, lambda: _record_unpaid_end(session, payment, status))
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


def _refund_fingerprint(amount_fen: int, reason: str) -> str:
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
    fingerprint = _refund_fingerprint(amount_fen, reason)
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
        if not _close_at_wechat(session, ctx, payment):
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
    in_transaction(session, lambda: _record_unpaid_end(session, payment, PaymentStatus.CLOSED))
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
            session, lambda: _record_unpaid_end(session, payment, PaymentStatus.CLOSED)
        )
        return outcome is PaymentOutcome.CLOSED
    outcome = apply_transaction(session, ctx, tx)
    order = session.get(Order, payment.order_id, populate_existing=True)
    if outcome is PaymentOutcome.UNPAID and order and order.status != OrderStatus.PENDING_PAYMENT:
        return _close_at_wechat(session, ctx, payment)  # cancelled by its buyer: close it too
    return outcome in REPAIRED


def _reconcile_refund(session: Session, ctx: PaymentContext, refund: Refund) -> bool:
    if refund.refund_id is None:
        return submit_refund(session, ctx, refund).status != RefundStatus.PROCESSING
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
    """One item's failure (WeChat down, a refused refund) must not stop the others."""
    try:
        return repair()
    except (AppError, RefusedNotificationError) as exc:
        log.warning("reconciliation skipped an item: %s", exc)
        return False
