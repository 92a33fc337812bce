"""The app served for real: gunicorn with several workers against MariaDB and Redis."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests
from sqlalchemy import func, select

from minishop.extensions import db
from minishop.models import AuthSession, User
from wechat_emulator.testing import EmulatorControl


def test_gunicorn_serves_readiness_and_the_catalog_concurrently(
    live_server: str, catalog: dict[str, Any]
) -> None:
    ready = requests.get(f"{live_server}/readyz", timeout=5)
    assert ready.status_code == 200
    assert ready.json()["data"] == {"database": "ok", "cache": "ok"}

    def fetch(page: int) -> requests.Response:
        return requests.get(
            f"{live_server}/api/v1/products?page_size=1&page={page % 3 + 1}", timeout=10
        )

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(fetch, range(64)))
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["data"]["total"] for r in responses} == {3}
    assert len({r.headers["X-Request-ID"] for r in responses}) == 64


def test_gunicorn_answers_errors_in_the_envelope(live_server: str) -> None:
    response = requests.post(f"{live_server}/api/v1/products", timeout=5)
    assert response.status_code == 405
    assert response.json()["code"] == 40500
    response = requests.get(f"{live_server}/api/v1/../../etc/passwd", timeout=5)
    assert response.json()["code"] == 40400


def test_concurrent_first_logins_of_one_openid_create_one_user(
    live_server: str, emulator: EmulatorControl, app: Any
) -> None:
    openid = "o-concurrent-first-login-openid"
    codes = [emulator.new_login_code(openid=openid).code for _ in range(12)]

    def log_in(code: str) -> requests.Response:
        return requests.post(f"{live_server}/api/v1/auth/login", json={"code": code}, timeout=10)

    with ThreadPoolExecutor(max_workers=12) as pool:
        responses = list(pool.map(log_in, codes))
    assert [r.status_code for r in responses] == [200] * 12, [r.json() for r in responses]
    assert len({r.json()["data"]["user"]["id"] for r in responses}) == 1
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(User)) == 1
    assert db.session.scalar(select(func.count()).select_from(AuthSession)) == 12


def test_a_worker_freezes_what_the_app_built_out_of_the_collectors_reach() -> None:
    """gunicorn.conf.py's post_worker_init (run in a child: the config sets process state)."""
    probe = (
        "import gc, runpy; hooks = runpy.run_path('gunicorn.conf.py');"
        "from minishop import create_app; create_app(); hooks['post_worker_init'](None);"
        "print(gc.get_freeze_count())"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout.strip().splitlines()[-1]) > 50_000
