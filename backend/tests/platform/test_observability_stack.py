"""The observability platform end to end, every piece its real self: MariaDB (its own, so it can
be stopped), Redis, the WeChat emulator (also WeChat Work), the app under gunicorn, Prometheus
with our configuration and rules, Alertmanager with ours.

1. The database stops → 5xx → HighErrorRate fires → WeChat Work gets the message; the database
   comes back → the alert resolves → the resolved message arrives.
2. Under a Locust load, every query of every dashboard (observability/grafana/) returns data.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from pytest_mysql.executor import MySQLExecutor

from minishop import config, create_app
from minishop.domain.seeding import seed_demo_catalog
from minishop.extensions import db
from tests.ci import require_binaries
from tests.conftest import (
    create_database,
    gunicorn_server,
    mariadb_process_fixture,
    migrate_database,
)
from tests.platform.alerting import RunningAlertmanager, running_alertmanager
from tests.platform.prometheus_server import REPO_ROOT, RunningPrometheus, running_prometheus
from wechat_emulator.testing import EmulatorControl, EmulatorProcess

sys.path.insert(0, str(REPO_ROOT / "observability" / "grafana"))
import dashboards

mariadb_for_alerts = mariadb_process_fixture()

# The one change to the rules the end-to-end test makes: HighErrorRate's `for: 3m` (a rules
# overlay, see prometheus_server.py). Everything else, Alertmanager's timings included, is as
# committed.
ALERT_FOR = {"HighErrorRate": "2s"}
API = "/api/v1/products"


@dataclass
class Stack:
    shop: str
    database: MySQLExecutor
    emulator: EmulatorControl
    prometheus: RunningPrometheus
    alertmanager: RunningAlertmanager


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest,
    settings: config.TestingSettings,
    emulator_process: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    require_binaries("mariadbd", "mariadb-install-db", "mariadbd-safe", "mariadb-admin")
    database: MySQLExecutor = request.getfixturevalue("mariadb_for_alerts")
    url = migrate_database(create_database(database, "minishop_alerts"))
    own = settings.model_copy(update={"DATABASE_URL": url})
    app = create_app(own)
    with app.app_context():
        seed_demo_catalog(db.session())
        db.engine.dispose()
    emulator = emulator_process.control
    emulator.reset()  # before Alertmanager starts: it caches its WeCom token
    folder = tmp_path_factory.mktemp("observability-stack")
    with (
        gunicorn_server(own, folder) as shop,
        running_alertmanager(emulator_process.base_url) as alertmanager,
        running_prometheus(
            app_target=shop.removeprefix("http://"),
            alertmanager=alertmanager.url.removeprefix("http://"),
            alert_for=ALERT_FOR,
        ) as prometheus,
    ):
        yield Stack(shop, database, emulator, prometheus, alertmanager)


class Traffic:
    """Background requests to an API route that needs the database (the product list)."""

    def __init__(self, shop: str, per_second: float = 5.0) -> None:
        self.shop = shop
        self.pause = 1.0 / per_second
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            session.trust_env = False
            while not self.stopped.is_set():
                with contextlib.suppress(requests.RequestException):
                    session.get(f"{self.shop}{API}?page_size=2", timeout=5)
                self.stopped.wait(self.pause)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def wecom_texts(emulator: EmulatorControl) -> list[str]:
    return [json.dumps(message, ensure_ascii=False) for message in emulator.messages("wecom")]


def flood(shop: str, path: str, count: int) -> None:
    """`count` successful API requests, as fast as 8 clients can send them."""

    def send(_: int) -> int:
        return requests.get(f"{shop}{path}", timeout=10).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(count)))
    assert statuses.count(200) == count, {s: statuses.count(s) for s in set(statuses)}


def test_a_database_outage_pages_on_wechat_work_and_resolves(stack: Stack) -> None:
    with Traffic(stack.shop):
        wait_for(
            lambda: stack.prometheus.query("namespace_job:http_requests:rate5m > 0"),
            60,
            "Prometheus to see the traffic",
        )
        stack.database.stop()
        try:
            firing = wait_for(
                lambda: [
                    a for a in stack.prometheus.alerts("HighErrorRate") if a["state"] == "firing"
                ],
                120,
                "HighErrorRate to fire",
            )
            page = wait_for(
                lambda: [t for t in wecom_texts(stack.emulator) if "HighErrorRate" in t],
                120,
                "the WeChat Work message",
            )
        finally:
            stack.database.start()
    assert firing[0]["labels"]["severity"] == "critical"
    assert "[FIRING" in page[0] and "minishop" in page[0]
    assert "runbooks/high-error-rate.md" in page[0]

    # The 5xx ratio is over 5 minutes: enough good answers bring it under 5 % sooner.
    flood(stack.shop, f"{API}/1", 3000)
    wait_for(lambda: not stack.prometheus.alerts("HighErrorRate"), 180, "HighErrorRate to resolve")
    resolved = wait_for(
        lambda: [
            t for t in wecom_texts(stack.emulator) if "RESOLVED" in t and "HighErrorRate" in t
        ],
        180,
        "the resolved WeChat Work message",
    )
    assert "minishop" in resolved[0]


def run_locust(shop: str, emulator_url: str, seconds: int, users: int) -> None:
    locust = Path(sys.executable).with_name("locust")
    result = subprocess.run(
        [
            str(locust),
            "-f",
            str(REPO_ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "--host",
            shop,
            "--only-summary",
        ],
        env=os.environ
        | {
            "LOADTEST_EMULATOR_URL": emulator_url,
            "LOADTEST_USERS": str(users),
            "LOADTEST_DURATION": str(seconds),
            "PYTHONPATH": str(REPO_ROOT / "backend"),
        },
        capture_output=True,
        text=True,
        timeout=seconds + 120,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]  # 1: some requests failed


def test_every_dashboard_query_returns_data_under_load(
    stack: Stack, emulator_process: EmulatorProcess
) -> None:
    run_locust(stack.shop, emulator_process.base_url, seconds=25, users=8)
    time.sleep(3)  # a last scrape and rule evaluation
    empty = []
    checked = 0
    for name, text in dashboards.rendered().items():
        for title, expr in dashboards.queries(json.loads(text)):
            checked += 1
            if not stack.prometheus.query(expr):
                empty.append(f"{name}: {title}: {expr}")
    assert checked >= 30
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_the_committed_dashboards_are_what_the_code_writes() -> None:
    for name, text in dashboards.rendered().items():
        assert (dashboards.OUTPUT / name).read_text() == text, (
            f"{name} is stale: run .venv/bin/python observability/grafana/dashboards.py"
        )
