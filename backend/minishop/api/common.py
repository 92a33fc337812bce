"""Schemas shared by the blueprints: ids, times, pagination, the strict bases of bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

T = TypeVar("T")

MAX_PAGE_SIZE = 100
MAX_PAGE = 10_000
# Ids are BIGINT columns: a larger number cannot name a row, and SQLite's driver raises on it.
MAX_ID = 2**63 - 1
# Counters such as `version` are INT columns.
MAX_INT_COLUMN = 2**31 - 1

Id = Annotated[int, Field(ge=1, le=MAX_ID)]


def _in_utc(value: datetime) -> datetime:
    """The columns hold UTC; 0001-01-01T00:00:00+01:00 has no UTC equivalent to compare with."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range once converted to UTC") from None


# An RFC 3339 time: the offset is required (a naive time is ambiguous), the value is UTC.
UtcTime = Annotated[AwareDatetime, AfterValidator(_in_utc)]


class StrictBody(BaseModel):
    """Base of every request body: unknown fields are rejected, strings are not coerced.

    Enum fields need `Field(strict=False)`: strict validation of the parsed JSON would want an
    enum instance, and JSON can only carry the value (tests/api/test_contract.py sends them all).
    """

    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)

    @field_validator("*", mode="before")
    @classmethod
    def whole_numbers_are_integers(cls, value: object) -> object:
        """JSON has one number type, and JSON Schema's `integer` includes 3.0: it is the 3."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def _document_patch(schema: dict[str, Any]) -> None:
    """The fields as they are accepted (never null), and a change besides the required ones."""
    for field in schema.get("properties", {}).values():
        branches = [branch for branch in field.get("anyOf", []) if branch != {"type": "null"}]
        if len(branches) == 1:
            del field["anyOf"]
            field.update(branches[0])
        if field.get("default", ...) is None:
            del field["default"]
    schema["minProperties"] = len(schema.get("required", [])) + 1


class PatchBody(StrictBody):
    """Base of PATCH bodies: a field left out keeps its value; null is refused, never stored.

    Optional fields are declared `X | None = None`, so that "left out" has a value in Python;
    the OpenAPI document shows them without the null. Required fields (a `version`) do not count
    as a change: at least one other field must be given.
    """

    model_config = ConfigDict(json_schema_extra=_document_patch)

    @field_validator("*", mode="before")
    @classmethod
    def not_null(cls, value: object) -> object:
        if value is None:
            raise ValueError("leave the field out to keep its value; null is not accepted")
        return value

    @model_validator(mode="after")
    def something_to_change(self) -> PatchBody:
        required = {name for name, field in type(self).model_fields.items() if field.is_required()}
        if not self.model_fields_set - required:
            raise ValueError("give at least one field to change")
        return self


_DEFAULT_SCHEMAS: dict[type[BaseModel], dict[str, Any]] = {}


class ParametersModel(BaseModel):
    """Base of query and header models: flask-openapi3 asks for the whole JSON schema on every
    request it validates a query or headers of (about 1 ms); a class's default schema never
    changes, so it is built once."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if args or kwargs:
            return super().model_json_schema(*args, **kwargs)
        schema = _DEFAULT_SCHEMAS.get(cls)
        if schema is None:
            schema = _DEFAULT_SCHEMAS[cls] = super().model_json_schema()
        return schema


class PageQuery(ParametersModel):
    model_config = ConfigDict(extra="ignore")

    page: int = Field(1, ge=1, le=MAX_PAGE)
    page_size: int = Field(20, ge=1, le=MAX_PAGE_SIZE)


class Page(BaseModel, Generic[T]):
    items: list[T]
    page: int
    page_size: int
    total: int
