"""JSON log lines on stdout: one schema for application, access and gunicorn logs.

The schema is a contract with the log pipeline (Fluentd → Elasticsearch) and is written down in
docs/logging.md; `SCHEMA_FIELDS` and `OPTIONAL_FIELDS` below are its single source here. Every
line carries every schema field (null where it does not apply); request fields come from the
Flask request being served, trace fields from the tracing backend, business fields from
`log_context.bind_log_fields`. Extra keys outside the schema are dropped, so the index mapping
can be strict.

Secrets never reach a line: code must not log them in the first place, and as a second line of
defence the message and any exception text are scrubbed (bearer tokens, JWTs, `key=value` pairs
whose key names a secret, and mainland phone numbers, which are masked as 138****1234).
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

from flask import g, has_request_context, request
from gunicorn import glogging
from pythonjsonlogger.orjson import OrjsonFormatter
from sqlalchemy import inspect as sa_inspect

from minishop.observability import tracing
from minishop.observability.log_context import bound_fields

SCHEMA_FIELDS = (
    "timestamp",
    "level",
    "logger",
    "message",
    "service",
    "version",
    "env",
    "request_id",
    "trace_id",
    "span_id",
    "user_id",
    "method",
    "route",
    "status",
    "duration_ms",
    "client_ip",
)
BUSINESS_FIELDS = (
    "order_no",
    "order_status",
    "payment_status",
    "out_trade_no",
    "out_refund_no",
    "refund_status",
    "notification_id",
    "event_type",
)
# Present only when they apply.
OPTIONAL_FIELDS = (*BUSINESS_FIELDS, "exception")
# What a caller may pass in `extra=` (the access line uses status and duration_ms, and all the
# request's fields when the request was answered outside Flask; a request gunicorn refuses
# before the app sees it is logged with its status, request_id and client_ip).
REQUEST_FIELDS = ("request_id", "trace_id", "span_id", "user_id", "method", "route", "client_ip")
EXTRA_FIELDS = ("status", "duration_ms", *REQUEST_FIELDS, *BUSINESS_FIELDS)

HANDLER_NAME = "minishop-json"
ACCESS_LOGGER = "minishop.access"
# Libraries that would log request URLs (with WeChat's appid/secret in the query) at DEBUG.
QUIET_LOGGERS = ("urllib3", "requests", "werkzeug")

REDACTED = "[REDACTED]"
SENSITIVE_NAMES = (
    r"access_token|refresh_token|session_key|sign_key|signature|secret|js_code|password"
    r"|api_?v3_?key|private_key"
)
_SCRUB = re.compile(
    r"(?P<bearer>\bBearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|(?P<jwt>\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)"
    rf"|(?P<pair>\b(?:{SENSITIVE_NAMES})\b[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}}]+"
    r"|(?<!\d)(?P<phone_head>1[3-9]\d)\d{4}(?P<phone_tail>\d{4})(?!\d)",
    re.IGNORECASE,
)


def _scrubbed(match: re.Match[str]) -> str:
    if match["bearer"]:
        return match["bearer"] + REDACTED
    if match["jwt"]:
        return REDACTED
    if match["pair"]:
        return match["pair"] + REDACTED
    return f"{match['phone_head']}****{match['phone_tail']}"


def scrub(text: str) -> str:
    """`text` with tokens, secrets and phone numbers removed or masked."""
    return _SCRUB.sub(_scrubbed, text)


def _user_id(request_globals: Any) -> int | None:
    """The authenticated caller's id, read from the identity map: logging never queries."""
    principal = request_globals.get("principal")
    if principal is None:
        return None
    identity = sa_inspect(principal.user).identity
    return None if identity is None else int(identity[0])


def _request_fields() -> dict[str, Any]:
    if not has_request_context():
        return dict(bound_fields())
    # The objects behind Flask's proxies, looked up once: this runs for every log line.
    current = request._get_current_object()  # type: ignore[attr-defined]
    request_globals = g._get_current_object()
    rule = current.url_rule
    fields: dict[str, Any] = {
        "request_id": request_globals.get("request_id"),
        "user_id": _user_id(request_globals),
        "method": current.method,
        "route": rule.rule if rule is not None else None,
        "client_ip": current.remote_addr,
    }
    fields.update(bound_fields())
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    """ISO 8601 in UTC to the millisecond, e.g. 2026-11-30T18:25:33.635Z."""
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class JsonLogFormatter(OrjsonFormatter):
    """Builds the schema's fields in a fixed order; see the module docstring.

    orjson encodes: a line is written per request (the access line), and the standard library's
    encoder was a tenth of a cached read's CPU (docs/performance/profile-request.md).
    """

    def __init__(self, *, service: str, version: str, env: str) -> None:
        super().__init__()
        self.identity = {"service": service, "version": version, "env": env}

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data.update(dict.fromkeys(SCHEMA_FIELDS))  # every field, in the schema's order
        log_data["timestamp"] = _timestamp(record)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = scrub(record.message)
        log_data.update(self.identity)
        log_data["trace_id"], log_data["span_id"] = tracing.current_ids()
        log_data.update(_request_fields())
        for name in EXTRA_FIELDS:
            if name in record.__dict__:
                log_data[name] = record.__dict__[name]
        if "exc_info" in message_dict:
            log_data["exception"] = scrub(str(message_dict["exc_info"]))


class StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stdout is at the time (test runners swap it per test)."""

    def __init__(self) -> None:
        super().__init__()
        self.name = HANDLER_NAME

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        """StreamHandler.__init__ assigns a stream; the property above always answers instead."""


class GunicornLogger(glogging.Logger):  # type: ignore[misc]
    """gunicorn's logger with no access log (gunicorn.conf.py's `logger_class`).

    The app writes the access line; gunicorn's is off in `gunicorn_logconfig`, but with any log
    config set gunicorn still built each line's fields and handed them to a silenced logger, a
    few percent of a worker's CPU per request.
    """

    @property
    def access_log_enabled(self) -> bool:
        return False

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """Nothing: see the class docstring."""


def configure_logging(level: str, *, service: str, version: str, env: str) -> None:
    """Send every logger through one JSON handler on stdout at `level`. Safe to call again.

    gunicorn's master installs the handler before forking (gunicorn_logconfig); each worker's
    create_app then re-labels it with the worker's own settings.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.name == HANDLER_NAME), None)
    if handler is None:
        handler = StdoutHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonLogFormatter(service=service, version=version, env=env))
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def gunicorn_logconfig(level: str, *, service: str, version: str, env: str) -> dict[str, Any]:
    """gunicorn's `logconfig_dict`: its error log through our JSON handler, its access log off.

    The application writes the access line itself (it knows the route template, the user and
    the trace), so gunicorn's would only be a second, poorer line per request.
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": JsonLogFormatter,
                "service": service,
                "version": version,
                "env": env,
            }
        },
        "handlers": {HANDLER_NAME: {"()": StdoutHandler, "formatter": "json"}},
        "root": {"level": level.upper(), "handlers": [HANDLER_NAME]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "gunicorn.access": {"handlers": [], "propagate": False},
        },
    }
