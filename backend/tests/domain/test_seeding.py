from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from minishop.domain.seeding import DEMO_CATALOG
from minishop.extensions import db
from minishop.models import Category, Product


def test_seed_command_is_idempotent(app: Any) -> None:
    runner = app.test_cli_runner()
    expected = len(DEMO_CATALOG) + sum(len(items) for items in DEMO_CATALOG.values())
    first = runner.invoke(args=["seed"])
    assert first.exit_code == 0, first.output
    assert f"{expected} rows created" in first.output
    second = runner.invoke(args=["seed"])
    assert "0 rows created" in second.output
    assert db.session.scalar(select(func.count()).select_from(Category)) == len(DEMO_CATALOG)
    assert db.session.scalar(select(func.count()).select_from(Product)) == expected - len(
        DEMO_CATALOG
    )
