"""Placing, reading, cancelling and expiring orders — without ever overselling.

Stock for every line is taken in one transaction with conditional updates
(`stock = stock - q WHERE stock >= q`), product rows always in ascending id order so two orders
cannot deadlock each other. A shortage rolls the whole transaction back: nothing is written.
Cancelling and expiring return stock inside the same transaction as the state change, and only
the winner of the conditional state update does it: stock comes back exactly once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain.catalog import CatalogCache
from minishop.domain.order_state import transition
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderItem, OrderStatus, Product, ProductStatus, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields

EXPIRY_BATCH = 100
# total_fen and subtotal_fen are INT columns; a larger total is refused rather than overflowing.
MAX_TOTAL_FEN = 2**31 - 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OrderLine:
    product_id: int
    quantity: int


@dataclass(frozen=True)
class PlacedOrder:
    order: Order
    created: bool  # False: the same request was seen before and this is its order


def merge_lines(lines: list[OrderLine]) -> dict[int, int]:
    """Quantities per product, duplicates added up, in ascending product id (the lock order)."""
    merged: Counter[int] = Counter()
    for line in lines:
        merged[line.product_id] += line.quantity
    return dict(sorted(merged.items()))


def request_fingerprint(quantities: dict[int, int], remark: str) -> str:
    canonical = json.dumps({"items": sorted(quantities.items()), "remark": remark})
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_order_no(now: datetime) -> str:
    return f"{now:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"


def _existing(session: Session, user_id: int, idempotency_key: str) -> Order | None:
    order: Order | None = session.scalar(
        select(Order).where(Order.user_id == user_id, Order.idempotency_key == idempotency_key)
    )
    return order


def _replay(order: Order, fingerprint: str) -> PlacedOrder:
    if order.request_hash != fingerprint:
        raise AppError(
            ErrorCode.CONFLICT, "this Idempotency-Key was used for a different order request"
        )
    return PlacedOrder(order, created=False)


def _take_stock(session: Session, quantities: dict[int, int]) -> None:
    for product_id, quantity in quantities.items():  # ascending ids: a fixed lock order
        taken = session.execute(
            update(Product)
            .where(
                Product.id == product_id,
                Product.status == ProductStatus.ON_SALE,
                Product.stock >= quantity,
            )
            .values(stock=Product.stock - quantity)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            continue
        product = session.get(Product, product_id)
        if product is None or product.status != ProductStatus.ON_SALE:
            raise AppError(
                ErrorCode.INVALID_PARAMS,
                data={
                    "errors": [
                        {"field": "items", "message": f"product {product_id} is not on sale"}
                    ]
                },
            )
        metrics.ORDERS_OUT_OF_STOCK.inc()
        raise AppError(ErrorCode.OUT_OF_STOCK, data={"product_id": product_id})


def _insert_order(
    session: Session,
    user: User,
    quantities: dict[int, int],
    remark: str,
    idempotency_key: str,
    fingerprint: str,
    expire_after: timedelta,
) -> Order:
    # The rows are locked by this transaction now: titles and prices cannot change under us.
    products = {
        p.id: p
        for p in session.scalars(
            select(Product)
            .where(Product.id.in_(quantities))
            .execution_options(populate_existing=True)
        )
    }
    now = utcnow()
    order = Order(
        order_no=new_order_no(now),
        user_id=user.id,
        status=OrderStatus.PENDING_PAYMENT,
        remark=remark,
        idempotency_key=idempotency_key,
        request_hash=fingerprint,
        expires_at=now + expire_after,
        total_fen=0,
    )
    for product_id, quantity in quantities.items():
        product = products[product_id]
        order.items.append(
            OrderItem(
                product_id=product_id,
                title=product.title,
                price_fen=product.price_fen,
                quantity=quantity,
                subtotal_fen=product.price_fen * quantity,
            )
        )
    order.total_fen = sum(item.subtotal_fen for item in order.items)
    if order.total_fen > MAX_TOTAL_FEN:
        message = f"the order total may be at most {MAX_TOTAL_FEN} fen"
        raise AppError(
            ErrorCode.INVALID_PARAMS, data={"errors": [{"field": "items", "message": message}]}
        )
    session.add(order)
    session.flush()
    return order


def place_order(
    session: Session,
    catalog: CatalogCache,
    user: User,
    lines: list[OrderLine],
    *,
    remark: str,
    idempotency_key: str,
    expire_after: timedelta,
) -> PlacedOrder:
    """Take the stock and record the order, or change nothing; unpaid, it expires after
    `expire_after`. A retry with the same `idempotency_key` answers the order it placed."""
    quantities = merge_lines(lines)
    fingerprint = request_fingerprint(quantities, remark)
    existing = _existing(session, user.id, idempotency_key)
    if existing is not None:
        return _replay(existing, fingerprint)

    def work() -> Order:
        _take_stock(session, quantities)
        return _insert_order(
            session, user, quantities, remark, idempotency_key, fingerprint, expire_after
        )

    try:
        order = in_transaction(session, work)
    except IntegrityError:
        # The same key won a race a moment ago in another request: answer with its order.
        existing = _existing(session, user.id, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, fingerprint)
    catalog.forget_products(list(quantities))
    metrics.ORDERS_CREATED.inc()
    bind_log_fields(order_no=order.order_no, order_status=order.status)
    log.info("order placed")
    return PlacedOrder(order, created=True)


def get_user_order(session: Session, user: User, order_no: str) -> Order:
    """Someone else's order is "not found", never "forbidden": order numbers reveal nothing."""
    return _order_where(session, Order.order_no == order_no, Order.user_id == user.id)


def _order_where(
    session: Session, *conditions: ColumnElement[bool], for_update: bool = False
) -> Order:
    query = select(Order).where(*conditions)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    order: Order | None = session.scalar(query)
    if order is None:
        raise AppError(ErrorCode.NOT_FOUND, "order not found")
    return order


def order_by_no(session: Session, order_no: str, *, for_update: bool = False) -> Order:
    """Back office and WeChat's side: any user's order."""
    return _order_where(session, Order.order_no == order_no, for_update=for_update)


def order_list_query(
    *,
    user_id: int | None,
    status: OrderStatus | None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Select[Order]:
    """Newest first: per user via the (user_id, created_at) index, else via (status, created_at)."""
    conditions = []
    if user_id is not None:
        conditions.append(Order.user_id == user_id)
    if status is not None:
        conditions.append(Order.status == status)
    if created_from is not None:
        conditions.append(Order.created_at >= created_from)
    if created_to is not None:
        conditions.append(Order.created_at < created_to)
    return select(Order).where(*conditions).order_by(Order.created_at.desc(), Order.id.desc())


def list_orders(
    session: Session, query: Select[Order], *, page: int, page_size: int
) -> tuple[list[Order], int]:
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    found = session.scalars(query.limit(page_size).offset((page - 1) * page_size))
    return list(found), total or 0


def return_stock(session: Session, orders: list[Order]) -> list[int]:
    """Put the items of `orders` back, one UPDATE per product in ascending id (the lock order)."""
    returned: Counter[int] = Counter()
    for order in orders:
        for item in order.items:
            returned[item.product_id] += item.quantity
    for product_id, quantity in sorted(returned.items()):
        session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(stock=Product.stock + quantity)
            .execution_options(synchronize_session=False)
        )
    return sorted(returned)


def cancel_order(session: Session, catalog: CatalogCache, user: User, order_no: str) -> Order:
    def work() -> tuple[Order, list[int]]:
        order = get_user_order(session, user, order_no)
        transition(session, order, OrderStatus.CANCELLED)
        return order, return_stock(session, [order])

    order, product_ids = in_transaction(session, work)
    catalog.forget_products(product_ids)
    metrics.ORDERS_CANCELLED.inc()
    bind_log_fields(order_no=order.order_no, order_status=order.status)
    log.info("order cancelled")
    return order


def expire_orders(
    session: Session,
    catalog: CatalogCache,
    now: datetime | None = None,
    *,
    keep: Collection[int] = (),
) -> int:
    """Cancel unpaid orders past their expiry and return their stock; safe to run concurrently.

    `FOR UPDATE SKIP LOCKED` lets two copies of this job share the work instead of queueing, and
    the conditional state update makes a race with a user's cancel return the stock only once.
    Orders whose ids are in `keep` stay (their payment could not be closed at WeChat yet).
    Returns how many orders this run expired.
    """
    cutoff = now or utcnow()

    def expire_batch() -> tuple[int, list[int]]:
        batch = list(
            session.scalars(
                select(Order)
                .where(
                    Order.status == OrderStatus.PENDING_PAYMENT,
                    Order.expires_at <= cutoff,
                    Order.id.not_in(keep),
                )
                .order_by(Order.expires_at, Order.id)
                .limit(EXPIRY_BATCH)
                .with_for_update(skip_locked=True)
            )
        )
        for order in batch:
            transition(session, order, OrderStatus.CANCELLED)
        return len(batch), return_stock(session, batch)

    expired = 0
    while True:
        count, product_ids = in_transaction(session, expire_batch)
        catalog.forget_products(product_ids)
        metrics.ORDERS_EXPIRED.inc(count)
        if count:
            log.info("%d unpaid orders expired", count)
        expired += count
        if count < EXPIRY_BATCH:
            return expired


def ship_order(session: Session, order_no: str) -> Order:
    """Back office: a paid order leaves the warehouse."""

    def work() -> Order:
        order = order_by_no(session, order_no)
        transition(session, order, OrderStatus.SHIPPED, shipped_at=utcnow())
        return order

    order = in_transaction(session, work)
    bind_log_fields(order_no=order.order_no, order_status=order.status)
    log.info("order shipped")
    return order
