"""Catalog endpoints: categories and on-sale products (public, no login)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint, Tag
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from minishop import extensions
from minishop.api import http_cache
from minishop.api.common import MAX_PAGE_SIZE, Id, Page, PageQuery
from minishop.domain import catalog
from minishop.envelope import Envelope, encode_json

bp = APIBlueprint("products", __name__, url_prefix="/api/v1", abp_tags=[Tag(name="catalog")])


class CategoryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    sort: int


class ProductOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    category_id: int
    title: str
    price_fen: int = Field(description="price in fen (1/100 yuan)")
    # From a Product: total_stock, the segments of a split product included.
    stock: int = Field(validation_alias=AliasChoices("total_stock", "stock"))
    status: str
    cover_url: str
    version: int
    created_at: datetime


class ProductDetailOut(ProductOut):
    description: str


class ProductQuery(PageQuery):
    category_id: Id | None = None
    q: str | None = Field(None, max_length=64, description="matches product titles")


class CategoryQuery(PageQuery):
    page_size: int = Field(
        MAX_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description="default 100: a shop's categories fit one page, as before paging existed",
    )


class ProductPath(BaseModel):
    product_id: Id


def _renderer(model: type[BaseModel]) -> catalog.Render:
    """A document as the API shows it: validated by `model` once, when the body is cached, and
    encoded as `ok(model)` encodes it (so a cached body equals what `ok` would answer)."""

    def render(document: dict[str, Any]) -> bytes:
        data = model.model_validate(document).model_dump(mode="json")
        return encode_json(data)

    return render


render_categories = _renderer(Page[CategoryOut])
render_products = _renderer(Page[ProductOut])
render_product = _renderer(ProductDetailOut)


@bp.get("/categories", responses={200: Envelope[Page[CategoryOut]]})
def list_categories(query: CategoryQuery) -> Response:
    """All categories are one query; each cached page is a slice of it."""
    body = catalog.categories_body(
        extensions.session,
        extensions.catalog_cache.get(),
        page=query.page,
        page_size=query.page_size,
        render=render_categories,
    )
    return http_cache.catalog_response(body)


@bp.get("/products", responses={200: Envelope[Page[ProductOut]]})
def list_products(query: ProductQuery) -> Response:
    body = catalog.products_body(
        extensions.session,
        extensions.catalog_cache.get(),
        category_id=query.category_id,
        q=query.q,
        page=query.page,
        page_size=query.page_size,
        render=render_products,
    )
    return http_cache.catalog_response(body)


@bp.get("/products/<int:product_id>", responses={200: Envelope[ProductDetailOut]})
def get_product(path: ProductPath) -> Response:
    body = catalog.product_body(
        extensions.session, extensions.catalog_cache.get(), path.product_id, render_product
    )
    return http_cache.catalog_response(body)
