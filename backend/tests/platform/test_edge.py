"""deploy/edge/nginx.conf, the shipped edge, as loadtest/stack.py's EdgeProxy runs it: real nginx
(from apt) in front of real gunicorn (4 workers) on the session's MariaDB and Redis.

What reached the app is read from the app's own access log: each request here sends its own
X-Request-ID, which the edge forwards and the app logs, so "answered from the cache" means the
app never logged that id.

Caching relies on the app's Cache-Control and ETag (contract 1: `public, max-age=1` for anonymous
catalog reads, `private, no-cache` with credentials); the edge stores nothing the app does not
allow, so every test that expects a HIT, a STALE or a 304 needs the app's catalog HTTP caching.
The credential, user-path, slow-client and refusal tests hold without it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import requests

from minishop.config import TestingSettings as AppSettings
from tests.ci import require_binaries
from tests.conftest import bearer, gunicorn_server
from tests.signing import json_bytes, signed_headers

REPO_ROOT = Path(__file__).resolve().parents[3]
# The stated bound (docs/api.md, "What the edge answers"): a change is in every answer the edge
# sends from 1 s after it was committed (the app's answer to the write). The app's own caches
# follow within milliseconds (Redis pub/sub); the edge keeps an entry at most 0.9 s past the
# app's answer (X-Accel-Expires, minishop/api/http_cache.py), leaving 0.1 s for the refresh.
STALENESS_SECONDS = 1.0
STALENESS_PROBES = 5
POLL_SECONDS = 0.01

SLOW_CLIENTS = 40
SLOW_LINE_INTERVAL_SECONDS = 4.0
NORMAL_REQUESTS = 15
NORMAL_DEADLINE_SECONDS = 2.0


def load_stack() -> ModuleType:
    """loadtest/stack.py (a script folder, not a package), imported once by path."""
    if "minishop_loadtest_stack" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "minishop_loadtest_stack", REPO_ROOT / "loadtest" / "stack.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    return sys.modules["minishop_loadtest_stack"]


@dataclass
class App:
    base_url: str
    log: Path

    def access_line(self, request_id: str) -> dict[str, Any] | None:
        """The app's log line for the request with this id, if it reached the app."""
        for line in self.log.read_text(errors="replace").splitlines():
            if request_id in line:
                try:
                    record: dict[str, Any] = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("request_id") == request_id:
                    return record
        return None

    def reached(self, request_id: str) -> bool:
        return self.access_line(request_id) is not None


@pytest.fixture(scope="module")
def app_server(settings: AppSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    require_binaries("nginx")
    log_dir = tmp_path_factory.mktemp("edge-gunicorn")
    # One proxy (the edge) in front, as compose and the chart's edge layer run it.
    with gunicorn_server(settings, log_dir, TRUSTED_PROXY_COUNT="1") as base_url:
        yield App(base_url, log_dir / "gunicorn.log")


@pytest.fixture(scope="module")
def edge(app_server: App) -> Iterator[Any]:
    with load_stack().EdgeProxy(app_server.base_url) as proxy:
        yield proxy


def new_id() -> str:
    return uuid.uuid4().hex


def get(url: str, **headers: str) -> tuple[requests.Response, str]:
    """GET with a fresh X-Request-ID; returns the response and that id."""
    request_id = new_id()
    response = requests.get(url, headers={"X-Request-ID": request_id, **headers}, timeout=10)
    return response, request_id


def wait_until_logged(app: App, request_id: str) -> None:
    """The app writes its access line as it answers; give the file a moment to show it."""
    deadline = time.monotonic() + 2
    while not app.reached(request_id):
        assert time.monotonic() < deadline, f"{request_id} never reached the app"
        time.sleep(0.02)


def early_in_a_second() -> None:
    """Wait until 0.15-0.5 s into a clock second: an entry the app answers now stays fresh at the
    edge to the end of it (an answer in its first 0.1 s is stored already expired, on purpose), so
    the next requests of a test are HITs."""
    while not 0.15 <= time.time() % 1 < 0.5:
        time.sleep(0.01)


def just_refreshed(url: str) -> requests.Response:
    """Poll until the edge has just refreshed its entry for `url`: a HIT after the refresh."""
    refreshing = False
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        answer, _ = get(url)
        status = answer.headers["X-Cache-Status"]
        if refreshing and status == "HIT":
            return answer
        refreshing = refreshing or status in {"STALE", "UPDATING", "EXPIRED", "MISS"}
        time.sleep(POLL_SECONDS)
    raise AssertionError(f"the edge did not refresh {url} within 5 s")


def app_answer_time(access_line: dict[str, Any] | None) -> float:
    """When the app answered a request: its access line's timestamp, as a Unix time."""
    assert access_line is not None
    return datetime.fromisoformat(access_line["timestamp"]).timestamp()


def test_an_anonymous_product_is_answered_by_the_edge_the_second_time(
    edge: Any, app_server: App, catalog: dict[str, Any]
) -> None:
    url = f"{edge.base_url}/api/v1/products/{catalog['longjing'].id}?n={new_id()}"
    early_in_a_second()
    first, first_id = get(url)
    second, second_id = get(url)
    head = requests.head(url, timeout=10)

    assert first.status_code == second.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=1"
    assert "X-Accel-Expires" not in first.headers  # for nginx only
    assert first.headers["X-Cache-Status"] in {"MISS", "EXPIRED"}
    assert second.headers["X-Cache-Status"] == "HIT"
    assert second.json()["data"] == first.json()["data"]
    # Each answer carries its own request's id, once, not the cached one.
    assert first.headers["X-Request-ID"] == first_id
    assert second.headers["X-Request-ID"] == second_id
    assert second.json()["request_id"] == first_id  # the cached body is the first answer's
    wait_until_logged(app_server, first_id)
    assert not app_server.reached(second_id)
    assert head.status_code == 200 and head.headers["X-Cache-Status"] == "HIT"


def test_the_query_string_is_part_of_the_key(edge: Any, catalog: dict[str, Any]) -> None:
    tea = catalog["tea"].id
    all_products, _ = get(f"{edge.base_url}/api/v1/products?page_size=50&n={new_id()}")
    only_tea, _ = get(f"{edge.base_url}/api/v1/products?category_id={tea}&n={new_id()}")

    assert all_products.headers["X-Cache-Status"] == only_tea.headers["X-Cache-Status"] == "MISS"
    assert all_products.json()["data"] != only_tea.json()["data"]


def test_if_none_match_is_answered_304_by_the_edge(edge: Any, catalog: dict[str, Any]) -> None:
    url = f"{edge.base_url}/api/v1/categories?n={new_id()}"
    early_in_a_second()
    first, _ = get(url)
    etag = first.headers["ETag"]

    again, _ = get(url, **{"If-None-Match": etag})

    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag and again.headers["X-Cache-Status"] == "HIT"


def test_a_stock_change_shows_through_the_edge_within_the_stated_bound(
    edge: Any, catalog: dict[str, Any], admin: dict[str, Any]
) -> None:
    """Each probe changes the stock just after the edge refreshed its entry (a HIT right after
    the refresh), the worst moment, and polls until the edge shows the change."""
    product = catalog["jerky"]
    url = f"{edge.base_url}/api/v1/products/{product.id}"
    path = f"/api/v1/admin/products/{product.id}/stock"
    seen_after = []
    for probe in range(STALENESS_PROBES):
        old_stock = just_refreshed(url).json()["data"]["stock"]
        new_stock = 7 + probe if old_stock != 7 + probe else 100
        body = json_bytes({"stock": new_stock})
        changed = requests.put(
            edge.base_url + path,
            data=body,
            headers=signed_headers(admin, "PUT", path, body) | {"Content-Type": "application/json"},
            timeout=10,
        )
        assert changed.status_code == 200, changed.text
        assert "X-Cache-Status" not in changed.headers
        started = time.monotonic()  # committed: from now on the old stock is stale
        while (seen := get(url)[0].json()["data"]["stock"]) != new_stock:
            elapsed = time.monotonic() - started
            assert elapsed <= STALENESS_SECONDS, f"still {seen} after {elapsed:.3f} s"
            time.sleep(POLL_SECONDS)
        seen_after.append(round(time.monotonic() - started, 3))
    print(f"\nstock changes visible through the edge after {seen_after} s")
    assert max(seen_after) <= STALENESS_SECONDS


def test_no_answer_comes_from_an_entry_the_app_refreshed_over_the_bound_ago(
    edge: Any, app_server: App, catalog: dict[str, Any]
) -> None:
    """The mechanism behind the bound, without a write: for 3 s of back-to-back reads, every
    answer follows an app answer (a fetch or a 304 revalidation, logged by the app under the id
    of the request that set it off) by at most STALENESS_SECONDS."""
    url = f"{edge.base_url}/api/v1/products/{catalog['longjing'].id}?n={new_id()}"
    received = []
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        response, request_id = get(url)
        assert response.status_code == 200
        received.append((time.time(), request_id))
        time.sleep(POLL_SECONDS)
    wait_until_logged(app_server, received[0][1])
    time.sleep(0.2)  # a background refresh set off by the last reads
    lines = [app_server.access_line(request_id) for _, request_id in received]
    refreshed = sorted(app_answer_time(line) for line in lines if line is not None)
    ages = [at - max(r for r in refreshed if r <= at) for at, _ in received]
    # About one refresh a second, and one per read in the first 0.1 s of a second.
    assert 3 <= len(refreshed) <= 3 * 12, refreshed
    assert max(ages) <= STALENESS_SECONDS, max(ages)
    print(f"\n{len(refreshed)} refreshes in 3 s, oldest answer {max(ages):.3f} s after its refresh")


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"Authorization": "Bearer not-a-valid-token"}, id="authorization"),
        pytest.param({"Cookie": "session=abc"}, id="cookie"),
    ],
)
def test_a_request_with_credentials_is_never_answered_from_the_cache(
    edge: Any, app_server: App, catalog: dict[str, Any], credentials: dict[str, str]
) -> None:
    url = f"{edge.base_url}/api/v1/products/{catalog['puer'].id}?n={new_id()}"
    early_in_a_second()
    anonymous, _ = get(url)
    assert anonymous.headers["X-Cache-Status"] == "MISS"

    sent = [get(url, **credentials) for _ in range(2)]

    for response, request_id in sent:
        assert response.headers["X-Cache-Status"] == "BYPASS"
        assert response.json()["request_id"] == request_id  # the app's own answer, not a copy
        wait_until_logged(app_server, request_id)
    # Nor stored: the next anonymous request is still served the anonymous entry.
    after, after_id = get(url)
    assert after.headers["X-Cache-Status"] == "HIT"
    assert after.json()["request_id"] != sent[-1][1]
    assert not app_server.reached(after_id)


def test_a_signed_in_users_catalog_read_reaches_the_app_each_time(
    edge: Any, app_server: App, catalog: dict[str, Any], admin: dict[str, Any]
) -> None:
    url = f"{edge.base_url}/api/v1/products/{catalog['longjing'].id}"
    answers = [get(url, **bearer(admin)) for _ in range(2)]

    for response, request_id in answers:
        assert response.status_code == 200
        assert response.headers["Cache-Control"] == "private, no-cache"
        assert response.headers["X-Cache-Status"] == "BYPASS"
        wait_until_logged(app_server, request_id)


@pytest.mark.parametrize("path", ["/api/v1/users/me", "/api/v1/orders", "/healthz"])
def test_user_specific_and_other_paths_are_never_cached(
    edge: Any, app_server: App, admin: dict[str, Any], path: str
) -> None:
    for headers in ({}, bearer(admin)):
        answers = [get(edge.base_url + path, **headers) for _ in range(2)]
        for response, request_id in answers:
            assert "X-Cache-Status" not in response.headers
            wait_until_logged(app_server, request_id)


def test_the_app_sees_the_clients_address_not_one_it_claims(edge: Any, app_server: App) -> None:
    """The edge appends to X-Forwarded-For; the app believes its one hop (TRUSTED_PROXY_COUNT=1)."""
    response, request_id = get(
        f"{edge.base_url}/healthz",
        **{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"},
    )

    assert response.status_code == 200
    wait_until_logged(app_server, request_id)
    line = app_server.access_line(request_id)
    assert line is not None and line["client_ip"] == "127.0.0.1"


def slow_clients(base_url: str, stop: threading.Event) -> list[socket.socket]:
    """SLOW_CLIENTS connections that send a request's headers one line every few seconds."""
    host, port = base_url.removeprefix("http://").split(":")
    sockets = [socket.create_connection((host, int(port)), timeout=5) for _ in range(SLOW_CLIENTS)]

    def dribble(sock: socket.socket, number: int) -> None:
        lines = [f"GET /api/v1/products?slow={number} HTTP/1.1\r\n", f"Host: {host}\r\n"]
        lines += [f"X-Slow-{index}: {index}\r\n" for index in range(100)]
        for line in lines:
            try:
                sock.sendall(line.encode())
            except OSError:  # the server gave up on this client: what it should do, eventually
                return
            if stop.wait(SLOW_LINE_INTERVAL_SECONDS):
                return

    for number, sock in enumerate(sockets):
        threading.Thread(target=dribble, args=(sock, number), daemon=True).start()
    return sockets


def answered_in_time(base_url: str, path: str) -> int:
    """How many of NORMAL_REQUESTS concurrent GETs (new connections) got their answer in time."""

    def one(_: int) -> bool:
        started = time.monotonic()
        try:
            response = requests.get(base_url + path, timeout=NORMAL_DEADLINE_SECONDS)
        except requests.RequestException:
            return False
        return response.ok and time.monotonic() - started <= NORMAL_DEADLINE_SECONDS

    with ThreadPoolExecutor(NORMAL_REQUESTS) as pool:
        return sum(pool.map(one, range(NORMAL_REQUESTS)))


def under_slow_clients(base_url: str, path: str) -> int:
    stop = threading.Event()
    sockets = slow_clients(base_url, stop)
    try:
        time.sleep(1)  # every slow client has sent its request line
        return answered_in_time(base_url, path)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


def test_slow_clients_do_not_hold_up_others_behind_the_edge(
    edge: Any, app_server: App, catalog: dict[str, Any]
) -> None:
    # Not a cached path: every one of these requests needs a gunicorn thread (and the database).
    through_edge = under_slow_clients(edge.base_url, "/readyz")
    bare = under_slow_clients(app_server.base_url, "/readyz")
    print(
        f"\n{SLOW_CLIENTS} slow clients: {through_edge}/{NORMAL_REQUESTS} answered within "
        f"{NORMAL_DEADLINE_SECONDS} s through the edge, {bare}/{NORMAL_REQUESTS} by bare gunicorn"
    )
    assert through_edge == NORMAL_REQUESTS


def raw_exchange(base_url: str, request: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Send bytes as they are; the status, headers and JSON body of the answer."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_envelope(response: requests.Response, status: int, code: int) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    document = response.json()
    assert document["code"] == code and document["data"] is None
    assert document["request_id"] == response.headers["X-Request-ID"]
    assert set(document) == {"code", "message", "data", "request_id"}


def test_a_body_over_the_cap_is_refused_by_the_edge_as_the_envelope(
    edge: Any, app_server: App
) -> None:
    request_id = new_id()
    response = requests.post(
        f"{edge.base_url}/api/v1/orders",
        data=b"x" * (5 * 1024 * 1024 + 1),
        headers={"X-Request-ID": request_id, "Content-Type": "application/json"},
        timeout=30,
    )

    assert_envelope(response, 413, 41300)
    assert response.json()["request_id"] == request_id
    assert not app_server.reached(request_id)


def test_a_uri_too_long_is_refused_by_the_edge_as_the_envelope(edge: Any) -> None:
    response = requests.get(f"{edge.base_url}/api/v1/products?q={'a' * 9000}", timeout=10)

    assert_envelope(response, 414, 41400)


def test_a_header_too_large_is_refused_by_the_edge_as_the_envelope(edge: Any) -> None:
    response = requests.get(
        f"{edge.base_url}/api/v1/products", headers={"X-Big": "a" * 9000}, timeout=10
    )

    assert_envelope(response, 431, 43100)


def test_a_malformed_request_is_refused_by_the_edge_as_the_envelope(edge: Any) -> None:
    status, headers, document = raw_exchange(edge.base_url, b"NOT HTTP AT ALL\r\n\r\n")

    assert status == 400 and document["code"] == 40000
    assert document["request_id"] == headers["X-Request-ID"]


def test_the_app_unreachable_is_the_50300_envelope() -> None:
    stack = load_stack()
    with stack.EdgeProxy(f"http://127.0.0.1:{stack.free_port()}") as proxy:
        response = requests.get(f"{proxy.base_url}/api/v1/users/me", timeout=10)
        catalog_read = requests.get(f"{proxy.base_url}/api/v1/products", timeout=10)

    assert_envelope(response, 503, 50300)
    assert response.headers["Retry-After"] == "1"
    assert_envelope(catalog_read, 503, 50300)


@contextlib.contextmanager
def silent_upstream() -> Iterator[str]:
    """An upstream that accepts connections and never reads or answers them; its URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stopping = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stopping.set()
        acceptor.join()
        for connection in accepted:
            connection.close()
        listener.close()


def test_an_app_too_slow_to_answer_is_the_50400_envelope(tmp_path: Path) -> None:
    """The shipped config with its 35 s read timeout shortened to 1 s (the only change)."""
    stack = load_stack()
    shipped = stack.EDGE_CONFIG.read_text()
    assert shipped.count("proxy_read_timeout 35s;") == 1
    config = tmp_path / "nginx.conf"
    config.write_text(shipped.replace("proxy_read_timeout 35s;", "proxy_read_timeout 1s;"))
    with silent_upstream() as upstream, stack.EdgeProxy(upstream, config=config) as proxy:
        started = time.monotonic()
        response = requests.get(f"{proxy.base_url}/api/v1/users/me", timeout=10)
        waited = time.monotonic() - started
        catalog_read = requests.get(f"{proxy.base_url}/api/v1/products/1", timeout=10)

    assert_envelope(response, 504, 50400)
    assert 1 <= waited < 5
    assert_envelope(catalog_read, 504, 50400)  # nothing cached yet to serve stale


def test_the_catalog_stays_answered_from_the_edge_while_the_app_is_down(
    settings: AppSettings, tmp_path: Path, catalog: dict[str, Any]
) -> None:
    stack = load_stack()
    url_path = f"/api/v1/products/{catalog['longjing'].id}"
    with contextlib.ExitStack() as cleanup:
        with gunicorn_server(settings, tmp_path, TRUSTED_PROXY_COUNT="1") as base_url:
            edge = cleanup.enter_context(stack.EdgeProxy(base_url))
            primed, _ = get(edge.base_url + url_path)
        assert primed.status_code == 200
        # gunicorn is gone; wait past the entry's freshness (whole seconds at the edge).
        time.sleep(STALENESS_SECONDS + 0.2)

        stale, _ = get(edge.base_url + url_path)
        uncached = requests.get(edge.base_url + "/api/v1/users/me", timeout=10)

    assert stale.status_code == 200 and stale.headers["X-Cache-Status"] == "STALE"
    assert stale.json()["data"] == primed.json()["data"]
    assert_envelope(uncached, 503, 50300)


def test_the_benchs_reference_micro_cache_runs() -> None:
    """loadtest/edge/minimal-nginx.conf (the edge row's same-run reference) starts under
    EdgeProxy with the shipped config's includes; with no app behind it nginx answers 502."""
    stack = load_stack()
    reference = stack.ROOT / "loadtest" / "edge" / "minimal-nginx.conf"
    with stack.EdgeProxy(f"http://127.0.0.1:{stack.free_port()}", config=reference) as proxy:
        response = requests.get(f"{proxy.base_url}/api/v1/products/1", timeout=10)
    assert response.status_code == 502
