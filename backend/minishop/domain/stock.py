"""Taking, returning and re-splitting stock, for single-row and split (hot) products alike.

A product's stock is `products.stock` plus its `product_stock_segments` rows. An unsplit product
(`stock_segments` 1) keeps it all in its own row, which every order locks in turn. A split product
spreads it over `stock_segments` rows and an order takes its quantity from one of them at random,
so concurrent buyers of one hot item mostly lock different rows.

Lock order, the same for every writer so that none can deadlock another: product rows by
ascending id, and a segment only ever locked while holding its product's row lock. An unsplit
product's row is locked exclusively by the conditional UPDATE that takes its stock. A split
product's row is only share-locked by an order (the order item's foreign key check takes that
lock anyway), so buyers of one hot item do not queue on it; they queue only on the segment each
one picked, last in the transaction. A re-split, a stocktake, a restock and a `careful` take
lock the row exclusively, then segments in ascending order. A fast take that misses holds one
segment lock, so it is never continued carefully (that would lock the row exclusively after a
segment): the caller rolls back and takes that product carefully in a fresh transaction.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.orm import Session

from minishop.models import Product, ProductStatus, ProductStockSegment


@dataclass
class ProductView:
    """A product as the order's snapshot saw it: enough to price a line and pick a segment."""

    id: int
    title: str
    price_fen: int
    status: str
    stock_segments: int
    segments: dict[int, int] = field(default_factory=dict)  # segment → stock, as seen


class Retry(Exception):  # noqa: N818 — a control-flow signal, not an error
    """The fast path missed on a split product, or the product changed since the snapshot:
    roll back and take `product_id` carefully in a fresh transaction."""

    def __init__(self, product_id: int) -> None:
        super().__init__(product_id)
        self.product_id = product_id


class NotOnSale(Exception):  # noqa: N818
    pass


class OutOfStock(Exception):  # noqa: N818
    pass


# The statements every order sends, built once: only their parameters change, so each order
# skips building them and computing their compiled-cache keys, and they run on the connection
# (plain Core, no ORM execution layer). A column's own name is reserved for the SET clause of an
# UPDATE, hence the `b_` bind names.
_PRODUCTS = cast(Table, Product.__table__)
_SEGMENTS = cast(Table, ProductStockSegment.__table__)
_SNAPSHOT = (
    select(
        _PRODUCTS.c.id,
        _PRODUCTS.c.title,
        _PRODUCTS.c.price_fen,
        _PRODUCTS.c.status,
        _PRODUCTS.c.stock_segments,
        _SEGMENTS.c.segment,
        _SEGMENTS.c.stock,
    )
    .outerjoin(_SEGMENTS, _SEGMENTS.c.product_id == _PRODUCTS.c.id)
    .where(_PRODUCTS.c.id.in_(bindparam("product_ids", expanding=True)))
)
_TAKE_FROM_ROW = (
    update(_PRODUCTS)
    .where(
        _PRODUCTS.c.id == bindparam("b_product_id"),
        _PRODUCTS.c.title == bindparam("b_title"),  # the order's line is priced from the snapshot
        _PRODUCTS.c.price_fen == bindparam("b_price_fen"),
        _PRODUCTS.c.status == ProductStatus.ON_SALE,
        _PRODUCTS.c.stock >= bindparam("b_quantity"),
    )
    .values(stock=_PRODUCTS.c.stock - bindparam("b_quantity"))
)
_TAKE_FROM_SEGMENT = (
    update(_SEGMENTS)
    .where(
        _SEGMENTS.c.product_id == bindparam("b_product_id"),
        _SEGMENTS.c.segment == bindparam("b_segment_no"),
        _SEGMENTS.c.stock >= bindparam("b_quantity"),
    )
    .values(stock=_SEGMENTS.c.stock - bindparam("b_quantity"))
)


def snapshot(session: Session, product_ids: list[int]) -> dict[int, ProductView]:
    """Every product of an order and the segments of the split ones, in one non-locking read."""
    rows = session.connection().execute(_SNAPSHOT, {"product_ids": product_ids})
    views: dict[int, ProductView] = {}
    for pid, title, price, status, segment_count, segment, segment_stock in rows:
        view = views.setdefault(pid, ProductView(pid, title, price, status, segment_count))
        if segment is not None:
            view.segments[segment] = segment_stock
    return views


def is_split(view: ProductView) -> bool:
    return view.stock_segments > 1 or bool(view.segments)


def segment_may_serve(view: ProductView, quantity: int) -> bool:
    """False when the snapshot already shows that no single segment of a split product holds
    `quantity` (or it is not on sale): take it carefully from the start, before any lock."""
    if not is_split(view):
        return True
    return view.status == ProductStatus.ON_SALE and any(
        left >= quantity for left in view.segments.values()
    )


def take_from_row(session: Session, view: ProductView, quantity: int) -> None:
    """An unsplit product: one conditional UPDATE of its row; a miss goes on carefully with the
    row already locked (the first lock of this product's lock order)."""
    taken = session.connection().execute(
        _TAKE_FROM_ROW,
        {
            "b_product_id": view.id,
            "b_title": view.title,
            "b_price_fen": view.price_fen,
            "b_quantity": quantity,
        },
    )
    if taken.rowcount != 1:
        take_carefully(session, view, quantity)


def share_lock(session: Session, product_id: int) -> None:
    """A shared lock on a split product's row, taken in the product order before its segment.

    Inserting the order item takes this very lock (its foreign key check); an order of one
    product lets the insert take it, an order of several takes it here, in ascending order."""
    session.execute(select(Product.id).where(Product.id == product_id).with_for_update(read=True))


def take_from_segment(session: Session, view: ProductView, quantity: int) -> None:
    """A split product, its row share-locked: one conditional UPDATE per segment tried, from a
    random one among those the snapshot saw holding enough, ascending from there. Raises
    `Retry` on a miss (the caller rolls back: this transaction holds a segment lock now)."""
    candidates = sorted(s for s, left in view.segments.items() if left >= quantity)
    for segment in candidates[secrets.randbelow(len(candidates)) :]:
        taken = session.connection().execute(
            _TAKE_FROM_SEGMENT,
            {"b_product_id": view.id, "b_segment_no": segment, "b_quantity": quantity},
        )
        if taken.rowcount == 1:
            return
    raise Retry(view.id)


def _lock(session: Session, product_id: int) -> tuple[Product | None, dict[int, int]]:
    """The product row, then its segments in ascending order, locked: the lock order."""
    product = session.scalar(
        select(Product)
        .where(Product.id == product_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    rows = session.execute(
        select(ProductStockSegment.segment, ProductStockSegment.stock)
        .where(ProductStockSegment.product_id == product_id)
        .order_by(ProductStockSegment.segment)
        .with_for_update()
    )
    segments = {segment: left for segment, left in rows}
    return product, segments


def take_carefully(session: Session, view: ProductView, quantity: int) -> None:
    """With the product and all its segments locked: the whole stock counts, so a quantity no
    single segment holds is still sold when the total suffices. Raises NotOnSale, OutOfStock, or
    Retry when the title or price changed since the snapshot priced the line (other edits, a
    re-split included, do not matter to the line)."""
    product, segments = _lock(session, view.id)
    if product is None or product.status != ProductStatus.ON_SALE:
        raise NotOnSale(view.id)
    if (product.title, product.price_fen) != (view.title, view.price_fen):
        raise Retry(view.id)  # the line was priced from an older snapshot: price it again
    if product.stock + sum(segments.values()) < quantity:
        raise OutOfStock(view.id)
    needed = quantity
    from_row = min(product.stock, needed)
    if from_row:
        _add_to_row(session, view.id, -from_row)
        needed -= from_row
    for segment, left in segments.items():
        if not needed:
            break
        part = min(left, needed)
        if part:
            _add_to_segment(session, view.id, segment, -part)
            needed -= part


def _add_to_row(session: Session, product_id: int, delta: int) -> None:
    session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(stock=Product.stock + delta)
        .execution_options(synchronize_session=False)
    )


def _add_to_segment(session: Session, product_id: int, segment: int, delta: int) -> int:
    changed = session.execute(
        update(ProductStockSegment)
        .where(ProductStockSegment.product_id == product_id, ProductStockSegment.segment == segment)
        .values(stock=ProductStockSegment.stock + delta)
        .execution_options(synchronize_session=False)
    )
    return int(changed.rowcount)  # type: ignore[attr-defined]


def put_back(session: Session, quantities: dict[int, int]) -> None:
    """Return stock (cancel, expiry, refund), products in ascending id. A split product gets it
    in a random segment, its row locked first (the lock order); a segment that a re-split
    removed meanwhile sends it to the row, which counts towards the total just the same: every
    unit comes back exactly once."""
    segments: defaultdict[int, list[int]] = defaultdict(list)
    for product_id, segment in session.execute(
        select(ProductStockSegment.product_id, ProductStockSegment.segment).where(
            ProductStockSegment.product_id.in_(quantities)
        )
    ):
        segments[product_id].append(segment)
    for product_id, quantity in sorted(quantities.items()):
        own = segments.get(product_id)
        if own:
            session.execute(select(Product.id).where(Product.id == product_id).with_for_update())
            if _add_to_segment(session, product_id, own[secrets.randbelow(len(own))], quantity):
                continue
        _add_to_row(session, product_id, quantity)


def spread(session: Session, product_id: int, total: int | None) -> Product | None:
    """Lay the stock out anew over the product's `stock_segments`: all in the row for 1, else
    evenly over that many segments. `total` None keeps the current total (a re-split or a
    merge); a number sets it (a stocktake). Everything is locked meanwhile, in the lock order,
    so orders running at the same time wait a moment and no unit is lost or made up."""
    product, segments = _lock(session, product_id)
    if product is None:
        return None
    if total is None:
        total = product.stock + sum(segments.values())
    count = product.stock_segments
    if segments:
        session.execute(
            delete(ProductStockSegment).where(ProductStockSegment.product_id == product_id)
        )
    if count == 1:
        _set_row(session, product_id, total)
        return product
    _set_row(session, product_id, 0)
    base, extra = divmod(total, count)
    session.execute(
        insert(ProductStockSegment),
        [
            {"product_id": product_id, "segment": n, "stock": base + (1 if n < extra else 0)}
            for n in range(count)
        ],
    )
    return product


def _set_row(session: Session, product_id: int, stock: int) -> None:
    session.execute(
        update(Product)
        .where(Product.id == product_id)
        .values(stock=stock)
        .execution_options(synchronize_session=False)
    )
