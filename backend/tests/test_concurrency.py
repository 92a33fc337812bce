"""Orders under real concurrency: many requests at once through gunicorn (4 workers) on MariaDB."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select, text, update
from sqlalchemy.orm import Session

from minishop import config
from minishop.domain import stock
from minishop.domain.completion import complete_shipped_orders
from minishop.domain.orders import order_list_query
from minishop.extensions import db
from minishop.models import (
    Category,
    Order,
    OrderItem,
    OrderStatus,
    Product,
    ProductStockSegment,
    Role,
    User,
)
from tests.conftest import BACKEND_DIR
from tests.shipping import insert_order, ship
from tests.signing import json_bytes, signed_headers
from wechat_emulator.testing import EmulatorControl

POOL = 50
RACING_ORDERS = 160  # more than one batch of the completion job


def log_in_users(live_server: str, emulator: EmulatorControl, count: int) -> list[dict[str, Any]]:
    def log_in(_: int) -> dict[str, Any]:
        code = emulator.new_login_code().code
        response = requests.post(
            f"{live_server}/api/v1/auth/login", json={"code": code}, timeout=30
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(log_in, range(count)))


def post_signed(
    live_server: str, user: dict[str, Any], path: str, payload: Any = None, **headers: str
) -> requests.Response:
    body = b"" if payload is None else json_bytes(payload)
    return requests.post(
        f"{live_server}{path}",
        data=body,
        headers=signed_headers(user, "POST", path, body)
        | {"Content-Type": "application/json"}
        | headers,
        timeout=60,
    )


def post_order(
    live_server: str, user: dict[str, Any], items: list[dict[str, int]], key: str
) -> requests.Response:
    return post_signed(
        live_server, user, "/api/v1/orders", {"items": items}, **{"Idempotency-Key": key}
    )


def run_concurrently(calls: list[Callable[[], requests.Response]]) -> list[requests.Response]:
    with ThreadPoolExecutor(POOL) as pool:
        return list(pool.map(lambda call: call(), calls))


def make_products(stocks: list[int]) -> list[int]:
    category = Category(name=f"Race {random.random()}", sort=0)
    db.session.add(category)
    db.session.flush()
    products = [
        Product(category_id=category.id, title=f"Race item {i}", price_fen=100 * (i + 1), stock=s)
        for i, s in enumerate(stocks)
    ]
    db.session.add_all(products)
    db.session.commit()
    return [p.id for p in products]


def split(product_id: int, segments: int) -> None:
    """What the admin's PATCH does: spread the product's stock over `segments` rows."""
    db.session.execute(
        update(Product).where(Product.id == product_id).values(stock_segments=segments)
    )
    stock.spread(db.session, product_id, total=None)
    db.session.commit()


def total_stock_and_sold(product_id: int) -> tuple[int, int]:
    total = fresh(select(Product.total_stock).where(Product.id == product_id))
    sold = db.session.scalar(
        select(func.coalesce(func.sum(OrderItem.quantity), 0)).where(
            OrderItem.product_id == product_id
        )
    )
    return total, sold


def fresh(statement: Any) -> Any:
    db.session.rollback()  # a new snapshot: see what the gunicorn workers committed
    return db.session.scalar(statement)


def test_no_oversell_with_200_concurrent_orders_from_20_users(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    (product_id,) = make_products([50])
    users = log_in_users(live_server, emulator, 20)
    calls = [
        (
            lambda user=user, n=n: post_order(
                live_server, user, [{"product_id": product_id, "quantity": 1}], f"oversell-{n:04d}"
            )
        )
        for user in users
        for n in range(10)
    ]
    responses = run_concurrently(calls)

    outcomes = sorted((r.status_code, r.json()["code"]) for r in responses)
    assert outcomes.count((201, 0)) == 50
    assert outcomes.count((409, 40901)) == 150
    assert fresh(select(Product.stock).where(Product.id == product_id)) == 0
    assert fresh(select(func.count()).select_from(Order)) == 50
    assert (
        fresh(select(func.sum(OrderItem.quantity)).where(OrderItem.product_id == product_id)) == 50
    )


def test_no_oversell_on_a_split_product_with_200_concurrent_buyers(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    (product_id,) = make_products([150])
    split(product_id, 8)
    users = log_in_users(live_server, emulator, 20)
    calls = [
        (
            lambda user=user, n=n: post_order(
                live_server, user, [{"product_id": product_id, "quantity": 1}], f"split-{n:04d}"
            )
        )
        for user in users
        for n in range(10)
    ]
    outcomes = sorted((r.status_code, r.json()["code"]) for r in run_concurrently(calls))

    assert outcomes.count((201, 0)) == 150, outcomes
    assert outcomes.count((409, 40901)) == 50, outcomes
    assert total_stock_and_sold(product_id) == (0, 150)
    segments = db.session.scalars(
        select(ProductStockSegment.stock).where(ProductStockSegment.product_id == product_id)
    ).all()
    assert segments == [0] * 8


def test_a_split_product_sells_what_only_its_segments_together_hold(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    """16 over 8 segments is 2 a segment: every order of 3 needs the careful path, and exactly
    five of them fit."""
    (product_id,) = make_products([16])
    split(product_id, 8)
    users = log_in_users(live_server, emulator, 10)
    calls = [
        (
            lambda n=n: post_order(
                live_server,
                users[n % 10],
                [{"product_id": product_id, "quantity": 3}],
                f"across-{n:04d}",
            )
        )
        for n in range(40)
    ]
    outcomes = sorted((r.status_code, r.json()["code"]) for r in run_concurrently(calls))

    assert outcomes.count((201, 0)) == 5, outcomes
    assert outcomes.count((409, 40901)) == 35, outcomes
    assert total_stock_and_sold(product_id) == (1, 15)


def test_re_splitting_while_orders_run_loses_no_unit(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    (product_id,) = make_products([300])
    users = log_in_users(live_server, emulator, 21)
    admin = users.pop()
    db.session.execute(update(User).where(User.id == admin["user"]["id"]).values(role=Role.ADMIN))
    db.session.commit()
    go = threading.Event()
    answers: list[int] = []

    def re_split() -> None:
        go.wait()
        version = 1
        for segments in [8, 1, 16, 3, 64, 1, 8, 2]:
            path = f"/api/v1/admin/products/{product_id}"
            body = json_bytes({"version": version, "stock_segments": segments})
            answer = requests.patch(
                f"{live_server}{path}",
                data=body,
                headers=signed_headers(admin, "PATCH", path, body)
                | {"Content-Type": "application/json"},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            version = answer.json()["data"]["version"]
            answers.append(answer.json()["data"]["stock_segments"])

    def buy(n: int) -> requests.Response:
        go.wait()
        line = [{"product_id": product_id, "quantity": 1}]
        return post_order(live_server, users[n % 20], line, f"re-split-{n:04d}")

    with ThreadPoolExecutor(POOL) as pool:
        admin_done = pool.submit(re_split)
        bought = [pool.submit(buy, n) for n in range(200)]
        go.set()
        admin_done.result()
        responses = [done.result() for done in bought]

    assert answers == [8, 1, 16, 3, 64, 1, 8, 2]
    assert [r.status_code for r in responses] == [201] * 200
    assert total_stock_and_sold(product_id) == (100, 200)
    assert fresh(select(Product.stock_segments).where(Product.id == product_id)) == 2


def test_multi_line_orders_racing_on_overlapping_products_stay_consistent(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    product_ids = make_products([60, 60, 60, 60])
    users = log_in_users(live_server, emulator, 10)
    rng = random.Random(7)
    calls = []
    for n in range(120):
        chosen = rng.sample(product_ids, rng.randint(2, 4))  # lines in random order
        items = [{"product_id": pid, "quantity": rng.randint(1, 3)} for pid in chosen]
        calls.append(
            lambda user=users[n % 10], items=items, n=n: post_order(
                live_server, user, items, f"multi-line-{n:04d}"
            )
        )
    responses = run_concurrently(calls)

    assert {r.status_code for r in responses} <= {201, 409}
    assert sum(r.status_code == 201 for r in responses) > 0
    db.session.rollback()
    for product_id in product_ids:
        sold = db.session.scalar(
            select(func.coalesce(func.sum(OrderItem.quantity), 0)).where(
                OrderItem.product_id == product_id
            )
        )
        stock = db.session.scalar(select(Product.stock).where(Product.id == product_id))
        assert stock + sold == 60
        assert stock >= 0
    for order in db.session.scalars(select(Order)):
        assert order.total_fen == sum(item.subtotal_fen for item in order.items)


def test_the_same_idempotency_key_ten_times_at_once_makes_one_order(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    (product_id,) = make_products([100])
    (user,) = log_in_users(live_server, emulator, 1)
    items = [{"product_id": product_id, "quantity": 2}]
    responses = run_concurrently(
        [lambda: post_order(live_server, user, items, "same-key-at-once")] * 10
    )
    assert sorted(r.status_code for r in responses) == [200] * 9 + [201]
    assert len({r.json()["data"]["order_no"] for r in responses}) == 1
    assert fresh(select(func.count()).select_from(Order)) == 1
    assert fresh(select(Product.stock).where(Product.id == product_id)) == 98


def run_expiry_job() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "minishop", "orders", "expire"],
        cwd=BACKEND_DIR,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("segments", [1, 8])
def test_cancels_racing_two_expiry_jobs_return_stock_exactly_once(
    segments: int,
    live_server: str,
    emulator: EmulatorControl,
    app: Any,
    settings: config.TestingSettings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (product_id,) = make_products([50])
    split(product_id, segments)
    users = log_in_users(live_server, emulator, 5)
    placed = run_concurrently(
        [
            (
                lambda n=n: post_order(
                    live_server,
                    users[n % 5],
                    [{"product_id": product_id, "quantity": 1}],
                    f"race-{n:03d}",
                )
            )
            for n in range(30)
        ]
    )
    assert [r.status_code for r in placed] == [201] * 30
    db.session.execute(update(Order).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.session.commit()

    for name in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "WECHAT_API_BASE"):
        value = {
            "APP_ENV": "testing",
            "DATABASE_URL": settings.database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "WECHAT_API_BASE": settings.WECHAT_API_BASE,
        }[name]
        monkeypatch.setenv(name, value or "")
    jobs = [run_expiry_job(), run_expiry_job()]
    cancels = run_concurrently(
        [
            (
                lambda r=r, n=n: post_signed(
                    live_server,
                    users[n % 5],
                    f"/api/v1/orders/{r.json()['data']['order_no']}/cancel",
                )
            )
            for n, r in enumerate(placed)
        ]
    )
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs

    expired_by_jobs = sum(int(out.split("orders expire: ")[1].split()[0]) for out in outputs)
    cancelled_by_users = sum(r.status_code == 200 for r in cancels)
    assert {r.status_code for r in cancels} <= {200, 409}
    assert expired_by_jobs + cancelled_by_users == 30
    assert fresh(select(Product.total_stock).where(Product.id == product_id)) == 50
    assert (
        fresh(select(func.count()).select_from(Order).where(Order.status == OrderStatus.CANCELLED))
        == 30
    )


def place_shipped_order(live_server: str, user: dict[str, Any]) -> str:
    """An order placed through gunicorn, then paid and shipped in the database."""
    (product_id,) = make_products([1])
    line = [{"product_id": product_id, "quantity": 1}]
    placed = post_order(live_server, user, line, "to-be-shipped")
    assert placed.status_code == 201, placed.text
    order_no: str = placed.json()["data"]["order_no"]
    ship(order_no)
    return order_no


def test_eight_confirms_of_one_order_at_once_complete_it_once(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    (user,) = log_in_users(live_server, emulator, 1)
    order_no = place_shipped_order(live_server, user)
    version = fresh(select(Order.version).where(Order.order_no == order_no))
    path = f"/api/v1/orders/{order_no}/confirm"
    responses = run_concurrently([lambda: post_signed(live_server, user, path)] * 8)

    outcomes = sorted((r.status_code, r.json()["code"]) for r in responses)
    assert outcomes.count((200, 0)) == 1, outcomes
    assert set(outcomes) - {(200, 0)} <= {(409, 40902), (409, 40900)}, outcomes
    (winner,) = [r.json()["data"] for r in responses if r.status_code == 200]
    assert winner["status"] == "completed"
    db.session.rollback()
    order = db.session.scalars(select(Order).where(Order.order_no == order_no)).one()
    assert (order.status, order.version) == (OrderStatus.COMPLETED, version + 1)
    assert order.completed_at == datetime.fromisoformat(winner["completed_at"])


def test_buyers_confirming_while_two_completion_jobs_run_complete_each_order_once(
    live_server: str, emulator: EmulatorControl, app: Any, settings: config.TestingSettings
) -> None:
    """Two runs of the job, each with its own connection as two cron processes would have
    (in threads here, so that they start together with the buyers' confirms), and buyers
    confirming through gunicorn, all released at once."""
    users = log_in_users(live_server, emulator, 5)
    shipped_at = datetime.now(UTC) - timedelta(days=8)
    owners = {}
    for n in range(RACING_ORDERS):
        user = users[n % 5]
        key = f"race-{n:03d}"
        owners[insert_order(user["user"]["id"], key, OrderStatus.SHIPPED, shipped_at)] = user
    engine = create_engine(settings.database_url())
    go = threading.Event()

    def job() -> int:
        go.wait()
        with Session(engine) as session:
            return complete_shipped_orders(session, shipped_before=shipped_at + timedelta(days=1))

    def confirm(order_no: str) -> requests.Response:
        go.wait()
        return post_signed(live_server, owners[order_no], f"/api/v1/orders/{order_no}/confirm")

    try:
        with ThreadPoolExecutor(POOL) as pool:
            # The jobs' threads start among the first confirms' (the pool runs tasks in order).
            confirms = [pool.submit(confirm, order_no) for order_no in list(owners)[:40]]
            jobs = [pool.submit(job) for _ in range(2)]
            confirms += [pool.submit(confirm, order_no) for order_no in list(owners)[40:]]
            go.set()
            completed_by_jobs = sum(done.result() for done in jobs)
            answers = [done.result() for done in confirms]
    finally:
        engine.dispose()

    outcomes = [(r.status_code, r.json()["code"]) for r in answers]
    assert set(outcomes) <= {(200, 0), (409, 40902), (409, 40900)}, outcomes
    assert completed_by_jobs + outcomes.count((200, 0)) == RACING_ORDERS
    db.session.rollback()
    for order in db.session.scalars(select(Order)):
        assert order.status == OrderStatus.COMPLETED
        assert order.version == 2  # one transition: shipped → completed
        assert order.completed_at is not None


def test_order_lists_use_their_indexes(app: Any, log_in: Callable[..., dict[str, Any]]) -> None:
    """EXPLAIN the very statements the API runs (one page of them), on MariaDB."""
    user_id = log_in()["user"]["id"]
    since = datetime(2026, 1, 1, tzinfo=UTC)
    cases = {
        "ix_orders_user_id_created_at": order_list_query(user_id=user_id, status=None),
        "ix_orders_status_created_at": order_list_query(
            user_id=None, status=OrderStatus.PAID, created_from=since
        ),
    }
    for index, query in cases.items():
        sql = query.limit(20).compile(db.engine, compile_kwargs={"literal_binds": True})
        rows = db.session.execute(text(f"EXPLAIN {sql}")).mappings().all()
        assert [row["key"] for row in rows] == [index], rows
