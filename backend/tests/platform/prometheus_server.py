"""The real Prometheus on loopback, with our configuration and rules.

    with running_prometheus(app_target="127.0.0.1:8123", alertmanager="127.0.0.1:9093",
                            alert_for={"HighErrorRate": "2s"}) as prometheus:
        prometheus.query("namespace_job:http_requests:rate5m")

What differs from production, and nothing else: a temporary copy of observability/prometheus/
scrapes and evaluates every second, leaves out the `minishop-kubernetes` job (Debian's
Prometheus is built without Kubernetes discovery), scrapes the app under test as its
`minishop-local` target, alerts the Alertmanager under test, and `alert_for` shortens the `for:`
of the alerts it names (a rules overlay: expressions, labels and annotations stay as committed).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.ci import binary, require_binaries

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO_ROOT / "observability" / "prometheus"
LOCAL_JOB = "minishop-local"
KUBERNETES_JOB = "minishop-kubernetes"
TEST_INTERVAL = "1s"

_HTTP = requests.Session()
_HTTP.trust_env = False  # Prometheus is on loopback: no proxy in between


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def without_kubernetes(config: dict[str, Any]) -> dict[str, Any]:
    """prometheus.yml as Debian's Prometheus can load it: the Kubernetes job left out."""
    jobs = [job for job in config["scrape_configs"] if job["job_name"] != KUBERNETES_JOB]
    assert len(jobs) == len(config["scrape_configs"]) - 1
    return config | {"scrape_configs": jobs}


def prepare_config(
    folder: Path,
    *,
    app_target: str,
    alertmanager: str,
    alert_for: Mapping[str, str],
    interval: str = TEST_INTERVAL,
) -> Path:
    """A copy of observability/prometheus/ in `folder`, changed as the module docstring says."""
    shutil.copytree(PROMETHEUS_DIR, folder, ignore=shutil.ignore_patterns("tests"))
    config_path = folder / "prometheus.yml"
    config = without_kubernetes(yaml.safe_load(config_path.read_text()))
    config["global"] |= {
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    }
    config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    (local,) = [job for job in config["scrape_configs"] if job["job_name"] == LOCAL_JOB]
    for static in local["static_configs"]:
        static["targets"] = [app_target]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    unknown = set(alert_for)
    for rules_path in (folder / "rules").glob("*.yml"):
        rules = yaml.safe_load(rules_path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") in alert_for:
                    rule["for"] = alert_for[rule["alert"]]
                    unknown.discard(rule["alert"])
        rules_path.write_text(yaml.safe_dump(rules, sort_keys=False))
    assert not unknown, f"no such alerts: {unknown}"
    return config_path


@dataclass(frozen=True)
class RunningPrometheus:
    url: str
    log_path: Path

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result (a vector or scalar), raising on a PromQL error."""
        answer = _HTTP.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (promql, body)
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Prometheus's own view of one alert: pending and firing instances."""
        answer = _HTTP.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return [a for a in answer["data"]["alerts"] if a["labels"].get("alertname") == name]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited:\n{log_path.read_text(errors='replace')}")
        try:
            if _HTTP.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready:\n{log_path.read_text(errors='replace')}")


@contextmanager
def running_prometheus(
    *,
    app_target: str,
    alertmanager: str,
    alert_for: Mapping[str, str] | None = None,
    interval: str = TEST_INTERVAL,
    port: int | None = None,
) -> Iterator[RunningPrometheus]:
    require_binaries("prometheus")
    with tempfile.TemporaryDirectory(prefix="prometheus-") as tmp:
        work = Path(tmp)
        config = prepare_config(
            work / "config",
            app_target=app_target,
            alertmanager=alertmanager,
            alert_for=alert_for or {},
            interval=interval,
        )
        url = f"http://127.0.0.1:{port or _free_port()}"
        log_path = work / "prometheus.log"
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    binary("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={work / 'data'}",
                    f"--web.listen-address={url.removeprefix('http://')}",
                    "--rules.alert.resend-delay=1s",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        try:
            _wait_ready(url, process, log_path)
            yield RunningPrometheus(url, log_path)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
