"""Test fixtures: real MariaDB and Redis servers, started once per session on free loopback ports.

pytest-mysql and pytest-redis start the servers from the installed binaries in temporary
directories (found on PATH or in /usr/sbin). When a binary is missing the tests that need it
are skipped with the apt command to run, except on a CI runner, where they fail (tests/ci.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import port_for
import pymysql
import pytest
import requests
from flask.testing import FlaskClient
from flask_migrate import upgrade
from pytest_mysql import factories as mysql_factories
from pytest_mysql.executor import MySQLExecutor
from pytest_redis import factories as redis_factories
from pytest_redis.executor import RedisExecutor
from redis import Redis
from sqlalchemy import delete, update

from minishop import create_app, extensions
from minishop.config import TestingSettings
from minishop.extensions import db
from minishop.models import Category, Product, ProductStatus, Role, User
from tests.ci import binary, require_binaries
from wechat_emulator.testing import EmulatorControl, EmulatorProcess

BACKEND_DIR = Path(__file__).resolve().parent.parent
MIGRATIONS_DIR = str(BACKEND_DIR / "migrations")

pytest_plugins = ("pytester",)  # tests/test_ci.py runs pytest in a subprocess

MARIADB_INSTALL_DB = BACKEND_DIR.parent / "tools" / "mariadb-install-db.sh"


def mariadb_process_fixture() -> Any:
    """A pytest-mysql process fixture on our MariaDB binaries. The session's is `mariadb_proc`;
    a module that stops its database makes one of its own, so stopping it harms no one."""
    return mysql_factories.mysql_proc(
        port=None,
        mysqld_exec=Path(binary("mariadbd")),
        mysqld_safe=Path(binary("mariadbd-safe")),
        admin_executable=binary("mariadb-admin"),
        install_db=str(MARIADB_INSTALL_DB),
    )


mariadb_proc = mariadb_process_fixture()
redis_server_proc = redis_factories.redis_proc(executable=binary("redis-server"), port=None)
# A second MariaDB for the tests that stop one under load (outages): the session's stays up.
mariadb_to_stop = mariadb_process_fixture()


@pytest.fixture()
def doomed_mariadb(request: pytest.FixtureRequest) -> MySQLExecutor:
    """A MariaDB the test may stop; each such test makes its own database on it."""
    require_binaries("mariadbd", "mariadb-install-db", "mariadbd-safe", "mariadb-admin")
    server: MySQLExecutor = request.getfixturevalue("mariadb_to_stop")
    return server


def create_database(server: MySQLExecutor, name: str) -> str:
    """An empty utf8mb4 database on the test server; returns its SQLAlchemy URL."""
    connection = pymysql.connect(host=server.host, port=server.port, user=server.user)
    with connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return f"mysql+pymysql://{server.user}@{server.host}:{server.port}/{name}?charset=utf8mb4"


def migrate_database(url: str) -> str:
    """Build the schema at `url` by running the migrations (not create_all); returns `url`."""
    migrate_app = create_app(TestingSettings(DATABASE_URL=url))
    with migrate_app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        db.engine.dispose()
    return url


def migrated_sqlite_url(directory: Path) -> str:
    """The embedded default's database: a migrated SQLite file in `directory`."""
    return migrate_database(f"sqlite:///{directory / 'minishop.db'}")


def embedded_settings(settings: TestingSettings, folder: Path) -> TestingSettings:
    """`settings` in the embedded default (no Redis): a migrated SQLite database and the store
    every worker shares, both in `folder` (never in the source tree's instance folder)."""
    return settings.model_copy(
        update={
            "DATABASE_URL": migrated_sqlite_url(folder),
            "REDIS_URL": None,
            "EMBEDDED_STORE_PATH": str(folder / "minishop-kv.db"),
        }
    )


@pytest.fixture(scope="session")
def mariadb(request: pytest.FixtureRequest) -> MySQLExecutor:
    require_binaries("mariadbd", "mariadb-install-db", "mariadbd-safe", "mariadb-admin")
    server: MySQLExecutor = request.getfixturevalue("mariadb_proc")
    return server


@pytest.fixture(scope="session")
def redis_server(request: pytest.FixtureRequest) -> RedisExecutor:
    require_binaries("redis-server")
    server: RedisExecutor = request.getfixturevalue("redis_server_proc")
    return server


@pytest.fixture(scope="session")
def database_url(mariadb: MySQLExecutor) -> str:
    """The schema the app tests use, built by running the migrations (not create_all)."""
    return migrate_database(create_database(mariadb, "minishop_app"))


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisExecutor) -> str:
    return f"redis://{redis_server.host}:{redis_server.port}/0"


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[EmulatorProcess]:
    """The WeChat emulator (tools/wechat_emulator) as a real HTTP server on loopback."""
    with EmulatorProcess() as process:
        yield process


@pytest.fixture()
def emulator(emulator_process: EmulatorProcess) -> EmulatorControl:
    """The emulator's control API, reset to a clean state for this test."""
    control = emulator_process.control
    control.reset()
    return control


@pytest.fixture(scope="session")
def wechatpay_settings(
    emulator_process: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The emulator's merchant as our WeChat Pay settings (its generated keys in PEM files)."""
    keys = emulator_process.control.pay_keys()
    return keys.merchant_settings(tmp_path_factory.mktemp("wechatpay")) | {
        "WECHATPAY_API_BASE": emulator_process.base_url
    }


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    redis_url: str,
    emulator_process: EmulatorProcess,
    wechatpay_settings: dict[str, str],
) -> TestingSettings:
    return TestingSettings(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        WECHAT_API_BASE=emulator_process.base_url,
        **wechatpay_settings,
    )


@pytest.fixture(scope="session")
def sqlite_settings(
    settings: TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> TestingSettings:
    """The embedded default: SQLite (a migrated file in a temporary folder) and no Redis."""
    return embedded_settings(settings, tmp_path_factory.mktemp("sqlite"))


@pytest.fixture(scope="session")
def session_app(settings: TestingSettings) -> Iterator[Any]:
    app = create_app(settings)
    # Tests hold one app context open around many requests, so Flask-SQLAlchemy's per-context
    # cleanup never runs between them; end each request's transaction as production would.
    app.teardown_request(lambda exc: db.session.rollback())
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture()
def app(session_app: Any, redis_url: str) -> Iterator[Any]:
    """The app with empty tables and an empty Redis, inside an app context."""
    Redis.from_url(redis_url).flushall()
    extensions.catalog_cache.of(session_app).cache.local.clear()  # the first level, with Redis
    with session_app.app_context():
        for table in reversed(db.metadata.sorted_tables):
            db.session.execute(delete(table))
        db.session.commit()
        yield session_app
        db.session.rollback()


@pytest.fixture()
def client(app: Any) -> FlaskClient:
    client: FlaskClient = app.test_client()
    return client


ClientWith = Callable[..., FlaskClient]


@pytest.fixture()
def upload_dir(tmp_path: Path) -> Path:
    return tmp_path / "uploads"


@pytest.fixture()
def client_with(settings: TestingSettings, app: Any, upload_dir: Path) -> ClientWith:
    """A test client of a fresh app whose settings differ by `overrides` (uploads go to tmp)."""

    def make(**overrides: Any) -> FlaskClient:
        update = {"UPLOAD_DIR": str(upload_dir)} | overrides
        client: FlaskClient = create_app(settings.model_copy(update=update)).test_client()
        return client

    return make


@pytest.fixture()
def catalog(app: Any) -> dict[str, Any]:
    """Two categories, three on-sale products and one off-sale product."""
    tea, snacks = Category(name="Tea", sort=1), Category(name="Snacks", sort=2)
    db.session.add_all([tea, snacks])
    db.session.flush()
    products = {
        "longjing": Product(
            category_id=tea.id, title="Longjing 100% spring", price_fen=16800, stock=10
        ),
        "puer": Product(category_id=tea.id, title="Pu'er cake", price_fen=22800, stock=5),
        "jerky": Product(category_id=snacks.id, title="Beef jerky", price_fen=3900, stock=100),
        "retired": Product(
            category_id=snacks.id,
            title="Retired snack",
            price_fen=100,
            stock=1,
            status=ProductStatus.OFF_SALE,
        ),
    }
    for product in products.values():
        db.session.add(product)
        db.session.flush()  # one at a time: distinct created_at, defined "newest first"
    db.session.commit()
    return {"tea": tea, "snacks": snacks, **products}


WECHATPAY_FIELDS = (
    "WECHAT_APPID",
    "WECHATPAY_API_BASE",
    "WECHATPAY_MCHID",
    "WECHATPAY_MERCHANT_SERIAL",
    "WECHATPAY_PRIVATE_KEY_FILE",
    "WECHATPAY_PUBLIC_KEY_ID",
    "WECHATPAY_PUBLIC_KEY_FILE",
    "WECHATPAY_APIV3_KEY",
)


@contextmanager
def gunicorn_server(settings: TestingSettings, log_dir: Path, **extra_env: str) -> Iterator[str]:
    """gunicorn (4 workers) serving the app on a free loopback port; `extra_env` adds settings.

    Without REDIS_URL in `settings`, the embedded store's file goes to `log_dir` unless `settings`
    names an absolute path: a test server never shares the instance folder's.
    """
    port = port_for.select_random()
    env = os.environ | {
        "APP_ENV": "testing",
        "DATABASE_URL": settings.database_url(),
        "REDIS_URL": settings.REDIS_URL or "",
        "EMBEDDED_STORE_PATH": settings.embedded_store_path(str(log_dir)),
        "WECHAT_API_BASE": settings.WECHAT_API_BASE,
        **{name: str(getattr(settings, name) or "") for name in WECHATPAY_FIELDS},
        # WeChat Pay notifies this server unless the test says otherwise.
        "WECHATPAY_NOTIFY_URL": f"http://127.0.0.1:{port}/api/v1/payments/wechat/notify",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "4",
        **extra_env,
    }
    gunicorn = Path(sys.executable).with_name("gunicorn")
    log_path = log_dir / "gunicorn.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [str(gunicorn), "-c", "gunicorn.conf.py", "minishop:create_app()"],
        cwd=BACKEND_DIR,
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"{base_url}/healthz", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or a worker still booting
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"gunicorn did not start: {log_path.read_text()}")
        time.sleep(0.1)
    try:
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log_file.close()


@pytest.fixture(scope="session")
def live_server(
    settings: TestingSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """gunicorn serving the app on a free loopback port, against the session's MariaDB and Redis."""
    with gunicorn_server(settings, tmp_path_factory.mktemp("gunicorn")) as base_url:
        yield base_url


@pytest.fixture()
def log_in(client: FlaskClient, emulator: EmulatorControl) -> Callable[..., dict[str, Any]]:
    """Log a WeChat user in through the emulator; returns the login `data` plus `openid`."""

    def log_in_as(openid: str | None = None) -> dict[str, Any]:
        login_code = emulator.new_login_code(openid=openid)
        response = client.post("/api/v1/auth/login", json={"code": login_code.code})
        assert response.status_code == 200, response.get_json()
        data: dict[str, Any] = response.get_json()["data"]
        return data | {"openid": login_code.openid}

    return log_in_as


def bearer(data: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {data['access_token']}"}


@pytest.fixture()
def admin(log_in: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A logged-in user with the admin role."""
    data = log_in()
    db.session.execute(update(User).where(User.id == data["user"]["id"]).values(role=Role.ADMIN))
    db.session.commit()
    return data


@pytest.fixture()
def stocked_product(app: Any) -> Product:
    category = Category(name="Stock", sort=0)
    db.session.add(category)
    db.session.flush()
    product = Product(category_id=category.id, title="Limited tea", price_fen=1000, stock=50)
    db.session.add(product)
    db.session.commit()
    return product
