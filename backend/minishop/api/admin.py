"""Back office for admins: catalog writes and order handling (shipping, refunds).

The whole blueprint is `admin_only`: every route needs a signed request from an admin.
"""

from __future__ import annotations

from datetime import datetime

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from minishop import extensions
from minishop.api.common import (
    MAX_INT_COLUMN,
    Id,
    Page,
    PageQuery,
    PatchBody,
    StrictBody,
    UtcTime,
)
from minishop.api.guards import BEARER_SECURITY, admin_only
from minishop.api.orders import IdempotencyHeader, OrderOut, OrderPath, order_page
from minishop.api.products import CategoryOut, ProductDetailOut
from minishop.domain import catalog, catalog_admin, orders, refunds
from minishop.domain.catalog import CatalogCache
from minishop.envelope import Envelope, ok
from minishop.models import OrderStatus, Product, ProductStatus, RefundStatus
from minishop.models.catalog import MAX_STOCK_SEGMENTS

bp = APIBlueprint(
    "admin",
    __name__,
    url_prefix="/api/v1/admin",
    abp_tags=[Tag(name="admin")],
    abp_security=BEARER_SECURITY,
)
admin_only(bp)

COVER_URL = r"^(https://[^\s]+)?$"


class CategoryBody(StrictBody):
    name: str = Field(min_length=1, max_length=64)
    sort: int = Field(0, ge=-1_000_000, le=1_000_000)


class CategoryPatch(PatchBody):
    name: str | None = Field(None, min_length=1, max_length=64)
    sort: int | None = Field(None, ge=-1_000_000, le=1_000_000)


class CategoryPath(BaseModel):
    category_id: Id


class ProductPath(BaseModel):
    product_id: Id


class ProductBody(StrictBody):
    category_id: Id
    title: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=5000)
    price_fen: int = Field(ge=0, le=100_000_000)
    stock: int = Field(0, ge=0, le=1_000_000)
    # Strict mode wants an enum instance; JSON can only send its value.
    status: ProductStatus = Field(ProductStatus.ON_SALE, strict=False)
    cover_url: str = Field("", max_length=512, pattern=COVER_URL)


class ProductPatch(PatchBody):
    version: int = Field(
        ge=1, le=MAX_INT_COLUMN, description="the version you read; a newer one means 40900"
    )
    category_id: Id | None = None
    title: str | None = Field(None, min_length=1, max_length=128)
    description: str | None = Field(None, max_length=5000)
    price_fen: int | None = Field(None, ge=0, le=100_000_000)
    cover_url: str | None = Field(None, max_length=512, pattern=COVER_URL)
    stock_segments: int | None = Field(
        None,
        ge=1,
        le=MAX_STOCK_SEGMENTS,
        description="1: the stock in one row; 2..64: split over that many rows for a hot item "
        "(re-splits the current stock, losing no unit while orders run)",
    )


class AdminProductOut(ProductDetailOut):
    stock_segments: int


class StockBody(StrictBody):
    stock: int = Field(ge=0, le=1_000_000)


class AdminOrderQuery(PageQuery):
    status: OrderStatus | None = None
    created_from: UtcTime | None = None
    created_to: UtcTime | None = None


class Deleted(BaseModel):
    deleted: bool


def _catalog() -> tuple[Session, CatalogCache]:
    """What every catalog write needs: the session and the cache it invalidates."""
    return extensions.session(), extensions.catalog_cache.get()


def product_out(product: Product) -> AdminProductOut:
    return AdminProductOut.model_validate(
        catalog.product_document(product) | {"stock_segments": product.stock_segments}
    )


@bp.post("/categories", responses={201: Envelope[CategoryOut]})
def create_category(body: CategoryBody) -> Response:
    category = catalog_admin.create_category(*_catalog(), body.name, body.sort)
    return ok(CategoryOut.model_validate(category), status=201)


@bp.patch("/categories/<int:category_id>", responses={200: Envelope[CategoryOut]})
def update_category(path: CategoryPath, body: CategoryPatch) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return ok(
        CategoryOut.model_validate(
            catalog_admin.update_category(*_catalog(), path.category_id, changes)
        )
    )


@bp.delete("/categories/<int:category_id>", responses={200: Envelope[Deleted]})
def delete_category(path: CategoryPath) -> Response:
    catalog_admin.delete_category(*_catalog(), path.category_id)
    return ok(Deleted(deleted=True))


@bp.post("/products", responses={201: Envelope[AdminProductOut]})
def create_product(body: ProductBody) -> Response:
    return ok(product_out(catalog_admin.create_product(*_catalog(), body.model_dump())), status=201)


@bp.patch("/products/<int:product_id>", responses={200: Envelope[AdminProductOut]})
def update_product(path: ProductPath, body: ProductPatch) -> Response:
    changes = body.model_dump(exclude_unset=True, exclude={"version"})
    return ok(
        product_out(
            catalog_admin.update_product(*_catalog(), path.product_id, body.version, changes)
        )
    )


@bp.put("/products/<int:product_id>/stock", responses={200: Envelope[AdminProductOut]})
def set_stock(path: ProductPath, body: StockBody) -> Response:
    return ok(product_out(catalog_admin.set_stock(*_catalog(), path.product_id, body.stock)))


@bp.post("/products/<int:product_id>/on-sale", responses={200: Envelope[AdminProductOut]})
def put_on_sale(path: ProductPath) -> Response:
    return ok(
        product_out(catalog_admin.set_status(*_catalog(), path.product_id, ProductStatus.ON_SALE))
    )


@bp.post("/products/<int:product_id>/off-sale", responses={200: Envelope[AdminProductOut]})
def take_off_sale(path: ProductPath) -> Response:
    return ok(
        product_out(catalog_admin.set_status(*_catalog(), path.product_id, ProductStatus.OFF_SALE))
    )


@bp.get("/orders", responses={200: Envelope[Page[OrderOut]]})
def list_orders(query: AdminOrderQuery) -> Response:
    found, total = orders.list_orders(
        extensions.session(),
        orders.order_list_query(
            user_id=None,
            status=query.status,
            created_from=query.created_from,
            created_to=query.created_to,
        ),
        page=query.page,
        page_size=query.page_size,
    )
    return ok(order_page(found, total, query))


@bp.post("/orders/<order_no>/ship", responses={200: Envelope[OrderOut]})
def ship_order(path: OrderPath) -> Response:
    return ok(OrderOut.model_validate(orders.ship_order(extensions.session(), path.order_no)))


class RefundBody(StrictBody):
    amount_fen: int = Field(ge=1, le=MAX_INT_COLUMN)
    reason: str = Field("", max_length=80)


class RefundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    out_refund_no: str
    refund_id: str | None
    amount_fen: int
    reason: str
    status: RefundStatus
    created_at: datetime
    succeeded_at: datetime | None


class RefundedOrderOut(BaseModel):
    refund: RefundOut
    order: OrderOut


@bp.post(
    "/orders/<order_no>/refunds",
    responses={201: Envelope[RefundedOrderOut], 200: Envelope[RefundedOrderOut]},
)
def refund_order(path: OrderPath, header: IdempotencyHeader, body: RefundBody) -> Response:
    """Refund part or all of a paid or shipped order through WeChat Pay; 201 for a new refund,
    200 with the same refund when the Idempotency-Key was seen before. `status` is usually
    `processing` at first: the order leaves `refunding` when WeChat says how the refund ended."""
    requested = refunds.request_refund(
        extensions.session(),
        extensions.payment_context(),
        path.order_no,
        amount_fen=body.amount_fen,
        reason=body.reason,
        idempotency_key=header.idempotency_key,
    )
    answer = RefundedOrderOut(
        refund=RefundOut.model_validate(requested.refund),
        order=OrderOut.model_validate(requested.order),
    )
    return ok(answer, status=201 if requested.created else 200)
