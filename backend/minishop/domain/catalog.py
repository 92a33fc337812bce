"""Reading the catalog: what a shopper may see."""

from __future__ import annotations

from sqlalchemy import func, select

from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import Category, Product, ProductStatus


def list_categories() -> list[Category]:
    return list(db.session.scalars(select(Category).order_by(Category.sort, Category.id)))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_products(
    *, category_id: int | None, q: str | None, page: int, page_size: int
) -> tuple[list[Product], int]:
    """On-sale products, newest first, one page of them and the total that match."""
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


def get_product_on_sale(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None or product.status != ProductStatus.ON_SALE:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return product
