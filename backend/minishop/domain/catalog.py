"""Reading the catalog: what a shopper may see. Product detail, the category list and the first
list pages are cached as response bodies (minishop/cache.py); the API renders them (`Render`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from minishop.cache import Body, ReadThroughCache
from minishop.errors import AppError, ErrorCode
from minishop.models import Category, Product, ProductStatus

PRODUCT_CACHE = "product"
CATEGORIES_CACHE = "categories"
PRODUCTS_CACHE = "products"

# Turns a document (a dict, or a page of them) into the bytes of the response's `data`.
Render = Callable[[dict[str, Any]], bytes]
# The database session, asked for only when the cache cannot answer: a hit never opens one.
Sessions = Callable[[], Session]


@dataclass(frozen=True)
class CatalogCache:
    """The read-through cache and how long each kind of catalog document lives in it."""

    cache: ReadThroughCache
    product_ttl: float
    categories_ttl: float
    list_ttl: float = 2.0
    list_max_page: int = 0

    def forget_products(self, product_ids: list[int]) -> None:
        """Call after a commit that changed these products (stock included).

        List pages show stock too, but orders change it all the time: they expire on their own
        within `list_ttl`; edits that change what is listed call `forget_listings` as well.
        """
        for product_id in product_ids:
            self.cache.invalidate(PRODUCT_CACHE, str(product_id))

    def forget_listings(self) -> None:
        """Call after a commit that changed what the product lists show (an admin edit)."""
        self.cache.invalidate_all(PRODUCTS_CACHE)

    def forget_categories(self) -> None:
        self.cache.invalidate_all(CATEGORIES_CACHE)


def product_document(product: Product) -> dict[str, Any]:
    """What a shopper is shown of one product: the detail, and each item of a list page."""
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


def product_key(product_id: int) -> str:
    """A product detail's key in PRODUCT_CACHE."""
    return str(product_id)


def products_key(category_id: int | None, page: int, page_size: int) -> str:
    """A list page's key in PRODUCTS_CACHE."""
    return f"{category_id or 0}:{page}:{page_size}"


def categories_key(page: int, page_size: int) -> str:
    """A categories page's key in CATEGORIES_CACHE."""
    return f"{page}:{page_size}"


def _page(items: list[dict[str, Any]], page: int, page_size: int, total: int) -> dict[str, Any]:
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def _cached_page(catalog: CatalogCache, page: int, q: str | None = None) -> bool:
    """Which list pages are cached: the first few, without a search (a bounded key space)."""
    return not q and page <= catalog.list_max_page


def categories_body(
    session: Sessions, catalog: CatalogCache, *, page: int, page_size: int, render: Render
) -> Body:
    """A page of the categories in sort order (a shop has few: one query, sliced here)."""

    def load() -> bytes:
        categories = list(session().scalars(select(Category).order_by(Category.sort, Category.id)))
        window = categories[(page - 1) * page_size : page * page_size]
        items = [{"id": c.id, "name": c.name, "sort": c.sort} for c in window]
        return render(_page(items, page, page_size, len(categories)))

    if not _cached_page(catalog, page):
        return Body.of(load())
    key = categories_key(page, page_size)
    return catalog.cache.get(CATEGORIES_CACHE, key, catalog.categories_ttl, load, whole=True)


def product_body(session: Sessions, catalog: CatalogCache, product_id: int, render: Render) -> Body:
    """One product on sale; 40400 for an unknown or off-sale id (cached as a negative entry)."""

    def load() -> bytes | None:
        product = session().get(Product, product_id, populate_existing=True)
        if product is None or product.status != ProductStatus.ON_SALE:
            return None
        return render(product_document(product))

    body = catalog.cache.get(PRODUCT_CACHE, product_key(product_id), catalog.product_ttl, load)
    if body.data is None:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return body


def held_body(catalog: CatalogCache, name: str, key: str) -> Body | None:
    """The body of (name, key) when this worker's first level holds one, else None: then the
    `*_body` function of that kind answers (a missing product too)."""
    body = catalog.cache.peek(name, key)
    return body if body is not None and body.data is not None else None


def get_product_on_sale(
    session: Session, catalog: CatalogCache, product_id: int, render: Render
) -> dict[str, Any]:
    """What a job (no HTTP) reads of a product: the cached body, parsed."""
    body = product_body(lambda: session, catalog, product_id, render)
    document: dict[str, Any] = json.loads(body.data or b"")
    return document


def products_body(
    session: Sessions,
    catalog: CatalogCache,
    *,
    category_id: int | None,
    q: str | None,
    page: int,
    page_size: int,
    render: Render,
) -> Body:
    """A page of the products on sale; the first pages without `q` are cached briefly."""

    def load() -> bytes:
        products, total = list_products(
            session(), category_id=category_id, q=q, page=page, page_size=page_size
        )
        items = [product_document(product) for product in products]
        return render(_page(items, page, page_size, total))

    if not _cached_page(catalog, page, q):
        return Body.of(load())
    key = products_key(category_id, page, page_size)
    return catalog.cache.get(PRODUCTS_CACHE, key, catalog.list_ttl, load, whole=True)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_products(
    session: Session, *, category_id: int | None, q: str | None, page: int, page_size: int
) -> tuple[list[Product], int]:
    """On-sale products, newest first, one page of them and the total that match.

    Served by the (status, created_at) indexes.
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
