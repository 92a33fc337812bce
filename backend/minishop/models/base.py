"""The declarative base every table derives from, and the mixins they share.

Plain SQLAlchemy, no Flask: the domain layer and jobs use the models without an app.
`extensions.db` (Flask-SQLAlchemy) is built on this same base, so `db.metadata` is its metadata.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from minishop.models.types import BigIntId, UtcDateTime, utcnow

# Stable constraint names so Alembic migrations are the same on MySQL and SQLite.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# InnoDB for transactions and row locks; utf8mb4 so nicknames may hold emoji.
MYSQL_TABLE_OPTIONS = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


class IdMixin:
    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(
        UtcDateTime, default=utcnow, onupdate=utcnow, nullable=False
    )


def one_of(column: str, values: list[str], name: str) -> CheckConstraint:
    """A CHECK that keeps a string column inside its enumeration, on MySQL and SQLite alike."""
    allowed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name)
