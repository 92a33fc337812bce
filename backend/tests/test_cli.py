from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from minishop.extensions import db
from minishop.models import Order, User
from minishop.models.types import utcnow
from tests.api.test_orders import place
from tests.shipping import mark_paid, ship


def test_grant_admin_creates_or_promotes_the_user(app: Any) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert result.exit_code == 0, result.output
    assert "is now admin" in result.output
    user = db.session.scalars(select(User).where(User.openid == "o-operator-openid")).one()
    assert user.role == "admin"

    again = runner.invoke(args=["grant-admin", "o-operator-openid"])
    assert again.exit_code == 0
    assert db.session.scalar(select(db.func.count()).select_from(User)) == 1


def test_complete_shipped_completes_orders_shipped_more_than_n_days_ago(
    app: Any, client: FlaskClient, log_in: Callable[..., dict[str, Any]], catalog: dict[str, Any]
) -> None:
    buyer = log_in()
    line = {"items": [{"product_id": catalog["jerky"].id, "quantity": 1}]}
    old, recent, paid, pending = (
        place(client, buyer, line, key=f"complete-cli-{n}").get_json()["data"]["order_no"]
        for n in range(4)
    )
    ship(old, shipped_at=utcnow() - timedelta(days=8))
    ship(recent, shipped_at=utcnow() - timedelta(days=2))
    mark_paid(paid)

    runner = app.test_cli_runner()
    result = runner.invoke(args=["orders", "complete-shipped", "--after-days", "7"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "orders complete-shipped: 1 orders completed"
    db.session.rollback()
    found = dict(db.session.execute(select(Order.order_no, Order.status)).all())
    assert found == {old: "completed", recent: "shipped", paid: "paid", pending: "pending_payment"}
    again = runner.invoke(args=["orders", "complete-shipped", "--after-days", "7"])
    assert again.output.splitlines()[-1] == "orders complete-shipped: 0 orders completed"


@pytest.mark.parametrize("args", [["--after-days", "0"], ["--after-days", "-3"], []])
def test_complete_shipped_needs_at_least_one_day(app: Any, args: list[str]) -> None:
    result = app.test_cli_runner().invoke(args=["orders", "complete-shipped", *args])
    assert result.exit_code == 2
    assert "--after-days" in result.output
