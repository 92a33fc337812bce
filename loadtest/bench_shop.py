"""The shop side of the benchmarks: users, an admin, products, signed orders, stock checks.

Orders are measured twice (loadtest/bench.py): `d` spreads 200 users over many products, the hot
item puts all of them on one product, once as a single stock row and once split into segments
(PATCH /api/v1/admin/products/{id} {"version", "stock_segments"}), same stock, same duration.
After each run the stock left plus the units sold must equal the stock set before it, read from
MariaDB itself (`products.stock` plus the product's `product_stock_segments` rows).
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pymysql
import requests
from bench_wrk import DURATION, Result, request_line, run_wrk
from sqlalchemy.engine import make_url
from stack import LocalStack, Server

from minishop.security.signature import sign_headers

ORDER_USERS = 200
ADMIN_OPENID = "bench-admin"
HOT_ITEM_STOCK = 10_000
# Enough prepared orders for 1,600 orders/s: each is sent once, never replayed.
ORDERS_PER_SECOND_PREPARED = 1600


def log_in(stack: LocalStack, base_url: str, openid: str | None = None) -> dict[str, Any]:
    """A fresh WeChat login: the envelope's data (access_token, sign_key, user)."""
    code = requests.post(
        f"{stack.emulator_url}/__emulator/codes",
        json={"openid": openid} if openid else {},
        timeout=30,
    ).json()
    answer = requests.post(f"{base_url}/api/v1/auth/login", json={"code": code["code"]}, timeout=30)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()["data"]
    return data


def log_in_users(
    stack: LocalStack, base_url: str, count: int = ORDER_USERS
) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: log_in(stack, base_url), range(count)))


class Admin:
    """A logged-in admin sending signed back-office requests (granted with `flask grant-admin`)."""

    def __init__(self, stack: LocalStack, base_url: str) -> None:
        stack.flask_command("grant-admin", ADMIN_OPENID)
        self.base_url = base_url
        self.session = log_in(stack, base_url, ADMIN_OPENID)

    def send(self, method: str, path: str, payload: Any) -> requests.Response:
        body = json.dumps(payload).encode()
        headers = {
            "Authorization": f"Bearer {self.session['access_token']}",
            "Content-Type": "application/json",
            **sign_headers(method, path, "", body, self.session["sign_key"]),
        }
        return requests.request(
            method, self.base_url + path, data=body, headers=headers, timeout=30
        )

    def call(self, method: str, path: str, payload: Any) -> dict[str, Any]:
        """The answer's data; a refusal stops the benchmark with the envelope's message."""
        answer = self.send(method, path, payload)
        if answer.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        data: dict[str, Any] = answer.json()["data"]
        return data

    def create_product(self, title: str, stock: int) -> dict[str, Any]:
        return self.call(
            "POST",
            "/api/v1/admin/products",
            {"category_id": 1, "title": title, "price_fen": 100, "stock": stock},
        )

    def set_stock(self, product_id: int, stock: int) -> dict[str, Any]:
        return self.call("PUT", f"/api/v1/admin/products/{product_id}/stock", {"stock": stock})

    def split_stock(self, product: dict[str, Any], segments: int) -> dict[str, Any] | str:
        """Split the product's stock (helper C's `stock_segments`), or why that is not possible."""
        answer = self.send(
            "PATCH",
            f"/api/v1/admin/products/{product['id']}",
            {"version": product["version"], "stock_segments": segments},
        )
        if answer.status_code >= 400:
            return f"the app refused stock_segments: {answer.status_code} {refusal(answer)}"
        data: dict[str, Any] = answer.json()["data"]
        return data


def refusal(answer: requests.Response) -> str:
    """The envelope's code, message and first field error, on one line."""
    try:
        envelope = answer.json()
    except ValueError:
        return answer.text[:200].replace("\n", " ")
    errors = (envelope.get("data") or {}).get("errors") or [{}]
    detail = f"{errors[0].get('field', '')}: {errors[0].get('message', '')}".strip(": ")
    return f"{envelope.get('code')} {envelope.get('message')}" + (f" ({detail})" if detail else "")


def order_lines(users: list[dict[str, Any]], product_ids: list[int], count: int) -> list[str]:
    """`count` signed orders of one unit, user n and product n taken in turn."""
    lines = []
    for n in range(count):
        user = users[n % len(users)]
        body = json.dumps(
            {"items": [{"product_id": product_ids[n % len(product_ids)], "quantity": 1}]}
        )
        headers = {
            "Authorization": f"Bearer {user['access_token']}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
            **sign_headers("POST", "/api/v1/orders", "", body.encode(), user["sign_key"]),
        }
        lines.append(request_line("POST", "/api/v1/orders", headers, body))
    return lines


def login_lines(stack: LocalStack, count: int) -> list[str]:
    def new_code(_: int) -> str:
        answer = requests.post(f"{stack.emulator_url}/__emulator/codes", json={}, timeout=30)
        return str(answer.json()["code"])

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(new_code, range(count)))
    headers = {"Content-Type": "application/json"}
    return [
        request_line("POST", "/api/v1/auth/login", headers, json.dumps({"code": code}))
        for code in codes
    ]


def database(stack: LocalStack) -> Any:
    url = make_url(stack.app_env["DATABASE_URL"])
    return pymysql.connect(
        host=url.host, port=url.port, user=url.username, database=url.database, autocommit=True
    )


def stock_and_sold(stack: LocalStack, product_id: int) -> tuple[int, int]:
    """The product's stock (its row plus its segments, where that table exists) and units sold.

    Read in one snapshot: orders still in flight when wrk stops commit while this reads, and
    separate autocommit reads could see an order's stock taken but not its items.
    """
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        cursor.execute("SELECT stock FROM products WHERE id = %s", (product_id,))
        (stock,) = cursor.fetchone()
        if cursor.execute("SHOW TABLES LIKE 'product_stock_segments'"):
            cursor.execute(
                "SELECT COALESCE(SUM(stock), 0) FROM product_stock_segments WHERE product_id = %s",
                (product_id,),
            )
            stock += cursor.fetchone()[0]
        cursor.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = %s",
            (product_id,),
        )
        (sold,) = cursor.fetchone()
        cursor.execute("COMMIT")
    return int(stock), int(sold)


@dataclass
class OrderRun:
    """Orders placed against fresh products: what wrk saw and what the database says."""

    result: Result
    orders_per_second: float  # orders wrk saw succeed / wrk's run time
    initial_stock: int  # over all products of the run
    stock_left: int
    sold: int
    sold_out: bool

    @property
    def reconciled(self) -> bool:
        return self.stock_left + self.sold == self.initial_stock and self.stock_left >= 0


def run_orders(
    scenario: str,
    stack: LocalStack,
    server: Server,
    users: list[dict[str, Any]],
    products: list[dict[str, Any]],
) -> OrderRun:
    """Fresh `products` (nothing sold yet), each holding its initial stock, ordered by `users`."""
    before = [stock_and_sold(stack, p["id"]) for p in products]
    if any(sold for _, sold in before):
        raise RuntimeError(f"{scenario}: the products must be fresh")
    lines = order_lines(users, [p["id"] for p in products], ORDERS_PER_SECOND_PREPARED * DURATION)
    result = run_wrk(scenario, server, lines)
    after = [stock_and_sold(stack, p["id"]) for p in products]
    sold = sum(s for _, s in after)
    seconds = result.requests / result.requests_per_second if result.requests else DURATION
    return OrderRun(
        result=result,
        orders_per_second=round((result.requests - result.non_2xx) / seconds, 1),
        initial_stock=sum(stock for stock, _ in before),
        stock_left=sum(stock for stock, _ in after),
        sold=sold,
        sold_out=any(stock == 0 for stock, _ in after),
    )
