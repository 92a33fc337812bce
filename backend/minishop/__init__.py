"""MiniShop: the Flask backend of a WeChat mini-program shop. `create_app` is the factory."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SessionInterface
from flask_openapi3 import Info, OpenAPI

from minishop import api, cli, errors, extensions, observability
from minishop.config import Settings, check_settings, load_settings
from minishop.security import headers

__version__ = "0.1.0"


class NoCookieSession(SessionInterface):
    """The API keeps no cookie session (callers send bearer tokens): Flask's default would
    build an itsdangerous signer on every request to read a cookie nobody sets."""

    def open_session(self, app: Flask, request: Request) -> None:
        return None  # Flask then uses its empty, unsaved NullSession


def create_app(settings: Settings | None = None) -> OpenAPI:
    """Build the app for `settings` (default: read from the environment for APP_ENV)."""
    if settings is None:
        settings = load_settings()
    else:
        check_settings(settings)

    app = OpenAPI(
        __name__,
        static_folder=None,
        info=Info(title="MiniShop API", version=__version__),
        doc_ui=False,
        validation_error_status=400,
        validation_error_callback=errors.raise_validation_error,
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
    )
    app.config.from_mapping(settings.flask_config(app.instance_path))
    app.session_interface = NoCookieSession()
    app.json.sort_keys = False  # type: ignore[attr-defined]

    extensions.init_app(app, settings)

    with app.app_context():
        engines = list(extensions.db.engines.values())
    observability.init_app(
        app, settings, __version__, engines=engines, store=extensions.kv_store.of(app)
    )
    headers.init_app(app)
    errors.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    headers.trust_proxies(app)
    return app
