from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from minishop.models.base import MYSQL_TABLE_OPTIONS, Base, IdMixin, TimestampMixin
from minishop.models.types import BigIntId, UtcDateTime


class AuthSession(TimestampMixin, Base):
    """One login of one user: the family every rotated refresh token of that login belongs to.

    Revoking it (logout, or a reused refresh token) ends every access and refresh token of the
    family at once. WeChat's session_key and our sign_key are kept encrypted.
    """

    __tablename__ = "auth_sessions"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True
    )
    session_key_encrypted: Mapped[str] = mapped_column(String(255), nullable=False)
    sign_key_encrypted: Mapped[str] = mapped_column(String(255), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(32))


class RefreshToken(IdMixin, Base):
    """A refresh token, stored only as its SHA-256. `used_at` is set when it is rotated away.

    `successor_encrypted` holds the pair that replaced it (encrypted), so a client retrying a
    refresh whose answer it lost gets that same pair back within the reuse grace period. Only the
    session's latest rotation keeps it: the next rotation clears it.
    """

    __tablename__ = "refresh_tokens"
    __table_args__ = (MYSQL_TABLE_OPTIONS,)

    session_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("auth_sessions.id", ondelete="CASCADE"), nullable=False, index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, nullable=False)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    successor_encrypted: Mapped[str | None] = mapped_column(Text)
