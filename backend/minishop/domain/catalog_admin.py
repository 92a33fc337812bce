"""Back-office writes to the catalog. Each one forgets the cached documents it affects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from minishop.domain import stock
from minishop.domain.catalog import CatalogCache
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.models import Category, Product, ProductStatus


def _category(session: Session, category_id: int) -> Category:
    category = session.get(Category, category_id)
    if category is None:
        raise AppError(ErrorCode.NOT_FOUND, "category not found")
    return category


def _product(session: Session, product_id: int) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return product


def _commit_or_conflict(session: Session, message: str) -> None:
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise AppError(ErrorCode.CONFLICT, message) from None


def create_category(session: Session, catalog: CatalogCache, name: str, sort: int) -> Category:
    category = Category(name=name, sort=sort)
    session.add(category)
    _commit_or_conflict(session, "a category with this name exists")
    catalog.forget_categories()
    return category


def update_category(
    session: Session, catalog: CatalogCache, category_id: int, changes: dict[str, Any]
) -> Category:
    category = _category(session, category_id)
    for field, value in changes.items():
        setattr(category, field, value)
    _commit_or_conflict(session, "a category with this name exists")
    catalog.forget_categories()
    return category


def delete_category(session: Session, catalog: CatalogCache, category_id: int) -> None:
    session.delete(_category(session, category_id))
    _commit_or_conflict(session, "the category still has products")
    catalog.forget_categories()


def create_product(session: Session, catalog: CatalogCache, fields: dict[str, Any]) -> Product:
    _category(session, fields["category_id"])
    product = Product(**fields)
    session.add(product)
    session.commit()
    catalog.forget_products([product.id])  # a cached "does not exist" for this id must go
    catalog.forget_listings()
    return product


def update_product(
    session: Session,
    catalog: CatalogCache,
    product_id: int,
    version: int,
    changes: dict[str, Any],
) -> Product:
    """Optimistic concurrency: applies only if nobody changed the product since `version`.
    `stock_segments` among the changes re-splits (or merges) the current stock in the same
    transaction, while orders go on (domain/stock.py)."""
    if "category_id" in changes:
        _category(session, changes["category_id"])

    def work() -> Product:
        updated = session.execute(
            update(Product)
            .where(Product.id == product_id, Product.version == version)
            .values(**changes, version=Product.version + 1)
            .execution_options(synchronize_session=False)
        )
        product = _product(session, product_id)
        session.refresh(product)
        if updated.rowcount != 1:  # type: ignore[attr-defined]
            raise AppError(
                ErrorCode.CONFLICT,
                f"the product is at version {product.version}, not {version}: read it again",
            )
        if "stock_segments" in changes:
            stock.spread(session, product_id, total=None)
            session.refresh(product)
        return product

    product = in_transaction(session, work)
    catalog.forget_products([product_id])
    catalog.forget_listings()
    return product


def _write(session: Session, catalog: CatalogCache, product_id: int, **values: Any) -> Product:
    def work() -> Product:
        product = _product(session, product_id)
        session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        session.refresh(product)
        return product

    product = in_transaction(session, work)
    catalog.forget_products([product_id])
    catalog.forget_listings()
    return product


def set_stock(session: Session, catalog: CatalogCache, product_id: int, total: int) -> Product:
    """An absolute count from a stocktake (a split product's total, spread evenly over its
    segments); not versioned, since orders change stock constantly."""

    def work() -> Product:
        if stock.spread(session, product_id, total=total) is None:
            raise AppError(ErrorCode.NOT_FOUND, "product not found")
        product = _product(session, product_id)
        session.refresh(product)
        return product

    product = in_transaction(session, work)
    catalog.forget_products([product_id])
    return product


def set_status(
    session: Session, catalog: CatalogCache, product_id: int, status: ProductStatus
) -> Product:
    return _write(session, catalog, product_id, status=status, version=Product.version + 1)
