"""API smoke test of a deployed MiniShop (pipelines/api-test.sh): one user's journey, step by step.

Health and readiness, a login (a code from the WeChat emulator's control API, or a code given in
API_TEST_LOGIN_CODE where no emulator runs), the catalog and one product, then a signed order and
its cancel, so the stock taken is given back. Orders are always signed, even where the server does
not require it (`make run`), so the same run proves the signature path wherever it is required.

Exits 1 on the first failing step with one line naming it; 0 when every step passed.
Environment: EMULATOR_URL (default http://127.0.0.1:8001), API_TEST_LOGIN_CODE (skips the
emulator), API_TEST_TIMEOUT (seconds per request, default 10).
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from typing import Any

import requests

from minishop.security.signature import sign_headers

SUCCESS_CODE = 0


class StepFailedError(Exception):
    """A step went wrong; the message is the one line the pipeline log shows."""


class Smoke:
    """The journey against `base_url`, each step checking the status and the envelope's code."""

    def __init__(self, base_url: str, emulator_url: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.emulator_url = emulator_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def call(
        self,
        method: str,
        path: str,
        expected: int,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request; the envelope's `data` when the status is `expected` and `code` is 0."""
        step = f"{method} {path}"
        try:
            response = self.http.request(
                method,
                self.base_url + path,
                data=body,
                headers=headers,
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise StepFailedError(f"{step}: no answer from {self.base_url}: {error}") from error
        try:
            envelope = response.json()
        except ValueError:
            envelope = None
        if response.status_code != expected:
            raise StepFailedError(
                f"{step}: HTTP {response.status_code}, expected {expected}: {response.text[:300]}"
            )
        if not isinstance(envelope, dict) or envelope.get("code") != SUCCESS_CODE:
            raise StepFailedError(f"{step}: not a success envelope: {response.text[:300]}")
        print(f"ok   {step} -> {response.status_code}")
        return envelope.get("data")

    def signed(
        self, method: str, path: str, expected: int, payload: Any, session: dict[str, Any]
    ) -> Any:
        """A signed request (docs/request-signature.md): the body hashed is the body sent."""
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = {
            "Authorization": f"Bearer {session['access_token']}",
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        }
        headers |= sign_headers(method, path, "", body, session["sign_key"])
        return self.call(method, path, expected, body=body, headers=headers)

    def login_code(self) -> str:
        """API_TEST_LOGIN_CODE when given, else a fresh wx.login code from the emulator."""
        given = os.environ.get("API_TEST_LOGIN_CODE", "")
        if given:
            return given
        url = f"{self.emulator_url}/__emulator/codes"
        try:
            response = self.http.post(url, json={}, timeout=self.timeout)
            code = response.json()["code"] if response.status_code == 200 else None
        except (requests.RequestException, ValueError, KeyError, TypeError) as error:
            raise StepFailedError(
                f"POST {url}: no login code from the emulator: {error}"
            ) from error
        if not isinstance(code, str):
            raise StepFailedError(f"POST {url}: HTTP {response.status_code}: {response.text[:300]}")
        print(f"ok   POST {url} -> login code")
        return code

    def run(self) -> None:
        self.call("GET", "/healthz", 200)
        self.call("GET", "/readyz", 200)
        session = self.call(
            "POST", "/api/v1/auth/login", 200, *self.json({"code": self.login_code()})
        )
        for field in ("access_token", "sign_key"):
            if not session or not session.get(field):
                raise StepFailedError(f"POST /api/v1/auth/login: no {field} in the answer")
        page = self.call("GET", "/api/v1/products?page=1&page_size=20", 200)
        items = page.get("items") if isinstance(page, dict) else None
        if not items:
            raise StepFailedError("GET /api/v1/products: the catalog is empty (seed it first)")
        product = self.in_stock([item["id"] for item in items])
        placed = self.signed(
            "POST",
            "/api/v1/orders",
            201,
            {"items": [{"product_id": product["id"], "quantity": 1}]},
            session,
        )
        order_no = placed["order_no"]
        cancelled = self.signed("POST", f"/api/v1/orders/{order_no}/cancel", 200, None, session)
        if cancelled.get("status") != "cancelled":
            raise StepFailedError(
                f"POST /api/v1/orders/{order_no}/cancel: status {cancelled.get('status')!r}"
            )

    def in_stock(self, product_ids: list[int]) -> dict[str, Any]:
        """The first listed product whose detail shows stock to order."""
        for product_id in product_ids:
            product = self.call("GET", f"/api/v1/products/{product_id}", 200)
            if product.get("stock", 0) > 0:
                return dict(product)
        raise StepFailedError("GET /api/v1/products/{id}: no listed product has stock")

    @staticmethod
    def json(payload: Any) -> tuple[bytes, dict[str, str]]:
        return json.dumps(payload).encode(), {"Content-Type": "application/json"}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].startswith(("http://", "https://")):
        print("usage: api_smoke.py <base-url>  (e.g. http://127.0.0.1:8000)", file=sys.stderr)
        return 2
    smoke = Smoke(
        argv[0],
        os.environ.get("EMULATOR_URL", "http://127.0.0.1:8001"),
        float(os.environ.get("API_TEST_TIMEOUT", "10")),
    )
    try:
        smoke.run()
    except StepFailedError as failure:
        print(f"api-test: FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"api-test: all steps passed against {smoke.base_url}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
