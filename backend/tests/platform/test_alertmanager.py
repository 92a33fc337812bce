"""observability/alertmanager/, checked and run by the real Alertmanager 0.25 and amtool.

- the configuration passes `amtool check-config`, and `amtool config routes test` sends each
  severity to its receiver (the routing tree is compared with the cases, so a new route needs
  a case);
- the WeCom message template renders (`amtool template render`) in Chinese and English with the
  service, route, value, summary, runbook and description, within WeCom's 2048 bytes;
- a real Alertmanager, its WeCom API pointed at the WeChat emulator, delivers a critical alert
  to the on-call party and the SMS gateway and then its resolution, a warning to the team chat
  only, and mutes a warning while the critical of the same alert and service fires.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.ci import binary, require_binaries
from tests.platform.alerting import (
    ALERTMANAGER_DIR,
    CONFIG,
    TEMPLATES,
    RunningAlertmanager,
    WeComTenant,
    alert,
    running_alertmanager,
    sms_payloads,
)
from wechat_emulator.testing import EmulatorControl, EmulatorProcess

WECOM_TEXT_LIMIT = 2048  # bytes: WeCom cuts a text message's content beyond this
TEMPLATE_REF = re.compile(r'\{\{ template "(minishop\.wecom\.[a-z_]+)" \. \}\}')
TEMPLATE_DEFINE = re.compile(r'\{\{ define "(minishop\.wecom\.[a-z_]+)" \}\}')


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    require_binaries("amtool")
    return subprocess.run(
        [binary("amtool"), *args], capture_output=True, text=True, timeout=60, check=False
    )


# --- configuration and routes ----------------------------------------------------------------


def test_check_config_accepts_the_configuration() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
    assert " - 3 receivers" in result.stdout
    assert " - 2 inhibit rules" in result.stdout


def test_check_config_rejects_a_broken_configuration(tmp_path: Path) -> None:
    """The check is real: a route to a receiver that does not exist fails it."""
    broken = tmp_path / "alertmanager.yml"
    text = CONFIG.read_text(encoding="utf-8")
    broken.write_text(text.replace("receiver: team-wecom", "receiver: team-wecon"))
    result = amtool("check-config", str(broken))
    assert result.returncode != 0
    assert "team-wecon" in result.stdout + result.stderr


# (labels, the receivers they must reach). Routing reads `severity` only; the other labels are
# the ones our alert rules carry, to show real alerts.
ROUTE_CASES: list[tuple[dict[str, str], str]] = [
    (
        {"alertname": "HighErrorRate", "severity": "critical", "team": "shop",
         "service": "minishop", "route": "/api/v1/orders"},
        "oncall-wecom-sms",
    ),
    (
        {"alertname": "InstanceDown", "severity": "critical", "team": "platform",
         "service": "minishop", "instance": "10.0.3.7:8000"},
        "oncall-wecom-sms",
    ),
    (
        {"alertname": "SLOAvailabilityBurn", "severity": "critical", "service": "minishop"},
        "oncall-wecom-sms",
    ),
    (
        {"alertname": "SLOAvailabilityBurn", "severity": "warning", "service": "minishop"},
        "team-wecom",
    ),
    (
        {"alertname": "WorkerMemoryHigh", "severity": "warning", "team": "platform",
         "service": "minishop"},
        "team-wecom",
    ),
    (
        {"alertname": "HighLatencyP99", "severity": "warning", "service": "minishop",
         "route": "/api/v1/products"},
        "team-wecom",
    ),
    # No severity, or one we do not route (matching is exact and case-sensitive): the default.
    ({"alertname": "HighErrorRate", "service": "minishop"}, "default-wecom"),
    ({"alertname": "HighErrorRate", "severity": "info", "service": "minishop"}, "default-wecom"),
    ({"alertname": "HighErrorRate", "severity": "Critical", "service": "minishop"},
     "default-wecom"),
]  # fmt: skip


def labels_args(labels: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in labels.items()]


ROUTE_IDS = [
    f"{labels['alertname']}-{labels.get('severity', 'no-severity')}->{receiver}"
    for labels, receiver in ROUTE_CASES
]


@pytest.mark.parametrize(("labels", "receiver"), ROUTE_CASES, ids=ROUTE_IDS)
def test_route(labels: dict[str, str], receiver: str) -> None:
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}",
        f"--verify.receivers={receiver}", *labels_args(labels),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_route_verification_can_fail() -> None:
    """amtool really compares: a critical alert does not reach the team chat receiver alone."""
    result = amtool(
        "config", "routes", "test", f"--config.file={CONFIG}", "--verify.receivers=team-wecom",
        "severity=critical", "alertname=HighErrorRate", "service=minishop",
    )  # fmt: skip
    assert result.returncode != 0
    assert "did not match" in result.stdout + result.stderr


def test_every_route_has_a_case() -> None:
    """The routing tree is what the cases cover: a route added without a case fails here."""
    result = amtool("config", "routes", "show", f"--config.file={CONFIG}")
    assert result.returncode == 0, result.stderr
    tree = [
        (match.group(1), match.group(2))
        for match in re.finditer(r"── (\S+)\s+receiver: (\S+)", result.stdout)
    ]
    assert tree == [
        ("default-route", "default-wecom"),
        ('{severity="critical"}', "oncall-wecom-sms"),
        ('{severity="warning"}', "team-wecom"),
    ]
    assert {receiver for _, receiver in tree} == {receiver for _, receiver in ROUTE_CASES}


def test_the_repository_holds_no_wecom_credential() -> None:
    """Credentials and recipients are named templates from secrets/ (mounted at deploy time);
    the committed example defines exactly the names the configuration uses, and so does the
    tests' WeComTenant."""
    text = CONFIG.read_text(encoding="utf-8")
    for key in ("corp_id", "api_secret", "agent_id", "to_party", "to_user"):
        values = re.findall(rf"^\s*{key}:\s*(.+)$", text, flags=re.MULTILINE)
        assert values, key
        assert all(TEMPLATE_REF.fullmatch(value.strip("'")) for value in values), (key, values)
    assert "secrets/wecom.tmpl" in text
    assert "credentials_file: secrets/sms-gateway-token" in text
    used = set(TEMPLATE_REF.findall(text)) - {"minishop.wecom.message"}
    example = (ALERTMANAGER_DIR / "secrets.example" / "wecom.tmpl").read_text(encoding="utf-8")
    assert set(TEMPLATE_DEFINE.findall(example)) == used
    assert set(TEMPLATE_DEFINE.findall(WeComTenant().template())) == used
    gitignore = (ALERTMANAGER_DIR.parents[1] / ".gitignore").read_text(encoding="utf-8")
    assert "observability/alertmanager/secrets/" in gitignore.splitlines()


# --- the message template ---------------------------------------------------------------------

STARTS_AT = "2026-05-01T10:00:00Z"  # 18:00 in Beijing
ENDS_AT = "2026-05-01T10:25:30Z"
RUNBOOK = "https://git.example.com/minishop/-/blob/main/observability/runbooks/high-error-rate.md"
HIGH_ERROR_RATE = {
    "labels": {
        "alertname": "HighErrorRate", "severity": "critical", "team": "shop",
        "service": "minishop", "route": "/api/v1/orders",
    },
    "annotations": {
        "summary": "5xx ratio of minishop above 5%",
        "description": "More than 5% of /api/v1/orders answers were 5xx for 3 minutes.",
        "runbook_url": RUNBOOK,
        "value": "12.5%",
    },
}  # fmt: skip


def template_data(*alerts: dict[str, Any], receiver: str = "oncall-wecom-sms") -> dict[str, Any]:
    """Alertmanager's template.Data for one group (alertname, service), as the notifier builds
    it: status firing while any alert fires."""
    common = set.intersection(*(set(a["labels"].items()) for a in alerts))
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "receiver": receiver,
        "status": status,
        "alerts": [
            {"generatorURL": "http://prometheus.invalid/graph", "fingerprint": str(i), **a}
            for i, a in enumerate(alerts)
        ],
        "groupLabels": {k: v for k, v in common if k in ("alertname", "service")},
        "commonLabels": dict(common),
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.invalid",
    }


def firing(base: dict[str, Any], **labels: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": base["labels"] | labels,
        "annotations": dict(base["annotations"]),
        "startsAt": STARTS_AT,
        "endsAt": "0001-01-01T00:00:00Z",
    }


def resolved(base: dict[str, Any], **labels: str) -> dict[str, Any]:
    return firing(base, **labels) | {"status": "resolved", "endsAt": ENDS_AT}


@pytest.fixture()
def render(tmp_path: Path) -> Callable[[dict[str, Any]], str]:
    """`amtool template render` of the wechat receiver's message with the given data."""

    def run(data: dict[str, Any]) -> str:
        data_file = tmp_path / "data.json"
        data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        result = amtool(
            "template", "render", f"--template.glob={TEMPLATES}/*.tmpl",
            '--template.text={{ template "minishop.wecom.message" . }}',
            f"--template.data={data_file}",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout

    return run


def test_firing_message(render: Callable[[dict[str, Any]], str]) -> None:
    assert render(template_data(firing(HIGH_ERROR_RATE))) == (
        "[FIRING:1] 告警 HighErrorRate · minishop\n"
        "级别 Severity: 严重 critical · 团队 Team: shop\n"
        "摘要 Summary: 5xx ratio of minishop above 5%\n"
        f"处理手册 Runbook: {RUNBOOK}\n"
        "告警中 Firing (1):\n"
        "● 路由 Route: /api/v1/orders · 当前值 Value: 12.5% · 开始 Since: 2026-05-01 18:00 UTC+8\n"
        "详情 Description: More than 5% of /api/v1/orders answers were 5xx for 3 minutes."
    )


def test_resolved_message(render: Callable[[dict[str, Any]], str]) -> None:
    assert render(template_data(resolved(HIGH_ERROR_RATE))) == (
        "[RESOLVED] 恢复 HighErrorRate · minishop\n"
        "级别 Severity: 严重 critical · 团队 Team: shop\n"
        "摘要 Summary: 5xx ratio of minishop above 5%\n"
        f"处理手册 Runbook: {RUNBOOK}\n"
        "已恢复 Resolved (1):\n"
        "○ 路由 Route: /api/v1/orders · 最后值 Last value: 12.5% · "
        "恢复 Resolved: 2026-05-01 18:25 UTC+8\n"
        "详情 Description: More than 5% of /api/v1/orders answers were 5xx for 3 minutes."
    )


def test_a_group_lists_each_alert_firing_first(render: Callable[[dict[str, Any]], str]) -> None:
    """The group's alerts differ by route or instance and value: one line each, the firing
    ones first; the shared summary and runbook are those of the first firing alert."""
    cart = resolved(HIGH_ERROR_RATE, route="/api/v1/cart")
    cart["annotations"] |= {"value": "4.1%", "summary": "resolved one"}
    products = firing(HIGH_ERROR_RATE, route="/api/v1/products", instance="10.0.3.7:8000")
    products["annotations"]["value"] = "6%"
    text = render(template_data(cart, firing(HIGH_ERROR_RATE), products))
    assert text.startswith("[FIRING:2] 告警 HighErrorRate · minishop\n")
    assert "摘要 Summary: 5xx ratio of minishop above 5%\n" in text
    assert (
        "告警中 Firing (2):\n"
        "● 路由 Route: /api/v1/orders · 当前值 Value: 12.5% · 开始 Since: 2026-05-01 18:00 UTC+8\n"
        "● 路由 Route: /api/v1/products · 实例 Instance: 10.0.3.7:8000 · 当前值 Value: 6% · "
        "开始 Since: 2026-05-01 18:00 UTC+8\n"
        "已恢复 Resolved (1):\n"
        "○ 路由 Route: /api/v1/cart · 最后值 Last value: 4.1% · "
        "恢复 Resolved: 2026-05-01 18:25 UTC+8\n"
    ) in text


def test_optional_fields_are_left_out(render: Callable[[dict[str, Any]], str]) -> None:
    """No team, route, instance, value or description: nothing is printed for them. A severity
    we do not know is named as such."""
    bare = {
        "labels": {"alertname": "RedisUnavailable", "severity": "page", "service": "minishop"},
        "annotations": {"summary": "Cache fallbacks rising", "runbook_url": RUNBOOK},
    }
    assert render(template_data(firing(bare))) == (
        "[FIRING:1] 告警 RedisUnavailable · minishop\n"
        "级别 Severity: 未知 page\n"
        "摘要 Summary: Cache fallbacks rising\n"
        f"处理手册 Runbook: {RUNBOOK}\n"
        "告警中 Firing (1):\n"
        "● 开始 Since: 2026-05-01 18:00 UTC+8"
    )


def large_group(summary: str, description: str) -> dict[str, Any]:
    """12 firing and 12 resolved alerts with long routes, instances and annotations."""
    long = {
        "labels": HIGH_ERROR_RATE["labels"],
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": RUNBOOK,
            "value": "99.99%",
        },
    }
    route = "/api/v1/orders/<order_no>/refunds/<refund_no>"
    alerts = [firing(long, route=route, instance=f"10.0.3.{i}:8000") for i in range(12)]
    alerts += [resolved(long, route=route, instance=f"10.0.4.{i}:8000") for i in range(12)]
    return template_data(*alerts)


def test_a_large_group_fits_one_wecom_message(render: Callable[[dict[str, Any]], str]) -> None:
    """5 firing and 2 resolved alerts are listed, and the summary and description shortened:
    in English the whole message fits WeCom's 2048 bytes."""
    summary, description = "Error ratio of the order API too high. " * 10, "Lorem ipsum. " * 50
    text = render(large_group(summary, description))
    assert text.startswith("[FIRING:12] 告警 HighErrorRate · minishop\n")
    assert text.count("\n● ") == 5
    assert text.count("\n○ ") == 2
    assert "告警中 Firing (12):\n" in text
    assert "已恢复 Resolved (12):\n" in text
    assert text.count("… 仅列出前 5 条 / first 5 listed\n") == 1
    assert text.count("… 仅列出前 2 条 / first 2 listed\n") == 1
    assert f"\n摘要 Summary: {summary[:80]}…\n" in text
    assert text.endswith(f"\n详情 Description: {description[:300]}…")
    assert len(text.encode()) <= WECOM_TEXT_LIMIT, len(text.encode())


def test_in_chinese_all_but_the_description_fits(render: Callable[[dict[str, Any]], str]) -> None:
    """Chinese takes 3 bytes a character: WeCom may cut the description (it comes last), but
    everything before it, and its first 50 characters, fit in 2048 bytes."""
    summary, description = "订单接口错误率过高" * 20, "数据库连接失败导致下单接口返回 5xx" * 30
    text = render(large_group(summary, description))
    assert f"\n摘要 Summary: {summary[:80]}…\n" in text
    assert text.endswith(f"\n详情 Description: {description[:300]}…")
    before_description = text[: text.index("\n详情 Description: ")]
    assert len(before_description.encode()) <= WECOM_TEXT_LIMIT - 150, len(text.encode())


# --- a real Alertmanager, WeCom at the emulator ------------------------------------------------

# Shorter than production so the test does not wait minutes; everything else is our config.
FAST = {"group_wait": "1s", "group_interval": "1s"}


@pytest.fixture()
def alertmanager(
    emulator: EmulatorControl, emulator_process: EmulatorProcess
) -> Iterator[RunningAlertmanager]:
    """Started after the emulator's reset (see tests/platform/alerting.py on WeCom tokens)."""
    with running_alertmanager(emulator_process.base_url, timings=FAST) as running:
        yield running


def wait_for(
    what: str, found: Callable[[], list[Any]], am: RunningAlertmanager, timeout: float = 30
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if items := found():
            return items
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s; alertmanager log:\n{am.log()[-4000:]}")


def wecom(emulator: EmulatorControl, *needles: str) -> Callable[[], list[dict[str, Any]]]:
    """The WeCom messages whose text contains every needle."""
    return lambda: [
        message
        for message in emulator.messages("wecom")
        if all(needle in message["content"] for needle in needles)
    ]


def test_critical_alert_pages_wecom_and_sms_then_resolves(
    alertmanager: RunningAlertmanager, emulator: EmulatorControl
) -> None:
    started = datetime.now(UTC) - timedelta(minutes=4)
    labels, annotations = HIGH_ERROR_RATE["labels"], HIGH_ERROR_RATE["annotations"]
    alertmanager.post_alerts([alert(labels, annotations, starts_at=started)])

    [message] = wait_for("FIRING message", wecom(emulator, "[FIRING:1]"), alertmanager)
    tenant = alertmanager.tenant
    assert (message["toparty"], message["touser"]) == (tenant.oncall_party, tenant.oncall_user)
    assert message["msgtype"] == "text"
    for text in (
        "[FIRING:1] 告警 HighErrorRate · minishop\n",
        "级别 Severity: 严重 critical · 团队 Team: shop\n",
        "摘要 Summary: 5xx ratio of minishop above 5%\n",
        f"处理手册 Runbook: {RUNBOOK}\n",
        "告警中 Firing (1):\n● 路由 Route: /api/v1/orders · 当前值 Value: 12.5% · 开始 Since: ",
        "详情 Description: More than 5% of /api/v1/orders answers were 5xx for 3 minutes.",
    ):
        assert text in message["content"]
    [sms] = wait_for("SMS webhook", lambda: sms_payloads(alertmanager), alertmanager)
    assert (sms["receiver"], sms["status"]) == ("oncall-wecom-sms", "firing")
    assert sms["alerts"][0]["labels"]["route"] == "/api/v1/orders"
    headers = {k.lower(): v for k, v in alertmanager.sms.received[0].headers.items()}
    assert headers["authorization"] == f"Bearer {alertmanager.sms_token}"

    ended = datetime.now(UTC) - timedelta(seconds=1)
    alertmanager.post_alerts([alert(labels, annotations, starts_at=started, ends_at=ended)])

    [message] = wait_for("RESOLVED message", wecom(emulator, "[RESOLVED]"), alertmanager)
    assert message["toparty"] == tenant.oncall_party
    for text in (
        "[RESOLVED] 恢复 HighErrorRate · minishop\n",
        f"处理手册 Runbook: {RUNBOOK}\n",
        "已恢复 Resolved (1):\n",
        "○ 路由 Route: /api/v1/orders · 最后值 Last value: 12.5% · 恢复 Resolved: ",
    ):
        assert text in message["content"]
    wait_for("resolved SMS", lambda: sms_payloads(alertmanager)[1:], alertmanager)
    assert sms_payloads(alertmanager)[1]["status"] == "resolved"
    assert len(wecom(emulator, "[FIRING")()) == 1  # no repeat within repeat_interval


def test_warning_goes_to_team_chat_and_a_critical_mutes_it(
    alertmanager: RunningAlertmanager, emulator: EmulatorControl
) -> None:
    """The same alert at both severities on one service: only the critical is told. On another
    service the warning reaches the team chat, and no SMS is sent for it."""
    burn = "SLOAvailabilityBurn"
    annotations = {"summary": "Error budget burning", "runbook_url": RUNBOOK, "value": "14.4x"}
    alertmanager.post_alerts(
        [
            alert({"alertname": burn, "severity": "critical", "service": "minishop"}, annotations),
            alert({"alertname": burn, "severity": "warning", "service": "minishop"}, annotations),
            alert({"alertname": burn, "severity": "warning", "service": "minishop-jobs"},
                  annotations),
        ]
    )  # fmt: skip

    [warning] = wait_for("warning message", wecom(emulator, "· minishop-jobs"), alertmanager)
    assert (warning["toparty"], warning["touser"]) == (alertmanager.tenant.team_party, "")
    assert "级别 Severity: 警告 warning" in warning["content"]
    [critical] = wait_for("critical message", wecom(emulator, "严重 critical"), alertmanager)
    assert critical["toparty"] == alertmanager.tenant.oncall_party
    assert f"[FIRING:1] 告警 {burn} · minishop\n" in critical["content"]

    muted = [
        a
        for a in alertmanager.alerts()
        if a["labels"]["severity"] == "warning" and a["labels"]["service"] == "minishop"
    ]
    assert [a["status"]["state"] for a in muted] == ["suppressed"]
    assert muted[0]["status"]["inhibitedBy"]
    time.sleep(3)  # three more group intervals: the muted warning would have been sent by now
    messages = emulator.messages("wecom")
    assert len(messages) == 2, [m["content"] for m in messages]
    assert not [m for m in messages if "· minishop\n" in m["content"] and "警告" in m["content"]]
    assert [p["alerts"][0]["labels"]["severity"] for p in sms_payloads(alertmanager)] == [
        "critical"
    ]


def test_an_slo_fast_burn_page_mutes_the_slow_burn_ticket_of_that_slo_only(
    alertmanager: RunningAlertmanager, emulator: EmulatorControl
) -> None:
    """Fast and slow burn are two alert names; the label `slo` ties them to one SLO."""
    annotations = {"summary": "Error budget burning", "runbook_url": RUNBOOK, "value": "14.4x"}
    shared = {"service": "minishop", "job": "minishop-local"}
    alertmanager.post_alerts(
        [
            alert({"alertname": "AvailabilitySLOFastBurn", "severity": "critical",
                   "slo": "availability", **shared}, annotations),
            alert({"alertname": "AvailabilitySLOSlowBurn", "severity": "warning",
                   "slo": "availability", **shared}, annotations),
            alert({"alertname": "LatencySLOSlowBurn", "severity": "warning",
                   "slo": "latency", **shared}, annotations),
        ]
    )  # fmt: skip

    wait_for("the latency ticket", wecom(emulator, "LatencySLOSlowBurn"), alertmanager)
    states = {a["labels"]["alertname"]: a["status"]["state"] for a in alertmanager.alerts()}
    assert states == {
        "AvailabilitySLOFastBurn": "active",
        "AvailabilitySLOSlowBurn": "suppressed",
        "LatencySLOSlowBurn": "active",
    }
