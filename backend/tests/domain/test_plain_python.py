"""The domain layer is plain Python: no Flask, no app context; what it needs is passed in."""

from __future__ import annotations

import ast
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import has_app_context
from sqlalchemy import create_engine, delete, select
from sqlalchemy.orm import Session

from minishop.cache import CachePolicy, ReadThroughCache
from minishop.domain import auth, catalog, orders
from minishop.domain.catalog import CatalogCache
from minishop.kvstore import store_for
from minishop.models import Category, Order, OrderStatus, Product
from minishop.models.base import Base
from minishop.models.types import utcnow

DOMAIN_DIR = Path(__file__).resolve().parents[2] / "minishop" / "domain"
FORBIDDEN = ("flask", "flask_", "minishop.extensions", "minishop.api")


def imported_modules(source: Path) -> set[str]:
    tree = ast.parse(source.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def as_json(document: dict[str, Any]) -> bytes:
    """A job's own rendering of a document (the API's is its response schema)."""
    return json.dumps(document).encode()


def test_no_domain_module_imports_flask_or_the_app() -> None:
    offenders = {
        f"{source.name}: {name}"
        for source in DOMAIN_DIR.glob("*.py")
        for name in imported_modules(source)
        if name.startswith(FORBIDDEN)
    }
    assert not offenders


def test_a_job_places_expires_and_reads_orders_without_an_app(
    database_url: str, redis_url: str
) -> None:
    """What a CLI job or a worker does: its own engine, session and cache; no Flask at all."""
    assert not has_app_context()
    engine = create_engine(database_url)
    policy = CachePolicy(enabled=True, negative_ttl=30, jitter=0.0, stale_seconds=0)
    store = store_for(redis_url, 1.0, key_prefix="plain-python-test:", embedded_path="")
    shop_cache = CatalogCache(ReadThroughCache(store, policy), product_ttl=60, categories_ttl=60)
    cleanup(engine)
    try:
        with Session(engine) as session:
            user = auth.find_or_create_user(session, "o-plain-python-job", None)
            category = Category(name="Plain python", sort=0)
            session.add(category)
            session.flush()
            product = Product(category_id=category.id, title="Job tea", price_fen=100, stock=5)
            session.add(product)
            session.commit()

            assert (
                catalog.get_product_on_sale(session, shop_cache, product.id, as_json)["stock"] == 5
            )
            placed = orders.place_order(
                session,
                shop_cache,
                user,
                [orders.OrderLine(product.id, 2)],
                remark="",
                idempotency_key="plain-python-1",
                expire_after=timedelta(minutes=-1),
            )
            assert placed.created
            assert (
                catalog.get_product_on_sale(session, shop_cache, product.id, as_json)["stock"] == 3
            )

            assert orders.expire_orders(session, shop_cache, now=utcnow()) >= 1
            order = session.scalars(
                select(Order).where(Order.order_no == placed.order.order_no)
            ).one()
            session.refresh(order)
            assert order.status == OrderStatus.CANCELLED
            assert (
                catalog.get_product_on_sale(session, shop_cache, product.id, as_json)["stock"] == 5
            )
            assert not has_app_context()
    finally:
        cleanup(engine)
        engine.dispose()


def cleanup(engine: Any) -> None:
    """Empty every table, as the `app` fixture does (it cannot be used: it opens an app context)."""
    with Session(engine) as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
        session.commit()
