"""Placing, reading, cancelling and expiring orders — without ever overselling.

Stock for every line is taken in one transaction with conditional updates
(`stock = stock - q WHERE stock >= q`, on the product row or on one segment of a split product:
domain/stock.py), products always in ascending id order so two orders cannot deadlock each
other. A shortage rolls the whole transaction back: nothing is written.
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
from typing import cast

from sqlalchemy import ColumnElement, Connection, Select, Table, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain import stock
from minishop.domain.catalog import CatalogCache
from minishop.domain.order_state import transition
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Order, OrderItem, OrderStatus, ProductStatus, User
from minishop.models.types import utcnow
from minishop.observability import metrics
from minishop.observability.log_context import bind_log_fields

EXPIRY_BATCH = 100
# total_fen and subtotal_fen are INT columns; a larger total is refused rather than overflowing.
MAX_TOTAL_FEN = 2**31 - 1
# Fresh attempts beyond one per product an order may have to take carefully (domain/stock.py).
RETRIES = 3
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


def _line_items(views: dict[int, stock.ProductView], quantities: dict[int, int]) -> list[OrderItem]:
    items = []
    for product_id, quantity in quantities.items():
        view = views.get(product_id)
        if view is None or view.status != ProductStatus.ON_SALE:
            raise stock.NotOnSale(product_id)
        items.append(
            OrderItem(
                product_id=product_id,
                title=view.title,
                price_fen=view.price_fen,
                quantity=quantity,
                subtotal_fen=view.price_fen * quantity,
            )
        )
    total = sum(item.subtotal_fen for item in items)
    if total > MAX_TOTAL_FEN:
        message = f"the order total may be at most {MAX_TOTAL_FEN} fen"
        raise AppError(
            ErrorCode.INVALID_PARAMS, data={"errors": [{"field": "items", "message": message}]}
        )
    return items


# Built once: the order and its items are plain Core INSERTs (no unit of work to flush, no
# statement to build and key for the compiled cache on every order).
_INSERT_ORDER = insert(cast(Table, Order.__table__))
_INSERT_ITEMS = insert(cast(Table, OrderItem.__table__))
_ITEM_COLUMNS = ("product_id", "title", "price_fen", "quantity", "subtotal_fen")


def _insert_order(
    connection: Connection,
    user_id: int,
    items: list[OrderItem],
    remark: str,
    idempotency_key: str,
    fingerprint: str,
    expire_after: timedelta,
) -> Order:
    """The row inserted, and the same values as a transient `Order` (every column set, `items`
    an empty loaded list): answering it reads nothing back and needs no session."""
    now = utcnow()
    row = {
        "order_no": new_order_no(now),
        "user_id": user_id,
        "status": OrderStatus.PENDING_PAYMENT,
        "total_fen": sum(item.subtotal_fen for item in items),
        "remark": remark,
        "idempotency_key": idempotency_key,
        "request_hash": fingerprint,
        "expires_at": now + expire_after,
        "paid_at": None,
        "shipped_at": None,
        "completed_at": None,
        "refunded_fen": 0,
        "status_before_refund": None,
        "version": 1,
        "created_at": now,
        "updated_at": now,
    }
    inserted = connection.execute(_INSERT_ORDER, row)
    return Order(id=inserted.lastrowid, items=[], **row)


def _insert_items(connection: Connection, order: Order, items: list[OrderItem]) -> None:
    """One INSERT for all lines (an executemany the driver sends as one multi-row statement).
    The items' own ids are not read back: no answer shows them."""
    connection.execute(
        _INSERT_ITEMS,
        [
            {"order_id": order.id} | {name: getattr(item, name) for name in _ITEM_COLUMNS}
            for item in items
        ],
    )
    order.items.extend(items)


def _not_placed(product_id: int, reason: Exception) -> AppError:
    if isinstance(reason, stock.OutOfStock):
        metrics.ORDERS_OUT_OF_STOCK.inc()
        return AppError(ErrorCode.OUT_OF_STOCK, data={"product_id": product_id})
    message = f"product {product_id} is not on sale"
    return AppError(
        ErrorCode.INVALID_PARAMS, data={"errors": [{"field": "items", "message": message}]}
    )


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
    `expire_after`. A retry with the same `idempotency_key` answers the order it placed.

    Few round trips: one read of the products (no lock), the order inserted (a retried key
    shows up as its duplicate key), the stock of unsplit products taken, the items inserted, and
    a split product's segment taken last, so its lock is held only until the commit right after.
    The order and its items are Core INSERTs and the answer a transient `Order` built from the
    inserted values, so placing it flushes no unit of work and answering it reads nothing back.
    """
    quantities = merge_lines(lines)
    fingerprint = request_fingerprint(quantities, remark)
    user_id = user.id  # read once: a retry after a rollback would load the expired user again
    careful: set[int] = set()

    def work() -> Order:
        views = stock.snapshot(session, list(quantities))
        items = _line_items(views, quantities)
        connection = session.connection()
        order = _insert_order(
            connection, user_id, items, remark, idempotency_key, fingerprint, expire_after
        )
        split = []
        for product_id, quantity in quantities.items():  # ascending ids: the lock order
            view = views[product_id]
            if product_id in careful or not stock.segment_may_serve(view, quantity):
                stock.take_carefully(session, view, quantity)
            elif not stock.is_split(view):
                stock.take_from_row(session, view, quantity)
            else:
                if len(quantities) > 1:
                    stock.share_lock(session, product_id)
                split.append(view)
        _insert_items(connection, order, items)
        for view in split:  # the hot rows last, locked just before the commit
            stock.take_from_segment(session, view, quantities[view.id])
        return order

    for _ in range(len(quantities) + RETRIES):
        try:
            order = in_transaction(session, work)
            break
        except stock.Retry as retry:
            careful.add(retry.product_id)
        except (stock.NotOnSale, stock.OutOfStock) as reason:
            existing = _existing(session, user_id, idempotency_key)
            if existing is not None:
                return _replay(existing, fingerprint)
            raise _not_placed(reason.args[0], reason) from None
        except IntegrityError:
            # The same key placed an order before, or won a race a moment ago in another
            # request: answer with that order.
            existing = _existing(session, user_id, idempotency_key)
            if existing is None:
                raise
            return _replay(existing, fingerprint)
    else:
        raise AppError(ErrorCode.CONFLICT, "the products changed meanwhile: try again")
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
    """Put the items of `orders` back, products in ascending id (the lock order)."""
    returned: Counter[int] = Counter()
    for order in orders:
        for item in order.items:
            returned[item.product_id] += item.quantity
    if returned:
        stock.put_back(session, dict(returned))
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
