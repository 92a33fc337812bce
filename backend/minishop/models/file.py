from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin
from minishop.models.types import BigIntId


class StoredFile(IdMixin, TimestampMixin, Base):
    """An uploaded file, stored under a key derived from its content, never the client's name."""

    __tablename__ = "files"
    __table_args__ = (CheckConstraint("size_bytes > 0", name="size_positive"), MYSQL_TABLE_OPTIONS)

    key: Mapped[str] = mapped_column(String(80), unique=True, nullable=False)
    user_id: Mapped[int | None] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)
    size_bytes: Mapped[int] = mapped_column(nullable=False)
