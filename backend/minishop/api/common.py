"""Schemas shared by the blueprints: ids, pagination and the strict base model for write bodies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")

MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000
# Ids are BIGINT columns: a larger number cannot name a row, and SQLite's driver raises on it.
MAX_ID = 2**63 - 1
# Counters such as `version` are INT columns.
MAX_INT_COLUMN = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class StrictBody(BaseModel):
    """Base of every request body: unknown fields are rejected, strings are not coerced.

    Enum fields need `Field(strict=False)`: strict validation of the parsed JSON would want an
    enum instance, and JSON can only carry the value (tests/api/test_contract.py sends them all).
    """

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)

    def window(self, items: Sequence[T]) -> Sequence[T]:
        """This page of a list that is already in memory."""
        start = (self.page - 1) * self.page_size
        return items[start : start + self.page_size]


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int
