"""Business fields (order number, user id...) that every later log line of a unit of work carries.

Plain Python on a ContextVar, so the domain layer binds fields without knowing whether it runs in
a request, a CLI command or a job. The request hooks (access.py) open a fresh set per request;
elsewhere the fields live in the current context until unbound.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, TypedDict, Unpack


class LogFields(TypedDict, total=False):
    user_id: int | None
    order_no: str | None
    order_status: str | None
    payment_status: str | None
    out_trade_no: str | None
    out_refund_no: str | None
    refund_status: str | None
    notification_id: str | None
    event_type: str | None


_bound: ContextVar[dict[str, Any] | None] = ContextVar("minishop_log_fields", default=None)


def bind_log_fields(**fields: Unpack[LogFields]) -> None:
    """Add fields to every later log line of this unit of work; None removes one."""
    bound = dict(_bound.get() or {})
    for name, value in fields.items():
        if value is None:
            bound.pop(name, None)
        else:
            bound[name] = value
    _bound.set(bound)


def bound_fields() -> dict[str, Any]:
    return _bound.get() or {}


def clear_log_fields() -> None:
    """Start a new unit of work (a request) with no fields bound."""
    _bound.set(None)
