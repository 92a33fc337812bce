"""Hot item: 200 users buying ONE product, single stock row vs split stock, from one run.

Both designs on the same gunicorn, the same product and the same stock (10,000), in alternating
rounds (single, split, single, split, ...) so that a noisy neighbour hits both alike. Each round
resets the stock through the admin API, replays freshly signed orders with wrk (bench.py's
replay), and checks that stock + sold reconcile exactly. Prints one JSON line per round and a
summary with the split/single ratio of the medians.

    .venv/bin/python loadtest/hot_item.py [--rounds 2] [--segments 8] [--database-only]

`--database-only` sends the order transaction's statements straight to MariaDB from 50 threads
(no gunicorn): what the stock locks alone allow, apart from the app's CPU.

The helpers (`make_admin`, `admin_call`, `set_stock_segments`, `settled_stock_and_sold`) are
what `make bench` needs to add the row.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import BENCH_ENV, DURATION, ORDER_USERS, database, log_in, order_lines, run_wrk
from stack import LocalStack, Server

from minishop.security.signature import sign_headers

HOT_STOCK = 10_000


def make_admin(stack: LocalStack, base_url: str) -> dict[str, Any]:
    """A logged-in user promoted to admin in the database (how an operator makes the first)."""
    user = log_in(stack, base_url)
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute("UPDATE users SET role = 'admin' WHERE id = %s", (user["user"]["id"],))
    return user


def admin_call(
    base_url: str, admin: dict[str, Any], method: str, path: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """A signed admin request; returns the envelope's data."""
    body = json.dumps(payload).encode()
    headers = {
        "Authorization": f"Bearer {admin['access_token']}",
        "Content-Type": "application/json",
        **sign_headers(method, path, "", body, admin["sign_key"]),
    }
    answer = requests.request(method, f"{base_url}{path}", data=body, headers=headers, timeout=30)
    answer.raise_for_status()
    data: dict[str, Any] = answer.json()["data"]
    return data


def set_stock_segments(
    base_url: str, admin: dict[str, Any], product_id: int, segments: int
) -> dict[str, Any]:
    """Stock back to HOT_STOCK (PUT .../stock), then PATCH `stock_segments` (1 = single row)
    with the version that answer showed."""
    path = f"/api/v1/admin/products/{product_id}"
    current = admin_call(base_url, admin, "PUT", f"{path}/stock", {"stock": HOT_STOCK})
    return admin_call(
        base_url, admin, "PATCH", path, {"version": current["version"], "stock_segments": segments}
    )


def total_stock_and_sold(stack: LocalStack, product_id: int) -> tuple[int, int]:
    """The product's total stock (its row plus its segments) and every unit ever ordered."""
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT p.stock + COALESCE((SELECT SUM(s.stock) FROM product_stock_segments s "
            "WHERE s.product_id = p.id), 0) FROM products p WHERE p.id = %s",
            (product_id,),
        )
        (stock,) = cursor.fetchone()
        cursor.execute(
            "SELECT COALESCE(SUM(quantity), 0) FROM order_items WHERE product_id = %s",
            (product_id,),
        )
        (sold,) = cursor.fetchone()
    return int(stock), int(sold)


def row_lock_waits(stack: LocalStack) -> tuple[int, int]:
    """InnoDB's own count of row-lock waits and the milliseconds spent in them, server-wide:
    the contention itself, less blurred by a busy machine than orders/s."""
    with database(stack) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SHOW GLOBAL STATUS WHERE Variable_name IN "
            "('Innodb_row_lock_waits', 'Innodb_row_lock_time')"
        )
        values = dict(cursor.fetchall())
    return int(values["Innodb_row_lock_waits"]), int(values["Innodb_row_lock_time"])


def settled_stock_and_sold(stack: LocalStack, product_id: int) -> tuple[int, int]:
    """Once the orders still in flight when wrk stopped have committed (a round must not count
    the previous round's stragglers): sold unchanged for one second."""
    before = total_stock_and_sold(stack, product_id)
    while True:
        time.sleep(1)
        now = total_stock_and_sold(stack, product_id)
        if now == before:
            return now
        before = now


def hot_round(
    stack: LocalStack,
    server: Server,
    admin: dict[str, Any],
    users: list[dict[str, Any]],
    product_id: int,
    segments: int,
) -> dict[str, Any]:
    settled_stock_and_sold(stack, product_id)
    set_stock_segments(server.base_url, admin, product_id, segments)
    _, sold_before = settled_stock_and_sold(stack, product_id)
    lines = order_lines(users, product_id, 400 * DURATION)
    waits_before, wait_ms_before = row_lock_waits(stack)
    result = run_wrk(f"hot item, stock_segments={segments}", server, lines)
    stock, sold = settled_stock_and_sold(stack, product_id)
    waits, wait_ms = row_lock_waits(stack)
    if stock + (sold - sold_before) != HOT_STOCK:
        raise SystemExit(f"hot item: stock {stock} + sold {sold - sold_before} != {HOT_STOCK}")
    return {
        "segments": segments,
        "orders_per_second": result.requests_per_second,
        "p99_ms": result.p99_ms,
        "non_2xx": result.non_2xx,
        "sold": sold - sold_before,
        "stock_left": stock,
        "row_lock_waits_per_order": round((waits - waits_before) / max(1, sold - sold_before), 2),
        "row_lock_ms_per_order": round((wait_ms - wait_ms_before) / max(1, sold - sold_before), 1),
    }


def database_round(stack: LocalStack, user_id: int, product_id: int, seconds: float) -> float:
    """The order transaction's statements sent straight to MariaDB by 50 threads (no app, no
    HTTP): how many orders a second the stock locks alone let through. Returns orders/s."""
    deadline = time.monotonic() + seconds

    def buyer(_: int) -> int:
        placed = 0
        with database(stack) as connection, connection.cursor() as cursor:
            cursor.execute("SET autocommit = 0")
            while time.monotonic() < deadline:
                cursor.execute(
                    "SELECT p.stock_segments, s.segment, s.stock FROM products p LEFT JOIN "
                    "product_stock_segments s ON s.product_id = p.id WHERE p.id = %s",
                    (product_id,),
                )
                rows = cursor.fetchall()
                cursor.execute(
                    "INSERT INTO orders (order_no, user_id, status, total_fen, remark, "
                    "idempotency_key, request_hash, expires_at, refunded_fen, version, "
                    "created_at, updated_at) VALUES (%s, %s, 'pending_payment', 1, '', %s, '', "
                    "NOW(6), 0, 1, NOW(6), NOW(6))",
                    (uuid.uuid4().hex[:24], user_id, uuid.uuid4().hex),
                )
                order_id = cursor.lastrowid
                item = (
                    "INSERT INTO order_items (order_id, product_id, title, price_fen, quantity, "
                    "subtotal_fen) VALUES (%s, %s, 'hot', 1, 1, 1)"
                )
                if rows[0][0] == 1:
                    cursor.execute(
                        "UPDATE products SET stock = stock - 1 WHERE id = %s AND stock >= 1",
                        (product_id,),
                    )
                    cursor.execute(item, (order_id, product_id))
                else:
                    cursor.execute(item, (order_id, product_id))
                    segment = random.choice([r[1] for r in rows if r[2] >= 1])
                    cursor.execute(
                        "UPDATE product_stock_segments SET stock = stock - 1 WHERE product_id = %s "
                        "AND segment = %s AND stock >= 1",
                        (product_id, segment),
                    )
                connection.commit()
                placed += 1
        return placed

    started = time.monotonic()
    with ThreadPoolExecutor(50) as pool:
        placed = sum(pool.map(buyer, range(50)))
    return round(placed / (time.monotonic() - started), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument(
        "--database-only", action="store_true", help="the statements straight to MariaDB"
    )
    args = parser.parse_args()
    product_id = 1
    with LocalStack(env=BENCH_ENV) as stack:
        server = stack.server
        assert server is not None
        admin = make_admin(stack, server.base_url)
        with ThreadPoolExecutor(8) as pool:
            users = list(pool.map(lambda _: log_in(stack, server.base_url), range(ORDER_USERS)))
        rounds = []
        for _ in range(args.rounds):
            for segments in (1, args.segments):
                if args.database_only:
                    settled_stock_and_sold(stack, product_id)
                    set_stock_segments(server.base_url, admin, product_id, segments)
                    speed = database_round(stack, admin["user"]["id"], product_id, DURATION)
                    rounds.append({"segments": segments, "orders_per_second": speed})
                else:
                    rounds.append(hot_round(stack, server, admin, users, product_id, segments))
                print(json.dumps(rounds[-1]), flush=True)
    single = statistics.median(r["orders_per_second"] for r in rounds if r["segments"] == 1)
    split = statistics.median(r["orders_per_second"] for r in rounds if r["segments"] != 1)
    print(json.dumps({"single": single, "split": split, "ratio": round(split / single, 2)}))


if __name__ == "__main__":
    main()
