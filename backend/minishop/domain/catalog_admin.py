"""Back-office writes to the catalog. Each one forgets the cached documents it affects."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from minishop.domain import catalog
from minishop.domain.transactions import in_transaction
from minishop.errors import AppError, ErrorCode
from minishop.extensions import db
from minishop.models import Category, Product, ProductStatus


def _category(category_id: int) -> Category:
    category = db.session.get(Category, category_id)
    if category is None:
        raise AppError(ErrorCode.NOT_FOUND, "category not found")
    return category


def _product(product_id: int) -> Product:
    product = db.session.get(Product, product_id)
    if product is None:
        raise AppError(ErrorCode.NOT_FOUND, "product not found")
    return product


def _commit_or_conflict(message: str) -> None:
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise AppError(ErrorCode.CONFLICT, message) from None


def create_category(name: str, sort: int) -> Category:
    category = Category(name=name, sort=sort)
    db.session.add(category)
    _commit_or_conflict("a category with this name exists")
    catalog.forget_categories()
    return category


def update_category(category_id: int, changes: dict[str, Any]) -> Category:
    category = _category(category_id)
    for field, value in changes.items():
        setattr(category, field, value)
    _commit_or_conflict("a category with this name exists")
    catalog.forget_categories()
    return category


def delete_category(category_id: int) -> None:
    db.session.delete(_category(category_id))
    _commit_or_conflict("the category still has products")
    catalog.forget_categories()


def create_product(fields: dict[str, Any]) -> Product:
    _category(fields["category_id"])
    product = Product(**fields)
    db.session.add(product)
    db.session.commit()
    catalog.forget_products([product.id])  # a cached "does not exist" for this id must go
    return product


def update_product(product_id: int, version: int, changes: dict[str, Any]) -> Product:
    """Optimistic concurrency: applies only if nobody changed the product since `version`."""
    if "category_id" in changes:
        _category(changes["category_id"])

    def work() -> Product:
        updated = db.session.execute(
            update(Product)
            .where(Product.id == product_id, Product.version == version)
            .values(**changes, version=Product.version + 1)
            .execution_options(synchronize_session=False)
        )
        product = _product(product_id)
        db.session.refresh(product)
        if updated.rowcount != 1:  # type: ignore[attr-defined]
            raise AppError(
                ErrorCode.CONFLICT,
                f"the product is at version {product.version}, not {version}: read it again",
            )
        return product

    product = in_transaction(work)
    catalog.forget_products([product_id])
    return product


def _write(product_id: int, **values: Any) -> Product:
    def work() -> Product:
        product = _product(product_id)
        db.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        db.session.refresh(product)
        return product

    product = in_transaction(work)
    catalog.forget_products([product_id])
    return product


def set_stock(product_id: int, stock: int) -> Product:
    """An absolute count from a stocktake; not versioned, since orders change stock constantly."""
    return _write(product_id, stock=stock)


def set_status(product_id: int, status: ProductStatus) -> Product:
    return _write(product_id, status=status, version=Product.version + 1)
