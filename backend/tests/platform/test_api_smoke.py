"""pipelines/api-test.sh (tools/api_smoke.py): the smoke run CI points at a deployed URL.

Run here against the app under real gunicorn (signatures required, as in production), on the
session's MariaDB and Redis, with the real WeChat emulator handing out login codes. Each failure
case breaks one thing and checks that the run stops on that step, non-zero, saying so.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import port_for

from minishop.config import TestingSettings as AppSettings
from minishop.extensions import db
from minishop.models import Order, OrderStatus, Product
from tests.conftest import gunicorn_server
from wechat_emulator.testing import EmulatorProcess

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = REPO_ROOT / "pipelines" / "api-test.sh"


def api_test(base_url: str, emulator_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), base_url],
        env=os.environ | {"EMULATOR_URL": emulator_url} | env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def failed_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the pipeline log shows for the failure (the last on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("api-test: FAILED")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_passes_against_the_app_and_leaves_the_stock_as_it_was(
    live_server: str, catalog: dict[str, Any], emulator_process: EmulatorProcess
) -> None:
    stock_before = {product.id: product.stock for product in db.session.query(Product)}

    result = api_test(live_server, emulator_process.base_url)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "api-test: all steps passed" in result.stdout
    for step in ("GET /readyz", "POST /api/v1/orders ", "/cancel -> 200"):
        assert step in result.stdout
    db.session.rollback()  # a new transaction, to see what the server committed
    # The signed order really reached the database and was cancelled: the stock is back.
    orders = db.session.query(Order).all()
    assert [order.status for order in orders] == [OrderStatus.CANCELLED]
    assert {product.id: product.stock for product in db.session.query(Product)} == stock_before


def test_fails_on_a_wrong_url(live_server: str, emulator_process: EmulatorProcess) -> None:
    result = api_test(f"{live_server}/no-such-prefix", emulator_process.base_url)

    assert result.returncode == 1
    assert "GET /healthz: HTTP 404" in failed_line(result)


def test_fails_when_nothing_listens(emulator_process: EmulatorProcess) -> None:
    result = api_test(f"http://127.0.0.1:{port_for.select_random()}", emulator_process.base_url)

    assert result.returncode == 1
    assert "GET /healthz: no answer" in failed_line(result)


def test_fails_on_a_broken_route(
    settings: AppSettings, tmp_path: Path, emulator_process: EmulatorProcess
) -> None:
    """A server whose cache is unreachable: alive, but /readyz answers 503, and the run stops."""
    broken = settings.model_copy(
        update={"REDIS_URL": f"redis://127.0.0.1:{port_for.select_random()}/0"}
    )
    with gunicorn_server(broken, tmp_path, WEB_CONCURRENCY="1") as base_url:
        result = api_test(base_url, emulator_process.base_url)

    assert result.returncode == 1
    assert "GET /readyz: HTTP 503" in failed_line(result)


def test_fails_on_an_empty_catalog(
    live_server: str, app: Any, emulator_process: EmulatorProcess
) -> None:
    result = api_test(live_server, emulator_process.base_url)

    assert result.returncode == 1
    assert "GET /api/v1/products: the catalog is empty" in failed_line(result)


def test_fails_on_a_rejected_login(live_server: str, emulator_process: EmulatorProcess) -> None:
    result = api_test(live_server, emulator_process.base_url, API_TEST_LOGIN_CODE="not-a-code")

    assert result.returncode == 1
    assert "POST /api/v1/auth/login: HTTP 4" in failed_line(result)


def test_usage_without_a_url() -> None:
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False
    )

    assert result.returncode == 2
    assert "usage:" in result.stderr
