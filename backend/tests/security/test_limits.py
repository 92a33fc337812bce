"""Rate limits: per IP by default, stricter on login, per user on uploads, shared across workers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import port_for
import pytest
import requests
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from prometheus_client import REGISTRY

from minishop import config, create_app, extensions
from minishop.security import batched_limits
from tests.conftest import ClientWith, embedded_settings, gunicorn_server
from tests.test_errors import assert_envelope
from tests.uploads import image_bytes, upload

LogIn = Callable[..., dict[str, Any]]
CATEGORIES = "/api/v1/categories"


def test_the_default_limit_answers_42900_with_its_headers(client_with: ClientWith) -> None:
    client = client_with(RATELIMIT_DEFAULT="3 per minute", RATELIMIT_HEADERS_ENABLED=True)
    for remaining in (2, 1, 0):
        response = client.get(CATEGORIES)
        assert_envelope(response, 200, 0)
        assert response.headers["X-RateLimit-Limit"] == "3"
        assert response.headers["X-RateLimit-Remaining"] == str(remaining)
    labels = {"route": CATEGORIES}
    counted = REGISTRY.get_sample_value("minishop_rate_limited_total", labels) or 0.0
    refused = client.get(CATEGORIES)
    body = assert_envelope(refused, 429, 42900)
    assert REGISTRY.get_sample_value("minishop_rate_limited_total", labels) == counted + 1
    assert body["message"] == "too many requests"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert int(refused.headers["X-RateLimit-Reset"]) > time.time()
    assert refused.headers["X-RateLimit-Remaining"] == "0"


def test_only_a_refused_request_pays_for_the_headers_by_default(client_with: ClientWith) -> None:
    client = client_with(RATELIMIT_DEFAULT="1 per minute")
    allowed = client.get(CATEGORIES)
    assert_envelope(allowed, 200, 0)
    assert not any(name.startswith("X-RateLimit") for name, _ in allowed.headers)
    refused = client.get(CATEGORIES)
    assert_envelope(refused, 429, 42900)
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_probes_are_never_limited(client_with: ClientWith) -> None:
    client = client_with(RATELIMIT_DEFAULT="1 per minute")
    for _ in range(3):
        assert client.get("/healthz").status_code == 200


def test_login_has_its_own_stricter_limit(client_with: ClientWith) -> None:
    client = client_with(RATELIMIT_DEFAULT="100 per minute", RATELIMIT_LOGIN="2 per minute")
    for _ in range(2):  # even refused codes count: this limit is against guessing
        assert_envelope(client.post("/api/v1/auth/login", json={"code": "guess"}), 400, 40000)
    assert_envelope(client.post("/api/v1/auth/login", json={"code": "guess"}), 429, 42900)
    assert_envelope(client.get(CATEGORIES), 200, 0)


def test_uploads_are_limited_per_user(client_with: ClientWith, log_in: LogIn) -> None:
    client = client_with(RATELIMIT_UPLOADS="1 per minute")
    alice, bob = log_in(), log_in()
    assert_envelope(upload(client, alice, image_bytes()), 201, 0)
    refused = upload(client, alice, image_bytes(size=(9, 9)))
    assert_envelope(refused, 429, 42900)
    assert refused.headers["X-RateLimit-Limit"] == "1"
    assert_envelope(upload(client, bob, image_bytes()), 201, 0)  # same IP, another user


def test_malformed_requests_count_too(client_with: ClientWith, log_in: LogIn) -> None:
    client = client_with(RATELIMIT_UPLOADS="1 per minute")
    data = log_in()
    assert_envelope(upload(client, data, b""), 400, 40000)
    assert_envelope(upload(client, data, image_bytes()), 429, 42900)


@pytest.mark.parametrize(
    ("proxies", "separate"), [(0, False), (1, True)], ids=["no-proxy", "one-proxy"]
)
def test_the_client_ip_comes_only_from_trusted_proxies(
    client_with: ClientWith, proxies: int, separate: bool
) -> None:
    client = client_with(RATELIMIT_DEFAULT="1 per minute", TRUSTED_PROXY_COUNT=proxies)
    first = client.get(CATEGORIES, headers={"X-Forwarded-For": "203.0.113.1"})
    assert_envelope(first, 200, 0)
    # A client prepending an address of its choice gains nothing: only the hop our proxy
    # appended counts, and without a proxy the header is ignored altogether.
    spoofed = client.get(CATEGORIES, headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.2"})
    assert spoofed.status_code == (200 if separate else 429)
    again = client.get(CATEGORIES, headers={"X-Forwarded-For": "198.51.100.9, 203.0.113.1"})
    assert_envelope(again, 429, 42900)


def test_the_limiter_fails_open_and_logs_when_redis_is_down(
    client_with: ClientWith, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"redis://127.0.0.1:{port_for.select_random()}/0"
    client = client_with(RATELIMIT_DEFAULT="1 per minute", RATELIMIT_STORAGE_URI=dead)
    with caplog.at_level(logging.ERROR, logger="flask-limiter"):
        for _ in range(3):
            assert_envelope(client.get(CATEGORIES), 200, 0)
    assert any(record.name == "flask-limiter" and record.exc_info for record in caplog.records)


def test_the_limiter_can_fail_closed(client_with: ClientWith) -> None:
    dead = f"redis://127.0.0.1:{port_for.select_random()}/0"
    client = client_with(
        RATELIMIT_DEFAULT="10 per minute",  # exact: batched limits find out at their first flush
        RATELIMIT_STORAGE_URI=dead,
        RATELIMIT_SWALLOW_ERRORS=False,
    )
    assert_envelope(client.get(CATEGORIES), 503, 50300)


def test_a_batched_limit_fails_open_when_redis_is_down(client_with: ClientWith) -> None:
    dead = f"redis://127.0.0.1:{port_for.select_random()}/0"
    client = client_with(RATELIMIT_DEFAULT="300 per minute", RATELIMIT_STORAGE_URI=dead)
    for _ in range(10):  # B = 3: local hits, then flushes that fail
        assert_envelope(client.get(CATEGORIES), 200, 0)


def test_flask_limiter_settings_pass_through_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Undeclared RATELIMIT_* variables reach Flask-Limiter as they are, JSON values parsed."""
    monkeypatch.setenv("RATELIMIT_STORAGE_OPTIONS", '{"health_check_interval": 5}')
    monkeypatch.setenv("RATELIMIT_ENABLED", "false")
    monkeypatch.setenv("RATELIMIT_META", "1000 per day")
    monkeypatch.setenv("RATELIMIT_STRATEGY", "fixed-window")  # declared: validated
    loaded = config.TestingSettings()
    flask_config = loaded.flask_config("instance")
    assert flask_config["RATELIMIT_ENABLED"] is False
    assert flask_config["RATELIMIT_META"] == "1000 per day"
    assert flask_config["RATELIMIT_STRATEGY"] == "fixed-window"
    assert flask_config["RATELIMIT_STORAGE_OPTIONS"] == {"health_check_interval": 5}
    assert "RATELIMIT_PASSTHROUGH" not in flask_config

    app = create_app(loaded)
    assert extensions.limiter.of(app).enabled is False


def test_declared_rate_limit_settings_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATELIMIT_STRATEGY", "leaky-bucket")
    with pytest.raises(config.ConfigError):
        config.load_settings("testing")


@pytest.fixture(scope="module")
def limited_server(
    settings: config.TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    """Real gunicorn, 4 workers on the session's Redis, with a tight default limit."""
    with gunicorn_server(
        settings,
        tmp_path_factory.mktemp("limited"),
        RATELIMIT_DEFAULT="10 per 4 seconds",
        RATELIMIT_KEY_PREFIX="limited-server",
    ) as base_url:
        yield base_url


def test_limits_hold_across_gunicorn_workers_and_retry_after_is_honest(
    limited_server: str, app: Any
) -> None:
    url = f"{limited_server}{CATEGORIES}"
    with requests.Session() as warm:  # every worker answers before the clock starts
        warm.get(f"{limited_server}/healthz", timeout=5)

    def fetch(_: int) -> requests.Response:
        return requests.get(url, timeout=10)

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(fetch, range(32)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 22
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == 42900
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= 4  # never longer than the window
    assert requests.get(url, timeout=10).status_code == 429
    # Honest: waiting exactly Retry-After seconds after being refused is enough.
    time.sleep(retry_after)
    assert requests.get(url, timeout=10).status_code == 200


def test_a_client_with_its_own_proxy_header_is_still_one_client(
    limited_server: str, app: Any
) -> None:
    """gunicorn runs with no trusted proxy here: invented X-Forwarded-For values change nothing."""
    url = f"{limited_server}{CATEGORIES}"
    statuses = [
        requests.get(url, headers={"X-Forwarded-For": f"10.0.0.{i}"}, timeout=10).status_code
        for i in range(11)
    ]
    assert statuses == [200] * 10 + [429]


@pytest.mark.parametrize("store", ["redis", "embedded"])
def test_a_large_limit_holds_within_its_tolerance_across_gunicorn_workers(
    settings: config.TestingSettings, tmp_path: Any, store: str
) -> None:
    """200/minute, B = 2: 400 concurrent requests through 4 workers accept 200 to 204."""
    limit, workers, fired = 200, 4, 400
    own = settings if store == "redis" else embedded_settings(settings, tmp_path)
    with gunicorn_server(
        own,
        tmp_path,
        WEB_CONCURRENCY=str(workers),
        RATELIMIT_DEFAULT=f"{limit} per minute",
        RATELIMIT_KEY_PREFIX=f"batched-{store}-{time.time_ns()}",
    ) as base_url:
        requests.get(f"{base_url}/healthz", timeout=5)
        url = f"{base_url}{CATEGORIES}"
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(lambda _: requests.get(url, timeout=30), range(fired)))
    statuses = [r.status_code for r in responses]
    accepted = statuses.count(200)
    assert limit <= accepted <= limit + batched_limits.tolerance(limit, workers), accepted
    assert statuses.count(429) == fired - accepted
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["code"] == 42900
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_batched_counts_stay_within_the_tolerance_under_contention() -> None:
    """Four workers' limiters on one store, 16 threads: never under the limit, never past it by
    more than workers x (B - 1); a limit under 100 stays exact."""
    storage = storage_from_string("memory://")
    limiters = [batched_limits.BatchedRateLimiter(storage) for _ in range(4)]

    def hit(limit: RateLimitItem, i: int) -> bool:
        return limiters[i % 4].hit(limit, "ip", "/")

    for text, low, high in (("1000/minute", 1000, 1036), ("50/minute", 50, 50)):
        limit = parse(text)
        with ThreadPoolExecutor(16) as pool:
            allowed = list(pool.map(partial(hit, limit), range(3000)))
        assert low <= allowed.count(True) <= high, (text, allowed.count(True))
        assert batched_limits.tolerance(limit.amount, 4) == high - low
    for limiter in limiters:
        limiter.flush_pending()
    assert storage.get(parse("1000/minute").key_for("ip", "/")) == 3000  # refused hits count


def test_pending_hits_reach_the_store_and_an_idle_flusher_ends() -> None:
    storage = storage_from_string("memory://")
    limiter = batched_limits.BatchedRateLimiter(storage)
    limit = parse("1000/second")  # B = 10: these three stay local until the flusher runs
    assert all(limiter.hit(limit, "ip", "/") for _ in range(3))
    flusher = limiter._flusher
    assert flusher is not None and flusher.is_alive()
    deadline = time.monotonic() + 5
    while flusher.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not flusher.is_alive()  # idle for a window: nothing left to flush
    assert limiter._flusher is None
    assert limiter.hit(limit, "ip", "/")  # and the next hit starts another
    assert limiter._flusher is not None and limiter._flusher.is_alive()


def test_the_flusher_adds_pending_hits_within_its_interval() -> None:
    storage = storage_from_string("memory://")
    limiter = batched_limits.BatchedRateLimiter(storage)
    limit = parse("1000/minute")
    assert all(limiter.hit(limit, "ip", "/") for _ in range(3))
    time.sleep(3 * batched_limits.FLUSH_INTERVAL_SECONDS)
    assert storage.get(limit.key_for("ip", "/")) == 3


def test_only_our_request_hook_checks_limits(client_with: ClientWith) -> None:
    """Flask-Limiter builds the storage and the strategy; its per-request hooks (~275 µs of a
    cached read, docs/performance/profile-request.md) must stay unregistered."""
    app = client_with().application
    hooks = [
        *app.before_request_funcs[None],
        *app.after_request_funcs[None],
        *app.teardown_request_funcs[None],
    ]
    limiter = extensions.limiter.of(app)
    assert not any(
        getattr(hook, "__self__", None) is limiter or getattr(hook, "args", ()) == (limiter,)
        for hook in hooks
    )
    assert limiter in app.extensions["limiter"]
