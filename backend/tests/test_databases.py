"""The embedded SQLite file keeps the promises MariaDB keeps: same answers, same integrity."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, create_engine, func, select, text, update

from minishop import config, create_app
from minishop.db_pool import ping_when_idle
from minishop.extensions import db
from minishop.models import Category, Product, Role, User
from tests.conftest import embedded_settings
from tests.signing import send_signed
from tests.test_errors import assert_envelope
from wechat_emulator.testing import EmulatorControl


@pytest.fixture(params=["mariadb", "sqlite"])
def shop(
    request: pytest.FixtureRequest, settings: config.TestingSettings, tmp_path: Path
) -> Iterator[Any]:
    """An app with empty tables, in its app context: MariaDB + Redis, or the embedded default."""
    if request.param == "mariadb":
        yield request.getfixturevalue("app")
        return
    app = create_app(embedded_settings(settings, tmp_path))
    app.teardown_request(lambda exc: db.session.rollback())
    with app.app_context():
        yield app
        db.session.rollback()
        db.engine.dispose()


def log_in_admin(client: FlaskClient, emulator: EmulatorControl) -> dict[str, Any]:
    login = client.post("/api/v1/auth/login", json={"code": emulator.new_login_code().code})
    data: dict[str, Any] = assert_envelope(login, 200, 0)["data"]
    db.session.execute(update(User).where(User.id == data["user"]["id"]).values(role=Role.ADMIN))
    db.session.commit()
    return data


def orphans() -> int:
    return int(
        db.session.scalar(
            select(func.count())
            .select_from(Product)
            .where(Product.category_id.not_in(select(Category.id)))
        )
        or 0
    )


def test_a_category_with_products_cannot_be_deleted_on_either_database(
    shop: Any, emulator: EmulatorControl
) -> None:
    client = shop.test_client()
    admin = log_in_admin(client, emulator)
    tea = Category(name="Tea", sort=1)
    db.session.add(tea)
    db.session.flush()
    db.session.add(Product(category_id=tea.id, title="Longjing", price_fen=16800, stock=10))
    db.session.commit()

    refused = send_signed(client, admin, "DELETE", f"/api/v1/admin/categories/{tea.id}")

    assert_envelope(refused, 409, 40900)
    db.session.rollback()
    assert db.session.get(Category, tea.id) is not None
    assert orphans() == 0


def test_sqlite_connections_enforce_foreign_keys_and_wait_for_writers(tmp_path: Path) -> None:
    app = create_app(config.TestingSettings(DATABASE_URL=f"sqlite:///{tmp_path / 'm.db'}"))
    with app.app_context():
        pragmas = {
            name: db.session.execute(text(f"PRAGMA {name}")).scalar()
            for name in ("foreign_keys", "journal_mode", "busy_timeout")
        }
        db.engine.dispose()
    assert pragmas == {"foreign_keys": 1, "journal_mode": "wal", "busy_timeout": 5000}


def test_a_pooled_connection_is_pinged_only_after_idling(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In use again at once: no ping (no round trip per request). Idle past the bound: pinged,
    and a connection the server killed meanwhile is replaced instead of failing the request."""
    engine = create_engine(db.engine.url, pool_size=1, max_overflow=0)
    ping_when_idle(engine, 0.3)
    pings: list[object] = []
    real_ping = engine.dialect.do_ping

    def counted_ping(connection: Any) -> bool:
        pings.append(connection)
        return real_ping(connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)

    def connection_id() -> int:
        connection: Connection
        with engine.connect() as connection:
            return int(connection.scalar(text("SELECT CONNECTION_ID()")) or 0)

    first = connection_id()
    assert [connection_id() for _ in range(5)] == [first] * 5
    assert pings == []
    db.session.execute(text(f"KILL {first}"))
    time.sleep(0.5)
    replaced = connection_id()
    assert replaced != first
    assert len(pings) == 1
    engine.dispose()
