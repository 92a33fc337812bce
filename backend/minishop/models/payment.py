from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin, one_of
from minishop.models.types import BigIntId, UtcDateTime


class PaymentStatus(StrEnum):
    CREATED = "created"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CLOSED = "closed"


class RefundStatus(StrEnum):
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    CLOSED = "closed"
    ABNORMAL = "abnormal"


class Payment(IdMixin, TimestampMixin, Base):
    """A WeChat Pay JSAPI transaction for an order (out_trade_no is ours, transaction_id theirs)."""

    __tablename__ = "payments"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        one_of("status", list(PaymentStatus), "status_valid"),
        Index(None, "status", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    order_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("orders.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True, nullable=False)
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    amount_fen: Mapped[int] = mapped_column(nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=PaymentStatus.CREATED, nullable=False)
    paid_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Refund(IdMixin, TimestampMixin, Base):
    """Money going back to the buyer. `idempotency_key` makes a retried request the same refund
    (and so the same out_refund_no at WeChat); `request_hash` tells a reused key apart."""

    __tablename__ = "refunds"
    __table_args__ = (
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        one_of("status", list(RefundStatus), "status_valid"),
        UniqueConstraint("order_id", "idempotency_key"),
        Index(None, "status", "created_at"),
        MYSQL_TABLE_OPTIONS,
    )

    order_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("orders.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    payment_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("payments.id", ondelete="RESTRICT"), nullable=False, index=True
    )
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(64), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    refund_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    amount_fen: Mapped[int] = mapped_column(nullable=False)
    reason: Mapped[str] = mapped_column(String(80), default="", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default=RefundStatus.PROCESSING, nullable=False)
    succeeded_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
