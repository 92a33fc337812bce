"""Every shared object of the app, declared here and built from the settings in `init_app`.

Flask's own extensions (`db`, `migrate`) are module-level instances, as in Flask's docs. Our
objects depend on the settings (a Redis URL, a secret, a timeout), so each one is a `Slot`:
`init_app` builds it once per app and keeps it in `app.extensions`, and `slot.get()` returns the
current app's. Two apps in one process (the tests make many) therefore never share a store,
a limiter or a key. The domain layer never calls `get()`: the HTTP handlers and CLI commands
hand it what it needs.
"""

from __future__ import annotations

import os
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

from flask import Flask, current_app
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import Session

from minishop import db_pool
from minishop.cache import CachePolicy, ReadThroughCache
from minishop.config import ConfigError, Settings
from minishop.domain.auth import AuthKeys
from minishop.domain.catalog import CatalogCache
from minishop.domain.payment_context import BuyerMessages, PaymentContext
from minishop.errors import AppError, ErrorCode
from minishop.kvstore import KeyValueStore, store_for
from minishop.models.base import Base
from minishop.security import rate_limits
from minishop.security.crypto import FieldCipher
from minishop.security.tokens import TokenSigner
from minishop.security.uploads import FileUrls
from minishop.storage import BlobStore, LocalBlobStore
from minishop.wechat.access_token import AccessTokenManager
from minishop.wechat.client import WeChatHttp, fetch_stable_token
from minishop.wechat.miniprogram import MiniProgramClient
from minishop.wechat.pay import PayCredentials, WeChatPayClient

T = TypeVar("T")


class Slot(Generic[T]):
    """One shared object per app, found through `current_app`."""

    def __init__(self, name: str) -> None:
        self.name = f"minishop.{name}"

    def set(self, app: Flask, value: T) -> None:
        app.extensions[self.name] = value

    def get(self) -> T:
        return self.of(current_app)

    def of(self, app: Flask) -> T:
        value: T = app.extensions[self.name]
        return value


db = SQLAlchemy(model_class=Base)
migrate = Migrate()

settings: Slot[Settings] = Slot("settings")
kv_store: Slot[KeyValueStore] = Slot("kv_store")
catalog_cache: Slot[CatalogCache] = Slot("catalog_cache")
limiter: Slot[Limiter] = Slot("limiter")
blob_store: Slot[BlobStore] = Slot("blob_store")
file_urls: Slot[FileUrls] = Slot("file_urls")
wechat: Slot[MiniProgramClient] = Slot("wechat")
token_signer: Slot[TokenSigner] = Slot("token_signer")
field_cipher: Slot[FieldCipher] = Slot("field_cipher")
auth_keys: Slot[AuthKeys] = Slot("auth_keys")
# None when WeChat Pay is not configured (no WECHATPAY_PRIVATE_KEY_FILE): payments answer 50300.
payments: Slot[PaymentContext | None] = Slot("payments")


def session() -> Session:
    """The current request's (or CLI command's) database session, for the domain layer."""
    return db.session()


def payment_context() -> PaymentContext:
    """The payment rules' dependencies, or 50300 when this deployment takes no payments."""
    context = payments.get()
    if context is None:
        raise AppError(ErrorCode.DEPENDENCY_UNAVAILABLE, "WeChat Pay is not configured")
    return context


def _payment_context(
    config: Settings, catalog: CatalogCache, miniprogram: MiniProgramClient
) -> PaymentContext | None:
    if not config.WECHATPAY_PRIVATE_KEY_FILE:
        return None
    try:
        credentials = PayCredentials.load(
            mchid=config.WECHATPAY_MCHID,
            appid=config.WECHAT_APPID,
            merchant_serial=config.WECHATPAY_MERCHANT_SERIAL,
            private_key_file=config.WECHATPAY_PRIVATE_KEY_FILE,
            apiv3_key=config.WECHATPAY_APIV3_KEY,
            public_key_id=config.WECHATPAY_PUBLIC_KEY_ID,
            public_key_file=config.WECHATPAY_PUBLIC_KEY_FILE,
        )
    except ValueError as exc:
        raise ConfigError(f"WeChat Pay configuration: {exc}") from None
    client = WeChatPayClient(
        config.WECHATPAY_API_BASE,
        credentials,
        connect_timeout=config.WECHAT_CONNECT_TIMEOUT_SECONDS,
        total_timeout=config.WECHAT_TIMEOUT_SECONDS,
    )
    return PaymentContext(
        pay=client,
        catalog=catalog,
        notify_url=config.WECHATPAY_NOTIFY_URL,
        messages=BuyerMessages(miniprogram, config.WECHAT_PAID_TEMPLATE_ID),
    )


def _wechat_client(config: Settings, store: KeyValueStore) -> MiniProgramClient:
    http = WeChatHttp(
        config.WECHAT_API_BASE,
        connect_timeout=config.WECHAT_CONNECT_TIMEOUT_SECONDS,
        total_timeout=config.WECHAT_TIMEOUT_SECONDS,
    )
    appid, secret = config.WECHAT_APPID, config.WECHAT_SECRET
    tokens = AccessTokenManager(
        store,
        appid,
        partial(fetch_stable_token, http, appid, secret),
        refresh_ahead_seconds=config.WECHAT_TOKEN_REFRESH_AHEAD_SECONDS,
        wait_seconds=config.WECHAT_TIMEOUT_SECONDS,
    )
    return MiniProgramClient(http, appid, secret, tokens, config.WECHAT_MINIPROGRAM_STATE)


def init_app(app: Flask, config: Settings) -> None:
    """Build every shared object for `app` from `config`."""
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            db_pool.ping_when_idle(engine, config.DB_POOL_PING_IDLE_SECONDS)
    migrate.init_app(app, db)
    settings.set(app, config)

    store = store_for(
        config.REDIS_URL,
        config.REDIS_TIMEOUT_SECONDS,
        key_prefix=f"{config.SERVICE_NAME}:",
        embedded_path=config.embedded_store_path(app.instance_path),
    )
    kv_store.set(app, store)
    catalog = CatalogCache(
        ReadThroughCache(store, CachePolicy.from_settings(config)),
        product_ttl=config.CACHE_PRODUCT_TTL_SECONDS,
        categories_ttl=config.CACHE_CATEGORIES_TTL_SECONDS,
        list_ttl=config.CACHE_LIST_TTL_SECONDS,
        list_max_page=config.CACHE_LIST_MAX_PAGE,
    )
    catalog_cache.set(app, catalog)
    limiter.set(app, rate_limits.build_limiter())
    blob_store.set(
        app, LocalBlobStore(Path(config.UPLOAD_DIR or os.path.join(app.instance_path, "uploads")))
    )
    file_urls.set(
        app, FileUrls(config.FILE_URL_SECRET, config.FILE_URL_TTL_SECONDS, config.CDN_BASE_URL)
    )
    miniprogram = _wechat_client(config, store)
    wechat.set(app, miniprogram)
    payments.set(app, _payment_context(config, catalog, miniprogram))

    signer = TokenSigner(
        config.JWT_SECRET,
        config.previous_jwt_secrets(),
        issuer=config.JWT_ISSUER,
        audience=config.JWT_AUDIENCE,
        ttl=timedelta(seconds=config.ACCESS_TOKEN_TTL_SECONDS),
    )
    cipher = FieldCipher(config.DATA_ENCRYPTION_KEY)
    token_signer.set(app, signer)
    field_cipher.set(app, cipher)
    auth_keys.set(
        app,
        AuthKeys(
            signer,
            cipher,
            refresh_ttl=timedelta(seconds=config.REFRESH_TOKEN_TTL_SECONDS),
            refresh_reuse_grace=timedelta(seconds=config.REFRESH_TOKEN_REUSE_GRACE_SECONDS),
        ),
    )
