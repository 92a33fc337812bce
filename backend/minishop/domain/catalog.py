"""Reading the catalog: what a shopper may see. Product detail and categories are cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minishop.cache import ReadThroughCache
from minishop.errors import AppError, ErrorCode
from minishop.models import Category, Product, ProductStatus

PRODUCT_CACHE = "product"
CATEGORIES_CACHE = "categories"


@dataclass(frozen=True)
class CatalogCache:
    """The read-through cache and how long each kind of catalog document lives in it."""

    cache: ReadThroughCache
    product_ttl: float
    categories_ttl: float

    def forget_products(self, product_ids: list[int]) -> None:
        """Call after a commit that changed these products (stock included)."""
        for product_id in product_ids:
            self.cache.invalidate(PRODUCT_CACHE, str(product_id))

    def forget_categories(self) -> None:
        self.cache.invalidate(CATEGORIES_CACHE, "all")


def product_document(product: Product) -> dict[str, Any]:
    """What the cache holds and the API shows for one product."""
    return {
        "id": product.id,
        "category_id": product.category_id,
        "title": product.title,
        "description": product.description,
        "price_fen": product.price_fen,
        "stock": product.total_stock,  # a split product's segments included
        "status": product.status,
        "cover_url": product.cover_url,
        "version": product.version,
        "created_at": product.created_at.isoformat(),
    }


def list_categories(session: Session, catalog: CatalogCache) -> list[dict[str, Any]]:
    def load() -> dict[str, Any]:
        categories = session.scalars(select(Category).order_by(Category.sort, Category.id))
        return {"items": [{"id": c.id, "name": c.name, "sort": c.sort} for c in categories]}

    document = catalog.cache.get(CATEGORIES_CACHE, "all", catalog.categories_ttl, load)
    return list(document["items"])


def get_product_on_sale(session: Session, catalog: CatalogCache, product_id: int) -> dict[str, Any]:
    def load() -> dict[str, Any] | None:
        product = session.get(Product, product_id, populate_existing=True)
        return None if product is None else product_document(product)

    document = catalog.cache.get(PRODUCT_CACHE, str(product_id), catalog.product_ttl, load)
    if document is None or document["status"] != ProductStatus.ON_SALE:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return dict(document)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_products(
    session: Session, *, category_id: int | None, q: str | None, page: int, page_size: int
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
    total = session.scalar(select(func.count()).select_from(Product).where(*conditions)) or 0
    items = session.scalars(
        select(Product)
        .where(*conditions)
        .order_by(Product.created_at.desc(), Product.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    )
    return list(items), total
