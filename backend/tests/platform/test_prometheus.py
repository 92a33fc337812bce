"""observability/prometheus: promtool checks the configuration and runs the rule unit tests, and
the rules are checked against what the app really exports and what the tests really cover.

promtool is Debian's (package prometheus); Debian builds it without Kubernetes discovery, so the
whole prometheus.yml is checked by .venv/bin/promtool-kubernetes, the same version built by
pipelines/build-promtool-kubernetes.sh (install-system-deps.sh runs it), and the configuration
without its Kubernetes job, which is what Debian's Prometheus can run, by Debian's promtool.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask.testing import FlaskClient
from prometheus_client import Histogram
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.utils import floatToGoString

from minishop.observability import metrics
from tests.ci import binary, require_binaries, unavailable
from tests.platform.prometheus_server import RULES_DIR, without_kubernetes

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "observability" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
RUNBOOKS = ROOT / "observability" / "runbooks"
RUNBOOK_PREFIX = "https://github.com/minishop/minishop/blob/main/observability/runbooks/"
PROMTOOL_KUBERNETES = ROOT / ".venv" / "bin" / "promtool-kubernetes"

SEVERITIES = {"critical", "warning"}
TEAMS = {"sre", "payments"}
REQUIRED_ANNOTATIONS = {"summary", "description", "runbook_url"}
# Labels Prometheus gives every scraped series (prometheus.yml's relabelling), besides the app's.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "app"}
# Series Prometheus makes itself rather than the app.
PROMETHEUS_SERIES = {"up"}
PROMQL_WORDS = {"and", "or", "unless", "bool", "offset", "group_left", "group_right", "inf", "nan"}


@dataclass(frozen=True)
class Rule:
    """One rule of the rule files: `name` is the alert or the recorded series."""

    name: str
    alert: bool
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]
    hold: str | None


def load_rules() -> list[Rule]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                found.append(
                    Rule(
                        name=rule.get("alert") or rule["record"],
                        alert="alert" in rule,
                        expr=rule["expr"],
                        labels=rule.get("labels", {}),
                        annotations=rule.get("annotations", {}),
                        hold=rule.get("for"),
                    )
                )
    return found


RULES = load_rules()
ALERTS = [rule for rule in RULES if rule.alert]
RECORDINGS = [rule for rule in RULES if not rule.alert]
RECORDED = {rule.name for rule in RECORDINGS}


def promtool(*args: str, tool: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool or binary("promtool"), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def assert_succeeds(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_with_kubernetes_discovery_accepts_the_whole_config() -> None:
    """Also loads and checks every rule file that rule_files names."""
    if not PROMTOOL_KUBERNETES.exists():
        unavailable(f"missing {PROMTOOL_KUBERNETES}: run pipelines/build-promtool-kubernetes.sh")
    result = promtool("check", "config", CONFIG.name, tool=str(PROMTOOL_KUBERNETES))
    assert_succeeds(result)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_debian_promtool_accepts_the_config_without_the_kubernetes_job(tmp_path: Path) -> None:
    require_binaries("promtool")
    config = yaml.safe_load(CONFIG.read_text())
    local = tmp_path / "prometheus.yml"
    rules = str(RULES_DIR / "*.yml")
    local.write_text(yaml.safe_dump(without_kubernetes(config) | {"rule_files": [rules]}))
    result = promtool("check", "config", str(local))
    assert_succeeds(result)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_promtool_accepts_the_rules() -> None:
    require_binaries("promtool")
    assert_succeeds(promtool("check", "rules", *map(str, RULE_FILES)))


def test_promtool_rule_unit_tests_pass() -> None:
    require_binaries("promtool")
    assert TEST_FILES
    result = promtool("test", "rules", *map(str, TEST_FILES))
    assert_succeeds(result)
    assert result.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_is_labelled_annotated_and_has_its_runbook() -> None:
    assert ALERTS
    for rule in ALERTS:
        assert rule.labels.get("severity") in SEVERITIES, rule.name
        assert rule.labels.get("team") in TEAMS, rule.name
        assert rule.labels.get("service") == "minishop", rule.name
        assert set(rule.annotations) >= REQUIRED_ANNOTATIONS, rule.name
        url = rule.annotations["runbook_url"]
        assert url.startswith(RUNBOOK_PREFIX), (rule.name, url)
        page = url.removeprefix(RUNBOOK_PREFIX)
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*\.md", page), url
        assert page.removesuffix(".md").replace("-", "") == rule.name.lower(), (rule.name, page)
        text = (RUNBOOKS / page).read_text()
        assert text.startswith(f"# {rule.name}\n"), page
        assert f"**Severity** {rule.labels['severity']}" in text, page


def test_every_runbook_page_belongs_to_an_alert() -> None:
    pages = {path.name for path in RUNBOOKS.glob("*.md")} - {"README.md"}
    linked = {rule.annotations["runbook_url"].removeprefix(RUNBOOK_PREFIX) for rule in ALERTS}
    assert pages == linked


@dataclass(frozen=True)
class AlertCase:
    file: str
    group: int
    eval_time: int  # seconds
    firing: bool


def seconds(duration: str) -> int:
    """A Prometheus duration such as `1h30m` or `74h55m`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return int(sum(int(n) * units[u] for n, u in parts))


def rule_tests() -> Iterator[tuple[str, int, dict[str, Any], int]]:
    """(file, group index, test group, evaluation interval in seconds) of every test file."""
    for path in TEST_FILES:
        document = yaml.safe_load(path.read_text())
        interval = seconds(document.get("evaluation_interval", "1m"))
        for index, group in enumerate(document["tests"]):
            yield path.name, index, group, interval


def test_every_alert_is_tested_firing_and_quiet_around_its_for_window() -> None:
    """Quiet at one evaluation and firing at the next, in one test group: for an alert with a
    `for:`, just before and just after its window (the files' comments say when each condition
    starts, and check it where the arithmetic is not obvious)."""
    cases: dict[str, list[AlertCase]] = {}
    intervals: dict[tuple[str, int], int] = {}
    for name, index, group, interval in rule_tests():
        intervals[name, index] = interval
        for case in group.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], []).append(
                AlertCase(name, index, seconds(case["eval_time"]), bool(case.get("exp_alerts")))
            )
    for rule in ALERTS:
        found = cases.get(rule.name, [])
        edges = [
            (quiet, firing)
            for quiet in found
            if not quiet.firing
            for firing in found
            if firing.firing
            and (firing.file, firing.group) == (quiet.file, quiet.group)
            and firing.eval_time - quiet.eval_time == intervals[quiet.file, quiet.group]
        ]
        assert edges, f"{rule.name}: no quiet evaluation followed by a firing one"


def test_every_recording_rule_is_tested() -> None:
    """Each recorded series (with its own labels, e.g. each quantile) is asked for by a test."""
    asked: list[tuple[str, set[str]]] = []
    for _name, _index, group, _interval in rule_tests():
        for case in group.get("promql_expr_test", []):
            labels = " ".join(sample["labels"] for sample in case.get("exp_samples") or [])
            asked.append((case["expr"], set(re.findall(r'(\w+)="([^"]*)"', labels))))
    for rule in RECORDINGS:
        wanted = set(rule.labels.items())
        assert any(
            re.search(rf"(?<![\w:]){re.escape(rule.name)}(?![\w:])", expr) and wanted <= labels
            for expr, labels in asked
        ), (rule.name, rule.labels)


@dataclass(frozen=True)
class Selector:
    """A series selector in a rule: `name{label op "value", ...}`."""

    rule: str
    name: str
    matchers: tuple[tuple[str, str, str], ...]


def selectors(rule: Rule) -> list[Selector]:
    """The series selectors of a rule's PromQL: every identifier that is not a function, an
    aggregation, a keyword, or inside a grouping clause, a range or a label matcher."""
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", rule.expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\boffset\s+\w+", " ", expr)
    found = []
    for match in re.finditer(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?(\s*\()?", expr):
        name, braces, call = match.groups()
        if (call and not braces) or name in PROMQL_WORDS:
            continue
        matchers = re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', braces or "")
        found.append(Selector(rule.name, name, tuple(matchers)))
    return found


@pytest.fixture(scope="module")
def exposition(session_app: Any) -> str:
    """What the app's /metrics endpoint serves: every metric it registers, sampled or not."""
    client: FlaskClient = session_app.test_client()
    response = client.get("/metrics")
    assert response.status_code == 200
    return response.get_data(as_text=True)


def exported_series(exposition: str) -> dict[str, str]:
    """Series name → its family's name, from the `# TYPE` lines of an exposition."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "summary": ["", "_sum", "_count"],
    }
    series = {}
    for family, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        base = family.removesuffix("_total") if kind == "counter" else family
        for suffix in suffixes.get(kind, [""]):
            series[base + suffix] = family
    return series


def label_names() -> dict[str, set[str]]:
    """Family name → the label names the app gives it (prometheus_client's own metrics and
    the process collector's); families missing here have no labels. A histogram's `le` label
    is its bucket bounds, written as the exposition writes them."""
    names: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        # prometheus_client has no public accessor for a metric's label names or buckets.
        if isinstance(value, MetricWrapperBase):
            for family in value.describe():
                names[family.name] = set(value._labelnames)
                names[family.name + "_total"] = names[family.name]
            if isinstance(value, Histogram):
                bounds = value._upper_bounds
                names[f"{value._name}:le"] = {floatToGoString(b) for b in bounds}
    for family in metrics.PROCESSES.collect():
        names[family.name] = {label for sample in family.samples for label in sample.labels}
        names[family.name + "_total"] = names[family.name]
    return names


def test_every_series_the_rules_read_is_exported_by_the_app(exposition: str) -> None:
    """Names, label names and `le` bounds in the rules exist in the app's real /metrics."""
    exported = exported_series(exposition)
    labels = label_names()
    used = [selector for rule in RULES for selector in selectors(rule)]
    for rule in RULES:
        assert any(s.rule == rule.name for s in used), f"no series found in {rule.name}"
    assert {"http_requests_total", "minishop_paid_after_cancel_refunds_total"} <= {
        s.name for s in used
    }
    for selector in used:
        if selector.name in RECORDED or selector.name in PROMETHEUS_SERIES:
            continue
        assert selector.name in exported, (selector.rule, selector.name)
        family = exported[selector.name]
        allowed = labels.get(family, set()) | TARGET_LABELS
        if selector.name.endswith("_bucket"):
            allowed |= {"le"}
        for label, _op, value in selector.matchers:
            assert label in allowed, (selector.rule, selector.name, label)
            if label == "le":
                assert value in labels[f"{family}:le"], (selector.rule, selector.name, value)


def test_every_recorded_series_a_rule_reads_is_recorded() -> None:
    for selector in (s for rule in RULES for s in selectors(rule)):
        if ":" in selector.name:
            assert selector.name in RECORDED, (selector.rule, selector.name)


def test_every_route_the_rules_name_exists(session_app: Any) -> None:
    """Route values are the app's URL rules (a renamed route would silence its alert)."""
    routes = {rule.rule for rule in session_app.url_map.iter_rules()}
    named = set()
    for selector in (s for rule in RULES for s in selectors(rule)):
        for label, op, value in selector.matchers:
            if label == "route":
                named |= set(value.split("|")) if op in {"=~", "!~"} else {value}
    assert named
    assert named <= routes, named - routes
