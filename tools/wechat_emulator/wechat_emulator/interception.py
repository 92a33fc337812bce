"""The layer every emulated API call passes through: scripted faults, then call recording.

Families mark their views with `@endpoint("name")`; the name is what the control API's
`/__emulator/faults` and `/__emulator/calls?api=` accept. `install` registers the recorder.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec

from flask import Flask, Response, g, request
from flask.typing import ResponseReturnValue

from .protocol import WeChatError
from .state import current_state

P = ParamSpec("P")
View = Callable[P, ResponseReturnValue]

# Every API name an @endpoint declared, filled at import time.
API_NAMES: set[str] = set()
# What the emulator itself sends (pay notifications): recorded under /__emulator/calls, no faults.
OUTBOUND_NAMES: set[str] = {"pay_notify"}
# Trace context propagated by the backend (W3C, baggage, SkyWalking), kept so tests can check it.
TRACE_HEADERS = ("traceparent", "tracestate", "baggage", "sw8")


def endpoint(api: str) -> Callable[[View[P]], View[P]]:
    """Make a view the emulated API `api`: its pending fault applies first, its call is recorded.

    A fault's delay comes first; then an errcode fault raises WeChatError (rendered by the
    family's blueprint error handler, so it looks like a real answer of that family), an
    http_status fault answers a bare status with an empty body, and a delay-only fault lets the
    real handler answer.
    """
    API_NAMES.add(api)

    def decorate(view: View[P]) -> View[P]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
            state = current_state()
            g.emulated_api = api
            g.called_at = state.clock.now()
            with state.lock:
                g.fault = fault = state.faults.take(api)
            if fault is not None:
                if fault.delay_ms:
                    time.sleep(fault.delay_ms / 1000)
                if fault.errcode is not None:
                    raise WeChatError(fault.errcode)
                if fault.http_status is not None:
                    return Response(status=fault.http_status)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _record_call(response: Response) -> Response:
    api = g.get("emulated_api")
    if api is None:
        return response
    answer = response.get_json(silent=True) if response.is_json else None
    if not isinstance(answer, dict):
        answer = None
    # Pay v3 answers failures with {"code", "message"}: it has no errcode.
    pay = request.blueprint == "pay"
    fault = g.get("fault")
    record = {
        "api": api,
        "method": request.method,
        "path": request.path,
        "query": request.args.to_dict(),
        "json": request.get_json(force=True, silent=True),
        "headers": {
            name: request.headers[name] for name in TRACE_HEADERS if name in request.headers
        },
        "timestamp": g.called_at,
        "status": response.status_code,
        "errcode": None if answer is None or pay else answer.get("errcode", 0),
        "code": answer.get("code") if answer is not None and pay else None,
        "fault": None if fault is None else fault.effect(),
    }
    state = current_state()
    with state.lock:
        state.calls.append(record)
    return response


def install(app: Flask) -> None:
    """Record every call of an @endpoint view once its answer is final (errors included)."""
    app.after_request(_record_call)
