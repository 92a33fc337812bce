"""Traces, chosen by TRACING_BACKEND, and the trace id every response and log line carries.

- `otel`: the OpenTelemetry SDK with the Flask, SQLAlchemy, Redis and requests instrumentations.
  Spans leave through the OTLP/HTTP exporter, configured only by the standard variables
  (OTEL_EXPORTER_OTLP_ENDPOINT / _HEADERS / _TIMEOUT, OTEL_TRACES_SAMPLER / _ARG, OTEL_BSP_*).
  Every WeChat call carries the W3C `traceparent` and `baggage` headers.
- `skywalking`: the apache-skywalking agent (Flask, requests, PyMySQL and Redis plugins) posting
  segments over HTTP to SW_AGENT_COLLECTOR_BACKEND_SERVICES (the OAP's host:12800); every WeChat
  call carries `sw8`.
- `none`: nothing is recorded, yet a request still has a trace id (its caller's `traceparent`,
  else a new one), so `X-Trace-Id` and the logs correlate the same way in every mode.

A tracer provider, its exporter thread and the SkyWalking agent belong to one process. gunicorn
builds the app in each worker after forking (`preload_app` stays off), so each worker starts
its own; nothing is started in the master. URLs that OpenTelemetry records lose their query
values (WeChat's take the AppSecret, a login code or an access token there); SkyWalking's
requests plugin records the URL without the `params` we pass the query in.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Flask, Response, g, has_request_context, request

from minishop.extensions import db
from minishop.kvstore import RedisStore

log = logging.getLogger(__name__)

TRACE_ID_HEADER = "X-Trace-Id"
NO_IDS: tuple[None, None] = (None, None)
TRACEPARENT = re.compile(r"00-(?P<trace_id>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
# SkyWalking plugins for what MiniShop uses; every other one (urllib3 would double the
# requests spans) stays out.
SKYWALKING_PLUGINS = ("sw_flask", "sw_requests", "sw_pymysql", "sw_redis")

Ids = tuple[str | None, str | None]
# Without OTEL_TRACES_SAMPLER: parentbased_traceidratio at this ratio. A caller's sampled
# traceparent is always followed; of our own roots one in ten is recorded (docs/logging.md).
DEFAULT_SAMPLE_RATIO = 0.1


def redact_query(url: str) -> str:
    """`url` with every query value replaced, names kept: enough to read a trace by."""
    parts = urlsplit(url)
    if not parts.query:
        return url
    query = urlencode([(name, "REDACTED") for name, _ in parse_qsl(parts.query, True)])
    return urlunsplit(parts._replace(query=query))


def _redact_url_attributes(span: Any, url: str, target: str) -> None:
    """Overwrite whichever URL attributes the instrumentation recorded (old or new semconv)."""
    if not span.is_recording():
        return
    recorded = span.attributes
    for key, value in (("http.url", url), ("url.full", url), ("http.target", target)):
        if key in recorded:
            span.set_attribute(key, redact_query(value))


class Backend(Protocol):
    def current_ids(self) -> Ids:
        """(trace_id, span_id) of what is running now, or (None, None)."""
        ...


class NoTracing:
    """No spans; a request's ids are its caller's trace id (or a new one) and a new span id."""

    def current_ids(self) -> Ids:
        if not has_request_context():
            return NO_IDS
        ids: Ids | None = g.get("trace_ids")
        if ids is None:
            match = TRACEPARENT.fullmatch(request.headers.get("traceparent", ""))
            sent = match["trace_id"] if match and match["trace_id"].strip("0") else None
            ids = (sent or f"{random.getrandbits(128):032x}", f"{random.getrandbits(64):016x}")
            g.trace_ids = ids
        return ids


class OpenTelemetryTracing:
    def __init__(self) -> None:
        from opentelemetry import trace

        self._current_span = trace.get_current_span

    def current_ids(self) -> Ids:
        context = self._current_span().get_span_context()
        if not context.is_valid:
            return NO_IDS
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"


class SkyWalkingTracing:
    def __init__(self) -> None:
        from skywalking.trace.context import (  # type: ignore[import-untyped]
            NoopContext,
            get_context,
        )

        self._get_context = get_context
        self._noop = NoopContext

    def current_ids(self) -> Ids:
        context = self._get_context()
        span = None if isinstance(context, self._noop) else context.active_span
        if span is None:
            return NO_IDS
        segment = context.segment
        return str(segment.related_traces[0]), f"{segment.segment_id}.{span.sid}"

    def name_entry_span(self) -> None:
        """Name the request's entry span after its route: the agent would use the raw path,
        one endpoint per product id in the OAP."""
        span = self._get_context().active_span
        if span is not None:
            rule = request.url_rule
            span.op = f"{request.method}:{rule.rule if rule is not None else '<unmatched>'}"


_active: Backend = NoTracing()
_started: dict[str, Backend] = {}


def current_ids() -> Ids:
    """(trace_id, span_id) for a log line or a response header, from this process's backend."""
    return _active.current_ids()


def _start_opentelemetry(app: Flask, resource: dict[str, str]) -> OpenTelemetryTracing:
    """The process's provider and library instrumentation, once; the Flask app, each time."""
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if "otel" not in _started:
        sampler = None  # the SDK reads OTEL_TRACES_SAMPLER / _ARG
        if "OTEL_TRACES_SAMPLER" not in os.environ:
            sampler = ParentBased(TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))
        provider = TracerProvider(resource=Resource.create(resource), sampler=sampler)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        with app.app_context():
            engines = list(db.engines.values())
        # Engines made later (by other apps in this process) are caught by its create_engine
        # hook. It declares SQLAlchemy < 2.1 and would refuse our 2.1; its event hooks work
        # unchanged (the correlation test checks the SQL spans).
        SQLAlchemyInstrumentor().instrument(
            tracer_provider=provider, engines=engines, skip_dep_check=True
        )
        RequestsInstrumentor().instrument(
            tracer_provider=provider,
            request_hook=lambda span, sent: _redact_url_attributes(span, sent.url, ""),
        )
        _started["otel"] = OpenTelemetryTracing()
    # Our own Redis client (cache, tokens, locks, nonces); the rate limiter's two commands per
    # request would add two spans to every trace that tell nothing a trace is read for.
    store = app.extensions["kvstore"]
    if isinstance(store, RedisStore):
        RedisInstrumentor.instrument_client(
            store.client, tracer_provider=trace.get_tracer_provider()
        )
    FlaskInstrumentor().instrument_app(  # type: ignore[no-untyped-call]
        app,
        tracer_provider=trace.get_tracer_provider(),
        enable_commenter=False,
        response_hook=lambda span, _status, _headers: _redact_url_attributes(
            span, request.url, request.full_path
        ),
    )
    return _started["otel"]  # type: ignore[return-value]


def _start_skywalking(service: str) -> SkyWalkingTracing:
    """The agent, once per process; it patches the libraries themselves, apps included."""
    if "skywalking" not in _started:
        from skywalking import agent, config  # type: ignore[import-untyped]

        # Its logger (made on import) writes plain text to stderr; ours is JSON on stdout.
        sw_log = logging.getLogger("skywalking")
        for handler in list(sw_log.handlers):
            sw_log.removeHandler(handler)
        sw_log.propagate = True
        config.init(
            agent_protocol="http",
            agent_name=service,
            agent_instance_name=f"{service}-{socket.gethostname()}-{os.getpid()}",
            agent_disable_plugins=[rf"^(?!(?:{'|'.join(SKYWALKING_PLUGINS)})$)"],
            agent_log_reporter_active=False,
            agent_meter_reporter_active=False,
            agent_pvm_meter_reporter_active=False,
            agent_profile_active=False,
        )
        agent.start()
        _started["skywalking"] = SkyWalkingTracing()
    return _started["skywalking"]  # type: ignore[return-value]


def _echo_trace_id(response: Response) -> Response:
    trace_id, _ = _active.current_ids()
    if trace_id is not None:
        response.headers[TRACE_ID_HEADER] = trace_id
    return response


def init_app(app: Flask, backend: str, *, service: str, version: str, env: str) -> None:
    """Start `backend` for this process (once) and make `app` report through it."""
    global _active
    if backend == "otel":
        resource = {"service.name": service, "service.version": version}
        resource["deployment.environment"] = env
        _active = _start_opentelemetry(app, resource)
    elif backend == "skywalking":
        skywalking = _start_skywalking(service)
        app.before_request(skywalking.name_entry_span)
        _active = skywalking
    else:
        _active = NoTracing()
    app.after_request(_echo_trace_id)
