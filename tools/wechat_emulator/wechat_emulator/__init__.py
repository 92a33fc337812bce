"""A faithful stand-in for WeChat's servers, for tests, local runs and load tests.

One Flask app serves the mini-program API (api.weixin.qq.com), the WeCom API used by
Alertmanager (qyapi.weixin.qq.com), WeChat Pay API v3 (api.mch.weixin.qq.com) and the control
API under /__emulator/, all over one in-memory `State`. Each API family is a blueprint whose
views go through `interception` (scripted faults, call recording).
"""

from __future__ import annotations

from flask import Flask, current_app
from flask.json.provider import DefaultJSONProvider
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from . import control, interception, miniprogram, pay, paycontrol, wecom
from .config import EmulatorConfig, Settings
from .state import State

__all__ = ["EmulatorConfig", "Settings", "create_app"]


class _JSONProvider(DefaultJSONProvider):
    """UTF-8 JSON in the order written, as WeChat answers (Flask's default escapes and sorts)."""

    ensure_ascii = False
    sort_keys = False


def _http_error(error: HTTPException) -> ResponseReturnValue:
    return {"error": error.description}, error.code or 500


def _unexpected_error(error: Exception) -> ResponseReturnValue:
    """Keep the promise of JSON answers even for a bug; the traceback goes to the log."""
    current_app.logger.exception("unhandled error", exc_info=error)
    return {"error": f"internal error: {type(error).__name__}"}, 500


def create_app(config: EmulatorConfig | None = None) -> Flask:
    """The emulator app; `config` defaults to EmulatorConfig.from_env()."""
    app = Flask(__name__)
    app.json = _JSONProvider(app)
    app.extensions["wechat_emulator"] = State(config or EmulatorConfig.from_env())
    interception.install(app)
    for blueprint in (miniprogram.bp, wecom.bp, pay.bp, control.bp, paycontrol.bp):
        app.register_blueprint(blueprint)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app
