"""Reading the catalog: what a shopper may see. Product detail and categories are cached."""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, select

from minishop.cache import read_cache
from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import Category, Product, ProductStatus

PRODUCT_CACHE = "product"
CATEGORIES_CACHE = "categories"


def product_document(product: Product) -> dict[str, Any]:
    """What the cache holds and the API shows for one product."""
    return {
        "id": product.id,
        "category_id": product.category_id,
        "title": product.title,
        "description": product.description,
        "price_fen": product.price_fen,
        "stock": product.stock,
        "status": product.status,
        "cover_url": product.cover_url,
        "version": product.version,
        "created_at": product.created_at.isoformat(),
    }


def _load_product(product_id: int) -> dict[str, Any] | None:
    product = db.session.get(Product, product_id, populate_existing=True)
    return None if product is None else product_document(product)


def _load_categories() -> dict[str, Any]:
    categories = db.session.scalars(select(Category).order_by(Category.sort, Category.id))
    return {"items": [{"id": c.id, "name": c.name, "sort": c.sort} for c in categories]}


def list_categories() -> list[dict[str, Any]]:
    ttl = current_app.config["CACHE_CATEGORIES_TTL_SECONDS"]
    document = read_cache().get(CATEGORIES_CACHE, "all", ttl, _load_categories)
    return list(document["items"])


def get_product_on_sale(product_id: int) -> dict[str, Any]:
    ttl = current_app.config["CACHE_PRODUCT_TTL_SECONDS"]
    document = read_cache().get(
        PRODUCT_CACHE, str(product_id), ttl, lambda: _load_product(product_id)
    )
    if document is None or document["status"] != ProductStatus.ON_SALE:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return dict(document)


def forget_products(product_ids: list[int]) -> None:
    """Call after a commit that changed these products (stock included)."""
    for product_id in product_ids:
        read_cache().invalidate(PRODUCT_CACHE, str(product_id))


def forget_categories() -> None:
    read_cache().invalidate(CATEGORIES_CACHE, "all")


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_products(
    *, category_id: int | None, q: str | None, page: int, page_size: int
) -> tuple[list[Product], int]:
    """On-sale products, newest first, one page of them and the total that match.

    Not cached: the list shows stock, which must be current, and the filters make the key space
    unbounded; its queries are served by the (status, created_at) indexes.
    """
    conditions = [Product.status == ProductStatus.ON_SALE]
    if category_id is not None:
        conditions.append(Product.category_id == category_id)
    if q:
        conditions.append(Product.title.like(f"%{_escape_like(q)}%", escape="\\"))
    total = db.session.scalar(select(func.count()).select_from(Product).where(*conditions)) or 0
    items = db.session.scalars(
        select(Product)
        .where(*conditions)
        .order_by(Product.created_at.desc(), Product.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(items), total
