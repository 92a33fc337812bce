from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin, one_of
from minishop.models.types import BigIntId, UtcDateTime


class OrderStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    PAID = "paid"
    SHIPPED = "shipped"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    REFUNDING = "refunding"
    REFUNDED = "refunded"


class Order(IdMixin, TimestampMixin, Base):
    """An order of one user. `version` guards state transitions against concurrent writers."""

    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint("total_fen >= 0", name="total_not_negative"),
        CheckConstraint("refunded_fen BETWEEN 0 AND total_fen", name="refunded_within_total"),
        one_of("status", list(OrderStatus), "status_valid"),
        Index(None, "status", "created_at"),
        Index(None, "user_id", "created_at"),
        Index(None, "status", "expires_at"),
        Index(None, "status", "shipped_at"),
        MYSQL_TABLE_OPTIONS,
    )

    order_no: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    status: Mapped[str] = mapped_column(
        String(24), default=OrderStatus.PENDING_PAYMENT, nullable=False
    )
    total_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    remark: Mapped[str] = mapped_column(String(200), default="", nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(64), nullable=False)
    # SHA-256 of the canonical request body: same key + different body is a conflict.
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    shipped_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Refunds that WeChat confirmed, and where a `refunding` order goes back to when a partial
    # refund succeeds or a refund fails (`paid` or `shipped`).
    refunded_fen: Mapped[int] = mapped_column(Integer, default=0, nullable=False)
    status_before_refund: Mapped[str | None] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", cascade="all, delete-orphan", order_by="OrderItem.id"
    )


class OrderItem(IdMixin, Base):
    """One line of an order, with the title and price as they were when the order was placed."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity BETWEEN 1 AND 99", name="quantity_range"),
        CheckConstraint("price_fen >= 0", name="price_not_negative"),
        MYSQL_TABLE_OPTIONS,
    )

    order_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    product_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("products.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    title: Mapped[str] = mapped_column(String(128), nullable=False)
    price_fen: Mapped[int] = mapped_column(Integer, nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    subtotal_fen: Mapped[int] = mapped_column(Integer, nullable=False)

    order: Mapped[Order] = relationship(back_populates="items")
