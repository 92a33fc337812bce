"""Constraints the database itself enforces on MariaDB, whatever the application code does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError, OperationalError

from minishop.extensions import db
from minishop.models import Order, Product, User
from minishop.models.types import utcnow


def make_order(user: User, key: str, order_no: str) -> Order:
    return Order(
        order_no=order_no,
        user_id=user.id,
        total_fen=100,
        idempotency_key=key,
        request_hash="0" * 64,
        expires_at=utcnow() + timedelta(minutes=15),
    )


@pytest.fixture()
def user(app: Any) -> User:
    user = User(openid="o-test-openid", nickname="茶客 🍵")
    db.session.add(user)
    db.session.commit()
    return user


def test_stock_can_never_go_negative(catalog: dict[str, Any]) -> None:
    product_id = catalog["puer"].id
    with pytest.raises((IntegrityError, OperationalError), match="stock_not_negative"):
        db.session.execute(update(Product).where(Product.id == product_id).values(stock=-1))
    db.session.rollback()
    assert db.session.get(Product, product_id).stock == 5


def test_idempotency_key_is_unique_per_user(user: User) -> None:
    db.session.add(make_order(user, "key-1", "N1"))
    db.session.commit()
    db.session.add(make_order(user, "key-1", "N2"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()
    other = User(openid="o-other")
    db.session.add(other)
    db.session.flush()
    db.session.add(make_order(other, "key-1", "N3"))
    db.session.commit()


def test_openid_is_unique(user: User) -> None:
    db.session.add(User(openid=user.openid))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_emoji_and_utc_microseconds_round_trip(user: User) -> None:
    stamp = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    order = make_order(user, "key-t", "N-T")
    order.paid_at = stamp
    db.session.add(order)
    db.session.commit()
    db.session.expire_all()
    assert db.session.get(User, user.id).nickname == "茶客 🍵"
    assert db.session.get(Order, order.id).paid_at == stamp


def test_naive_datetimes_are_refused(user: User) -> None:
    order = make_order(user, "key-n", "N-N")
    order.paid_at = datetime(2026, 1, 1)
    db.session.add(order)
    with pytest.raises(Exception, match="naive datetime"):
        db.session.commit()
    db.session.rollback()
