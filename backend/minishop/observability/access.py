"""One access-log line and the HTTP metrics for every request, written by the app itself.

The app, unlike gunicorn's access log, knows the route template, the caller and the trace, so
the line is in the common schema (docs/logging.md) and gunicorn's own access log stays off.
The hooks are registered before every other one: the clock starts first, and Flask runs
`after_request` functions in reverse, so the line is written last, with the final status.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request

from minishop.observability import metrics
from minishop.observability.log_context import clear_log_fields
from minishop.observability.logs import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)
REQUEST_SCOPED = ("principal", "trace_ids", "requirements")


class RequestRecorder:
    """Times each request; writes its access line and, with metrics on, its HTTP metrics."""

    def __init__(self, with_metrics: bool) -> None:
        self.with_metrics = with_metrics

    def start(self) -> None:
        # What the logs read from `g` must describe this request, even where `g` outlives one
        # (a caller holding an app context open around several requests, as tests do).
        for name in REQUEST_SCOPED:
            g.pop(name, None)
        clear_log_fields()
        g.request_started = time.perf_counter()
        if self.with_metrics:
            metrics.HTTP_IN_FLIGHT.inc()
            g.counted_in_flight = True

    def end(self, _exc: BaseException | None) -> None:
        """A teardown hook: it runs even when building the response failed."""
        if g.pop("counted_in_flight", False):
            metrics.HTTP_IN_FLIGHT.dec()
        clear_log_fields()  # the thread's next log lines belong to no request

    def finish(self, response: Response) -> Response:
        seconds = time.perf_counter() - g.pop("request_started")
        if self.with_metrics:
            metrics.observe_request(
                request.method, metrics.request_route(), response.status_code, seconds
            )
        write_access_line(request.method, request.path, response.status_code, seconds)
        return response


def write_access_line(
    method: str,
    path: str,
    status: int,
    seconds: float,
    request_fields: dict[str, Any] | None = None,
) -> None:
    """The request's access line. Inside Flask the formatter reads the request's fields itself;
    a request answered outside Flask (api/catalog_shortcut.py) passes them in `request_fields`."""
    if access_log.isEnabledFor(logging.INFO):
        # Made directly: Logger.info would walk the stack for a caller no line shows.
        access_log.handle(
            access_log.makeRecord(
                ACCESS_LOGGER,
                logging.INFO,
                "",
                0,
                "%s %s %d",
                (method, path, status),
                None,
                extra={
                    **(request_fields or {}),
                    "status": status,
                    "duration_ms": round(seconds * 1e3, 3),
                },
            )
        )


def init_app(app: Flask, *, with_metrics: bool) -> None:
    recorder = RequestRecorder(with_metrics)
    app.before_request(recorder.start)
    app.after_request(recorder.finish)
    app.teardown_request(recorder.end)
