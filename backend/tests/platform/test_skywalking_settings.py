"""observability/skywalking/: the agent settings for compose (agent.env) and Kubernetes
(configmap.yaml), checked against the real apache-skywalking agent the app runs.

No SkyWalking OAP can run here; the agent posts to a loopback receiver speaking the OAP's HTTP
protocol (tests/observability/receivers.py), the same one the tracing tests use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
import yaml
from skywalking import config as agent_config  # type: ignore[import-untyped]

from minishop.config import Settings
from tests.conftest import gunicorn_server
from tests.observability.receivers import SkyWalkingReceiver
from wechat_emulator.testing import EmulatorControl

SKYWALKING = Path(__file__).resolve().parents[3] / "observability" / "skywalking"
ADDRESS = "SW_AGENT_COLLECTOR_BACKEND_SERVICES"  # where the OAP is: differs by platform
# What the app passes to the agent's config.init (minishop/observability/tracing.py), which
# overrides the agent's environment: a variable for one of these would be silently ignored.
SET_BY_THE_APP = {
    "SW_AGENT_NAME",
    "SW_AGENT_PROTOCOL",
    "SW_AGENT_INSTANCE_NAME",
    "SW_AGENT_DISABLE_PLUGINS",
    "SW_AGENT_LOG_REPORTER_ACTIVE",
    "SW_AGENT_METER_REPORTER_ACTIVE",
    "SW_AGENT_PVM_METER_REPORTER_ACTIVE",
    "SW_AGENT_PROFILE_ACTIVE",
}


def env_file(path: Path) -> dict[str, str]:
    """A compose env_file: KEY=VALUE lines, `#` comments, no quoting (ours uses none)."""
    pairs = [line.split("=", 1) for line in path.read_text().splitlines()]
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2 and not pair[0].startswith("#")}


def test_compose_and_kubernetes_carry_the_same_settings() -> None:
    compose = env_file(SKYWALKING / "agent.env")
    configmap = yaml.safe_load((SKYWALKING / "configmap.yaml").read_text())
    assert configmap["kind"] == "ConfigMap"
    kubernetes: dict[str, Any] = configmap["data"]
    assert all(isinstance(value, str) for value in kubernetes.values())  # env values: strings
    assert compose.keys() == kubernetes.keys()
    differing = {key for key in compose if compose[key] != kubernetes[key]}
    assert differing == {ADDRESS}
    assert compose[ADDRESS].endswith(":12800") and kubernetes[ADDRESS].endswith(":12800")


def test_every_variable_is_one_the_agent_or_the_app_reads() -> None:
    settings = env_file(SKYWALKING / "agent.env")
    agent_options = {f"SW_{option.upper()}" for option in agent_config.options}
    sw_variables = {key for key in settings if key.startswith("SW_")}
    assert sw_variables <= agent_options, sw_variables - agent_options
    assert not sw_variables & SET_BY_THE_APP
    app_variables = set(settings) - sw_variables
    assert app_variables <= set(Settings.model_fields), app_variables - set(Settings.model_fields)
    assert settings["TRACING_BACKEND"] == "skywalking"


def test_the_agent_reports_as_configured(
    settings: Settings, tmp_path: Path, emulator: EmulatorControl
) -> None:
    """The app under gunicorn with agent.env: probes untraced, the rest reported by name."""
    agent_env = env_file(SKYWALKING / "agent.env")
    with SkyWalkingReceiver() as receiver:
        with gunicorn_server(
            settings, tmp_path, **(agent_env | {ADDRESS: receiver.address, "WEB_CONCURRENCY": "1"})
        ) as base_url:
            for _ in range(3):
                assert requests.get(f"{base_url}/healthz", timeout=5).status_code == 200
            code = emulator.new_login_code().code
            login = requests.post(f"{base_url}/api/v1/auth/login", json={"code": code}, timeout=10)
            assert login.status_code == 200, login.text
            segments = receiver.wait_for(
                lambda: (
                    [s for s in receiver.segments if s["traceId"] == login.headers["X-Trace-Id"]]
                    or None
                )
            )
        everything = list(receiver.segments)
    (segment,) = segments
    assert segment["service"] == agent_env["SERVICE_NAME"]
    assert segment["spans"][-1]["operationName"] == "POST:/api/v1/auth/login"
    # SW_AGENT_TRACE_IGNORE_PATH: the readiness polls and probes left no segment.
    entries = [s["spans"][-1]["operationName"] for s in everything]
    assert not [name for name in entries if "healthz" in name], entries
    # SW_PLUGIN_SQL_PARAMETERS_MAX_LENGTH=0: statements without their users' values.
    database = [span for span in segment["spans"] if span["spanLayer"] == "Database"]
    assert database
    assert not [
        tag
        for span in database
        for tag in span.get("tags", [])
        if tag["key"] == "db.sql.parameters"
    ]
    assert receiver.instances  # the instance reported itself (properties, keep-alive)
