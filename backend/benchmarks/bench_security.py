"""Micro-benchmark: what the request-signature check and the rate limiter cost per request (µs).

Both sides of each comparison run in one process, interleaved in rounds, through the real Flask
stack (test client, no network): a signed endpoint against the same endpoint unsigned, and the
same request with the limiter on and off. Plus the bare `signature.verify` (CPU only).

    cd backend && REDIS_URL=redis://127.0.0.1:6379/0 \
        ../.venv/bin/python benchmarks/bench_security.py

Every request comes from another client address, as a shop's requests do: each per-IP moving
window then holds a few hits, not every request of the run (one address under the benchmark's
huge limit made the limiter count them all). Without REDIS_URL the nonce store and the limiter use
the embedded store (a SQLite file in a temporary directory, as `make run` has in its instance
folder).
"""

from __future__ import annotations

import argparse
import itertools
import os
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Response
from flask_openapi3 import APIBlueprint
from redis import Redis

from minishop import create_app, extensions
from minishop.api.guards import login_required, signed
from minishop.config import TestingSettings
from minishop.domain.auth import SIGN_KEY_PURPOSE
from minishop.envelope import ok
from minishop.extensions import db
from minishop.models import AuthSession, User
from minishop.security import signature
from minishop.security.tokens import AccessClaims

bench = APIBlueprint("bench", __name__, url_prefix="/bench")


@bench.post("/signed")
@signed
def signed_view() -> Response:
    return ok()


@bench.post("/plain")
@login_required
def plain_view() -> Response:
    return ok()


@bench.get("/open")
def open_view() -> Response:
    return ok()


def build_app(database_url: str, **overrides: Any) -> Any:
    settings = TestingSettings(
        DATABASE_URL=database_url,
        REDIS_URL=os.environ.get("REDIS_URL") or None,
        RATELIMIT_DEFAULT="100000000 per minute",
        **overrides,
    )
    app = create_app(settings)
    app.register_api(bench)
    return app


def log_in(app: Any, sign_key: str) -> str:
    """A user and an open session written directly (no WeChat needed); returns an access token."""
    with app.app_context():
        db.create_all()
        user = User(openid=f"bench-{secrets.token_hex(4)}")
        db.session.add(user)
        db.session.flush()
        session = AuthSession(
            id=secrets.token_hex(16),
            user_id=user.id,
            session_key_encrypted=extensions.field_cipher.get().encrypt("unused", "unused"),
            sign_key_encrypted=extensions.field_cipher.get().encrypt(sign_key, SIGN_KEY_PURPOSE),
        )
        db.session.add(session)
        db.session.commit()
        return extensions.token_signer.get().issue(
            AccessClaims(user.id, user.role, session.id), datetime.now(UTC)
        )


CLIENT_ADDRESSES = itertools.cycle(
    f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(50_000)
)


def from_a_client() -> dict[str, str]:
    return {"REMOTE_ADDR": next(CLIENT_ADDRESSES)}


def per_call_us(call: Callable[[], Any], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - started) / n * 1e6


def compare(label: str, with_it: Callable[[], Any], without: Callable[[], Any], n: int) -> None:
    """Median over rounds of the per-request difference, the two sides interleaved."""
    rounds = [(per_call_us(with_it, n), per_call_us(without, n)) for _ in range(7)]
    on = statistics.median(r[0] for r in rounds)
    off = statistics.median(r[1] for r in rounds)
    print(f"{label:<34} {on:9.1f} µs  vs {off:9.1f} µs  → {on - off:8.1f} µs per request")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-n", type=int, default=500, help="requests per round and side")
    n = parser.parse_args().n
    if os.environ.get("REDIS_URL"):
        Redis.from_url(os.environ["REDIS_URL"]).flushdb()
    sign_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
    body = b'{"items":[{"product_id":1,"quantity":2}],"remark":"x"}'
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        store = f"{tmp}/kv.db"
        app = build_app(url, EMBEDDED_STORE_PATH=store)
        unlimited = build_app(
            url, EMBEDDED_STORE_PATH=store, RATELIMIT_PASSTHROUGH={"RATELIMIT_ENABLED": False}
        )
        token = log_in(app, sign_key)
        bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        client, client_off = app.test_client(), unlimited.test_client()

        def signed_request() -> None:
            headers = signature.sign_headers("POST", "/bench/signed", "", body, sign_key)
            assert (
                client.post(
                    "/bench/signed",
                    data=body,
                    headers=bearer | headers,
                    environ_base=from_a_client(),
                ).status_code
                == 200
            )

        def signing_only() -> None:
            signature.sign_headers("POST", "/bench/signed", "", body, sign_key)

        def plain_request() -> None:
            signing_only()  # the client's signing cost on both sides, so it cancels out
            plain = client.post(
                "/bench/plain", data=body, headers=bearer, environ_base=from_a_client()
            )
            assert plain.status_code == 200

        stamp = int(time.time())
        headers = signature.sign_headers("POST", "/bench/signed", "", body, sign_key, stamp)

        def verify_only() -> None:
            signature.verify(
                "POST",
                "/bench/signed",
                "",
                body,
                headers,
                sign_key,
                now=stamp,
                remember_nonce=lambda nonce: True,
            )

        print(
            f"storage: {os.environ.get('REDIS_URL') or 'embedded store'}; {n} requests x 7 rounds"
        )
        compare("signature check (whole request)", signed_request, plain_request, n)
        compare("signature.verify alone (CPU)", verify_only, lambda: None, n)
        compare(
            "rate limiter (whole request)",
            lambda: client.get("/bench/open", environ_base=from_a_client()),
            lambda: client_off.get("/bench/open", environ_base=from_a_client()),
            n,
        )


if __name__ == "__main__":
    main()
