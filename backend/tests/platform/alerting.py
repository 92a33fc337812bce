"""The real Alertmanager (0.25, `prometheus-alertmanager`) on loopback, with our configuration.

    with running_alertmanager(emulator_process.base_url) as alertmanager:
        alertmanager.post_alerts([alert({"alertname": ..., "severity": "critical", ...})])
        # or give a real Prometheus `alertmanager.url` (host:port in its alerting config)
        ...  # emulator.messages("wecom") gets the WeCom message; sms_payloads(alertmanager) the SMS

What differs from production, and nothing else: a temporary copy of observability/alertmanager/
has the one `wechat_api_url:` line pointed at the WeChat emulator's /cgi-bin/, the SMS webhook
`url:` line pointed at a loopback recorder, and the files a deployment mounts in secrets/
(WeCom tenant, SMS token) written with the emulator's development credentials. Tests that
cannot wait for production timings may shorten every group_wait / group_interval.

The WeCom token: Alertmanager caches it for 2 hours and forgets it only on errcode 42001.
Resetting the emulator (the `emulator` fixture does) while an Alertmanager runs makes the next
sends fail with 40014, unretried, so start Alertmanager after the reset.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.ci import binary, require_binaries
from tests.platform.processes import HTTP, free_port, serving
from wechat_emulator.testing import Receiver, notify_receiver

REPO_ROOT = Path(__file__).resolve().parents[3]
ALERTMANAGER_DIR = REPO_ROOT / "observability" / "alertmanager"
CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"
TEMPLATES = ALERTMANAGER_DIR / "templates"

# The lines a test copy rewrites: each must occur exactly once in the configuration.
WECHAT_API_URL_LINE = re.compile(r"^(\s*wechat_api_url:\s*)\S+[ \t]*$", re.MULTILINE)
SMS_URL_LINE = re.compile(r"^(\s*url:\s*)http://sms-gateway:8080/alert[ \t]*$", re.MULTILINE)
TIMING_LINE = re.compile(r"^(\s*(group_wait|group_interval):\s*)\S+[ \t]*$", re.MULTILINE)


# What the tests' secrets/sms-gateway-token holds (the SMS stand-in checks the bearer token).
DEV_SMS_GATEWAY_TOKEN = "dev-only-sms-gateway-token"


@dataclass(frozen=True)
class WeComTenant:
    """What secrets/wecom.tmpl holds. The defaults are the WeChat emulator's own
    (tools/wechat_emulator/README.md: --corpid, --corpsecret, --agentid)."""

    corp_id: str = "ww0000000000000000"
    api_secret: str = "dev-only-wecom-corp-secret-never-use-in-prod"
    agent_id: str = "1000002"
    oncall_party: str = "2"
    oncall_user: str = "oncall-primary|oncall-secondary"
    team_party: str = "3"

    def template(self) -> str:
        """secrets/wecom.tmpl: one named template per value (see secrets.example/wecom.tmpl)."""
        values = {
            "corp_id": self.corp_id,
            "api_secret": self.api_secret,
            "agent_id": self.agent_id,
            "oncall_party": self.oncall_party,
            "oncall_user": self.oncall_user,
            "team_party": self.team_party,
        }
        return "".join(
            f'{{{{ define "minishop.wecom.{name}" }}}}{value}{{{{ end }}}}\n'
            for name, value in values.items()
        )


def _replace_once(pattern: re.Pattern[str], replacement: str, text: str, what: str) -> str:
    new_text, count = pattern.subn(lambda match: match.group(1) + replacement, text)
    if count != 1:
        raise AssertionError(f"expected exactly one {what} line in {CONFIG.name}, found {count}")
    return new_text


def _replace_timing(text: str, key: str, value: str) -> str:
    def replace(match: re.Match[str]) -> str:
        return match.group(1) + value if match.group(2) == key else match.group(0)

    return TIMING_LINE.sub(replace, text)


def prepare_config(
    target: Path,
    *,
    wechat_api_url: str,
    sms_url: str,
    tenant: WeComTenant = WeComTenant(),
    sms_token: str = DEV_SMS_GATEWAY_TOKEN,
    timings: Mapping[str, str] | None = None,
    source: Path = ALERTMANAGER_DIR,
) -> Path:
    """Copy the Alertmanager directory to `target` (templates and all, so the relative paths
    still hold), rewrite the URLs, write the secrets, and return the config file's path.
    `timings` ({"group_wait": "1s", "group_interval": "2s"}) replaces every such line."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("secrets", "secrets.example"))
    config = target / CONFIG.name
    text = config.read_text(encoding="utf-8")
    text = _replace_once(WECHAT_API_URL_LINE, wechat_api_url, text, "wechat_api_url")
    text = _replace_once(SMS_URL_LINE, sms_url, text, "SMS gateway url")
    for key, value in (timings or {}).items():
        text = _replace_timing(text, key, value)
    config.write_text(text, encoding="utf-8")
    secrets = target / "secrets"
    secrets.mkdir(mode=0o700)
    (secrets / "wecom.tmpl").write_text(tenant.template(), encoding="utf-8")
    (secrets / "sms-gateway-token").write_text(sms_token + "\n", encoding="utf-8")
    for path in secrets.iterdir():
        path.chmod(0o600)
    return config


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def alert(
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
    *,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
) -> dict[str, Any]:
    """One alert as Prometheus posts it to /api/v2/alerts (resolved when ends_at is past)."""
    body: dict[str, Any] = {
        "labels": dict(labels),
        "annotations": dict(annotations or {}),
        "startsAt": _utc(starts_at or datetime.now(UTC)),
        "generatorURL": "http://prometheus.invalid/graph",
    }
    if ends_at is not None:
        body["endsAt"] = _utc(ends_at)
    return body


@dataclass
class RunningAlertmanager:
    """A started Alertmanager: its URL, its working copy of the config, the SMS recorder."""

    url: str
    config: Path
    sms: Receiver
    sms_token: str
    tenant: WeComTenant
    log_path: Path

    def log(self) -> str:
        """The process's output so far (for a failing test's message)."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def post_alerts(self, alerts: Sequence[Mapping[str, Any]]) -> None:
        response = HTTP.post(f"{self.url}/api/v2/alerts", json=list(alerts), timeout=10)
        assert response.status_code == 200, response.text

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """GET /api/v2/alerts (filters: active, silenced, inhibited = "true"/"false")."""
        response = HTTP.get(f"{self.url}/api/v2/alerts", params=filters, timeout=10)
        response.raise_for_status()
        return list(response.json())


@contextmanager
def running_alertmanager(
    wechat_api_base: str,
    *,
    tenant: WeComTenant = WeComTenant(),
    timings: Mapping[str, str] | None = None,
    startup_timeout: float = 20.0,
    port: int | None = None,
) -> Iterator[RunningAlertmanager]:
    """Our Alertmanager configuration served by the real binary on a free loopback port.

    `wechat_api_base` is the emulator's base URL (http://127.0.0.1:PORT); WeCom calls go to its
    /cgi-bin/. The SMS webhook goes to `.sms`, a loopback recorder answering 204. A single node
    (no cluster port), state in a temporary directory removed afterwards."""
    require_binaries("prometheus-alertmanager")
    with tempfile.TemporaryDirectory(prefix="alertmanager-") as tmp, notify_receiver() as sms:
        work = Path(tmp)
        sms_token = DEV_SMS_GATEWAY_TOKEN
        config = prepare_config(
            work / "config",
            wechat_api_url=wechat_api_base.rstrip("/") + "/cgi-bin/",
            sms_url=sms.url,
            tenant=tenant,
            sms_token=sms_token,
            timings=timings,
        )
        url = f"http://127.0.0.1:{port or free_port()}"
        log_path = work / "alertmanager.log"
        command = [
            binary("prometheus-alertmanager"),
            f"--config.file={config}",
            f"--storage.path={work / 'data'}",
            f"--web.listen-address={url.removeprefix('http://')}",
            "--cluster.listen-address=",
            "--log.level=debug",
        ]
        with serving(command, log_path, f"{url}/-/ready", timeout=startup_timeout):
            yield RunningAlertmanager(url, config, sms, sms_token, tenant, log_path)


def sms_payloads(alertmanager: RunningAlertmanager) -> list[dict[str, Any]]:
    """The SMS gateway's requests so far, as Alertmanager's webhook JSON (version 4)."""
    with alertmanager.sms.lock:
        received = list(alertmanager.sms.received)
    return [json.loads(item.body) for item in received]
