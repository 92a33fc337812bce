from __future__ import annotations

from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

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


class Product(IdMixin, TimestampMixin, Base):
    """A sellable item. `version` increases on every write, for optimistic concurrency."""

    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("stock >= 0", name="stock_not_negative"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
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

    category: Mapped[Category] = relationship()
