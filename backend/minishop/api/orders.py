"""The caller's orders: place (idempotent), list, read, cancel, pay, confirm receipt."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field, field_validator

from minishop import extensions
from minishop.api.common import Id, Page, PageQuery, ParametersModel, StrictBody
from minishop.api.guards import BEARER_SECURITY, current_principal, login_required, signed
from minishop.domain import completion, orders, payments
from minishop.envelope import Envelope, ok
from minishop.models import Order, OrderStatus
from minishop.security.rate_limits import per_user

bp = APIBlueprint("orders", __name__, url_prefix="/api/v1/orders", abp_tags=[Tag(name="orders")])

ORDER_NO_PATTERN = r"^[0-9]{14,32}$"
MAX_QUANTITY = 99


class OrderLineIn(StrictBody):
    product_id: Id
    quantity: int = Field(ge=1, le=MAX_QUANTITY)


class PlaceOrderBody(StrictBody):
    items: list[OrderLineIn] = Field(min_length=1, max_length=20)
    remark: str = Field("", max_length=200)

    @field_validator("items")
    @classmethod
    def merged_quantities_fit(cls, items: list[OrderLineIn]) -> list[OrderLineIn]:
        """Lines of one product become one order item, whose quantity is 1..99 as well."""
        merged: Counter[int] = Counter()
        for line in items:
            merged[line.product_id] += line.quantity
        if max(merged.values()) > MAX_QUANTITY:
            raise ValueError(f"lines of one product may add up to at most {MAX_QUANTITY}")
        return items


class IdempotencyHeader(ParametersModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    idempotency_key: str = Field(
        alias="Idempotency-Key",
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="one per purchase attempt: a retry with the same key returns the same order",
    )


class OrderItemOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_id: int
    title: str
    price_fen: int
    quantity: int
    subtotal_fen: int


class OrderOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    order_no: str
    status: OrderStatus
    total_fen: int
    remark: str
    items: list[OrderItemOut]
    created_at: datetime
    expires_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    completed_at: datetime | None
    refunded_fen: int


class OrderQuery(PageQuery):
    status: OrderStatus | None = None


class OrderPath(BaseModel):
    order_no: str = Field(pattern=ORDER_NO_PATTERN)


def order_page(found: list[Order], total: int, query: PageQuery) -> Page[OrderOut]:
    return Page[OrderOut](
        items=[OrderOut.model_validate(order) for order in found],
        page=query.page,
        page_size=query.page_size,
        total=total,
    )


@bp.post(
    "",
    responses={201: Envelope[OrderOut], 200: Envelope[OrderOut]},
    security=BEARER_SECURITY,
)
@per_user("RATELIMIT_ORDERS")
@signed
def place_order(header: IdempotencyHeader, body: PlaceOrderBody) -> Response:
    """201 for a new order; 200 with the same order when the Idempotency-Key was seen before."""
    placed = orders.place_order(
        extensions.session(),
        extensions.catalog_cache.get(),
        current_principal().user,
        [orders.OrderLine(line.product_id, line.quantity) for line in body.items],
        remark=body.remark,
        idempotency_key=header.idempotency_key,
        expire_after=timedelta(minutes=extensions.settings.get().ORDER_EXPIRE_MINUTES),
    )
    return ok(OrderOut.model_validate(placed.order), status=201 if placed.created else 200)


@bp.get("", responses={200: Envelope[Page[OrderOut]]}, security=BEARER_SECURITY)
@login_required
def list_orders(query: OrderQuery) -> Response:
    found, total = orders.list_orders(
        extensions.session(),
        orders.order_list_query(user_id=current_principal().user.id, status=query.status),
        page=query.page,
        page_size=query.page_size,
    )
    return ok(order_page(found, total, query))


@bp.get("/<order_no>", responses={200: Envelope[OrderOut]}, security=BEARER_SECURITY)
@login_required
def get_order(path: OrderPath) -> Response:
    order = orders.get_user_order(extensions.session(), current_principal().user, path.order_no)
    return ok(OrderOut.model_validate(order))


@bp.post("/<order_no>/cancel", responses={200: Envelope[OrderOut]}, security=BEARER_SECURITY)
@signed
def cancel_order(path: OrderPath) -> Response:
    order = orders.cancel_order(
        extensions.session(),
        extensions.catalog_cache.get(),
        current_principal().user,
        path.order_no,
    )
    return ok(OrderOut.model_validate(order))


@bp.post("/<order_no>/confirm", responses={200: Envelope[OrderOut]}, security=BEARER_SECURITY)
@signed
def confirm_order(path: OrderPath) -> Response:
    """The buyer confirms receipt: a shipped order is completed."""
    order = completion.confirm_receipt(
        extensions.session(), current_principal().user, path.order_no
    )
    return ok(OrderOut.model_validate(order))


class PaymentParamsOut(BaseModel):
    """Exactly what `wx.requestPayment` takes (WeChat's own field names)."""

    timeStamp: str  # noqa: N815  (WeChat's name)
    nonceStr: str  # noqa: N815
    package: str
    signType: str  # noqa: N815
    paySign: str  # noqa: N815


@bp.post("/<order_no>/pay", responses={200: Envelope[PaymentParamsOut]}, security=BEARER_SECURITY)
@per_user("RATELIMIT_ORDERS")
@signed
def pay_order(path: OrderPath) -> Response:
    """Create (or reuse) the WeChat Pay prepay for the caller's unpaid order."""
    params = payments.start_payment(
        extensions.session(),
        extensions.payment_context(),
        current_principal().user,
        path.order_no,
    )
    return ok(PaymentParamsOut.model_validate(params))
