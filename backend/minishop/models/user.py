from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Boolean, String, false
from sqlalchemy.orm import Mapped, mapped_column

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin, one_of


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class User(IdMixin, TimestampMixin, Base):
    """A WeChat user of this mini-program, identified by the openid WeChat gives us."""

    __tablename__ = "users"
    __table_args__ = (one_of("role", list(Role), "role_valid"), MYSQL_TABLE_OPTIONS)

    openid: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    unionid: Mapped[str | None] = mapped_column(String(64), index=True)
    nickname: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    avatar_url: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    # AES-GCM ciphertext (nonce + tag included), base64; the clear number is never stored.
    phone_encrypted: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER, nullable=False)
    # WeChat content security said "review": shown, but queued for a human to look at.
    nickname_flagged: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false(), nullable=False
    )
