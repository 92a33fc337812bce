"""What gunicorn itself answers, spoken to as real clients do: raw sockets, urllib, http.client.

gunicorn refuses some requests before the app sees them (a URL or header block over its limits,
a request that is not HTTP) and used to answer those with an HTML page. A body over the limit is
refused by the app before it is read, and the client, still sending, used to see its connection
reset instead of the answer. Both worker classes the server runs with are checked.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from minishop import config
from tests.conftest import bearer, gunicorn_server

MAX_CONTENT_LENGTH = 1024 * 1024
UPLOAD_MAX_BYTES = 2 * 1024 * 1024
# minishop.http_server drains an unread body up to 4 x the larger of the two limits.
DRAIN_LIMIT = 4 * UPLOAD_MAX_BYTES


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
        MAX_CONTENT_LENGTH=str(MAX_CONTENT_LENGTH),
        UPLOAD_MAX_BYTES=str(UPLOAD_MAX_BYTES),
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


def authorization(login: dict[str, Any]) -> bytes:
    return f"Authorization: {bearer(login)['Authorization']}\r\n".encode()


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


# --- request bodies over the limit ---


def multipart(size: int) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + b"\x89PNG"
        + b"\0" * size
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    ("logged_in", "status", "code"), [(True, 413, 41300), (False, 401, 40100)], ids=["big", "anon"]
)
def test_urllib_reads_the_answer_to_an_upload_refused_unread(
    server: Server,
    log_in: Callable[..., dict[str, Any]],
    logged_in: bool,
    status: int,
    code: int,
) -> None:
    """urllib sends the whole body before it reads: it must not meet a reset connection."""
    body, content_type = multipart(3 * UPLOAD_MAX_BYTES)
    assert len(body) < DRAIN_LIMIT
    request = urllib.request.Request(  # noqa: S310 (the test server's http:// URL)
        f"{server.base_url}/api/v1/files",
        data=body,
        headers={"Content-Type": content_type, **(bearer(log_in()) if logged_in else {})},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=20)  # noqa: S310
    error = refused.value
    assert_envelope(error.code, _lower(list(error.headers.items())), error.read(), status, code)
    assert_healthy(server)


def test_a_json_body_over_the_limit_is_read_through_before_keep_alive(server: Server) -> None:
    """The connection stays usable: the refused body was read, not left on the socket."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    body = b'{"code": "' + b"x" * (6 * MAX_CONTENT_LENGTH) + b'"}'
    assert len(body) < DRAIN_LIMIT
    connection.request(
        "POST", "/api/v1/auth/login", body=body, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    assert_envelope(response.status, _lower(response.getheaders()), response.read(), 413, 41300)
    assert response.will_close == (server.worker_class == "sync")  # sync: one request each
    if not response.will_close:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    connection.close()


def test_expect_100_continue_over_the_limit_is_refused_before_the_body_is_sent(
    server: Server, log_in: Callable[..., dict[str, Any]]
) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/files HTTP/1.1\r\nHost: x\r\n"
            + authorization(log_in())
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (2 * UPLOAD_MAX_BYTES)
        )
        response = parse_response(read_until_closed(sock))
    assert not response.raw.startswith(b"HTTP/1.1 100"), response.raw[:200]
    assert_raw_envelope(response, 413, 41300)
    assert_healthy(server)


def test_expect_100_continue_within_the_limit_gets_100_then_the_answer(server: Server) -> None:
    body = b'{"code": 1}'
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\n"
            b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % len(body)
        )
        interim = sock.recv(64)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        response = parse_response(read_until_closed(sock))
    assert_envelope(response.status, response.headers, response.body, 400, 40000)


def test_a_chunked_json_body_over_the_limit_gets_41300(server: Server) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    payload = b'{"code": "' + b"x" * (2 * MAX_CONTENT_LENGTH) + b'"}'
    chunks = (payload[start : start + 8192] for start in range(0, len(payload), 8192))
    connection.request(
        "POST",
        "/api/v1/auth/login",
        body=chunks,
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert_envelope(response.status, _lower(response.getheaders()), response.read(), 413, 41300)
    connection.close()
    assert_healthy(server)


def test_a_chunked_json_body_of_exactly_the_limit_is_read(server: Server) -> None:
    """At the cap the body simply ends: it is parsed (and validated), not refused."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    payload = b'{"code": "' + b"x" * (MAX_CONTENT_LENGTH - 12) + b'"}'
    assert len(payload) == MAX_CONTENT_LENGTH
    connection.request(
        "POST",
        "/api/v1/auth/login",
        body=iter([payload[:1000], payload[1000:]]),
        headers={"Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    assert_envelope(response.status, _lower(response.getheaders()), response.read(), 400, 40000)
    connection.close()


@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2;a b\r\n{}\r\n0\r\n\r\n"],
    ids=["bad-size", "no-terminator", "bad-extension"],
)
def test_a_malformed_chunked_body_is_a_client_error(server: Server, chunks: bytes) -> None:
    response = exchange(
        server,
        b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks,
    )
    assert 400 <= response.status < 500, response.raw[:300]
    assert json.loads(response.body)["code"] in {40000, 40001}


def test_a_body_far_beyond_the_drain_limit_still_gets_the_answer(
    server: Server, log_in: Callable[..., dict[str, Any]]
) -> None:
    """A client reading while it sends sees the 413; the server does not read 40 MiB for it."""
    declared = 40 * DRAIN_LIMIT
    received: list[bytes] = []
    with connect(server) as sock:
        sock.sendall(
            b"POST /api/v1/files HTTP/1.1\r\nHost: x\r\n"
            + authorization(log_in())
            + b"Content-Type: multipart/form-data; boundary=b\r\n"
            + b"Content-Length: %d\r\n\r\n" % declared
        )

        def read() -> None:
            try:
                while chunk := sock.recv(65536):
                    received.append(chunk)
            except OSError:
                pass

        reader = threading.Thread(target=read)
        reader.start()
        sent = 0
        started = time.monotonic()
        try:
            while sent < declared and time.monotonic() - started < 20:
                sent += sock.send(b"\0" * 65536)
        except OSError:
            pass
        reader.join(timeout=10)
    assert sent < declared
    assert_raw_envelope(parse_response(b"".join(received)), 413, 41300)
    assert_healthy(server)
