"""SQLAlchemy models. Importing this package registers every table on `db.metadata`, and the
settings every SQLite connection gets (foreign keys on, WAL, a busy timeout: models/sqlite.py)."""

from minishop.models import sqlite  # noqa: F401  (its listener configures SQLite connections)
from minishop.models.catalog import Category, Product, ProductStatus, ProductStockSegment
from minishop.models.file import StoredFile
from minishop.models.order import Order, OrderItem, OrderStatus
from minishop.models.payment import Payment, PaymentStatus, Refund, RefundStatus
from minishop.models.session import AuthSession, RefreshToken
from minishop.models.user import Role, User

__all__ = [
    "AuthSession",
    "Category",
    "Order",
    "OrderItem",
    "OrderStatus",
    "Payment",
    "PaymentStatus",
    "Product",
    "ProductStatus",
    "ProductStockSegment",
    "RefreshToken",
    "Refund",
    "RefundStatus",
    "Role",
    "StoredFile",
    "User",
]
