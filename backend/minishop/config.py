"""Settings read from the environment, one class per deployment kind.

`APP_ENV` picks the class (development, testing, production). Every field can be overridden by an
environment variable of the same name; pydantic-settings parses and type-checks the values, so a
typo such as `DB_POOL_SIZE=ten` stops the process at start-up instead of failing later.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from minishop import redis_client, sqlite_limits

AppEnv = Literal["development", "testing", "production"]
TracingBackend = Literal["otel", "skywalking", "none"]

# Flask-SQLAlchemy resolves a relative SQLite path inside the app's instance folder.
DEFAULT_SQLITE_URL = "sqlite:///minishop.db"

# Development defaults. Production refuses to start while any secret still holds one of these.
DEV_SECRETS = {
    "SECRET_KEY": "dev-only-secret-key-never-use-in-production",
    "JWT_SECRET": "dev-only-jwt-secret-never-use-in-production",
    "DATA_ENCRYPTION_KEY": "dev-only-data-encryption-key-never-use-in-prod",
    "WECHAT_SECRET": "dev-only-wechat-app-secret-never-use-in-prod",
    "FILE_URL_SECRET": "dev-only-file-url-secret-never-use-in-production",
    # WeChat Pay's APIv3 key is exactly 32 characters (the emulator's default).
    "WECHATPAY_APIV3_KEY": "devOnlyApiV3KeyNeverUseInProd000",
}
MIN_SECRET_BYTES = 32


LIMITER_PREFIX = "RATELIMIT_"


def flask_limiter_passthrough(environ: Mapping[str, str]) -> dict[str, Any]:
    """Every RATELIMIT_* variable Settings does not declare, for Flask-Limiter as it is.

    A value is parsed as JSON when it parses (`true`, `5`, `{"health_check_interval": 5}`) and
    kept as a string otherwise, as Flask's `from_prefixed_env` does.
    """
    passed: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(LIMITER_PREFIX) or name in Settings.model_fields:
            continue
        try:
            passed[name] = json.loads(raw)
        except ValueError:
            passed[name] = raw
    return passed


class ConfigError(SystemExit):
    """The configuration is unusable. A SystemExit so the CLI and gunicorn stop with one line."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"minishop: refusing to start: {reason}")


def secret_problems(name: str, value: str) -> list[str]:
    """Why `value` may not be a production secret: unset, a development default, or short."""
    if not value:
        return [f"{name} is not set"]
    if value in DEV_SECRETS.values():
        return [f"{name} is a development default"]
    if len(value.encode()) < MIN_SECRET_BYTES:
        return [f"{name} is shorter than {MIN_SECRET_BYTES} bytes"]
    return []


class Settings(BaseSettings):
    """Fields shared by every environment; subclasses change defaults, never names."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    APP_ENV: ClassVar[AppEnv] = "development"
    DEBUG: bool = False
    TESTING: bool = False
    SERVICE_NAME: str = "minishop"
    LOG_LEVEL: str = "INFO"

    SECRET_KEY: str = DEV_SECRETS["SECRET_KEY"]
    JWT_SECRET: str = DEV_SECRETS["JWT_SECRET"]
    DATA_ENCRYPTION_KEY: str = DEV_SECRETS["DATA_ENCRYPTION_KEY"]
    # Earlier JWT secrets, comma-separated: tokens they signed still verify during a rotation.
    JWT_PREVIOUS_SECRETS: str = ""
    JWT_ISSUER: str = "minishop"
    JWT_AUDIENCE: str = "minishop-miniprogram"
    ACCESS_TOKEN_TTL_SECONDS: int = 15 * 60
    REFRESH_TOKEN_TTL_SECONDS: int = 30 * 24 * 3600
    # A spent refresh token presented again within this many seconds answers the same new pair
    # (a client retrying after a timeout); later, it revokes the whole session.
    REFRESH_TOKEN_REUSE_GRACE_SECONDS: int = Field(10, ge=0, le=60)

    DATABASE_URL: str | None = None
    DB_POOL_SIZE: int = 10
    DB_MAX_OVERFLOW: int = 10
    DB_POOL_TIMEOUT_SECONDS: float = 5.0
    DB_POOL_RECYCLE_SECONDS: int = 1800
    # A pooled connection idle longer than this is pinged before use (minishop/db_pool.py);
    # 0 pings on every checkout.
    DB_POOL_PING_IDLE_SECONDS: float = Field(1.0, ge=0)
    DB_CONNECT_TIMEOUT_SECONDS: int = 3

    # redis://, rediss:// (TLS) or redis+sentinel://host:port,host:port/<master>[/<db>]
    # (minishop/redis_client.py); it also stores the rate limits unless RATELIMIT_STORAGE_URI.
    REDIS_URL: str | None = None
    REDIS_TIMEOUT_SECONDS: float = 1.0
    # Without REDIS_URL, the cache, nonces, locks and rate-limit counters live in this SQLite file,
    # which every worker shares (relative paths are in the instance folder).
    EMBEDDED_STORE_PATH: str = "minishop-kv.db"
    # Catalog cache (minishop/cache.py). TTLs get up to CACHE_TTL_JITTER (a fraction) of random
    # extra time; an expired entry is still served for CACHE_STALE_SECONDS while one request
    # rebuilds it.
    CACHE_ENABLED: bool = True
    CACHE_PRODUCT_TTL_SECONDS: int = 300
    CACHE_CATEGORIES_TTL_SECONDS: int = 600
    CACHE_NEGATIVE_TTL_SECONDS: int = 30
    CACHE_TTL_JITTER: float = 0.2
    CACHE_STALE_SECONDS: int = 60
    # The first level in each worker (bodies ready to send): an entry lives at most
    # CACHE_LOCAL_TTL_SECONDS, the bound on how long another worker may show a change late
    # (0: off); all of them together take at most CACHE_LOCAL_MAX_BYTES.
    CACHE_LOCAL_TTL_SECONDS: float = Field(1.0, ge=0, le=60)
    CACHE_LOCAL_MAX_BYTES: int = Field(8 * 1024 * 1024, ge=0)
    # Product list pages without `q`, pages 1..CACHE_LIST_MAX_PAGE (0: none): they show stock,
    # which orders change constantly, so they live briefly; admin edits forget them at once.
    CACHE_LIST_TTL_SECONDS: float = Field(2.0, gt=0)
    CACHE_LIST_MAX_PAGE: int = Field(5, ge=0)

    MAX_CONTENT_LENGTH: int = 1024 * 1024

    # Unpaid orders are cancelled (stock returned) this long after they were placed.
    ORDER_EXPIRE_MINUTES: int = 15

    WECHAT_APPID: str = "wx0000000000000000"
    WECHAT_SECRET: str = DEV_SECRETS["WECHAT_SECRET"]
    WECHAT_API_BASE: str = "https://api.weixin.qq.com"
    WECHATPAY_API_BASE: str = "https://api.mch.weixin.qq.com"
    # One WeChat call, retries included, never takes longer than WECHAT_TIMEOUT_SECONDS.
    WECHAT_CONNECT_TIMEOUT_SECONDS: float = 1.0
    WECHAT_TIMEOUT_SECONDS: float = 3.0
    WECHAT_TOKEN_REFRESH_AHEAD_SECONDS: int = 300
    # Which mini-program build a subscribe message opens: developer, trial or formal.
    WECHAT_MINIPROGRAM_STATE: Literal["developer", "trial", "formal"] = "formal"

    # --- WeChat Pay v3 (docs/payments.md). The defaults are the emulator's merchant. ---
    WECHATPAY_MCHID: str = Field("1900000001", pattern=r"^[0-9]{1,32}$")
    WECHATPAY_MERCHANT_SERIAL: str = Field(
        "DE7E000000000000000000000000000000000D01", pattern=r"^[0-9A-F]{8,64}$"
    )
    # PEM files (mounted secrets). Without the private key, payments answer 50300.
    WECHATPAY_PRIVATE_KEY_FILE: str | None = None
    # WeChat Pay's platform public key and its id: public-key mode. Unset: certificate mode
    # (platform certificates fetched from /v3/certificates and decrypted with the APIv3 key).
    WECHATPAY_PUBLIC_KEY_ID: str | None = None
    WECHATPAY_PUBLIC_KEY_FILE: str | None = None
    WECHATPAY_APIV3_KEY: str = Field(
        DEV_SECRETS["WECHATPAY_APIV3_KEY"], min_length=32, max_length=32, pattern=r"^[ -~]+$"
    )
    # Where WeChat Pay posts notifications: this service's /api/v1/payments/wechat/notify.
    WECHATPAY_NOTIFY_URL: str = "http://127.0.0.1:8000/api/v1/payments/wechat/notify"
    # `payments reconcile` asks WeChat about unpaid orders whose prepay is at least this old.
    PAYMENT_RECONCILE_AFTER_MINUTES: int = Field(5, ge=1)
    # Subscribe-message template sent to the buyer when a payment succeeds; empty: none.
    WECHAT_PAID_TEMPLATE_ID: str = ""
    # --- end of WeChat Pay ---

    # --- Edge security (issue 5): signatures, rate limits, CORS and headers, uploads. ---
    # Request signatures on the endpoints marked @signed (docs/request-signature.md).
    SIGNATURE_REQUIRED: bool = True
    # Client IP = the address this many reverse proxies in front of us report (werkzeug ProxyFix).
    TRUSTED_PROXY_COUNT: int = Field(0, ge=0)
    # Rate limits (minishop/security/rate_limits.py). Storage: RATELIMIT_STORAGE_URI, else
    # REDIS_URL, else memory://. RATELIMIT_SWALLOW_ERRORS: fail open (logged) when it is down.
    # Declared here: what our code reads and where our default differs from Flask-Limiter's.
    # Every other RATELIMIT_* variable passes through to Flask-Limiter as it is (see its docs).
    RATELIMIT_STORAGE_URI: str | None = None
    # batched-fixed-window (minishop/security/batched_limits.py): no round trip per request for
    # limits of 100+ per window, within a stated tolerance; smaller limits stay exact.
    RATELIMIT_STRATEGY: Literal[
        "batched-fixed-window", "moving-window", "fixed-window", "sliding-window-counter"
    ] = "batched-fixed-window"
    RATELIMIT_DEFAULT: str = "300 per minute"
    RATELIMIT_KEY_PREFIX: str = "minishop"
    RATELIMIT_SWALLOW_ERRORS: bool = True
    # X-RateLimit-* on every response costs a Redis round trip each; 429s always carry them.
    RATELIMIT_HEADERS_ENABLED: bool = False
    RATELIMIT_PASSTHROUGH: dict[str, Any] = Field(
        default_factory=lambda: flask_limiter_passthrough(os.environ), exclude=True
    )
    # Named limits (minishop/security/rate_limits.py): login per IP, orders and uploads per user.
    RATELIMIT_LOGIN: str = "10 per minute"
    RATELIMIT_ORDERS: str = "30 per minute"
    RATELIMIT_UPLOADS: str = "20 per minute"
    # Browser origins allowed by CORS, comma-separated (the mini-program needs none).
    CORS_ORIGINS: str = ""
    # Strict-Transport-Security max-age; 0 sends none (only production turns it on).
    HSTS_MAX_AGE_SECONDS: int = Field(0, ge=0)
    # Uploads: the request body cap, the pixel cap for images, where files live (default:
    # instance/uploads) and the expiring signed download URLs <CDN_BASE_URL>/files/<key>?...
    UPLOAD_MAX_BYTES: int = Field(5 * 1024 * 1024, gt=0)
    UPLOAD_MAX_PIXELS: int = Field(40_000_000, gt=0)
    UPLOAD_DIR: str | None = None
    CDN_BASE_URL: str = "http://127.0.0.1:8000"
    FILE_URL_SECRET: str = DEV_SECRETS["FILE_URL_SECRET"]
    FILE_URL_TTL_SECONDS: int = Field(3600, gt=0)
    # --- end of edge security ---

    # --- Observability (issue 6): logs, metrics, traces; docs/logging.md. ---
    # Off: no HTTP/database metrics hooks and no /metrics at all (the benchmark's baseline).
    METRICS_ENABLED: bool = True
    # Set: /metrics is served on this port by gunicorn's master and not on the public app.
    METRICS_PORT: int | None = Field(None, ge=1, le=65535)
    METRICS_HOST: str = "127.0.0.1"
    # The memory one gunicorn worker may use (minishop_worker_memory_limit_bytes, for the
    # WorkerMemoryHigh alert). Unset: the container's cgroup limit shared by the server's processes.
    WORKER_MEMORY_LIMIT_BYTES: int | None = Field(None, gt=0)
    # otel: OTLP/HTTP, configured by the standard OTEL_* variables; skywalking: the agent posts
    # to SW_AGENT_COLLECTOR_BACKEND_SERVICES; none: no spans (ids are still made and logged).
    TRACING_BACKEND: TracingBackend = "none"
    # --- end of observability ---

    SECRET_FIELDS: ClassVar[tuple[str, ...]] = tuple(DEV_SECRETS)

    def previous_jwt_secrets(self) -> list[str]:
        return [s.strip() for s in self.JWT_PREVIOUS_SECRETS.split(",") if s.strip()]

    def database_url(self) -> str:
        return self.DATABASE_URL or DEFAULT_SQLITE_URL

    def problems(self) -> list[str]:
        """Reasons this configuration must not serve traffic; empty when it may."""
        return []

    @field_validator("REDIS_URL", "RATELIMIT_STORAGE_URI")
    @classmethod
    def _sentinel_url_parses(cls, value: str | None) -> str | None:
        """A misspelt Sentinel URL stops the start with its reason, not the first request."""
        if value and value.startswith(f"{redis_client.SENTINEL_SCHEME}://"):
            redis_client.SentinelUrl.parse(value)
        return value

    def embedded_store_path(self, instance_path: str) -> str:
        return os.path.join(instance_path, self.EMBEDDED_STORE_PATH)

    def flask_config(self, instance_path: str) -> dict[str, Any]:
        """The mapping handed to `app.config`, including the keys extensions read."""
        url = self.database_url()
        engine_options: dict[str, Any] = {}
        if not url.startswith("sqlite"):
            engine_options |= {
                "pool_size": self.DB_POOL_SIZE,
                "max_overflow": self.DB_MAX_OVERFLOW,
                "pool_timeout": self.DB_POOL_TIMEOUT_SECONDS,
                "pool_recycle": self.DB_POOL_RECYCLE_SECONDS,
                "connect_args": {"connect_timeout": self.DB_CONNECT_TIMEOUT_SECONDS},
            }
        return (
            self.RATELIMIT_PASSTHROUGH
            | self.model_dump()
            | {
                "APP_ENV": self.APP_ENV,
                "SQLALCHEMY_DATABASE_URI": url,
                "SQLALCHEMY_ENGINE_OPTIONS": engine_options,
                "EMBEDDED_STORE_PATH": self.embedded_store_path(instance_path),
            }
            | self.rate_limit_storage(instance_path)
        )

    def rate_limit_storage(self, instance_path: str) -> dict[str, Any]:
        """Flask-Limiter's storage: Redis gets our socket timeouts, so a dead one fails fast.

        Without Redis, the embedded store's SQLite file, so every worker counts the same hits.
        """
        uri = (
            self.RATELIMIT_STORAGE_URI
            or self.REDIS_URL
            or sqlite_limits.storage_uri(self.embedded_store_path(instance_path))
        )
        options = dict(self.RATELIMIT_PASSTHROUGH.get("RATELIMIT_STORAGE_OPTIONS") or {})
        if redis_client.is_redis_url(uri):
            uri, ours = redis_client.limiter_storage(uri, self.REDIS_TIMEOUT_SECONDS)
            options = ours | options
        return {"RATELIMIT_STORAGE_URI": uri, "RATELIMIT_STORAGE_OPTIONS": options}


class DevelopmentSettings(Settings):
    APP_ENV: ClassVar[AppEnv] = "development"
    # Off so the README's curl walk-through works by hand; tests and production sign.
    SIGNATURE_REQUIRED: bool = False


class TestingSettings(Settings):
    APP_ENV: ClassVar[AppEnv] = "testing"
    TESTING: bool = True
    # Out of the way of tests that log in many times; the rate-limit tests set tight ones.
    RATELIMIT_DEFAULT: str = "100000 per minute"
    RATELIMIT_LOGIN: str = "100000 per minute"
    RATELIMIT_ORDERS: str = "100000 per minute"
    RATELIMIT_UPLOADS: str = "100000 per minute"


class ProductionSettings(Settings):
    APP_ENV: ClassVar[AppEnv] = "production"
    HSTS_MAX_AGE_SECONDS: int = Field(31_536_000, ge=0)
    # Observability: /metrics only on its own port, reachable by Prometheus in the pod network.
    METRICS_PORT: int | None = Field(9100, ge=1, le=65535)
    METRICS_HOST: str = "0.0.0.0"  # noqa: S104  (the scrape port, never the public one)
    TRACING_BACKEND: TracingBackend = "otel"

    def problems(self) -> list[str]:
        found = []
        for name in self.SECRET_FIELDS:
            found.extend(secret_problems(name, getattr(self, name)))
        for position, previous in enumerate(self.previous_jwt_secrets(), start=1):
            found.extend(secret_problems(f"JWT_PREVIOUS_SECRETS entry {position}", previous))
        if not self.SIGNATURE_REQUIRED:
            found.append("SIGNATURE_REQUIRED is off (request signatures protect every write)")
        if self.DEBUG:
            found.append("DEBUG is on")
        if not self.DATABASE_URL:
            found.append("DATABASE_URL is not set")
        if not self.REDIS_URL:
            found.append("REDIS_URL is not set")
        if self.METRICS_ENABLED and self.METRICS_PORT is None:
            found.append("METRICS_PORT is not set (/metrics must not be on the public port)")
        if not self.WECHATPAY_PRIVATE_KEY_FILE:
            found.append("WECHATPAY_PRIVATE_KEY_FILE is not set (payments cannot be taken)")
        if not self.WECHATPAY_NOTIFY_URL.startswith("https://"):
            found.append("WECHATPAY_NOTIFY_URL is not https (WeChat Pay requires it)")
        return found


SETTINGS_BY_ENV: dict[str, type[Settings]] = {
    "development": DevelopmentSettings,
    "testing": TestingSettings,
    "production": ProductionSettings,
}


def load_settings(app_env: str | None = None) -> Settings:
    """Build the settings for APP_ENV from the environment, or raise ConfigError with one line."""
    name = app_env or os.environ.get("APP_ENV", "development")
    settings_class = SETTINGS_BY_ENV.get(name)
    if settings_class is None:
        raise ConfigError(f"APP_ENV={name!r} is not one of {', '.join(SETTINGS_BY_ENV)}")
    try:
        settings = settings_class()
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, err["loc"])) for err in exc.errors())
        raise ConfigError(f"invalid value for {fields}") from None
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    problems = settings.problems()
    if problems:
        raise ConfigError(f"{settings.APP_ENV} configuration: {'; '.join(problems)}")
