from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from minishop import config, create_app
from tests.test_errors import assert_envelope

CLOSED_PORT_URL = "mysql+pymysql://root@127.0.0.1:1/nothing"


def test_healthz_answers(client: FlaskClient) -> None:
    body = assert_envelope(client.get("/healthz"), 200, 0)
    assert body["data"] == {"status": "alive"}


def test_readyz_with_mariadb_and_redis_up(client: FlaskClient) -> None:
    body = assert_envelope(client.get("/readyz"), 200, 0)
    assert body["data"] == {"database": "ok", "cache": "ok"}


def test_readyz_names_each_unreachable_dependency(database_url: str, redis_url: str) -> None:
    cases: list[tuple[dict[str, Any], str, dict[str, str]]] = [
        (
            {"DATABASE_URL": CLOSED_PORT_URL, "REDIS_URL": redis_url},
            "not ready: database",
            {"database": "unavailable", "cache": "ok"},
        ),
        (
            {"DATABASE_URL": database_url, "REDIS_URL": "redis://127.0.0.1:1/0"},
            "not ready: cache",
            {"database": "ok", "cache": "unavailable"},
        ),
    ]
    for overrides, message, data in cases:
        app = create_app(config.TestingSettings(DB_CONNECT_TIMEOUT_SECONDS=1, **overrides))
        body = assert_envelope(app.test_client().get("/readyz"), 503, 50300)
        assert body["message"] == message
        assert body["data"] == data
