"""cProfile of cached catalog reads through the real Flask stack (test client, no network).

A SQLite database in a temporary directory with 60 products, the cache on Redis (REDIS_URL,
as in the tests and production) or, without it, on the embedded store. Each path is read once
to fill the cache, then REQUESTS times under the profiler, which counts CPU time (process time:
waiting for Redis is not the worker's CPU). Printed: CPU µs per request of the parts of a
catalog read (cumulative, so they overlap), then the top entries by own and cumulative time.

    cd backend && REDIS_URL=redis://127.0.0.1:6379/0 \
        ../.venv/bin/python benchmarks/profile_catalog.py
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path

from flask_migrate import upgrade

from minishop import create_app
from minishop.config import TestingSettings
from minishop.extensions import db
from minishop.models import Category, Product

MIGRATIONS_DIR = str(Path(__file__).resolve().parent.parent / "migrations")
# What a catalog read is made of: (a part of the file name, the function), cumulative time.
PARTS = {
    "whole request (Flask wsgi_app)": ("flask/app.py", "wsgi_app"),
    "before_request hooks (rate limit, guards, ids)": ("flask/app.py", "preprocess_request"),
    "rate limiter": ("minishop/security/rate_limits.py", "check"),
    "flask-openapi3 request validation": ("flask_openapi3/request.py", "_validate_request"),
    "  of which model_json_schema": ("pydantic/main.py", "model_json_schema"),
    "view function (catalog handler)": ("minishop/api/products.py", "get_product"),
    "view function (list handler)": ("minishop/api/products.py", "list_products"),
    "cache lookup (ReadThroughCache.get)": ("minishop/cache.py", "get"),
    "Redis GET of the entry": ("minishop/kvstore.py", "get"),
    "json.loads": ("json/__init__.py", "loads"),
    "pydantic model_validate": ("pydantic/main.py", "model_validate"),
    "pydantic model_dump": ("pydantic/main.py", "model_dump"),
    "jsonify": ("flask/json/__init__.py", "jsonify"),
    "database query (Session.execute)": ("sqlalchemy/orm/session.py", "execute"),
    "after_request hooks": ("flask/app.py", "process_response"),
}


def build_app(folder: str) -> object:
    settings = TestingSettings(
        DATABASE_URL=f"sqlite:///{folder}/profile.db",
        REDIS_URL=os.environ.get("REDIS_URL") or None,
        EMBEDDED_STORE_PATH=f"{folder}/kv.db",
        LOG_LEVEL="WARNING",
    )
    app = create_app(settings)
    with app.app_context():
        upgrade(directory=MIGRATIONS_DIR)
        category = Category(name="Tea", sort=1)
        db.session.add(category)
        db.session.flush()
        for number in range(60):
            db.session.add(
                Product(category_id=category.id, title=f"Tea {number}", price_fen=100, stock=50)
            )
        db.session.commit()
    return app


def profile(app: object, path: str, requests: int, top: int) -> None:
    client = app.test_client()  # type: ignore[attr-defined]
    assert client.get(path).status_code == 200  # fills the cache
    profiler = cProfile.Profile(time.process_time)
    started = time.process_time()
    profiler.enable()
    for _ in range(requests):
        client.get(path)
    profiler.disable()
    elapsed = time.process_time() - started
    print(f"\n## GET {path}: {elapsed / requests * 1e6:.0f} CPU µs per request (under cProfile)\n")
    found = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    print("| part | CPU µs per request |\n| --- | --- |")
    for label, (file_part, function) in PARTS.items():
        seconds = sum(
            row[3]
            for (file, _, name), row in found.items()
            if name == function and file_part in file
        )
        if seconds:
            print(f"| {label} | {seconds / requests * 1e6:.0f} |")
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats(top)
        lines = [line for line in out.getvalue().splitlines() if line.strip()]
        start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
        print(f"by {order}:\n```")
        print("\n".join(lines[start : start + top + 1]))
        print("```")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        app = build_app(folder)
        for path in ("/api/v1/products/1", "/api/v1/products"):
            profile(app, path, args.requests, args.top)


if __name__ == "__main__":
    main()
