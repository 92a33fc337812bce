"""Request correlation, JSON logs, Prometheus metrics and traces (docs/logging.md).

`init_app` wires them in the order they depend on each other; create_app calls it before any
other module registers request hooks (access.py says why the order matters).
"""

from __future__ import annotations

from flask import Flask
from sqlalchemy.engine import Engine

from minishop.config import Settings
from minishop.observability import access, logs, metrics, request_id, tracing


def init_app(
    app: Flask, settings: Settings, version: str, *, engines: list[Engine], store: object
) -> None:
    """`engines` (the database's) and `store` (the key-value store) get metrics and spans."""
    service, env = settings.SERVICE_NAME, settings.APP_ENV
    logs.configure_logging(settings.LOG_LEVEL, service=service, version=version, env=env)
    access.init_app(app, with_metrics=settings.METRICS_ENABLED)
    request_id.init_app(app)
    tracing.init_app(
        app,
        settings.TRACING_BACKEND,
        service=service,
        version=version,
        env=env,
        engines=engines,
        store=store,
    )
    if settings.METRICS_ENABLED:
        metrics.init_app(
            app,
            engines,
            serve_on_app=settings.METRICS_PORT is None,
            worker_memory_limit=settings.WORKER_MEMORY_LIMIT_BYTES,
        )
