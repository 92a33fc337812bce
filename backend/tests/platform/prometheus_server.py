"""The real Prometheus on loopback, with our configuration and rules.

    with running_prometheus(app_target="127.0.0.1:8123", alertmanager="127.0.0.1:9093",
                            alert_for={"HighErrorRate": "2s"}) as prometheus:
        prometheus.query("namespace_job:http_requests:rate5m")

What differs from production, and nothing else: a temporary copy of observability/prometheus/
(with the rules of helm/minishop/files/prometheus-rules/ beside it)
scrapes and evaluates every second, leaves out the `minishop-kubernetes` job (Debian's
Prometheus is built without Kubernetes discovery), scrapes the app under test as its
`minishop-local` target, alerts the Alertmanager under test, and `alert_for` shortens the `for:`
of the alerts it names (a rules overlay: expressions, labels and annotations stay as committed).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.ci import binary, require_binaries
from tests.platform.processes import HTTP, free_port, serving

REPO_ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = REPO_ROOT / "observability" / "prometheus"
# The rule files prometheus.yml loads: their one copy is in the Helm chart.
RULES_DIR = REPO_ROOT / "helm" / "minishop" / "files" / "prometheus-rules"
LOCAL_JOB = "minishop-local"
KUBERNETES_JOB = "minishop-kubernetes"
TEST_INTERVAL = "1s"


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
    shutil.copytree(RULES_DIR, folder / "rules")
    config_path = folder / "prometheus.yml"
    config = without_kubernetes(yaml.safe_load(config_path.read_text()))
    config["rule_files"] = ["rules/*.yml"]
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
        answer = HTTP.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = answer.json()
        assert body["status"] == "success", (promql, body)
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self, name: str) -> list[dict[str, Any]]:
        """Prometheus's own view of one alert: pending and firing instances."""
        answer = HTTP.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        return [a for a in answer["data"]["alerts"] if a["labels"].get("alertname") == name]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


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
        url = f"http://127.0.0.1:{port or free_port()}"
        command = [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--rules.alert.resend-delay=1s",
        ]
        log_path = work / "prometheus.log"
        with serving(command, log_path, f"{url}/-/ready"):
            yield RunningPrometheus(url, log_path)
