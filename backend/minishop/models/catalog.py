from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    cast,
    func,
    select,
)
from sqlalchemy.orm import Mapped, column_property, mapped_column, relationship

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin, one_of
from minishop.models.types import BigIntId


class ProductStatus(StrEnum):
    ON_SALE = "on_sale"
    OFF_SALE = "off_sale"


class Category(IdMixin, TimestampMixin, Base):
    __tablename__ = "categories"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    sort: Mapped[int] = mapped_column(Integer, default=0, nullable=False)


MAX_STOCK_SEGMENTS = 64


class Product(IdMixin, TimestampMixin, Base):
    """A sellable item. `version` increases on every write, for optimistic concurrency.

    `stock_segments` 1: all of the stock is `stock`, one row every order locks. 2..64: a hot item,
    its stock spread over that many `ProductStockSegment` rows so concurrent orders lock different
    rows; `stock` then only holds what a race with a re-split returned. Either way the stock a
    shopper sees is `total_stock` = `stock` + the segments.
    """

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
        CheckConstraint(
            f"stock_segments BETWEEN 1 AND {MAX_STOCK_SEGMENTS}", name="stock_segments_range"
        ),
        one_of("status", list(ProductStatus), "status_valid"),
        Index(None, "status", "created_at"),
        Index(None, "category_id", "status", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    category_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("categories.id", ondelete="RESTRICT"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    stock: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=ProductStatus.ON_SALE, nullable=False)
    cover_url: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
    stock_segments: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    category: Mapped[Category] = relationship()

    if TYPE_CHECKING:
        total_stock: int  # mapped below, once the segment table exists


class ProductStockSegment(Base):
    """One slice of a split product's stock; orders take from one slice at random."""

    __tablename__ = "product_stock_segments"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        MYSQL_TABLE_OPTIONS,
    )

    product_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("products.id", ondelete="CASCADE"), primary_key=True
    )
    segment: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stock: Mapped[int] = mapped_column(Integer, nullable=False)


Product.total_stock = column_property(  # type: ignore[assignment]
    Product.stock
    + select(cast(func.coalesce(func.sum(ProductStockSegment.stock), 0), Integer))
    .where(ProductStockSegment.product_id == Product.id)
    .correlate_except(ProductStockSegment)
    .scalar_subquery()
)
