"""Loopback stand-ins for the trace collectors the app reports to.

`OtlpReceiver` is an OTLP/HTTP endpoint (POST /v1/traces) that decodes the protobuf the real
exporter sends; `SkyWalkingReceiver` is the part of a SkyWalking OAP's HTTP API the agent uses
(segments, instance properties, heartbeats). Both keep what they received for the test to read.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

T = TypeVar("T")


class _LoopbackServer:
    """An HTTP server on a free loopback port, in a thread; subclasses answer `receive`."""

    def __init__(self) -> None:
        # Re-entrant: `wait_for` holds it while its predicate calls `trace`.
        self.lock = threading.RLock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    status, content_type, answer = receiver.receive(self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                """Quiet: the test output is for the test."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def receive(self, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes]:
        raise NotImplementedError

    def wait_for(self, found: Callable[[], T | None], timeout: float = 20.0) -> T:
        """Poll `found` (under the lock) until it returns something, or fail."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                result = found()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"{type(self).__name__}: nothing matching in {timeout} s")
            time.sleep(0.1)

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()


def _plain(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class ExportedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    status: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)


class OtlpReceiver(_LoopbackServer):
    # Span kinds and status codes in the OTLP protobuf.
    SERVER, CLIENT = 2, 3
    STATUS_UNSET, STATUS_ERROR = 0, 2

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[ExportedSpan] = []
        self.request_headers: list[dict[str, str]] = []

    @property
    def endpoint(self) -> str:
        """OTEL_EXPORTER_OTLP_ENDPOINT (the exporter appends /v1/traces)."""
        return f"http://{self.address}"

    def receive(self, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes]:
        if path != "/v1/traces":
            return 404, "text/plain", b"unknown path"
        self.request_headers.append({k.lower(): v for k, v in headers.items()})
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            resource = {a.key: _plain(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        ExportedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            status=span.status.code,
                            service=str(resource.get("service.name")),
                            attributes={a.key: _plain(a.value) for a in span.attributes},
                        )
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        return 200, "application/x-protobuf", answer

    def trace(self, trace_id: str) -> list[ExportedSpan]:
        with self.lock:
            return [span for span in self.spans if span.trace_id == trace_id]


class SkyWalkingReceiver(_LoopbackServer):
    def __init__(self) -> None:
        super().__init__()
        self.segments: list[dict[str, Any]] = []
        self.instances: list[dict[str, Any]] = []

    def receive(self, path: str, headers: Any, body: bytes) -> tuple[int, str, bytes]:
        document = json.loads(body)
        if path == "/v3/segment":
            self.segments.append(document)
        elif path in ("/v3/management/reportProperties", "/v3/management/keepAlive"):
            self.instances.append(document)
        else:
            return 404, "text/plain", b"unknown path"
        return 200, "application/json", b"{}"

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [segment for segment in self.segments if segment["traceId"] == trace_id]
