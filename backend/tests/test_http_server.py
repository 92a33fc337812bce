"""What gunicorn itself answers, spoken to as real clients do: raw sockets and http.client.

gunicorn refuses some requests before the app sees them (a URL or header block over its limits,
a request that is not HTTP) and used to answer those with an HTML page. Both worker classes the
server runs with are checked.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from minishop import config
from tests.conftest import gunicorn_server


@dataclass(frozen=True)
class Server:
    base_url: str
    log_path: Path
    host: str
    port: int
    worker_class: str


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    raw: bytes


@pytest.fixture(scope="module", params=["gthread", "sync"])
def server(
    request: pytest.FixtureRequest,
    settings: config.TestingSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp(f"gunicorn-{request.param}")
    with gunicorn_server(
        settings,
        log_dir,
        GUNICORN_WORKER_CLASS=request.param,
        GUNICORN_THREADS="4" if request.param == "gthread" else "1",
        WEB_CONCURRENCY="2",
    ) as base_url:
        parts = urlsplit(base_url)
        assert parts.hostname is not None and parts.port is not None
        yield Server(base_url, log_dir / "gunicorn.log", parts.hostname, parts.port, request.param)


def connect(server: Server) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def read_until_closed(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse_response(raw: bytes) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body, raw)


def exchange(server: Server, request: bytes) -> RawResponse:
    """Send `request` as it is and read the answer until the server closes the connection."""
    with connect(server) as sock:
        sock.sendall(request)
        return parse_response(read_until_closed(sock))


def assert_envelope(status: int, headers: Any, body: bytes, expected: int, code: int) -> str:
    """The JSON envelope with `code` under HTTP `expected`; returns its request_id."""
    assert status == expected, body[:300]
    assert headers["content-type"].startswith("application/json"), headers
    envelope = json.loads(body)
    assert set(envelope) == {"code", "message", "data", "request_id"}, envelope
    assert envelope["code"] == code, envelope
    assert envelope["message"]
    assert envelope["request_id"]
    assert headers["x-request-id"] == envelope["request_id"]
    request_id: str = envelope["request_id"]
    return request_id


def assert_raw_envelope(response: RawResponse, expected: int, code: int) -> str:
    assert response.headers.get("connection") == "close", response.headers
    assert int(response.headers["content-length"]) == len(response.body)
    assert json.loads(response.body)["data"] is None
    return assert_envelope(response.status, response.headers, response.body, expected, code)


def log_lines(server: Server, request_id: str) -> list[dict[str, Any]]:
    """The server's JSON log lines about `request_id` (gunicorn writes them as they happen)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [
            json.loads(line)
            for line in server.log_path.read_text().splitlines()
            if line.startswith("{") and request_id in line
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def assert_healthy(server: Server) -> None:
    response = requests.get(f"{server.base_url}/healthz", timeout=5)
    assert response.status_code == 200
    assert response.json()["code"] == 0


# --- gunicorn's own refusals ---


def test_a_url_over_the_request_line_limit_gets_the_41400_envelope(server: Server) -> None:
    response = exchange(server, b"GET /api/v1/products?q=" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
    request_id = assert_raw_envelope(response, 414, 41400)
    [line] = log_lines(server, request_id)
    assert line["status"] == 414
    assert line["level"] == "WARNING"
    assert line["client_ip"] == "127.0.0.1"
    assert "a" * 100 not in json.dumps(line)


def test_a_header_over_the_field_size_limit_gets_the_43100_envelope(server: Server) -> None:
    secret = "Q" * 9000
    request = f"GET /api/v1/products HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {secret}\r\n\r\n"
    response = exchange(server, request.encode())
    request_id = assert_raw_envelope(response, 431, 43100)
    [line] = log_lines(server, request_id)
    assert line["status"] == 431
    assert "Q" * 50 not in server.log_path.read_text()


def test_too_many_headers_get_the_43100_envelope(server: Server) -> None:
    headers = "".join(f"X-Filler-{n}: {n}\r\n" for n in range(120))
    response = exchange(server, f"GET / HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    assert_raw_envelope(response, 431, 43100)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"HELLO\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
    ids=["not-http", "no-version", "bad-version", "bad-header-name", "two-lengths"],
)
def test_a_malformed_request_gets_the_40000_envelope(server: Server, request_bytes: bytes) -> None:
    assert_raw_envelope(exchange(server, request_bytes), 400, 40000)


def test_a_malformed_header_line_is_answered_and_logged_without_its_value(
    server: Server,
) -> None:
    secret = "s3cr3t-token-value-" + uuid.uuid4().hex
    response = exchange(
        server, f"GET / HTTP/1.1\r\nHost: x\r\nX-Api-Token {secret}\r\n\r\n".encode()
    )
    request_id = assert_raw_envelope(response, 400, 40000)
    assert response.body.decode().count(secret) == 0
    assert log_lines(server, request_id)
    assert secret not in server.log_path.read_text()


def test_a_sane_request_id_sent_with_a_refused_request_is_echoed(server: Server) -> None:
    response = exchange(
        server,
        b"POST / HTTP/1.1\r\nHost: x\r\nX-Request-ID: client-chosen-id-1234\r\n"
        b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    )
    assert assert_raw_envelope(response, 400, 40000) == "client-chosen-id-1234"


def test_an_unsupported_transfer_coding_gets_the_50100_envelope(server: Server) -> None:
    response = exchange(
        server, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: br, chunked\r\n\r\n0\r\n\r\n"
    )
    assert_raw_envelope(response, 501, 50100)


def test_an_unknown_expectation_gets_the_41700_envelope(server: Server) -> None:
    response = exchange(server, b"GET / HTTP/1.1\r\nHost: x\r\nExpect: teapot\r\n\r\n")
    assert_raw_envelope(response, 417, 41700)


def test_http_client_reads_a_refusal_as_an_envelope(server: Server) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", "/api/v1/products?q=" + "a" * 5000)
    response = connection.getresponse()
    assert_envelope(response.status, _lower(response.getheaders()), response.read(), 414, 41400)
    connection.close()
    assert_healthy(server)


def _lower(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}
