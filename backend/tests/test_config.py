from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minishop import create_app
from minishop.config import DEV_SECRETS, ConfigError, ProductionSettings, load_settings

BACKEND_DIR = Path(__file__).resolve().parent.parent
GOOD_SECRET = "x" * 40
GOOD_PRODUCTION_ENV = {
    "APP_ENV": "production",
    "SECRET_KEY": GOOD_SECRET,
    "JWT_SECRET": GOOD_SECRET,
    "DATA_ENCRYPTION_KEY": GOOD_SECRET,
    "WECHAT_SECRET": GOOD_SECRET,
    "FILE_URL_SECRET": GOOD_SECRET,
    "DATABASE_URL": "mysql+pymysql://u:p@db.invalid/minishop",
    "REDIS_URL": "redis://cache.invalid:6379/0",
    "WECHATPAY_APIV3_KEY": "k" * 32,
    "WECHATPAY_PRIVATE_KEY_FILE": "/run/secrets/wechatpay/apiclient_key.pem",
    "WECHATPAY_NOTIFY_URL": "https://shop.example.com/api/v1/payments/wechat/notify",
}


@pytest.fixture()
def production_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name in ProductionSettings.model_fields:
            monkeypatch.delenv(name)
    for name, value in GOOD_PRODUCTION_ENV.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_production_accepts_a_complete_configuration(production_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert isinstance(settings, ProductionSettings)
    config = settings.flask_config("/srv/instance")
    assert config["REDIS_URL"] == GOOD_PRODUCTION_ENV["REDIS_URL"]
    assert config["RATELIMIT_STORAGE_URI"] == GOOD_PRODUCTION_ENV["REDIS_URL"]


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("SECRET_KEY", None, "SECRET_KEY is a development default"),
        ("JWT_SECRET", "", "JWT_SECRET is not set"),
        ("DATA_ENCRYPTION_KEY", DEV_SECRETS["DATA_ENCRYPTION_KEY"], "is a development default"),
        ("JWT_SECRET", DEV_SECRETS["SECRET_KEY"], "JWT_SECRET is a development default"),
        ("SIGNATURE_REQUIRED", "false", "SIGNATURE_REQUIRED is off"),
        (
            "JWT_PREVIOUS_SECRETS",
            f"{'p' * 40}, short",
            "JWT_PREVIOUS_SECRETS entry 2 is shorter than 32 bytes",
        ),
        (
            "JWT_PREVIOUS_SECRETS",
            DEV_SECRETS["JWT_SECRET"],
            "JWT_PREVIOUS_SECRETS entry 1 is a development default",
        ),
        ("WECHAT_SECRET", "short-secret", "WECHAT_SECRET is shorter than 32 bytes"),
        ("DEBUG", "true", "DEBUG is on"),
        ("DATABASE_URL", None, "DATABASE_URL is not set"),
        ("REDIS_URL", None, "REDIS_URL is not set"),
        ("WECHATPAY_APIV3_KEY", None, "WECHATPAY_APIV3_KEY is a development default"),
        ("WECHATPAY_PRIVATE_KEY_FILE", None, "WECHATPAY_PRIVATE_KEY_FILE is not set"),
        ("WECHATPAY_NOTIFY_URL", "http://shop.example.com/n", "WECHATPAY_NOTIFY_URL is not https"),
    ],
)
def test_production_refuses_unsafe_settings(
    production_env: pytest.MonkeyPatch, name: str, value: str | None, reason: str
) -> None:
    if value is None:
        production_env.delenv(name)
    else:
        production_env.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        create_app()
    message = str(raised.value.code)
    assert reason in message
    assert message.startswith("minishop: refusing to start: production configuration:")
    assert "\n" not in message


def test_every_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "testing")
    monkeypatch.setenv("DB_POOL_SIZE", "3")
    monkeypatch.setenv("WECHAT_API_BASE", "http://127.0.0.1:8001")
    settings = load_settings()
    assert settings.DB_POOL_SIZE == 3
    assert settings.WECHAT_API_BASE == "http://127.0.0.1:8001"
    assert settings.TESTING is True


def test_a_malformed_value_stops_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_POOL_SIZE", "ten")
    with pytest.raises(ConfigError, match=r"invalid value for DB_POOL_SIZE$"):
        load_settings("development")


def test_an_unknown_app_env_is_refused() -> None:
    with pytest.raises(ConfigError, match="APP_ENV='staging' is not one of"):
        load_settings("staging")


def test_development_defaults_to_sqlite_and_no_redis(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("EMBEDDED_STORE_PATH", raising=False)
    config = load_settings("development").flask_config("/srv/instance")
    assert config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert config["REDIS_URL"] is None
    # Every worker shares one file for the store and the rate limits, in the instance folder.
    assert config["EMBEDDED_STORE_PATH"] == "/srv/instance/minishop-kv.db"
    assert config["RATELIMIT_STORAGE_URI"] == "minishop-sqlite:///srv/instance/minishop-kv.db"


def _run_refusing(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ProductionSettings.model_fields}
    env |= GOOD_PRODUCTION_ENV | {"JWT_SECRET": "too-short"}
    return subprocess.run(
        command, cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_flask_cli_refuses_to_start_with_one_line() -> None:
    result = _run_refusing([sys.executable, "-m", "flask", "--app", "minishop", "routes"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "minishop: refusing to start: production configuration: JWT_SECRET is shorter than 32 bytes"
    ]


def test_gunicorn_refuses_to_start_with_one_line() -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = _run_refusing(
        [str(gunicorn), "-c", "gunicorn.conf.py", "--bind", "127.0.0.1:0", "minishop:create_app()"]
    )
    assert result.returncode != 0
    assert (
        "minishop: refusing to start: production configuration: JWT_SECRET is shorter than 32 bytes"
    ) in result.stderr.strip().splitlines()
