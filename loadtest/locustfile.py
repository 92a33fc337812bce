"""The journey of a mini-program user, for Locust.

Every Locust user is its own WeChat user: it asks the WeChat emulator's control API for a
wx.login code, logs in, then mostly browses (category list, product pages, product details),
sometimes places a signed order with an Idempotency-Key, and cancels a share of those or pays
them (the prepay, then the emulator's `succeed` standing in for the phone; WeChat Pay's
notification reaches the shop as it would in production).
Request names are route templates, so the statistics group by endpoint, not by id.

Settings (environment): LOADTEST_EMULATOR_URL (the emulator, for login codes), LOADTEST_USERS and
LOADTEST_DURATION (seconds) for the load shape: ramp-up, steady state, a spike, steady again.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from typing import Any

from locust import LoadTestShape, between, task
from locust.contrib.fasthttp import FastHttpUser
from locust.exception import RescheduleTask

from minishop.security.signature import sign_headers

EMULATOR_URL = os.environ.get("LOADTEST_EMULATOR_URL", "http://127.0.0.1:8001")
USERS = int(os.environ.get("LOADTEST_USERS", "50"))
DURATION = int(os.environ.get("LOADTEST_DURATION", "60"))
CANCEL_SHARE = 0.3
PAY_SHARE = 0.5  # of the orders placed: the rest stay unpaid until they expire
OUT_OF_STOCK = 40901


class MiniProgramUser(FastHttpUser):
    wait_time = between(0.5, 2.5)  # a person reading a page before the next tap

    session: dict[str, Any] | None = None

    def on_start(self) -> None:
        self.product_ids: list[int] = []
        self.log_in()
        self.browse_catalog_page()

    def log_in(self) -> None:
        """A wx.login code from the emulator, then our login. A refusal (WeChat down: 502/503)
        is counted as a failed request by Locust; the next task that needs the session tries
        again."""
        self.session = None
        code = self.client.post(
            f"{EMULATOR_URL}/__emulator/codes", json={}, name="emulator: wx.login code"
        )
        if code.status_code != 200:
            return
        response = self.client.post(
            "/api/v1/auth/login", json={"code": code.json()["code"]}, name="/api/v1/auth/login"
        )
        if response.status_code == 200:
            self.session = response.json()["data"]

    def logged_in(self) -> dict[str, Any]:
        """The session, logging in again if the last login failed (else the task is retried)."""
        if self.session is None:
            self.log_in()
        if self.session is None:
            raise RescheduleTask()
        return self.session

    def signed(self, method: str, path: str, payload: Any, name: str, **headers: str) -> Any:
        session = self.logged_in()
        body = b"" if payload is None else json.dumps(payload).encode()
        signature = sign_headers(method, path, "", body, session["sign_key"])
        all_headers = {
            "Authorization": f"Bearer {session['access_token']}",
            "Content-Type": "application/json",
            **signature,
            **headers,
        }
        return self.client.request(
            method,
            path,
            data=body,  # type: ignore[arg-type]  # locust documents bytes, its annotation omits them
            headers=all_headers,
            name=name,
            catch_response=True,
        )

    @task(10)
    def browse_catalog_page(self) -> None:
        page = random.randint(1, 2)
        response = self.client.get(
            f"/api/v1/products?page={page}&page_size=10", name="/api/v1/products"
        )
        if response.status_code == 200:
            items = response.json()["data"]["items"]
            self.product_ids = [item["id"] for item in items] or self.product_ids

    @task(3)
    def view_categories(self) -> None:
        self.client.get("/api/v1/categories", name="/api/v1/categories")

    @task(8)
    def view_product(self) -> None:
        if self.product_ids:
            product_id = random.choice(self.product_ids)
            self.client.get(f"/api/v1/products/{product_id}", name="/api/v1/products/{id}")

    @task(2)
    def place_order(self) -> None:
        if not self.product_ids:
            return
        lines = random.sample(self.product_ids, k=min(len(self.product_ids), random.randint(1, 2)))
        payload = {"items": [{"product_id": pid, "quantity": 1} for pid in lines]}
        with self.signed(
            "POST",
            "/api/v1/orders",
            payload,
            "/api/v1/orders [place]",
            **{"Idempotency-Key": uuid.uuid4().hex},
        ) as response:
            answer = response.json()
            if response.status_code == 409 and answer.get("code") == OUT_OF_STOCK:
                response.success()  # sold out is a normal outcome of a busy shop
                return
            if response.status_code != 201:
                response.failure(f"{response.status_code} {answer.get('code')}")
                return
            response.success()
        order_no = answer["data"]["order_no"]
        choice = random.random()
        if choice < CANCEL_SHARE:
            self.expect_200("POST", f"/api/v1/orders/{order_no}/cancel", "cancel")
        elif choice < CANCEL_SHARE + PAY_SHARE:
            self.pay(order_no)

    def expect_200(self, method: str, path: str, action: str) -> bool:
        with self.signed(method, path, None, f"/api/v1/orders/{{order_no}}/{action}") as response:
            if response.status_code == 200:
                response.success()
                return True
            response.failure(f"{response.status_code}")
            return False

    def pay(self, order_no: str) -> None:
        """The prepay, then the user pays on the phone (the emulator notifies the shop)."""
        if self.expect_200("POST", f"/api/v1/orders/{order_no}/pay", "pay"):
            self.client.post(
                f"{EMULATOR_URL}/__emulator/pay/{order_no}/succeed",
                json={},
                name="emulator: the user pays",
            )

    @task(1)
    def my_orders(self) -> None:
        self.client.get(
            "/api/v1/orders",
            headers={"Authorization": f"Bearer {self.logged_in()['access_token']}"},
            name="/api/v1/orders [mine]",
        )


class RampSteadySpike(LoadTestShape):
    """20 % ramp-up, steady, a spike to twice the users for 10 %, steady again to the end."""

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if elapsed >= DURATION:
            return None
        share = elapsed / DURATION
        ramp_rate = max(1.0, USERS / max(1.0, 0.2 * DURATION))
        if share < 0.2:
            return max(1, int(USERS * share / 0.2)), ramp_rate
        if 0.6 <= share < 0.7:
            return USERS * 2, ramp_rate * 2
        return USERS, ramp_rate * 2
