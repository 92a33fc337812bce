"""Traces, chosen by TRACING_BACKEND, and the trace id every response and log line carries.

- `otel`: the OpenTelemetry SDK. A SERVER span per Flask request (made here, see
  `OpenTelemetryTracing`), and the SQLAlchemy, Redis and requests instrumentations under it.
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
from wsgiref.types import WSGIEnvironment

from flask import Flask, Response, g, has_request_context, request
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from sqlalchemy.engine import Engine
from werkzeug.datastructures import EnvironHeaders

from minishop.kvstore import RedisStore
from minishop.observability import metrics

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


def redacted_query(query: str) -> str:
    """A query string with every value replaced, names kept: enough to read a trace by."""
    return urlencode([(name, "REDACTED") for name, _ in parse_qsl(query, True)])


def redact_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=redacted_query(parts.query)))


def _redact_client_url(span: Any, sent: Any) -> None:
    """The requests instrumentation's hook: keep the query's names, not its values."""
    if span.is_recording():
        for key in ("http.url", "url.full"):  # the old and the new semantic conventions
            if key in span.attributes:
                span.set_attribute(key, redact_query(sent.url))


class Backend(Protocol):
    def current_ids(self) -> Ids:
        """(trace_id, span_id) of what is running now, or (None, None)."""
        ...


class RequestTrace(Protocol):
    """The trace of one request the WSGI shortcut answers (api/catalog_shortcut.py)."""

    ids: Ids

    def finish(self, status: int) -> None:
        """Record the answer's status and end what was started."""
        ...


def ids_from_traceparent(traceparent: str) -> tuple[str, str]:
    """The caller's trace id (W3C `traceparent`) or a new one, and a new span id."""
    match = TRACEPARENT.fullmatch(traceparent)
    sent = match["trace_id"] if match and match["trace_id"].strip("0") else None
    return sent or f"{random.getrandbits(128):032x}", f"{random.getrandbits(64):016x}"


class UnrecordedTrace:
    """A request's ids without a span (TRACING_BACKEND=none)."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self.ids: Ids = ids_from_traceparent(environ.get("HTTP_TRACEPARENT", ""))

    def finish(self, status: int) -> None:
        """Nothing was started."""


class NoTracing:
    """No spans; a request's ids are its caller's trace id (or a new one) and a new span id."""

    def current_ids(self) -> Ids:
        if not has_request_context():
            return NO_IDS
        ids: Ids | None = g.get("trace_ids")
        if ids is None:
            ids = g.trace_ids = UnrecordedTrace(request.environ).ids
        return ids

    def trace(self, environ: WSGIEnvironment, route: str, path: str) -> RequestTrace:
        return UnrecordedTrace(environ)


class OpenTelemetryTracing:
    """The request's SERVER span, and ids read from the current span.

    Made here rather than by opentelemetry-instrumentation-flask, which cost ~100 µs a request
    on this machine even for requests the sampler drops (it collects every WSGI attribute
    twice and feeds HTTP metrics we already keep in Prometheus); this costs ~7 µs unsampled and
    records what a trace is read for: method, route, path, redacted query, status, client.
    """

    ENVIRON_KEY = "minishop.otel"

    def __init__(self, tracer: trace.Tracer) -> None:
        self.tracer = tracer

    def current_ids(self) -> Ids:
        span_context = trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return NO_IDS
        return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"

    def open_span(
        self, environ: WSGIEnvironment, route: str | None, path: str
    ) -> tuple[trace.Span, object]:
        """The SERVER span of the request in `environ`, made current: (span, context token)."""
        method = environ["REQUEST_METHOD"]
        parent = propagate.extract(EnvironHeaders(environ))  # traceparent and baggage, when sent
        span = self.tracer.start_span(
            f"{method} {route or metrics.UNMATCHED_ROUTE}",
            context=parent,
            kind=trace.SpanKind.SERVER,
        )
        if span.is_recording():
            span.set_attributes(
                {
                    "http.request.method": method,
                    "http.route": route or "",
                    "url.scheme": environ["wsgi.url_scheme"],
                    "url.path": path,
                    "url.query": redacted_query(environ.get("QUERY_STRING", "")),
                    "client.address": environ.get("REMOTE_ADDR") or "",
                    "user_agent.original": environ.get("HTTP_USER_AGENT", ""),
                }
            )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def record(span: trace.Span, status: int) -> None:
        if span.is_recording():
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(trace.StatusCode.ERROR)

    def start_span(self) -> None:
        request.environ[self.ENVIRON_KEY] = self.open_span(
            request.environ, metrics.request_route(), request.path
        )

    def record_status(self, response: Response) -> Response:
        span, _ = request.environ[self.ENVIRON_KEY]
        self.record(span, response.status_code)
        return response

    def end_span(self, _exc: BaseException | None) -> None:
        """A teardown hook: errors have been answered (and marked by status) by now."""
        span, token = request.environ.pop(self.ENVIRON_KEY, (None, None))
        if span is None:  # a request context pushed without dispatching (test_request_context)
            return
        span.end()
        otel_context.detach(token)

    def trace(self, environ: WSGIEnvironment, route: str, path: str) -> RequestTrace:
        return SpanTrace(self, environ, route, path)


class SpanTrace:
    """The SERVER span of a request the WSGI shortcut answers, as the Flask hooks make it."""

    def __init__(
        self, tracing: OpenTelemetryTracing, environ: WSGIEnvironment, route: str, path: str
    ) -> None:
        self.span, self.token = tracing.open_span(environ, route, path)
        self.ids = tracing.current_ids()

    def finish(self, status: int) -> None:
        OpenTelemetryTracing.record(self.span, status)
        self.span.end()
        otel_context.detach(self.token)  # type: ignore[arg-type]


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
            span.op = f"{request.method}:{metrics.request_route() or metrics.UNMATCHED_ROUTE}"


_active: Backend = NoTracing()
_started: dict[str, Backend] = {}


def current_ids() -> Ids:
    """(trace_id, span_id) for a log line or a response header, from this process's backend."""
    return _active.current_ids()


def shortcut_tracing() -> NoTracing | OpenTelemetryTracing | None:
    """The backend a request answered outside Flask (api/catalog_shortcut.py) is traced by, or
    None under SkyWalking, whose agent traces only what runs inside Flask's dispatch."""
    return _active if isinstance(_active, NoTracing | OpenTelemetryTracing) else None


def _start_opentelemetry(
    app: Flask, resource: dict[str, str], engines: list[Engine], store: object
) -> OpenTelemetryTracing:
    """The process's provider and library instrumentation, once; the app's hooks, each time."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
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
        # Engines made later (by other apps in this process) are caught by its create_engine
        # hook. It declares SQLAlchemy < 2.1 and would refuse our 2.1; its event hooks work
        # unchanged (the correlation test checks the SQL spans).
        SQLAlchemyInstrumentor().instrument(
            tracer_provider=provider, engines=engines, skip_dep_check=True
        )
        RequestsInstrumentor().instrument(tracer_provider=provider, request_hook=_redact_client_url)
        _started["otel"] = OpenTelemetryTracing(provider.get_tracer("minishop"))
    tracing: OpenTelemetryTracing = _started["otel"]  # type: ignore[assignment]
    # Our own Redis client (cache, tokens, locks, nonces); the rate limiter's two commands per
    # request would add two spans to every trace that tell nothing a trace is read for.
    if isinstance(store, RedisStore):
        RedisInstrumentor.instrument_client(
            store.client, tracer_provider=trace.get_tracer_provider()
        )
    app.before_request(tracing.start_span)
    app.after_request(tracing.record_status)
    app.teardown_request(tracing.end_span)
    return tracing


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


def init_app(
    app: Flask,
    backend: str,
    *,
    service: str,
    version: str,
    env: str,
    engines: list[Engine],
    store: object,
) -> None:
    """Start `backend` for this process (once) and make `app` report through it.

    `engines` and `store` (the key-value store) are the app's, instrumented by OpenTelemetry.
    """
    global _active
    if backend == "otel":
        resource = {"service.name": service, "service.version": version}
        resource["deployment.environment"] = env
        _active = _start_opentelemetry(app, resource, engines, store)
    elif backend == "skywalking":
        skywalking = _start_skywalking(service)
        app.before_request(skywalking.name_entry_span)
        _active = skywalking
    else:
        _active = NoTracing()
    app.after_request(_echo_trace_id)
